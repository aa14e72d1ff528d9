"""Stream objects: iterate partial alternatives, then the final one; never replay a partial."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import grpc

from . import _retry
from ._channel import closed_client_error, closed_error, task_cancelled, unparsable_error
from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._convert import alternative_of, result_of
from ._errors import IncompleteStreamError, StreamConsumedError, StreamInterruptedError, find_header, from_rpc_error
from ._public import public
from ._retry import AttemptFailed
from ._types import STATUSES, Alternative, CompletionResult, Usage

if TYPE_CHECKING:
    from ._channel import AsyncCompletionCall, CompletionCall, Headers
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )
    from ._retry import CallRetry, Metadata

    # Starts one attempt's RPC: (request, timeout, metadata) -> the grpc call object.
    StartCall = Callable[[tg_pb2.CompletionRequest, float | None, Metadata], CompletionCall]
    AsyncStartCall = Callable[[tg_pb2.CompletionRequest, float | None, Metadata], AsyncCompletionCall]


def _pairs(md: Headers | None) -> tuple[tuple[str, str | bytes], ...]:
    return md if isinstance(md, tuple) else tuple(md or ())


class TextReset(str):
    """A text_stream item that replaces, rather than extends, what came before.

    The server may swap the text for another (a content filter does); a consumer
    that prints deltas should clear what it printed and show this instead.
    """

    __slots__ = ()


class _StreamState:
    """Bookkeeping shared by the sync and async streams (latest alternative per index, the end).

    Per-stream work the caller may never look at (parsing headers, building the final
    CompletionResult) is done on first access, not on the hot path.
    """

    __slots__ = (
        "_alts",
        "_call",
        "_closed",
        "_done",
        "_ended",
        "_final",
        "_initial",
        "_last",
        "_pending",
        "_retry",
        "_trailing",
    )

    def __init__(self, retry: CallRetry) -> None:
        self._retry = retry
        self._call: CompletionCall | AsyncCompletionCall | None = None
        self._initial: Headers = ()  # as grpc gave it: a tuple (sync) or a grpc.aio Metadata
        self._trailing: Headers = ()
        self._alts: dict[int, Alternative] = {}  # the latest alternative of each index
        self._pending: deque[Alternative] | None = None  # more alternatives of the same response
        self._last: tg_pb2.CompletionResponse | None = None
        self._final: CompletionResult | None = None
        self._done = False
        self._ended = False  # the server ended the stream with OK and every alternative final
        self._closed = False

    def _consume(self, resp: tg_pb2.CompletionResponse) -> Alternative | None:
        """Turn one response into alternatives; return the first, queue the rest."""
        self._last = resp
        alts = resp.alternatives
        latest = self._alts
        if len(alts) == 1:
            alt = latest[0] = alternative_of(alts[0], 0, self._previous_text())
            return alt
        first: Alternative | None = None
        for i, pb in enumerate(alts):
            prev = latest.get(i)
            alt = alternative_of(pb, i, "" if prev is None else prev.text)
            latest[i] = alt
            if first is None:
                first = alt
            else:
                if self._pending is None:
                    self._pending = deque()
                self._pending.append(alt)
        return first

    def _spill(self, resp: tg_pb2.CompletionResponse) -> Iterator[Alternative]:
        """Every alternative of one response; those not yet taken stay queued in _pending."""
        first = self._consume(resp)
        if first is not None:
            yield first
        pending = self._pending
        while pending:
            yield pending.popleft()

    def _partial(self) -> Alternative | None:
        return self._alts.get(0)

    def _previous_text(self) -> str:
        """The first alternative's text so far: what the next response's text should extend."""
        prev = self._alts.get(0)
        return "" if prev is None else prev.text

    def _end(self, trailing: Headers) -> None:
        """The server closed the stream with OK: keep what makes the result, or report it incomplete."""
        self._done = True
        self._trailing = trailing
        self._retry.finished(grpc.StatusCode.OK, self._initial)
        alts = self._alts
        span = self._retry.span  # telemetry, while instrumented (yandexgpt_grpc.otel)
        if self._last is None or not alts or not all(a.is_final for a in alts.values()):
            err = IncompleteStreamError(
                "the stream ended without a final alternative; the text may be cut short",
                partial=self._partial(),
                request_id=self.request_id,
            )
            if span is not None:
                span.stream_failed(self, err)
            raise err from None
        self._ended = True
        if span is not None:
            span.stream_ended(self)

    def _headers(self, md: Headers) -> None:
        self._initial = md

    def _reread_error(self) -> StreamConsumedError | None:
        """Why a new loop over this stream would yield nothing (None: it would not).

        A second loop after a `break` continues; one after the end would silently see nothing.
        """
        if self._pending:
            return None
        if self._ended:
            return StreamConsumedError(
                "this stream was already read to its end, and a stream is read once: "
                "stream.final (or get_final()) holds the result; call stream() again for a new answer"
            )
        if self._closed:
            return StreamConsumedError(
                "this stream was closed before it ended, so there is nothing more to read: "
                "call stream() again for a new answer"
            )
        if self._done:
            return StreamConsumedError(
                "this stream failed (the error was raised when it happened) and cannot be read again: "
                "call stream() again for a new answer"
            )
        return None

    def _interrupted(self, exc: grpc.RpcError) -> Exception:
        """The error for a failure after the first response: never retried, it keeps the partial."""
        self._done = True
        retry = self._retry
        retry.failed(exc)
        err = from_rpc_error(exc, partial=self._partial(), attempts=retry.attempt, secrets=retry.creds.sent_secrets())
        alts = self._alts
        if isinstance(err, StreamInterruptedError) and all(a.is_final for a in alts.values()):
            # Every alternative was final when the status got lost: the text is whole; say so.
            assert self._last is not None
            ordered = tuple(alts[i] for i in sorted(alts))
            err.final = result_of(self._last, ordered, self.request_id, self.trace_id, initial=_pairs(self._initial))
        if retry.span is not None:
            retry.span.stream_failed(self, err)
        return err

    def _cancel(self) -> None:
        """Cancel a running RPC (close(), the end of a with block, a cancelled task)."""
        self._closed = True
        call = self._call
        if call is not None and not self._done:
            self._done = True
            call.cancel()
            self._retry.finished(grpc.StatusCode.CANCELLED, self._initial)
        if self._retry.span is not None:
            self._retry.span.stream_closed(self)

    def __del__(self) -> None:
        # Abandoned without close(): cancel quietly (no logging; this may run at interpreter exit).
        try:
            if not self._done and self._call is not None:
                self._call.cancel()
            if self._retry.span is not None:
                self._retry.span.stream_closed(self, abandoned=True)
        except Exception:
            pass

    @property
    def request_id(self) -> str | None:
        """The server's x-request-id, once the first response arrived."""
        return find_header(self._initial, HEADER_REQUEST_ID)

    @property
    def trace_id(self) -> str | None:
        return find_header(self._initial, HEADER_TRACE_ID)

    @property
    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """The server's initial metadata once the first response arrived (`-bin` values are bytes)."""
        return _pairs(self._initial)

    @property
    def final(self) -> CompletionResult | None:
        """The CompletionResult once the stream has ended (None before)."""
        if self._final is None and self._ended:
            assert self._last is not None
            alts = self._alts
            self._final = result_of(
                self._last,
                tuple(alts[i] for i in sorted(alts)),
                self.request_id,
                self.trace_id,
                initial=_pairs(self._initial),
                trailing=_pairs(self._trailing),
            )
        return self._final

    def _final_result(self) -> CompletionResult:
        """get_final()'s answer once the stream was read to its end."""
        final = self.final
        if final is None:
            raise StreamConsumedError("the stream was closed before it ended")
        return final

    @property
    def usage(self) -> Usage | None:
        """Token counts so far (running totals while streaming)."""
        if self._last is None:
            return None
        from ._convert import usage_of

        return usage_of(self._last.usage)

    @property
    def model_version(self) -> str | None:
        return self._last.model_version if self._last is not None else None


