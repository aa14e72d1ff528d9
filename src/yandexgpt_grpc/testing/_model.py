"""The emulator's default model: a deterministic answer, a tokenizer and request validation.

Everything here is pure (no gRPC), so the answer a test sees depends only on the request.

The behaviour is documented on :class:`yandexgpt_grpc.testing.Emulator` ("Default model").
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Answer",
    "ValidationError",
    "default_answer",
    "input_texts",
    "message_text",
    "sample_value",
    "split_chunks",
    "struct_to_dict",
    "token_texts",
    "tokenize",
    "validate_model_uri",
    "validate_request",
]

#: Text-generation model names of the public model list ("Common instance models") of Yandex
#: Cloud AI Studio, https://yandex.cloud/en/docs/ai-studio/concepts/generation/models (source:
#: yandex-cloud/docs, en/ai-studio/concepts/generation/models.md), as read on 2026-12-01.
#: ``art://`` image models are not text-generation models and are left out.
DEFAULT_MODELS: tuple[str, ...] = (
    "yandexgpt-lite",
    "yandexgpt",
    "llama-lite",
    "llama",
    "qwen3-235b-a22b-fp8",
    "gpt-oss-120b",
    "gpt-oss-20b",
    "gemma-3-27b-it",
)
#: Model branches of that page's "Model lifecycle"; the API uses ``latest`` when the URI has none.
MODEL_VERSIONS: tuple[str, ...] = ("latest", "rc", "deprecated")
#: The details the real API answers a model URI it does not know (or cannot parse) with.
INVALID_MODEL_URI = "invalid model_uri"


FINAL = 3
TRUNCATED_FINAL = 2
TOOL_CALLS = 5
_TOOL_CHOICE_NONE = 1
_TOOL_CHOICE_REQUIRED = 3
_REASONING_ENABLED_HIDDEN = 2

_TOKEN_RE = re.compile(r"\s*(?:\w+|[^\w\s])", re.UNICODE)
# gpt://<folder>/<name>[/<version>[@<fine-tuning suffix>]]: the docs' form of base models, the short
# form without a version (the docs: "/latest is used by default") and fine-tuned models.
_GPT_URI_RE = re.compile(r"^gpt://([^/\s@]+)/([^/\s@]+)(?:/([^/\s@]+)(?:@([^/\s@]+))?)?$")
_DS_URI_RE = re.compile(r"^ds://[^/\s]+(?:/[^\s]*)?$")
_ROLES = ("system", "user", "assistant")


class ValidationError(ValueError):
    """A request the real API would answer with INVALID_ARGUMENT."""


def token_texts(text: str) -> list[str]:
    """Split ``text`` into tokens; joining them gives back ``text`` minus trailing whitespace."""
    return _TOKEN_RE.findall(text)


def token_id(token: str) -> int:
    """A stable id for a token text (the same in every process)."""
    return zlib.crc32(token.encode("utf-8")) % 100_000


def tokenize(text: str) -> list[tuple[int, str]]:
    """``(id, text)`` pairs for ``text``."""
    return [(token_id(t), t) for t in token_texts(text)]


def message_text(message: Any) -> str:
    """The text the tokenizer sees for one ``Message`` of any content kind."""
    kind = message.WhichOneof("Content")
    if kind == "text":
        return str(message.text)
    if kind == "tool_call_list":
        calls = [
            {
                "name": c.function_call.name,
                "arguments": struct_to_dict(c.function_call.arguments),
            }
            for c in message.tool_call_list.tool_calls
        ]
        return json.dumps(calls, ensure_ascii=False, sort_keys=True)
    if kind == "tool_result_list":
        return " ".join(str(r.function_result.content) for r in message.tool_result_list.tool_results)
    return ""


def input_texts(request: Any) -> list[str]:
    """Texts of all messages of a ``CompletionRequest`` in order (the tokenized input)."""
    return [message_text(m) for m in request.messages]


def validate_model_uri(
    uri: str,
    header_folder: str | None,
    folder_id: str | None,
    models: frozenset[str] | None = None,
) -> None:
    """Check a model URI (its name against ``models``; ``None`` accepts any) and its folder.

    An empty, malformed or unknown URI gets exactly the real API's details ``invalid model_uri``.
    """
    if _DS_URI_RE.match(uri):
        return
    m = _GPT_URI_RE.match(uri)
    if m is None:
        raise ValidationError(INVALID_MODEL_URI)
    folder, name, version = m.group(1), m.group(2), m.group(3)
    if version is not None and version not in MODEL_VERSIONS:
        raise ValidationError(INVALID_MODEL_URI)
    if models is not None and name not in models:
        raise ValidationError(INVALID_MODEL_URI)
    if header_folder and header_folder != folder:
        raise ValidationError(f"folder of model_uri ({folder}) does not match the x-folder-id header ({header_folder})")
    if folder_id and folder_id != folder:
        raise ValidationError(
            f"folder of model_uri ({folder}) does not match the folder of the credentials ({folder_id})"
        )


def validate_request(
    request: Any,
    header_folder: str | None,
    folder_id: str | None,
    models: frozenset[str] | None = None,
) -> None:
    """Reject what the real API rejects with INVALID_ARGUMENT, with a message saying why.

    Only ``invalid model_uri`` is the real API's wording; the public API reference documents
    neither the code nor the text of the other refusals (empty messages or text, roles, option
    ranges), so they all use INVALID_ARGUMENT with a message of ours.
    """
    validate_model_uri(request.model_uri, header_folder, folder_id, models)
    if not request.messages:
        raise ValidationError("messages must not be empty: send at least one user message")
    for i, message in enumerate(request.messages):
        if message.role not in _ROLES:
            raise ValidationError(
                f"messages[{i}].role: unknown role {message.role!r}; expected one of {', '.join(_ROLES)}"
            )
        # The real API refuses a message without text (an empty prompt) rather than answering it;
        # whitespace only counts as empty. Tool calls/results carry no text and are not checked.
        kind = message.WhichOneof("Content")
        if kind is None or (kind == "text" and not message.text.strip()):
            raise ValidationError(f"messages[{i}].text is empty: every message needs text (or tool calls/results)")
    options = request.completion_options
    if options.HasField("temperature"):
        t = options.temperature.value
        if not 0.0 <= t <= 1.0:
            raise ValidationError(f"completion_options.temperature must be within [0, 1], got {t}")
    if options.HasField("max_tokens") and options.max_tokens.value <= 0:
        raise ValidationError(f"completion_options.max_tokens must be positive, got {options.max_tokens.value}")
    if request.HasField("tool_choice") and request.tool_choice.WhichOneof("ToolChoice") == ("function_name"):
        name = request.tool_choice.function_name
        if name not in [t.function.name for t in request.tools]:
            raise ValidationError(f"tool_choice names function {name!r}, which is not in tools")


def sample_value(schema: Mapping[str, Any], name: str = "value") -> Any:
    """A plausible value for a JSON schema: first enum/const, else by ``type``."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {key: sample_value(props.get(key) or {}, key) for key in required}
    if kind == "array":
        return [sample_value(schema.get("items") or {}, name)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"sample {name}"


@dataclass
class Answer:
    """What the model says: text (or tool calls) and the token counts behind usage."""

    text: str
    status: int = FINAL
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def completion_tokens(self) -> int:
        """Tokens of the visible answer plus hidden reasoning."""
        return count_answer_tokens(self.text, self.tool_calls) + self.reasoning_tokens


def count_answer_tokens(text: str, tool_calls: Sequence[Mapping[str, Any]]) -> int:
    """Token count of an answer: its text, or the JSON of its tool calls."""
    if tool_calls:
        return len(token_texts(json.dumps(list(tool_calls), ensure_ascii=False, sort_keys=True)))
    return len(token_texts(text))


def count_input_tokens(request: Any) -> int:
    """``usage.input_text_tokens`` for a request (equals TokenizeCompletion's token count)."""
    return sum(len(token_texts(t)) for t in input_texts(request))


def reasoning_tokens(request: Any, input_tokens: int) -> int:
    """Hidden reasoning token count, non-zero only in ENABLED_HIDDEN mode."""
    mode = request.completion_options.reasoning_options.mode
    return 8 + input_tokens // 2 if mode == _REASONING_ENABLED_HIDDEN else 0


def _value_to_py(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value_to_py(v) for v in value.list_value.values]
    if kind in (None, "null_value"):
        return None
    return getattr(value, kind)


def struct_to_dict(struct: Any) -> dict[str, Any]:
    """A ``google.protobuf.Struct`` (from any descriptor pool) as plain Python data."""
    return {key: _value_to_py(v) for key, v in struct.fields.items()}


def _last_user_text(request: Any) -> str:
    last = request.messages[-1] if request.messages else None
    if last is None or last.role != "user" or last.WhichOneof("Content") != "text":
        return ""
    return str(last.text)


_NAME_WORD_RE = re.compile(r"[A-Za-z0-9]{4,}")
_QUOTED_RE = re.compile(r"(?<!\w)'([^']+)'(?!\w)|\"([^\"]+)\"")


def _names_tool(text: str, name: str) -> bool:
    """Whether ``text`` names the tool: ``name(``, or every word of its name of 4+ letters."""
    if f"{name}(" in text:
        return True
    words = _NAME_WORD_RE.findall(name)
    return bool(words) and all(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in words)


def _chosen_tool(request: Any) -> Any | None:
    if not request.tools:
        return None
    which = request.tool_choice.WhichOneof("ToolChoice") if request.HasField("tool_choice") else None
    if which == "function_name":
        for tool in request.tools:
            if tool.function.name == request.tool_choice.function_name:
                return tool
        return None
    mode = request.tool_choice.mode if which == "mode" else None
    if mode == _TOOL_CHOICE_NONE:
        return None
    text = _last_user_text(request)
    named = next((t for t in request.tools if text and _names_tool(text, t.function.name)), None)
    if mode == _TOOL_CHOICE_REQUIRED:
        return named or request.tools[0]
    return named


def _literal(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text.strip("'\"")


def tool_call_for(tool: Any, text: str = "") -> dict[str, Any]:
    """A call to ``tool``: arguments written as ``name(a, b)`` in ``text`` fill its parameters in
    order, quoted phrases in ``text`` fill its other string parameters, and the rest are sampled
    from its parameters schema."""
    schema = struct_to_dict(tool.function.parameters)
    args = sample_value(schema) if schema else {}
    if not isinstance(args, dict):
        return {"name": tool.function.name, "arguments": {}}
    props: Mapping[str, Any] = schema.get("properties") or {}
    # A Struct keeps no key order: parameters go in `required` order, then the others by name.
    required = [k for k in schema.get("required") or () if k in props]
    order = required + sorted(k for k in props if k not in required)
    filled: set[str] = set()
    call = re.search(rf"{re.escape(tool.function.name)}\(([^()]*)\)", text)
    if call and call.group(1).strip():
        for key, value in zip(order, call.group(1).split(","), strict=False):
            args[key] = _literal(value)
            filled.add(key)
    quoted = [a or b for a, b in _QUOTED_RE.findall(text)]
    for key in order:
        prop = props[key]
        if quoted and key not in filled and isinstance(prop, Mapping) and prop.get("type") == "string":
            args[key] = quoted.pop(0)
    return {"name": tool.function.name, "arguments": args}


def _asked_keys(text: str) -> list[str]:
    """Quoted names in a prompt that asks for JSON ``keys`` (e.g. ``with 'setup' and 'punchline' keys``)."""
    if not re.search(r"\bkeys\b", text, re.IGNORECASE):
        return []
    return [a or b for a, b in _QUOTED_RE.findall(text) if re.fullmatch(r"\w+", a or b)]


def _plain_text(request: Any) -> str:
    system = " ".join(m.text for m in request.messages if m.role == "system" and m.text).strip()
    user = next(
        (m.text for m in reversed(request.messages) if m.role == "user" and m.WhichOneof("Content") == "text"),
        "",
    ).strip()
    text = f'You said: "{user}".' if user else "Hello! What would you like to talk about?"
    if system:
        text = f"[{system}] {text}"
    return text + " This is the emulator answering."


def default_answer(request: Any) -> Answer:
    """The default model's answer to a validated ``CompletionRequest`` (see module docstring)."""
    n_input = count_input_tokens(request)
    n_reasoning = reasoning_tokens(request, n_input)
    last = request.messages[-1] if request.messages else None
    tool = _chosen_tool(request)
    if last is not None and last.WhichOneof("Content") == "tool_result_list":
        parts = [f"{r.function_result.name}: {r.function_result.content}" for r in last.tool_result_list.tool_results]
        text = "Tool results: " + "; ".join(parts) + "."
    elif tool is not None:
        return Answer("", TOOL_CALLS, [tool_call_for(tool, _last_user_text(request))], n_input, n_reasoning)
    else:
        text = _plain_text(request)
    which = request.WhichOneof("ResponseFormat")
    if which == "json_object" and request.json_object:
        keys = _asked_keys(_last_user_text(request))
        value = {key: f"sample {key}" for key in keys} if keys else {"answer": text}
        text = json.dumps(value, ensure_ascii=False)
    elif which == "json_schema":
        schema = struct_to_dict(request.json_schema.schema)
        value = sample_value(schema)
        if not isinstance(value, dict):
            value = {"value": value}
        text = json.dumps(value, ensure_ascii=False)
    answer = Answer(text, FINAL, [], n_input, n_reasoning)
    options = request.completion_options
    if options.HasField("max_tokens"):
        tokens = token_texts(text)
        if len(tokens) > options.max_tokens.value:
            answer.text = "".join(tokens[: options.max_tokens.value])
            answer.status = TRUNCATED_FINAL
    return answer


def split_chunks(text: str, parts: int = 4) -> list[str]:
    """Split ``text`` on token boundaries into up to ``parts`` non-empty chunks."""
    tokens = token_texts(text)
    if not tokens:
        return [text] if text else []
    size = -(-len(tokens) // parts)
    chunks = ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]
    rest = text[len("".join(chunks)) :]
    if rest:
        chunks[-1] += rest
    return chunks
