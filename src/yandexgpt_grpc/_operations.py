"""Asynchronous-mode operations (submit, poll, wait, cancel, re-attach) and the unary-call runner.

`TextGenerationAsyncService.Completion` answers with an operation; `OperationService.Get` and
`Cancel` (on the operation endpoint) follow it. The runner here also serves the tokenizer: one
request, one response, with the same retries, deadlines and auth refresh as `complete()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from . import _retry
from ._base import ClientConfig, MetadataInput, Timeout, attempt_header, unparsable_error
from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._convert import operation_response, tokens_of, unary_result
from ._errors import APIError, DeadlineExceededError, YandexGPTError, error_class, find_header
from ._generated.yandex.cloud.operation import operation_service_pb2 as op_service_pb2
from ._retry import RetryPolicy
from ._types import NOT_GIVEN, CompletionResult, NotGiven, TokenizeResult

__all__ = [
    "AsyncOperation",
    "Operation",
    "OperationTimeoutError",
    "acall_unary",
    "call_unary",
    "tokens_result",
]

_CODES = {code.value[0]: code for code in grpc.StatusCode}
# wait(): each pause is this much longer than the one before, up to ten times the first (30 s at most).
_GROWTH = 1.5
_MAX_INTERVAL = 30.0


class OperationTimeoutError(YandexGPTError, TimeoutError):
    """`wait(timeout=...)` ran out before the operation finished; it goes on: wait again or cancel it."""

    def __init__(self, message: str, *, operation_id: str) -> None:
        super().__init__(message)
        self.operation_id = operation_id


# -- one request, one response ------------------------------------------------------------------


def call_unary(
    cfg: ClientConfig,
    method: Callable[[], Any],
    request: Any,
    *,
    name: str,
    authorize: Callable[[], str],
    timeout: Timeout = NOT_GIVEN,
    metadata: MetadataInput = None,
    retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
    operation_id: str | None = None,
) -> tuple[Any, Any]:
    """(response, initial metadata) of a unary RPC under the rules of `complete()` (CallRetry).

    `method()` gives the stub callable, so the channel behind it is made on first use.
    """
    tries = cfg.attempts(name, timeout, retry)
    request_id = tries.request_id
    try:
        while True:
            auth = authorize()
            attempt_timeout = tries.start()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(tries.attempt)
            try:
                resp, call = method().with_call(request, timeout=attempt_timeout, metadata=md)
            except grpc.RpcError as exc:
                tries.failed(exc)
                delay = tries.delay(exc, auth)
                if delay is None:
                    err = tries.failure(exc)
                    raise err from err.__cause__  # grpc's error, or its redacted stand-in
                if delay:
                    _retry.sleep(delay)
                continue
            initial = call.initial_metadata()
            tries.finished(grpc.StatusCode.OK, initial)
            return resp, initial
    except APIError as err:
        err.operation_id = err.operation_id or operation_id
        raise


async def acall_unary(
    cfg: ClientConfig,
    method: Callable[[], Any],
    request: Any,
    *,
    name: str,
    authorize: Callable[[], Awaitable[str]],
    timeout: Timeout = NOT_GIVEN,
    metadata: MetadataInput = None,
    retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
    operation_id: str | None = None,
) -> tuple[Any, Any]:
    """The asyncio twin of `call_unary`; task cancellation cancels the RPC."""
    tries = cfg.attempts(name, timeout, retry)
    request_id = tries.request_id
    try:
        while True:
            auth = await authorize()
            attempt_timeout = tries.start()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(tries.attempt)
            call = method()(request, timeout=attempt_timeout, metadata=md)
            try:
                resp = await call
                if resp is None:  # grpc.aio's sign of an answer it could not parse
                    raise unparsable_error(await call.initial_metadata())
                initial = await call.initial_metadata()
            except grpc.aio.AioRpcError as exc:
                tries.failed(exc)
                delay = tries.delay(exc, auth)
                if delay is None:
                    err = tries.failure(exc)
                    raise err from err.__cause__  # grpc's error, or its redacted stand-in
                if delay:
                    await _retry.asleep(delay)
                continue
            except BaseException:  # task cancelled, or worse: do not leave the RPC running
                call.cancel()
                raise
            tries.finished(grpc.StatusCode.OK, initial)
            return resp, initial
    except APIError as err:
        err.operation_id = err.operation_id or operation_id
        raise


# -- operation handles --------------------------------------------------------------------------


class _OperationBase:
    """State shared by Operation and AsyncOperation: the last Operation message seen."""

    __slots__ = ("_authorize", "_cfg", "_id", "_initial", "_pb", "_stubs")

    def __init__(
        self,
        operation_id: str,
        cfg: ClientConfig,
        stubs: Callable[[], Any],
        authorize: Callable[[], Any],
        *,
        pb: Any = None,
        initial: Any = None,
    ) -> None:
        if not isinstance(operation_id, str) or not operation_id.strip():
            raise ValueError(f"operation_id must be a non-empty str, got {operation_id!r}")
        self._id = operation_id.strip()
        self._cfg = cfg
        self._stubs = stubs
        self._authorize = authorize
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
    def raw(self) -> Any:
        """The last `yandex.cloud.operation.Operation` message received (None before the first)."""
        return self._pb

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self._id!r}, done={self.done})"

    def _update(self, pb: Any, initial: Any) -> None:
        self._pb = pb
        self._initial = initial

    def _outcome(self) -> CompletionResult:
        """The result of a done operation, or its error raised as our exception class."""
        pb = self._pb
        if pb.HasField("error"):
            code = _CODES.get(pb.error.code, grpc.StatusCode.UNKNOWN)
            raise error_class(code)(
                pb.error.message,
                code=code,
                operation_id=self._id,
                status_details=tuple(pb.error.details),
            )
        resp = operation_response(pb)
        if resp is None:
            raise YandexGPTError(f"operation {self._id} is done but carries neither a response nor an error")
        initial = tuple(self._initial or ())
        rid, trace_id = find_header(initial, HEADER_REQUEST_ID), find_header(initial, HEADER_TRACE_ID)
        return unary_result(resp, rid, trace_id, initial=initial)

    def _not_done(self) -> RuntimeError:
        return RuntimeError(f"operation {self._id} is still running: wait() for it, or poll() again later")

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
    left = max(deadline - _retry.monotonic(), 0.001)
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
        request = op_service_pb2.GetOperationRequest(operation_id=self._id)
        pb, initial = call_unary(
            self._cfg,
            lambda: self._stubs().Get,
            request,
            name="OperationService.Get",
            timeout=_rpc_timeout(self._cfg, timeout, deadline),
            authorize=self._authorize,
            operation_id=self._id,
        )
        self._update(pb, initial)

    def wait(self, timeout: float | None = None, poll_interval: float = 1.0) -> CompletionResult:
        """Poll until done and return the result; raises OperationTimeoutError after `timeout` seconds.

        Pauses start at `poll_interval` and grow by half each time, to at most ten times it
        (30 s at most), never past the timeout; `timeout=None` waits as long as it takes.
        """
        schedule = _Schedule(timeout, poll_interval)
        if self.done:
            return self._outcome()
        while True:
            try:
                self._get(NOT_GIVEN, schedule.deadline)
            except DeadlineExceededError as exc:
                if schedule.expired():
                    raise self._timed_out(timeout) from exc
                raise
            if self.done:
                return self._outcome()
            pause = schedule.pause()
            if pause is None:
                raise self._timed_out(timeout)
            _retry.sleep(pause)

    def result(self) -> CompletionResult:
        """The result if the operation is done (polling once if not known to be); never waits."""
        if not self.done:
            self.poll()
            if not self.done:
                raise self._not_done()
        return self._outcome()

    def cancel(self, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Ask the server to stop the operation; a pending one then ends with CancelledError."""
        request = op_service_pb2.CancelOperationRequest(operation_id=self._id)
        pb, initial = call_unary(
            self._cfg,
            lambda: self._stubs().Cancel,
            request,
            name="OperationService.Cancel",
            timeout=timeout,
            authorize=self._authorize,
            operation_id=self._id,
        )
        self._update(pb, initial)


