"""Python values <-> protobuf messages: every request is built and every answer read here.

One deliberate exception: a stream's per-message step (`_streaming`: `_StreamState._consume` and the
inlined common case in `AsyncCompletionStream._iterate`) reads `alternatives` itself and calls
`alternative_of` from here, because a function call per message is measurable on the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import grpc

from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._errors import ConfigurationError, IncompleteStreamError, YandexGPTError, error_class, find_header
from ._generated.yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common_pb2
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from ._types import (
    ROLES,
    STATUSES,
    Alternative,
    AlternativeStatus,
    CompletionResult,
    Message,
    Token,
    TokenizeResult,
    ToolCall,
    Usage,
    make_alternative,
    make_result,
)

MessagesInput = str | Message | Mapping[str, Any] | Sequence["str | Message | Mapping[str, Any]"]

_URI_SCHEMES = ("gpt://", "ds://", "emb://", "cls://")
_REASONING = {
    "disabled": common_pb2.ReasoningOptions.DISABLED,
    "enabled_hidden": common_pb2.ReasoningOptions.ENABLED_HIDDEN,
}


_TOOL_CHOICE_MODES = {
    "none": common_pb2.ToolChoice.NONE,
    "auto": common_pb2.ToolChoice.AUTO,
    "required": common_pb2.ToolChoice.REQUIRED,
}
_JSON_FORMATS = frozenset({"json", "json_object"})
# The request's oneof, in snake_case or as the REST API spells it.
_FORMAT_KEYS = {
    "json_object": "json_object",
    "jsonObject": "json_object",
    "json_schema": "json_schema",
    "jsonSchema": "json_schema",
}

if TYPE_CHECKING:
    from ._generated.yandex.cloud.operation import operation_service_pb2 as op_service_pb2

    # _tools (inspect, regexes) loads only when a call passes tools or a response format.
    from ._tools import FunctionTool

    ToolInput = FunctionTool | Callable[..., Any] | Mapping[str, Any]
    ResponseFormat = str | Mapping[str, Any] | type


class GenerationOptions(TypedDict, total=False):
    """Sampling and output options shared by complete(), stream(), submit() and tokenize_messages().

    tools: FunctionTool objects, typed functions (schema from signature and docstring) or
    dicts with name/description/parameters/strict. tool_choice: "none", "auto", "required",
    the name of one of the tools or {"type": "function", "function": {"name": ...}}.
    response_format: "json" (any JSON object), a JSON-schema dict, a pydantic model class, or
    (with pydantic) any type its TypeAdapter describes. reasoning_mode: "disabled" or "enabled_hidden".
    """

    temperature: float | None
    max_tokens: int | None
    reasoning_mode: str | None
    tools: Sequence[ToolInput] | None
    tool_choice: str | FunctionTool | Mapping[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: ResponseFormat | None


_OPTION_NAMES = frozenset(GenerationOptions.__annotations__)
# Options that need more than a field assignment; the common call has none of them.
_RICH_OPTIONS = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format"})
_PLAIN_OPTIONS = _OPTION_NAMES - _RICH_OPTIONS


def model_uri(model: str, folder_id: str | None) -> str:
    """Expand a short model name (`yandexgpt-lite`, `yandexgpt/rc`) to a gpt:// URI."""
    if not isinstance(model, str):
        raise TypeError(f"model must be a str such as 'yandexgpt-lite', got {type(model).__name__}")
    model = model.strip()
    if not model:
        raise ValueError(
            "model is empty: pass a name such as 'yandexgpt-lite' or a full 'gpt://<folder>/<model>/latest' URI"
        )
    if model.startswith(_URI_SCHEMES):
        return model
    if "://" in model:
        raise ValueError(f"model URI {model!r} has an unknown scheme: expected gpt://<folder>/<model>[/<version>]")
    if not folder_id:
        raise ConfigurationError(
            f"model {model!r} is a short name, which needs a folder: pass folder_id= or set YC_FOLDER_ID "
            f"(or give the full URI gpt://<folder>/{model}/latest)"
        )
    parts = model.split("/")
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"model {model!r} should look like 'yandexgpt-lite' or 'yandexgpt-lite/latest'")
    name, version = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "latest")
    return f"gpt://{folder_id}/{name}/{version}"


