"""What the emulator records about every RPC, for assertions in tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import grpc

__all__ = ["CapturedCall"]


@dataclass(eq=False)
class CapturedCall:
    """One RPC as the server saw it.

    The server thread keeps updating ``cancelled``, ``responses_sent``, ``code`` and ``details``
    while the call runs, so poll with :meth:`Emulator.wait_for` rather than reading once.
    """

    method: str
    request: Any
    metadata: tuple[tuple[str, str | bytes], ...]
    deadline: float | None
    request_id: str
    trace_id: str
    cancelled: bool = False
    responses_sent: int = 0
    code: grpc.StatusCode | None = None
    details: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    def header(self, name: str) -> str | None:
        """The last value of metadata key ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        value: str | None = None
        for key, v in self.metadata:
            if key.lower() == wanted:
                value = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        return value

    @property
    def client_request_id(self) -> str | None:
        """The ``x-client-request-id`` the client sent, if any."""
        return self.header("x-client-request-id")

    @property
    def done(self) -> bool:
        """Whether the server finished handling the call."""
        return self.code is not None

    def __repr__(self) -> str:
        # Metadata can hold credentials: keep it out of reprs that end up in test logs.
        return (
            f"CapturedCall(method={self.method!r}, request_id={self.request_id!r},"
            f" code={self.code}, responses_sent={self.responses_sent},"
            f" cancelled={self.cancelled})"
        )