class AsyncOperation(_OperationBase):
    """The asyncio twin of `Operation`: the same members, with poll/wait/result/cancel awaited."""

    __slots__ = ()

    async def poll(self, *, timeout: Timeout = NOT_GIVEN) -> bool:
        """Ask the server once; returns whether the operation is done."""
        await self._get(timeout, None)
        return self.done

    async def _get(self, timeout: Timeout, deadline: float | None) -> None:
        request = op_service_pb2.GetOperationRequest(operation_id=self._id)
        pb, initial = await acall_unary(
            self._cfg,
            lambda: self._stubs().Get,
            request,
            name="OperationService.Get",
            timeout=_rpc_timeout(self._cfg, timeout, deadline),
            authorize=self._authorize,
            operation_id=self._id,
        )
        self._update(pb, initial)

    async def wait(self, timeout: float | None = None, poll_interval: float = 1.0) -> CompletionResult:
        """Poll until done and return the result; raises OperationTimeoutError after `timeout` seconds.

        Pauses start at `poll_interval` and grow by half each time, to at most ten times it
        (30 s at most), never past the timeout; `timeout=None` waits as long as it takes.
        """
        schedule = _Schedule(timeout, poll_interval)
        if self.done:
            return self._outcome()
        while True:
            try:
                await self._get(NOT_GIVEN, schedule.deadline)
            except DeadlineExceededError as exc:
                if schedule.expired():
                    raise self._timed_out(timeout) from exc
                raise
            if self.done:
                return self._outcome()
            pause = schedule.pause()
            if pause is None:
                raise self._timed_out(timeout)
            await _retry.asleep(pause)

    async def result(self) -> CompletionResult:
        """The result if the operation is done (polling once if not known to be); never waits."""
        if not self.done:
            await self.poll()
            if not self.done:
                raise self._not_done()
        return self._outcome()

    async def cancel(self, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Ask the server to stop the operation; a pending one then ends with CancelledError."""
        request = op_service_pb2.CancelOperationRequest(operation_id=self._id)
        pb, initial = await acall_unary(
            self._cfg,
            lambda: self._stubs().Cancel,
            request,
            name="OperationService.Cancel",
            timeout=timeout,
            authorize=self._authorize,
            operation_id=self._id,
        )
        self._update(pb, initial)


def tokens_result(resp: Any, initial: Any) -> TokenizeResult:
    return tokens_of(resp, find_header(initial, HEADER_REQUEST_ID), find_header(initial, HEADER_TRACE_ID))