def _message(item: Any, where: str) -> Message:
    if isinstance(item, Message):
        msg = item
    elif isinstance(item, str):
        return Message("user", item)
    elif isinstance(item, Mapping):
        unknown = set(item) - {"role", "text", "content"}
        if unknown:
            raise ValueError(f"{where}: unsupported keys {sorted(unknown)}; a message dict has 'role' and 'text'")
        text = item.get("text", item.get("content"))
        if not isinstance(text, str):
            raise TypeError(f"{where}: 'text' must be a str, got {type(text).__name__}; only text content is supported")
        msg = Message(str(item.get("role", "")), text)
    else:
        raise TypeError(
            f"{where}: expected a Message, a str or a dict with 'role' and 'text', got {type(item).__name__}"
        )
    if msg.role not in ROLES:
        raise ValueError(f"{where}: unknown role {msg.role!r}; use one of {', '.join(ROLES)}")
    if not isinstance(msg.text, str):
        raise TypeError(f"{where}: text must be a str, got {type(msg.text).__name__}; only text content is supported")
    return msg


def normalize_messages(messages: MessagesInput) -> list[Message]:
    """Accept a str, one Message/dict, or a sequence of them; reject anything else clearly."""
    if isinstance(messages, (str, Message, Mapping)):
        items: Iterable[Any] = (messages,)
    elif isinstance(messages, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"messages must be a str, a Message or a list of them, got {type(messages).__name__} "
            "(decode it first, e.g. data.decode('utf-8'))"
        )
    elif isinstance(messages, Sequence):
        items = messages
    else:
        raise TypeError(f"messages must be a str, a Message or a list of them, got {type(messages).__name__}")
    out = [_message(item, f"messages[{i}]") for i, item in enumerate(items)]
    if not out:
        raise ValueError("messages is empty: give at least one message, e.g. Message.user('Hello')")
    return out


def message_texts(messages: Sequence[Message]) -> list[tuple[str, str]]:
    """Every str of the messages, named by where it sits (for errors about their text)."""
    out = []
    for i, msg in enumerate(messages):
        out.append((f"messages[{i}]", msg.text))
        for call in msg.tool_calls or ():
            out.append((f"messages[{i}] tool call {call.name!r}", repr(dict(call.arguments))))
        for result in msg.tool_results or ():
            out.append((f"messages[{i}] tool result {result.name!r}", result.content))
    return out


def _add_message(add: Any, msg: Message) -> None:
    if not (msg.tool_calls or msg.tool_results):
        add(role=msg.role, text=msg.text)  # one call: the plain turn is nearly every turn
        return
    pb = add(role=msg.role)
    if msg.tool_calls:
        for call in msg.tool_calls:
            fc = pb.tool_call_list.tool_calls.add().function_call
            fc.name = call.name
            fc.arguments.update(dict(call.arguments))
    elif msg.tool_results:
        for result in msg.tool_results:
            fr = pb.tool_result_list.tool_results.add().function_result
            fr.name = result.name
            fr.content = result.content


def check_options(options: Mapping[str, Any]) -> None:
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unexpected option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_OPTION_NAMES))}")


