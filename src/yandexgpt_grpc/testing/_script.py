"""Script entries that tests queue on the emulator: replies, faults and async-operation shapes.

They are plain frozen values so a test can build them up front and reuse them; the server
interprets them (see ``_server.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

__all__ = ["STATUS_NAMES", "Fault", "MetadataPairs", "OperationScript", "Reply", "ScriptEntry"]

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
