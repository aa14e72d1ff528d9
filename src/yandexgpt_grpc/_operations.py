"""Asynchronous-mode operations (submit, poll, wait, cancel, re-attach) and the unary-call runner.

`TextGenerationAsyncService.Completion` answers with an operation; `OperationService.Get` and
`Cancel` (on the operation endpoint) follow it. The runner here also serves the tokenizer: one
request, one response, with the same retries, deadlines and auth refresh as `complete()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import grpc

from . import _retry
from ._base import ClientConfig, Timeout
from ._channel import unparsable_error
from ._convert import cancel_operation_request, get_operation_request, operation_result
from ._errors import (  # OperationTimeoutError's home is _errors; importable from here as before
    DeadlineExceededError,
    OperationNotDoneError,
    OperationTimeoutError,
    YandexGPTError,
)
from ._public import public
from ._retry import CallRetry
from ._types import NOT_GIVEN, CompletionResult

if TYPE_CHECKING:
    from ._channel import Headers
    from ._generated.yandex.cloud.operation import operation_pb2
    from ._generated.yandex.cloud.operation import operation_service_pb2_grpc as op_grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")

__all__ = [
    "AsyncOperation",
    "Operation",
    "OperationTimeoutError",
    "acall_unary",
    "call_unary",
]

# wait(): each pause is this much longer than the one before, up to ten times the first (30 s at most).
_GROWTH = 1.5
_MAX_INTERVAL = 30.0
# The least deadline a poll gets, so wait(timeout=T) returns within T + this.
_LAST_POLL_DEADLINE = 0.5


# -- one request, one response ------------------------------------------------------------------


def call_unary(
    tries: CallRetry, method: Callable[[], grpc.UnaryUnaryMultiCallable[Req, Resp]], request: Req
) -> tuple[Resp, Headers]:
    """(response, initial metadata) of a unary RPC, through the retry driver (`_retry.call`).

    `method()` gives the stub callable, so the channel behind it is made on first use.
    """

    def attempt(tries: CallRetry, request: Req, timeout: float | None, md: _retry.Metadata) -> tuple[Resp, Headers]:
        resp, call = method().with_call(request, timeout=timeout, metadata=md)
        initial = call.initial_metadata()
        tries.finished(grpc.StatusCode.OK, initial)
        return resp, initial

    return _retry.call(tries, attempt, request)


async def acall_unary(
    tries: CallRetry, method: Callable[[], grpc.aio.UnaryUnaryMultiCallable[Req, Resp]], request: Req
) -> tuple[Resp, Headers]:
    """The asyncio twin of `call_unary` (`_retry.acall`); task cancellation cancels the RPC."""

    async def attempt(
        tries: CallRetry, request: Req, timeout: float | None, md: _retry.Metadata
    ) -> tuple[Resp, Headers]:
        call = method()(request, timeout=timeout, metadata=md)
        try:
            resp = await call
            if resp is None:  # grpc.aio's sign of an answer it could not parse
                raise unparsable_error(await call.initial_metadata())
            initial = await call.initial_metadata()
        except grpc.RpcError:
            raise
        except BaseException:  # task cancelled, or worse: do not leave the RPC running
            call.cancel()
            raise
        tries.finished(grpc.StatusCode.OK, initial)
        return resp, initial

    return await _retry.acall(tries, attempt, request)


# -- operation handles --------------------------------------------------------------------------


class _OperationBase:
    """State shared by Operation and AsyncOperation: the last Operation message seen."""

    __slots__ = ("_cfg", "_id", "_initial", "_pb", "_stubs")

    def __init__(
        self,
        operation_id: str,
        cfg: ClientConfig,
        stubs: Callable[[], op_grpc.OperationServiceStub],
        *,
        pb: operation_pb2.Operation | None = None,
        initial: Headers | None = None,
    ) -> None:
        if not isinstance(operation_id, str):
            raise TypeError(f"operation_id must be a str, got {type(operation_id).__name__}")
        if not operation_id.strip():
            raise ValueError(f"operation_id must be a non-empty str, got {operation_id!r}")
        self._id = operation_id.strip()
        self._cfg = cfg
        self._stubs = stubs
        self._pb = pb
        self._initial = initial

    @property
    def id(self) -> str:
        return self._id

    @property
    def done(self) -> bool:
        """Whether the operation had finished when last seen (submit, poll, wait or cancel)."""
        return bool(self._pb is not None and self._pb.done)

    @property
    def description(self) -> str:
        return str(self._pb.description) if self._pb is not None else ""

    @property
    def raw(self) -> operation_pb2.Operation | None:
        """The last `yandex.cloud.operation.Operation` message received (None before the first)."""
        return self._pb

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self._id!r}, done={self.done})"

    def _update(self, pb: operation_pb2.Operation, initial: Headers) -> None:
        self._pb = pb
        self._initial = initial

    def _outcome(self) -> CompletionResult:
        """The result of a done operation, or its error raised as our exception class."""
        return operation_result(self._pb, self._id, self._initial)

    def _get_tries(self, timeout: Timeout, deadline: float | None) -> CallRetry:
        """What poll() and wait() call OperationService.Get with: its deadline cut to what wait() has left."""
        return self._cfg.attempts(
            "OperationService.Get", _rpc_timeout(self._cfg, timeout, deadline), NOT_GIVEN, operation_id=self._id
        )

    def _cancel_tries(self, timeout: Timeout) -> CallRetry:
        return self._cfg.attempts("OperationService.Cancel", timeout, NOT_GIVEN, operation_id=self._id)

    def _polled(self, exc: DeadlineExceededError, schedule: _Schedule, timeout: float | None) -> YandexGPTError:
        """A poll ran out of time: the wait's timeout if that is what passed, else the poll's own error."""
        if schedule.expired():
            err = self._timed_out(timeout)
            err.__cause__ = exc
            return err
        return exc

    def _pause(self, schedule: _Schedule, timeout: float | None) -> float:
        pause = schedule.pause()
        if pause is None:
            raise self._timed_out(timeout)
        return pause

    def _not_done(self) -> OperationNotDoneError:
        return OperationNotDoneError(f"operation {self._id} is still running: wait() for it, or poll() again later")

    def _timed_out(self, timeout: float | None) -> OperationTimeoutError:
        return OperationTimeoutError(
            f"operation {self._id} did not finish within {timeout}s; it is still running (wait again or cancel it)",
            operation_id=self._id,
        )


class _Schedule:
    """wait()'s pauses: from `poll_interval`, growing by half each time up to ten times it (30 s at
    most), and never past the timeout."""

    __slots__ = ("cap", "deadline", "interval", "timeout")

    def __init__(self, timeout: float | None, poll_interval: float) -> None:
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or not poll_interval > 0:
            raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        self.timeout = timeout
        self.interval = float(poll_interval)
        self.cap = max(self.interval, min(self.interval * 10.0, _MAX_INTERVAL))
        self.deadline = None if timeout is None else _retry.monotonic() + timeout

    def expired(self) -> bool:
        return self.deadline is not None and _retry.monotonic() >= self.deadline

    def pause(self) -> float | None:
        """Seconds to sleep before the next poll, or None once the timeout has passed."""
        pause = self.interval
        if self.deadline is not None:
            left = self.deadline - _retry.monotonic()
            if left <= 0:
                return None
            pause = min(pause, left)
        self.interval = min(self.interval * _GROWTH, self.cap)
        return pause


def _rpc_timeout(cfg: ClientConfig, timeout: Timeout, deadline: float | None) -> Timeout:
    """A Get's own deadline: the caller's (or the client default), cut to what is left of wait()."""
    if deadline is None:
        return timeout
    # The poll at the very end of wait() still gets time to reach the server: a 1 ms deadline
    # (what is left) fails on a busy machine before the request leaves, hiding a finished operation.
    left = max(deadline - _retry.monotonic(), _LAST_POLL_DEADLINE)
    own = cfg.call_timeout(timeout, stream=False)
    return left if own is None else min(own, left)


class Operation(_OperationBase):
    """A generation running on the server (asynchronous mode); poll it, wait for it or cancel it.

    Get one from `Client.submit()`, or re-attach to a known id with `Client.operation(id)`,
    e.g. in another process. Failures of the operation itself raise the same exception
    classes as `complete()`, with `operation_id` set.
    """

    __slots__ = ()

    def poll(self, *, timeout: Timeout = NOT_GIVEN) -> bool:
        """Ask the server once; returns whether the operation is done."""
        self._get(timeout, None)
        return self.done

    def _get(self, timeout: Timeout, deadline: float | None) -> None:
        tries = self._get_tries(timeout, deadline)
        self._update(*call_unary(tries, lambda: self._stubs().Get, get_operation_request(self._id)))

    def wait(self, timeout: float | None = None, poll_interval: float = 1.0) -> CompletionResult:
        """Poll until done and return the result; raises OperationTimeoutError after `timeout` seconds.

        Pauses start at `poll_interval` and grow by half each time, to at most ten times it
        (30 s at most), never past the timeout (the poll at its very end gets 0.5 s to answer);
        `timeout=None` waits as long as it takes.
        """
        if _retry._hooks is not None:  # instrumented: the whole wait is one span (yandexgpt_grpc.otel)
            return _retry._hooks.wait(self, self._wait, timeout, poll_interval)  # type: ignore[no-any-return]
        return self._wait(timeout, poll_interval)

    def _wait(self, timeout: float | None, poll_interval: float) -> CompletionResult:
        schedule = _Schedule(timeout, poll_interval)
        while not self.done:
            try:
                self._get(NOT_GIVEN, schedule.deadline)
            except DeadlineExceededError as exc:
                raise self._polled(exc, schedule, timeout)  # noqa: B904 - _polled sets the cause
            if not self.done:
                _retry.sleep(self._pause(schedule, timeout))
        return self._outcome()

    def result(self) -> CompletionResult:
        """The result if the operation is done (polling once if not known to be); never waits."""
        if not self.done:
            self.poll()
            if not self.done:
                raise self._not_done()
        return self._outcome()

    def cancel(self, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Ask the server to stop the operation; a pending one then ends with CancelledError."""
        tries = self._cancel_tries(timeout)
        self._update(*call_unary(tries, lambda: self._stubs().Cancel, cancel_operation_request(self._id)))


