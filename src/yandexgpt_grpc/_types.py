"""Plain Python values the public API returns; no protobuf object leaks out but `raw`."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._public import public
from ._records import record

if TYPE_CHECKING:
    from google.protobuf.message import Message as _PbMessage


class _NotGiven:
    """Marks an argument the caller left out, as distinct from an explicit None."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = _NotGiven()
NotGiven = _NotGiven


class AlternativeStatus(enum.IntEnum):
    """Where an alternative stands; values equal the wire enum's numbers.

    A number this package does not know (a status added to the API later) is kept, not folded
    into UNSPECIFIED: ``AlternativeStatus(9)`` is ``<AlternativeStatus.UNKNOWN: 9>``, named
    UNKNOWN, equal to 9, with ``is_unknown`` True. It ends an alternative (``is_final``) like
    the other statuses past PARTIAL, so a stream the server closes after it is complete.
    """

    UNSPECIFIED = 0
    PARTIAL = 1
    TRUNCATED_FINAL = 2
    FINAL = 3
    CONTENT_FILTER = 4
    TOOL_CALLS = 5

    def __str__(self) -> str:
        # The name on every Python: IntEnum's own str is the number on 3.11+, "AlternativeStatus.X" on 3.10.
        return self.name

    def __format__(self, spec: str) -> str:
        """The name, as str(); a numeric format spec (`:d`, `:02`) still formats the number."""
        try:
            return format(self.name, spec)
        except ValueError:
            return int.__format__(self, spec)

    @classmethod
    def _missing_(cls, value: object) -> AlternativeStatus | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        member = int.__new__(cls, value)
        member._name_ = "UNKNOWN"
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]

    @property
    def is_unknown(self) -> bool:
        """A wire number this version does not know (its value is the number)."""
        return self._name_ == "UNKNOWN"

    @property
    def is_final(self) -> bool:
        """Every status but PARTIAL and UNSPECIFIED ends an alternative (unknown ones too)."""
        return self >= AlternativeStatus.TRUNCATED_FINAL or self < 0

    @property
    def wire_name(self) -> str:
        """The name the REST API and the proto use, e.g. ALTERNATIVE_STATUS_FINAL."""
        return "ALTERNATIVE_STATUS_" + self.name


_set: Final = object.__setattr__  # how the frozen classes' __init__ sets a field, as dataclass's would

# Wire number -> AlternativeStatus, by index (the known values are 0..5; others: AlternativeStatus(n)).
STATUSES: Final = tuple(AlternativeStatus)


@record(frozen=True, slots=True)
class ToolCall:
    """A function call the model asks the caller to make."""

    name: str
    arguments: Mapping[str, Any]

    def __init__(self, name: str, arguments: Mapping[str, Any]) -> None:
        _set(self, "name", name)
        _set(self, "arguments", arguments)


@record(frozen=True, slots=True)
class ToolResult:
    """What a called function returned, to be sent back to the model."""

    name: str
    content: str

    def __init__(self, name: str, content: str) -> None:
        _set(self, "name", name)
        _set(self, "content", content)


ROLES: Final = ("system", "user", "assistant")


