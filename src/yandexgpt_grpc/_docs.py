"""The help() text of the clients, generated from one table each so no argument goes undocumented.

`OPTIONS` documents every generation option (the keys of `GenerationOptions`, checked by a test),
`CALL_ARGS` the per-call arguments and `CLIENT_ARGS` the constructor's. `documented` appends the
sections to a method's or a class's own docstring, so `help(Client.complete)` and `help(Client)`
list them on the public objects themselves. Nothing here runs per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ._constants import (
    DEFAULT_ENDPOINT,
    DEFAULT_OPERATION_ENDPOINT,
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    ENV_API_KEY,
    ENV_ENDPOINT,
    ENV_FOLDER_ID,
    ENV_IAM_TOKEN,
)

F = TypeVar("F", bound=Callable[..., object])

# name -> (meaning, default)
OPTIONS: dict[str, tuple[str, str]] = {
    "temperature": ("sampling temperature, 0 to 1: higher gives more varied text", "None: the model's default"),
    "max_tokens": ("the most tokens the answer may have; a longer one ends TRUNCATED_FINAL", "None: the model's limit"),
    "reasoning_mode": (
        '"disabled" or "enabled_hidden" (the model reasons before answering)',
        "None: the model's default",
    ),
    "tools": (
        "functions the model may call: FunctionTool objects, typed functions (schema from the signature "
        "and docstring) or dicts with name/description/parameters/strict",
        "None: no tools",
    ),
    "tool_choice": (
        '"auto" (the model decides), "none", "required", or the name (or FunctionTool) of one tool to call',
        "None: the service's default",
    ),
    "parallel_tool_calls": ("whether the model may call several tools in one answer", "None: the model's default"),
    "response_format": (
        '"json" (any JSON object), a JSON-schema dict, or a pydantic model class the answer must follow',
        "None: free text",
    ),
}

_CALL_TIMEOUT = f"the client's timeout ({DEFAULT_TIMEOUT:g} s; {DEFAULT_STREAM_TIMEOUT:g} s for a stream)"
CALL_ARGS: dict[str, tuple[str, str]] = {
    "model": ('a short name ("yandexgpt-lite", "yandexgpt/rc") expanded with folder_id, or a gpt:// URI', "required"),
    "messages": ("a str (one user turn), a Message or dict, or a sequence of them", "required"),
    "text": ("the text to split into the model's tokens", "required"),
    "timeout": ("seconds for the whole call, retries and waits included; None: no deadline", _CALL_TIMEOUT),
    "metadata": ("extra gRPC metadata for this call, a mapping or (key, value) pairs; keys lowercase", "None"),
    "retry": ("a RetryPolicy for this call; None: no retries", "the client's policy"),
}

CLIENT_ARGS: dict[str, tuple[str, str]] = {
    "endpoint": (
        "host:port of the API; a pasted https://host[/path] means host:443",
        f"${ENV_ENDPOINT}, else {DEFAULT_ENDPOINT}",
    ),
    "folder_id": ("the cloud folder that pays; short model names expand with it", f"${ENV_FOLDER_ID}"),
    "api_key": ("an API key (Api-Key authorization; a pasted 'Api-Key ' prefix is dropped)", f"${ENV_API_KEY}"),
    "iam_token": (
        "a fixed IAM token (Bearer authorization; a pasted 'Bearer ' prefix is dropped)",
        f"${ENV_IAM_TOKEN}",
    ),
    "credentials": (
        "a Credentials object (ServiceAccountKey, IamTokenProvider, MetadataService, ...); give at most one "
        "of credentials, api_key and iam_token",
        "from the environment: YC_API_KEY, YC_IAM_TOKEN, YC_SERVICE_ACCOUNT_KEY_FILE, "
        "then the VM metadata service when YC_METADATA_CREDENTIALS=1",
    ),
    "insecure": (
        "plaintext instead of TLS, allowed only to loopback addresses and Unix sockets",
        "None: $YANDEXGPT_INSECURE (1/true/yes), else False",
    ),
    "root_certificates": ("PEM bytes of the CA that signed the server's certificate", "None: the system's roots"),
    "timeout": (
        "the default deadline of a call in seconds (a stream's too, when given); None: no deadline",
        f"{DEFAULT_TIMEOUT:g} s, {DEFAULT_STREAM_TIMEOUT:g} s for a stream",
    ),
    "metadata": ("gRPC metadata sent with every call", "None"),
    "data_logging": (
        "sent as x-data-logging-enabled: False asks the service not to keep the requests in its logs",
        "None: not sent, the service's default",
    ),
    "channel_options": ("extra grpc channel options, (key, value) pairs, applied last", "None"),
    "max_retries": ("retries after the first attempt (0: none); overrides the policy's max_attempts", "None"),
    "retry": ("the RetryPolicy of every call; None: no retries", "RetryPolicy()"),
    "operation_endpoint": (
        "host:port of the OperationService (asynchronous mode)",
        f"the endpoint when one is given, else {DEFAULT_OPERATION_ENDPOINT}",
    ),
}


def section(title: str, table: dict[str, tuple[str, str]]) -> str:
    lines = [f"{title}:"]
    for name, (meaning, default) in table.items():
        lines.append(f"    {name}: {meaning} (default: {default}).")
    return "\n".join(lines)


def _append(doc: str | None, *sections: str) -> str:
    # Indented like the docstring it extends, so inspect.cleandoc (help) keeps the layout.
    body = "\n\n".join(sections).replace("\n", "\n    ")
    return f"{(doc or '').rstrip()}\n\n    {body}\n"


def documented(*, options: bool, call_args: tuple[str, ...]) -> Callable[[F], F]:
    """Append the call's arguments (and, when it takes them, the generation options) to its docstring."""

    def apply(fn: F) -> F:
        sections = [section("Arguments", {name: CALL_ARGS[name] for name in call_args})]
        if options:
            sections.append(section("Generation options (keyword arguments, all optional)", OPTIONS))
        fn.__doc__ = _append(fn.__doc__, *sections)
        return fn

    return apply


def document_client(cls: type) -> None:
    """Append every constructor argument to a client class's docstring (help(Client) shows it)."""
    cls.__doc__ = _append(cls.__doc__, section("Constructor arguments (all keyword-only but endpoint)", CLIENT_ARGS))