def build_request(
    uri: str, messages: Sequence[Message] | str, options: Mapping[str, Any], stream: bool
) -> tg_pb2.CompletionRequest:
    """Validate options and build a CompletionRequest; raises before any I/O.

    `messages` is normalized already, or a plain str: one user turn, the commonest call,
    added without building a Message first.
    """
    # dict_keys <= frozenset allocates nothing: the plain call pays no more than before.
    rich = not options.keys() <= _PLAIN_OPTIONS
    if rich:
        check_options(options)
    req = tg_pb2.CompletionRequest(model_uri=uri)
    opts = req.completion_options
    opts.stream = stream
    temperature = options.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a number in [0, 1], got {type(temperature).__name__}")
        if not (0.0 <= temperature <= 1.0) or math.isnan(temperature):
            raise ValueError(f"temperature must be in [0, 1], got {temperature!r}")
        opts.temperature.value = float(temperature)
    max_tokens = options.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise TypeError(f"max_tokens must be a positive int, got {type(max_tokens).__name__}")
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens}")
        opts.max_tokens.value = max_tokens
    mode = options.get("reasoning_mode")
    if mode is not None:
        key = mode.lower() if isinstance(mode, str) else mode
        if key not in _REASONING:
            raise ValueError(f"reasoning_mode must be one of {', '.join(map(repr, _REASONING))}, got {mode!r}")
        opts.reasoning_options.mode = _REASONING[key]
    if rich:
        _set_tools_and_format(req, options)
    add = req.messages.add
    if isinstance(messages, str):
        add(role="user", text=messages)
        return req
    for msg in messages:
        _add_message(add, msg)
    return req


def _set_tools_and_format(req: tg_pb2.CompletionRequest, options: Mapping[str, Any]) -> None:
    from ._tools import as_tool

    tools = options.get("tools")
    names: list[str] = []
    if tools is not None:
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable):
            raise TypeError(f"tools must be a list of tools, got {type(tools).__name__}")
        for i, item in enumerate(tools):
            tool = as_tool(item, f"tools[{i}]")
            if tool.name in names:
                raise ValueError(f"tools[{i}]: another tool is already named {tool.name!r}")
            names.append(tool.name)
            fn = req.tools.add().function
            fn.name = tool.name
            fn.description = tool.description
            fn.parameters.update(tool.parameters)
            fn.strict = tool.strict
    choice = options.get("tool_choice")
    if choice is not None:
        _set_tool_choice(req, choice, names)
    parallel = options.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise TypeError(f"parallel_tool_calls must be a bool, got {type(parallel).__name__}")
        req.parallel_tool_calls.value = parallel
    fmt = options.get("response_format")
    if fmt is not None:
        _set_response_format(req, fmt)


def _set_tool_choice(req: tg_pb2.CompletionRequest, choice: Any, names: Sequence[str]) -> None:
    from ._tools import FunctionTool

    if isinstance(choice, FunctionTool):
        choice = choice.name
    elif isinstance(choice, Mapping):  # the REST API's {"type": "function", "function": {"name": ...}}
        fn = choice.get("function") if choice.get("type") == "function" and len(choice) == 2 else None
        choice = fn.get("name") if isinstance(fn, Mapping) and set(fn) == {"name"} else None
        if not isinstance(choice, str) or choice not in names:
            raise ValueError("tool_choice dict must be {'type': 'function', 'function': {'name': <a tool in tools=>}}")
        req.tool_choice.function_name = choice
        return
    elif callable(choice) and not isinstance(choice, str):
        choice = getattr(choice, "__name__", choice)
    if not isinstance(choice, str):
        raise TypeError(f"tool_choice must be 'none', 'auto', 'required' or a tool name, got {type(choice).__name__}")
    mode = _TOOL_CHOICE_MODES.get(choice.lower())
    if mode is not None:
        if mode == common_pb2.ToolChoice.REQUIRED and not names:
            raise ValueError("tool_choice='required' needs tools: pass tools=[...]")
        req.tool_choice.mode = mode
        return
    if choice in names:
        req.tool_choice.function_name = choice
        return
    if not names:
        raise ValueError(
            f"unknown tool_choice {choice!r}: use 'none', 'auto', 'required' or the name of a tool passed in tools="
        )
    raise ValueError(
        f"tool_choice {choice!r} names no declared tool; declared: {', '.join(map(repr, names))} "
        "(or use 'none', 'auto', 'required')"
    )