@record(frozen=True, slots=True)
class Message:
    """One turn of a conversation: text, tool calls made by the model, or tool results."""

    role: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()

    def __init__(
        self,
        role: str,
        text: str = "",
        tool_calls: tuple[ToolCall, ...] = (),
        tool_results: tuple[ToolResult, ...] = (),
    ) -> None:
        _set(self, "role", role)
        _set(self, "text", text)
        _set(self, "tool_calls", tool_calls)
        _set(self, "tool_results", tool_results)

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", text)

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", text)

    @classmethod
    def assistant(cls, text: str = "", *, tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls("assistant", text, tool_calls=tuple(tool_calls))

    @classmethod
    def tool_result(cls, name: str, content: Any) -> Message:
        """One tool's answer; non-string content is sent as JSON."""
        return cls.with_tool_results([ToolResult(name, _content(content))])

    @classmethod
    def with_tool_results(cls, results: Sequence[ToolResult]) -> Message:
        """Several tools' answers in one turn, as the API expects after parallel calls."""
        return cls("user", tool_results=tuple(results))


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    import json  # tool results only: json stays out of a plain call's start-up

    return json.dumps(value, ensure_ascii=False)


@record(frozen=True, slots=True)
class Usage:
    """Token counts; in a stream they are running totals."""

    input_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0

    def __init__(
        self, input_tokens: int = 0, completion_tokens: int = 0, total_tokens: int = 0, reasoning_tokens: int = 0
    ) -> None:
        _set(self, "input_tokens", input_tokens)
        _set(self, "completion_tokens", completion_tokens)
        _set(self, "total_tokens", total_tokens)
        _set(self, "reasoning_tokens", reasoning_tokens)


class Alternative(NamedTuple):
    """One candidate answer as it stood in one response.

    `text` is the whole text so far, as the server sent it. `delta` is what is new
    since the previous alternative of the same `index`. When the server's text does
    not extend the previous one (a content filter replaced it), `replaced` is True
    and `delta` holds the whole new text: discard what you showed before.

    A NamedTuple rather than a dataclass like the other results: a stream builds one
    per message, and a tuple is built in a single step (a frozen dataclass sets each
    field separately, the largest part of the per-message cost). It is just as immutable;
    `_replace()` makes a changed copy.
    """

    text: str
    delta: str
    status: AlternativeStatus
    index: int = 0  # type: ignore[assignment]  # the field, by design, hides tuple.index()
    replaced: bool = False
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def is_final(self) -> bool:
        return self.status >= 2 or self.status < 0

    @property
    def message(self) -> Message:
        """This answer as an assistant turn, to append to the conversation (keeps tool calls)."""
        return Message("assistant", self.text, tool_calls=self.tool_calls)


_new_tuple: Final = tuple.__new__


def make_alternative(  # noqa: PLR0917 - positional on purpose: this runs once per streamed message
    text: str, delta: str, status: AlternativeStatus, index: int, replaced: bool, calls: tuple[ToolCall, ...]
) -> Alternative:
    """Alternative(...) without the keyword handling of the generated __new__."""
    return _new_tuple(Alternative, (text, delta, status, index, replaced, calls))


@record(frozen=True)
class CompletionResult:
    """The outcome of a completion; `raw` is the last CompletionResponse for power users.

    `initial_metadata` / `trailing_metadata` are the server's (key, value) pairs; `-bin` values are bytes.
    """

    alternatives: tuple[Alternative, ...]
    usage: Usage
    model_version: str
    request_id: str | None = None
    trace_id: str | None = None
    raw: _PbMessage | None = field(default=None, repr=False, compare=False)
    initial_metadata: tuple[tuple[str, str | bytes], ...] = field(default=(), repr=False, compare=False)
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = field(default=(), repr=False, compare=False)

    def __init__(  # noqa: PLR0917 - the dataclass's positional order, kept
        self,
        alternatives: tuple[Alternative, ...],
        usage: Usage,
        model_version: str,
        request_id: str | None = None,
        trace_id: str | None = None,
        raw: _PbMessage | None = None,
        initial_metadata: tuple[tuple[str, str | bytes], ...] = (),
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        _set(self, "alternatives", alternatives)
        _set(self, "usage", usage)
        _set(self, "model_version", model_version)
        _set(self, "request_id", request_id)
        _set(self, "trace_id", trace_id)
        _set(self, "raw", raw)
        _set(self, "initial_metadata", initial_metadata)
        _set(self, "trailing_metadata", trailing_metadata)

    @property
    def alternative(self) -> Alternative:
        if not self.alternatives:
            raise ValueError("the server returned no alternatives")
        return self.alternatives[0]

    @property
    def text(self) -> str:
        """Text of the first alternative."""
        alternatives = self.alternatives  # not through .alternative: the one attribute nearly every caller reads
        return alternatives[0].text if alternatives else self.alternative.text

    @property
    def status(self) -> AlternativeStatus:
        return self.alternative.status

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.alternative.tool_calls

    @property
    def message(self) -> Message:
        """The first alternative as an assistant turn, e.g. before sending tool results back."""
        return self.alternative.message

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the REST API documents (camelCase, int64 as strings)."""
        if self.raw is None:
            raise ValueError("this result carries no response to convert")
        from google.protobuf import json_format

        return json_format.MessageToDict(self.raw)

    def json(self) -> Any:
        """Parse the text as JSON (for structured output)."""
        import json

        try:
            return json.loads(self.text)
        except json.JSONDecodeError as exc:
            preview = self.text if len(self.text) <= 80 else self.text[:77] + "..."
            raise ValueError(
                f"the completion text is not valid JSON ({exc.msg} at position {exc.pos}): {preview!r}"
            ) from None


_new_object = object.__new__


def make_result(  # noqa: PLR0917 - positional on purpose: once per call, on the hot path
    alternatives: tuple[Alternative, ...],
    usage: Usage,
    model_version: str,
    request_id: str | None,
    trace_id: str | None,
    raw: _PbMessage | None,
    initial_metadata: tuple[tuple[str, str | bytes], ...],
    trailing_metadata: tuple[tuple[str, str | bytes], ...],
) -> CompletionResult:
    """CompletionResult(...) with its fields written straight into the new instance's dict.

    The frozen dataclass's __init__ sets each of the eight through object.__setattr__, about 1.6 k
    instructions apiece; this takes 5 k in all. tests/test_hot_path.py holds it to the constructor.
    """
    result = _new_object(CompletionResult)
    fields = result.__dict__
    fields["alternatives"] = alternatives
    fields["usage"] = usage
    fields["model_version"] = model_version
    fields["request_id"] = request_id
    fields["trace_id"] = trace_id
    fields["raw"] = raw
    fields["initial_metadata"] = initial_metadata
    fields["trailing_metadata"] = trailing_metadata
    return result


@record(frozen=True, slots=True)
class Token:
    """One token as the model's tokenizer cut it; `special` marks control tokens."""

    id: int
    text: str
    special: bool = False

    def __init__(self, id: int, text: str, special: bool = False) -> None:
        _set(self, "id", id)
        _set(self, "text", text)
        _set(self, "special", special)


@record(frozen=True)
class TokenizeResult:
    """Tokens of a text or of a whole request; `len(result)` and `result.count` give how many."""

    tokens: tuple[Token, ...]
    model_version: str
    request_id: str | None = None
    trace_id: str | None = None
    raw: _PbMessage | None = field(default=None, repr=False, compare=False)

    def __init__(
        self,
        tokens: tuple[Token, ...],
        model_version: str,
        request_id: str | None = None,
        trace_id: str | None = None,
        raw: _PbMessage | None = None,
    ) -> None:
        _set(self, "tokens", tokens)
        _set(self, "model_version", model_version)
        _set(self, "request_id", request_id)
        _set(self, "trace_id", trace_id)
        _set(self, "raw", raw)

    @property
    def count(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> Iterator[Token]:
        return iter(self.tokens)


public(AlternativeStatus, ToolCall, ToolResult, Message, Usage, Alternative, CompletionResult, Token, TokenizeResult)