class _Closed(Exception):
    """close() or aclose() came while a stream was opening: end the iteration quietly."""


class _FirstResponseTimer:
    """Cancels an attempt that has not produced its first response in time (policy.attempt_timeout)."""

    __slots__ = ("_lock", "_state", "_timer")

    def __init__(self, seconds: float, call: grpc.RpcContext) -> None:
        self._lock = threading.Lock()
        self._state = 0  # 0 waiting, 1 stopped in time, 2 fired

        def fire() -> None:
            with self._lock:
                if self._state:
                    return
                self._state = 2
            call.cancel()

        self._timer = threading.Timer(seconds, fire)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> bool:
        """Stop the timer; False when it had already fired (the attempt is cancelled)."""
        with self._lock:
            if not self._state:
                self._state = 1
        self._timer.cancel()
        return self._state == 1


class CompletionStream(_StreamState):
    """Iterate to receive alternatives as the text grows.

    The RPC starts on the first iteration; until a response has reached you,
    transient failures are retried, after that never (you would see text twice).
    Leaving a `for` loop over `client.stream(...)`, `close()`, the `with` block's end
    or garbage collection cancels the RPC.
    """

    __slots__ = ("_request", "_start")
    _call: CompletionCall | None

    def __init__(self, start: StartCall, request: tg_pb2.CompletionRequest, retry: CallRetry) -> None:
        super().__init__(retry)
        self._start = start
        self._request = request

    def __iter__(self) -> CompletionStream:
        if self._done or self._closed:
            error = self._reread_error()
            if error is not None:
                raise error
        return self

    def __next__(self) -> Alternative:
        pending = self._pending
        if pending:
            return pending.popleft()
        while True:
            if self._done or self._closed:
                raise StopIteration
            call = self._call
            if call is None:
                resp = self._open()
            else:
                try:
                    resp = next(call)
                except StopIteration:
                    self._end(call.trailing_metadata())
                    raise
                except grpc.RpcError as exc:
                    if self._closed:  # close() from another thread
                        raise StopIteration from None
                    err = self._interrupted(exc)
                    raise err from err.__cause__  # grpc's error, or its redacted stand-in
                except BaseException:  # KeyboardInterrupt and the like: do not leave the RPC running
                    self._cancel()
                    raise
            alt = self._consume(resp)
            if alt is not None:
                return alt

    def _open(self) -> tg_pb2.CompletionResponse:
        """Start the call and read its first response, retrying (`_retry.call`) while nothing was received."""
        try:
            return _retry.call(self._retry, self._attempt, self._request)
        except Exception:
            self._done = True
            raise

    def _attempt(
        self, tries: CallRetry, request: tg_pb2.CompletionRequest, timeout: float | None, md: Metadata
    ) -> tg_pb2.CompletionResponse:
        if self._closed:  # close() during the wait before this attempt
            raise StopIteration
        call = self._call = self._start(request, timeout, md)
        limit = tries.first_response_timeout
        timer = None if limit is None else _FirstResponseTimer(limit, call)
        try:
            resp: tg_pb2.CompletionResponse = next(call)
        except StopIteration:
            if timer is not None:
                timer.stop()
            self._headers(call.initial_metadata())
            self._end(call.trailing_metadata())
            raise
        except grpc.RpcError as exc:
            timed_out = timer is not None and not timer.stop()
            if self._closed:  # close() from another thread
                tries.failed(exc)
                raise StopIteration from None
            if timed_out:
                raise AttemptFailed(exc, timed_out=True) from exc
            raise
        except BaseException:  # KeyboardInterrupt and the like: do not leave the RPC running
            if timer is not None:
                timer.stop()
            self._cancel()
            raise
        if timer is None or timer.stop():
            self._headers(call.initial_metadata())
            return resp
        # The timer fired as the response arrived: the call is cancelled, nothing was yielded.
        raise AttemptFailed(None, timed_out=True)

    def close(self) -> None:
        """Cancel the RPC if it is still running; safe to call twice."""
        if not self._closed:
            self._cancel()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_final(self) -> CompletionResult:
        """Read the rest of the stream and return the result (again, when it was read already)."""
        if not self._ended:
            for _ in self:
                pass
        return self._final_result()

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the new text of the first alternative; a TextReset replaces what came before."""
        for alt in self:
            if alt.index == 0 and (alt.delta or alt.replaced):
                yield TextReset(alt.delta) if alt.replaced else alt.delta


class AsyncCompletionStream(_StreamState):
    """The asyncio twin of CompletionStream: `async for`, `async with`, `aclose()`.

    Cancelling the task that iterates it cancels the RPC too.
    """

    __slots__ = ("_client_closed", "_opened", "_request", "_start")
    _call: AsyncCompletionCall  # set by the first attempt, before anything reads it

    def __init__(
        self,
        start: AsyncStartCall,
        request: tg_pb2.CompletionRequest,
        retry: CallRetry,
        client_closed: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(retry)
        self._start = start
        self._request = request
        self._opened = False  # the current attempt has produced its first response
        self._client_closed = client_closed  # AsyncClient.close() ends calls with CancelledError

    def _closed_by_client(self) -> bool:
        """grpc.aio handed us CancelledError because the client's channel closed, not a task cancel."""
        return self._client_closed() and not task_cancelled()

    def __aiter__(self) -> AsyncIterator[Alternative]:
        # An async generator rather than `async def __anext__`: the hot loop below resumes one
        # frame per message instead of creating a coroutine per message. Each call starts a
        # fresh generator over the same state, so iterating again after a `break` continues
        # where it stopped, and the generator (not the stream) is what refers back: no cycle.
        if self._done or self._closed:
            error = self._reread_error()
            if error is not None:
                raise error
        return self._iterate()

    async def __anext__(self) -> Alternative:
        """One step, for `anext(stream)`; `async for` does not come through here."""
        it = self._iterate()
        try:
            return await it.__anext__()
        finally:
            await it.aclose()

    async def _iterate(self) -> AsyncGenerator[Alternative, None]:
        pending = self._pending
        while pending:
            yield pending.popleft()
        if self._done or self._closed:
            return
        if not self._opened:
            resp = await self._open()
            if resp is None:  # ended or closed before a first response
                return
            for alt in self._spill(resp):
                yield alt
            if self._done or self._closed:  # close() while the caller held an alternative
                return
        latest = self._alts
        new, statuses, known = tuple.__new__, STATUSES, len(STATUSES)
        # The first alternative's text so far, kept in a local: latest[0].text without two lookups a message.
        previous = self._previous_text()
        try:
            # `async for` over grpc's own response iterator: the same one _open() took the first
            # response from, stepped without a method call per message.
            async for resp in self._call:
                if resp is None:
                    raise await self._unparsable()
                self._last = resp
                alts = resp.alternatives
                if len(alts) == 1:
                    # The common case inlined (a few % of a fan-out): one alternative whose
                    # text extends the previous one. Anything else goes through alternative_of.
                    pb = alts[0]
                    text = pb.message.text
                    value = pb.status
                    if text and 0 <= value < known and text.startswith(previous):
                        alt = new(Alternative, (text, text[len(previous) :], statuses[value], 0, False, ()))
                    else:
                        alt = alternative_of(pb, 0, previous)
                    latest[0] = alt
                    previous = text
                    yield alt
                    if self._last is not resp:  # anext(stream) or another loop went on meanwhile
                        previous = self._previous_text()
                else:
                    for alt in self._spill(resp):
                        yield alt
                    previous = self._previous_text()
                if self._done or self._closed:  # close() while the caller held an alternative
                    return
        except grpc.aio.AioRpcError as exc:
            err = self._interrupted(exc)
            raise err from err.__cause__  # grpc's error, or its redacted stand-in
        except asyncio.CancelledError:
            if self._closed:  # aclose() from another task
                return
            if self._closed_by_client():  # the blocking client's error, with the partial
                err = self._interrupted(closed_error())
                raise err from None
            self._cancel()
            raise
        except GeneratorExit:  # the caller left the loop: the stream stays open for another one
            raise
        except BaseException:  # KeyboardInterrupt and the like: do not leave the RPC running
            self._cancel()
            raise
        self._end(await self._call.trailing_metadata())

    async def _unparsable(self) -> grpc.aio.AioRpcError:
        """The error for a response grpc.aio could not parse (it hands over None for it).

        The blocking API fails such a call with INTERNAL; so do we, so both clients raise the
        same error (retried before the first response, StreamInterruptedError after it).
        """
        call = self._call
        call.cancel()
        return unparsable_error(await call.initial_metadata())

    async def _open(self) -> tg_pb2.CompletionResponse | None:
        """Start the call and read its first response, retrying (`_retry.acall`) while nothing was received.

        None: the stream ended, or was closed, before a first response.
        """
        try:
            return await _retry.acall(self._retry, self._attempt, self._request)
        except _Closed:
            return None
        except Exception:
            self._done = True
            raise

    async def _attempt(
        self, tries: CallRetry, request: tg_pb2.CompletionRequest, timeout: float | None, md: Metadata
    ) -> tg_pb2.CompletionResponse | None:
        if self._closed:  # aclose() during the wait before this attempt
            raise _Closed
        call = self._call = self._start(request, timeout, md)
        step = call.__aiter__().__anext__
        limit = tries.first_response_timeout
        try:
            resp = await (step() if limit is None else asyncio.wait_for(step(), limit))
            if resp is None:
                raise await self._unparsable()
            self._headers(await call.initial_metadata())
        except StopAsyncIteration:  # OK without a single response
            self._headers(await call.initial_metadata())
            self._end(await call.trailing_metadata())
            return None
        except grpc.RpcError:
            raise
        except asyncio.TimeoutError:  # no first response within the attempt timeout
            call.cancel()
            raise AttemptFailed(None, timed_out=True) from None
        except asyncio.CancelledError:
            if self._closed:  # aclose() from another task
                raise _Closed from None
            err = closed_client_error(self._client_closed(), tries.attempt)  # nothing to retry on
            if err is not None:
                self._done = True
                raise err from None
            self._cancel()
            raise
        except BaseException:  # KeyboardInterrupt and the like: do not leave the RPC running
            self._cancel()
            raise
        self._opened = True
        return resp

    async def aclose(self) -> None:
        """Cancel the RPC if it is still running; safe to call twice."""
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._cancel()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def get_final(self) -> CompletionResult:
        """Read the rest of the stream and return the result (again, when it was read already)."""
        if not self._ended:
            async for _ in self:
                pass
        return self._final_result()

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """Only the new text of the first alternative; a TextReset replaces what came before."""
        return self._text_stream()

    async def _text_stream(self) -> AsyncIterator[str]:
        async for alt in self:
            if alt.index == 0 and (alt.delta or alt.replaced):
                yield TextReset(alt.delta) if alt.replaced else alt.delta


public(TextReset, CompletionStream, AsyncCompletionStream)