def _set_response_format(req: tg_pb2.CompletionRequest, fmt: Any) -> None:
    from ._tools import schema_of

    if isinstance(fmt, str):
        key = fmt.lower()
        if key in _JSON_FORMATS:
            req.json_object = True
        elif key != "text":
            raise ValueError(
                f"unknown response_format {fmt!r}: use 'json', a JSON-schema dict or a pydantic model class"
            )
        return
    if isinstance(fmt, Mapping) and any(k in _FORMAT_KEYS for k in fmt):
        given = {_FORMAT_KEYS[k]: v for k, v in fmt.items() if k in _FORMAT_KEYS}
        if len(given) != len(fmt):
            raise ValueError(
                f"response_format: unexpected keys {sorted(k for k in fmt if k not in _FORMAT_KEYS)} "
                "beside json_object/json_schema"
            )
        if "json_object" in given and "json_schema" in given:
            raise ValueError("response_format: json_object and json_schema exclude each other; give one")
        if "json_object" in given:
            if not isinstance(given["json_object"], bool):
                raise TypeError("response_format: json_object must be a bool")
            if given["json_object"]:
                req.json_object = True
            return
        fmt = given["json_schema"]
        if isinstance(fmt, Mapping) and set(fmt) == {"schema"}:
            fmt = fmt["schema"]
    req.json_schema.schema.update(schema_of(fmt, "response_format"))


def usage_of(pb: common_pb2.ContentUsage) -> Usage:
    return Usage(
        pb.input_text_tokens,
        pb.completion_tokens,
        pb.total_tokens,
        pb.completion_tokens_details.reasoning_tokens,
    )


def tool_calls_of(msg: common_pb2.Message) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(tc.function_call.name, _whole_numbers(_struct_to_dict(tc.function_call.arguments)))
        for tc in msg.tool_call_list.tool_calls
        if tc.HasField("function_call")
    )


def _struct_to_dict(pb: Any) -> Any:
    # json_format (and the text_format it pulls in) loads only when a tool call arrives.
    from google.protobuf import json_format

    return json_format.MessageToDict(pb)


def _whole_numbers(value: Any) -> Any:
    """Struct keeps every number as a double; give whole ones back as int, as JSON parsing would."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= 2**53 else value
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def alternative_of(pb: common_pb2.Alternative, index: int, previous: str) -> Alternative:
    """Build an Alternative and its delta against the previous text of the same index."""
    msg = pb.message
    text = msg.text
    value = pb.status
    status = STATUSES[value] if 0 <= value < len(STATUSES) else AlternativeStatus(value)  # UNKNOWN, number kept
    # text and tool_call_list share a oneof: a message with text has no tool calls to look for.
    calls = tool_calls_of(msg) if not text and msg.HasField("tool_call_list") else ()
    if text.startswith(previous):
        return make_alternative(text, text[len(previous) :], status, index, False, calls)
    return make_alternative(text, text, status, index, True, calls)


def result_of(
    resp: tg_pb2.CompletionResponse,
    alternatives: tuple[Alternative, ...],
    request_id: str | None,
    trace_id: str | None,
    *,
    initial: Any = (),
    trailing: Any = (),
) -> CompletionResult:
    return make_result(
        alternatives, usage_of(resp.usage), resp.model_version, request_id, trace_id, resp, initial, trailing
    )


def unary_result(
    resp: tg_pb2.CompletionResponse,
    request_id: str | None,
    trace_id: str | None,
    initial: Any = (),
    trailing: Any = (),
) -> CompletionResult:
    alts = tuple(alternative_of(a, i, "") for i, a in enumerate(resp.alternatives))
    if not alts or not all(a.is_final for a in alts):
        # What the stream raises for the same answer: text that may be cut short is no result.
        raise IncompleteStreamError(
            "the answer has no final alternative; the text may be cut short",
            partial=alts[0] if alts else None,
            request_id=request_id,
        )
    return result_of(resp, alts, request_id, trace_id, initial=initial, trailing=trailing)


def completion_answer(resp: tg_pb2.CompletionResponse | None, initial: Any, trailing: Any) -> CompletionResult:
    """complete()'s result from the answer and its headers; an answer without a message is incomplete."""
    # grpc.aio's Metadata is walked once, through iter(): tuple() alone would first ask its Python-level
    # __len__ for a size hint (the sync client's metadata is a tuple already: iter() costs nothing there).
    initial = tuple(iter(initial))
    rid = find_header(initial, HEADER_REQUEST_ID)
    if resp is None:
        raise IncompleteStreamError("the server answered without a response message", partial=None, request_id=rid)
    trace_id = find_header(initial, HEADER_TRACE_ID)
    alts = resp.alternatives
    if len(alts) == 1:
        # The common answer inlined: one alternative with text and a known final status (this function
        # went from 82 k to 52 k instructions). Anything else goes through unary_result and alternative_of.
        pb = alts[0]
        text = pb.message.text
        value = pb.status
        if text and 1 < value < len(STATUSES):
            alt = tuple.__new__(Alternative, (text, text, STATUSES[value], 0, False, ()))
            usage = usage_of(resp.usage)
            return make_result((alt,), usage, resp.model_version, rid, trace_id, resp, initial, tuple(iter(trailing)))
    return unary_result(resp, rid, trace_id, initial, tuple(iter(trailing)))


