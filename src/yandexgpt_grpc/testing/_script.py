"""Script entries that tests queue on the emulator: replies, faults and async-operation shapes.

They are plain frozen values so a test can build them up front and reuse them; the server
interprets them (see ``_server.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import grpc

__all__ = [
    "STATUS_NAMES",
    "Fault",
    "MetadataPairs",
    "OperationScript",
    "Reply",
    "ScriptEntry",
    "ScriptError",
    "load_script",
    "parse_script",
    "status_code",
]

#: Short alternative status names accepted by :class:`Reply` -> the proto enum value.
STATUS_NAMES: Mapping[str, int] = {
    "PARTIAL": 1,
    "TRUNCATED_FINAL": 2,
    "FINAL": 3,
    "CONTENT_FILTER": 4,
    "TOOL_CALLS": 5,
}

StatusName = Literal["PARTIAL", "FINAL", "TRUNCATED_FINAL", "CONTENT_FILTER", "TOOL_CALLS"]
MetadataPairs = Sequence[tuple[str, "str | bytes"]]


def _status_value(status: str) -> int:
    key = status.upper().removeprefix("ALTERNATIVE_STATUS_")
    if key not in STATUS_NAMES:
        raise ValueError(f"unknown alternative status {status!r}; expected one of {sorted(STATUS_NAMES)}")
    return STATUS_NAMES[key]


@dataclass(frozen=True)
class Reply:
    """A scripted successful answer.

    Streaming requests get one ``PARTIAL`` response per chunk carrying the cumulative text, then
    the terminal response (``status``, ``final_text``); non-streaming requests get only the
    terminal one. ``chunks=None`` uses the default model's answer (handy for adding only
    ``delay`` or metadata). ``terminal=False`` ends the stream OK without a terminal response,
    which is how an incomplete stream looks to a client.
    """

    chunks: Sequence[str] | None = None
    status: StatusName | str = "FINAL"
    final_text: str | None = None
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    usage: tuple[int, ...] | None = None
    delay: float = 0.0
    between: float = 0.0
    terminal: bool = True
    initial_metadata: MetadataPairs = ()
    trailing_metadata: MetadataPairs = ()

    def __post_init__(self) -> None:
        _status_value(str(self.status))
        if self.usage is not None and len(self.usage) not in (3, 4):
            raise ValueError("usage must be (input, completion, total[, reasoning])")

    @property
    def status_value(self) -> int:
        """The ``Alternative.AlternativeStatus`` number of ``status``."""
        return _status_value(str(self.status))


@dataclass(frozen=True)
class Fault:
    """A scripted failure: abort with ``code``/``details`` after ``after`` responses.

    The responses sent before the abort are ``PARTIAL`` alternatives with cumulative text built
    from ``chunks`` (the default model's chunks when ``None``, cycled when ``after`` is larger).
    ``stall=True`` hangs instead of aborting, until the client cancels, its deadline passes or the
    emulator stops. ``status_details`` (a ``google.rpc.Status`` message, or raw bytes) travels as
    ``grpc-status-details-bin``; its code and message are aligned with ``code``/``details``.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    details: str = "emulator: injected fault"
    after: int = 0
    delay: float = 0.0
    between: float = 0.0
    chunks: Sequence[str] | None = None
    stall: bool = False
    pushback_ms: int | None = None
    status_details: Any = None
    trailing_metadata: MetadataPairs = ()

    def __post_init__(self) -> None:
        if self.after < 0:
            raise ValueError("after must be >= 0")
        if self.code is grpc.StatusCode.OK and not self.stall:
            raise ValueError("a Fault needs a non-OK code")


@dataclass(frozen=True)
class OperationScript:
    """Shape of the next async operation created by ``TextGenerationAsyncService.Completion``.

    The operation becomes done on the ``done_after_polls``-th ``OperationService.Get`` (0: done
    at creation), or, when ``done_after_seconds`` is set, once that much time has passed (polls
    are then ignored). Done means ``error`` (``(code, message)``, code a ``grpc.StatusCode`` or an
    int) when given, else a ``response`` built from ``response`` (a :class:`Reply`) or the default
    model's answer.
    """

    done_after_polls: int = 2
    done_after_seconds: float | None = None
    error: tuple[grpc.StatusCode | int, str] | None = None
    response: Reply | None = None
    description: str = field(default="Async GPT Completion")

    def __post_init__(self) -> None:
        if self.done_after_polls < 0:
            raise ValueError("done_after_polls must be >= 0")


ScriptEntry = Reply | Fault | OperationScript


# -- scripts from JSON (``python -m yandexgpt_grpc.testing --script FILE``) --------------------------


class ScriptError(ValueError):
    """A JSON script that cannot be replayed; the message names the item and the field."""


def status_code(value: object) -> grpc.StatusCode:
    """A ``grpc.StatusCode`` from its name (``"unavailable"``, ``"UNAVAILABLE"``) or number (14)."""
    if isinstance(value, grpc.StatusCode):
        return value
    for code in grpc.StatusCode:
        if (isinstance(value, int) and not isinstance(value, bool) and code.value[0] == value) or (
            isinstance(value, str) and code.name == value.strip().upper()
        ):
            return code
    raise ValueError(f"unknown status code {value!r}: use a name such as UNAVAILABLE or a number such as 14")


_JSON_FIELDS: dict[type, frozenset[str]] = {
    Reply: frozenset(f.name for f in fields(Reply)),
    Fault: frozenset(f.name for f in fields(Fault)) - {"status_details"},
}


def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = tuple((str(k), str(v)) for k, v in items)
    except (TypeError, ValueError):
        raise ScriptError(f"{where}: expected an object or a list of [key, value] pairs") from None
    return pairs


def _entry(kind: type, spec: Any, where: str) -> Reply | Fault:
    if not isinstance(spec, Mapping):
        raise ScriptError(f"{where}: expected an object of {kind.__name__} fields")
    unknown = sorted(set(spec) - _JSON_FIELDS[kind])
    if unknown:
        known = ", ".join(sorted(_JSON_FIELDS[kind]))
        raise ScriptError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {known}")
    if isinstance(spec.get("chunks"), str):
        raise ScriptError(f"{where}.chunks: expected a list of strings, got a string")
    kwargs = dict(spec)
    try:
        for key in ("initial_metadata", "trailing_metadata"):
            if key in kwargs:
                kwargs[key] = _pairs(kwargs[key], f"{where}.{key}")
        if "usage" in kwargs and kwargs["usage"] is not None:
            kwargs["usage"] = tuple(kwargs["usage"])
        if "code" in kwargs:
            kwargs["code"] = status_code(kwargs["code"])
        return kind(**kwargs)  # type: ignore[no-any-return]
    except ScriptError:
        raise
    except (TypeError, ValueError) as exc:
        raise ScriptError(f"{where}: {exc}") from None


def parse_script(items: Any, methods: Sequence[str]) -> list[tuple[str, Reply | Fault]]:
    """``(method, entry)`` pairs from a decoded JSON script, validated up front.

    The script is a list; each item is ``{"reply": {...}}`` or ``{"fault": {...}}`` (the fields of
    :class:`Reply` / :class:`Fault`; a fault's ``code`` is a name or number), with an optional
    ``"method"`` (default ``"Completion"``).
    """
    if not isinstance(items, list):
        raise ScriptError('the script must be a JSON list of {"reply": {...}} / {"fault": {...}} items')
    out: list[tuple[str, Reply | Fault]] = []
    for i, item in enumerate(items):
        where = f"item {i}"
        if not isinstance(item, Mapping):
            raise ScriptError(f'{where}: expected an object such as {{"reply": {{"chunks": ["Hi"]}}}}')
        extra = sorted(set(item) - {"reply", "fault", "method"})
        kinds = [k for k in ("reply", "fault") if k in item]
        if extra or len(kinds) != 1:
            raise ScriptError(f"{where}: needs exactly one of 'reply' or 'fault' (and optionally 'method')")
        method = item.get("method", "Completion")
        if method not in methods:
            raise ScriptError(f"{where}: unknown method {method!r}; expected one of {', '.join(methods)}")
        kind = Reply if kinds[0] == "reply" else Fault
        out.append((str(method), _entry(kind, item[kinds[0]], f"{where}.{kinds[0]}")))
    return out


def load_script(path: str, methods: Sequence[str]) -> list[tuple[str, Reply | Fault]]:
    """:func:`parse_script` of a JSON file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ScriptError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path} is not valid JSON: {exc}") from None
    return parse_script(data, methods)