class AsyncOperation(_OperationBase):
    """The asyncio twin of `Operation`: the same members, with poll/wait/result/cancel awaited."""

    __slots__ = ()
    _stubs: Callable[[], op_grpc.OperationServiceAsyncStub]

    async def poll(self, *, timeout: Timeout = NOT_GIVEN) -> bool:
        """Ask the server once; returns whether the operation is done."""
        await self._get(timeout, None)
        return self.done

    async def _get(self, timeout: Timeout, deadline: float | None) -> None:
        tries = self._get_tries(timeout, deadline)
        self._update(*await acall_unary(tries, lambda: self._stubs().Get, get_operation_request(self._id)))

    async def wait(self, timeout: float | None = None, poll_interval: float = 1.0) -> CompletionResult:
        """`Operation.wait`, awaited: poll until done; OperationTimeoutError after `timeout` seconds.

        The same pauses: from `poll_interval`, half as long again each time, at most ten times it
        (30 s at most) and never past the timeout; `timeout=None` waits as long as it takes.
        """
        if _retry._hooks is not None:  # instrumented: the whole wait is one span (yandexgpt_grpc.otel)
            return await _retry._hooks.await_(self, self._wait, timeout, poll_interval)  # type: ignore[no-any-return]
        return await self._wait(timeout, poll_interval)

    async def _wait(self, timeout: float | None, poll_interval: float) -> CompletionResult:
        schedule = _Schedule(timeout, poll_interval)
        while not self.done:
            try:
                await self._get(NOT_GIVEN, schedule.deadline)
            except DeadlineExceededError as exc:
                raise self._polled(exc, schedule, timeout)  # noqa: B904 - _polled sets the cause
            if not self.done:
                await _retry.asleep(self._pause(schedule, timeout))
        return self._outcome()

    async def result(self) -> CompletionResult:
        """The result if the operation is done (polling once if not known to be); never waits."""
        if not self.done:
            await self.poll()
            if not self.done:
                raise self._not_done()
        return self._outcome()

    async def cancel(self, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Ask the server to stop the operation; a pending one then ends with CancelledError."""
        tries = self._cancel_tries(timeout)
        self._update(*await acall_unary(tries, lambda: self._stubs().Cancel, cancel_operation_request(self._id)))


public(Operation, AsyncOperation)