def tokens_answer(resp: tg_pb2.TokenizeResponse, initial: Any) -> TokenizeResult:
    return tokens_of(resp, find_header(initial, HEADER_REQUEST_ID), find_header(initial, HEADER_TRACE_ID))


def build_tokenize_request(uri: str, text: str) -> tg_pb2.TokenizeRequest:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    try:
        return tg_pb2.TokenizeRequest(model_uri=uri, text=text)
    except UnicodeEncodeError as exc:
        from ._checks import unencodable_text

        raise unencodable_text(exc, [("text", text)]) from None


def tokens_of(resp: tg_pb2.TokenizeResponse, request_id: str | None, trace_id: str | None) -> TokenizeResult:
    tokens = tuple(Token(t.id, t.text, t.special) for t in resp.tokens)
    return TokenizeResult(tokens, resp.model_version, request_id, trace_id, resp)


# The operation service's messages load with the first operation: a plain completion never needs them.
def get_operation_request(operation_id: str) -> op_service_pb2.GetOperationRequest:
    from ._generated.yandex.cloud.operation import operation_service_pb2 as op_service_pb2

    return op_service_pb2.GetOperationRequest(operation_id=operation_id)


def cancel_operation_request(operation_id: str) -> op_service_pb2.CancelOperationRequest:
    from ._generated.yandex.cloud.operation import operation_service_pb2 as op_service_pb2

    return op_service_pb2.CancelOperationRequest(operation_id=operation_id)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def operation_result(op: Any, operation_id: str, initial: Any) -> CompletionResult:
    """The result of a done Operation, or its error raised as our exception class."""
    if op.HasField("error"):
        code = _CODES.get(op.error.code, grpc.StatusCode.UNKNOWN)
        raise error_class(code)(
            op.error.message, code=code, operation_id=operation_id, status_details=tuple(op.error.details)
        )
    resp = operation_response(op)
    if resp is None:
        raise YandexGPTError(f"operation {operation_id} is done but carries neither a response nor an error")
    initial = tuple(initial or ())
    rid, trace_id = find_header(initial, HEADER_REQUEST_ID), find_header(initial, HEADER_TRACE_ID)
    return unary_result(resp, rid, trace_id, initial=initial)


def operation_response(op: Any) -> tg_pb2.CompletionResponse | None:
    """The CompletionResponse packed in a done Operation, or None when it carries none."""
    if op.WhichOneof("result") != "response":
        return None
    resp = tg_pb2.CompletionResponse()
    if not op.response.Unpack(resp):
        raise TypeError(f"operation {op.id} holds a {op.response.TypeName()}, not a CompletionResponse")
    return resp
