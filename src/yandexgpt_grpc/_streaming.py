"""Stream objects: iterate partial alternatives, then the final one; never replay a partial."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from . import _retry
from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._convert import alternative_of, result_of
from ._errors import IncompleteStreamError, from_rpc_error
from ._logging import logger
from ._types import Alternative, CompletionResult, Usage

if TYPE_CHECKING:
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )


class TextReset(str):
    """A text_stream item that replaces, rather than extends, what came before.

    The server may swap the text for another (a content filter does); a consumer
    that prints deltas should clear what it printed and show this instead.
    """

    __slots__ = ()


def find_header(md: Any, key: str) -> str | None:
    for k, v in md or ():
        if k == key:
            return v if isinstance(v, str) else bytes(v).decode("utf-8", "replace")
    return None


class _StreamState:
    """Bookkeeping shared by the sync and async streams (texts per index, the end)."""

    __slots__ = (
        "_call",
        "_closed",
        "_done",
        "_final",
        "_last",
        "_last_alt",
        "_pending",
        "_texts",
        "request_id",
        "trace_id",
    )

    def __init__(self) -> None:
        self._texts: dict[int, str] = {}
        self._pending: deque[Alternative] = deque()
        self._last: tg_pb2.CompletionResponse | None = None
        self._last_alt: dict[int, Alternative] = {}
        self._final: CompletionResult | None = None
        self._done = False
        self._closed = False
        self.request_id: str | None = None
        self.trace_id: str | None = None

    def _consume(self, resp: tg_pb2.CompletionResponse) -> Alternative | None:
        """Turn one response into alternatives; return the first, queue the rest."""
        self._last = resp
        alts = resp.alternatives
        texts = self._texts
        if len(alts) == 1:
            alt = alternative_of(alts[0], 0, texts.get(0, ""))
            texts[0] = alt.text
            self._last_alt[0] = alt
            return alt
        first: Alternative | None = None
        for i, pb in enumerate(alts):
            alt = alternative_of(pb, i, texts.get(i, ""))
            texts[i] = alt.text
            self._last_alt[i] = alt
            if first is None:
                first = alt
            else:
                self._pending.append(alt)
        return first

    def _partial(self) -> Alternative | None:
        return self._last_alt.get(0) if self._last_alt else None

    def _end(self) -> None:
        """The server closed the stream with OK: keep the result or report it incomplete."""
        self._done = True
        last = self._last
        alts = tuple(self._last_alt[i] for i in sorted(self._last_alt))
        if last is None or not alts or not all(a.is_final for a in alts):
            raise IncompleteStreamError(
                "the stream ended without a final alternative; the text may be cut short",
                partial=self._partial(),
                request_id=self.request_id,
            )
        self._final = result_of(last, alts, self.request_id, self.trace_id)

    def _headers(self, md: Any) -> None:
        self.request_id = find_header(md, HEADER_REQUEST_ID)
        self.trace_id = find_header(md, HEADER_TRACE_ID)

    @property
    def final(self) -> CompletionResult | None:
        """The CompletionResult once the stream has ended (None before)."""
        return self._final

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


StartSync = Callable[[int], Any]


class CompletionStream(_StreamState):
    """Iterate to receive alternatives as the text grows.

    The RPC starts on the first iteration; until a response has reached you,
    transient failures are retried, after that never (you would see text twice).
    Leaving a `for` loop, `close()` or the `with` block's end cancels the RPC.
    """

    __slots__ = ("_deadline", "_on_auth_failure", "_policy", "_start")

    def __init__(
        self,
        start: StartSync,
        policy: _retry.RetryPolicy,
        deadline: float | None,
        on_auth_failure: Callable[[], bool],
    ) -> None:
        super().__init__()
        self._call: Any = None
        self._start = start
        self._policy = policy
        self._deadline = deadline
        self._on_auth_failure = on_auth_failure

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> Alternative:
        if self._pending:
            return self._pending.popleft()
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
                    self._end()
                    raise
                except grpc.RpcError as exc:
                    self._done = True
                    raise from_rpc_error(exc, partial=self._partial()) from exc
            alt = self._consume(resp)
            if alt is not None:
                return alt

    def _open(self) -> tg_pb2.CompletionResponse:
        """Start the call and read its first response, retrying while nothing was received."""
        attempt = 0
        while True:
            attempt += 1
            call = self._start(attempt)
            self._call = call
            try:
                resp: tg_pb2.CompletionResponse = next(call)
            except StopIteration:
                self._headers(call.initial_metadata())
                self._end()
                raise
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.UNAUTHENTICATED and self._on_auth_failure():
                    attempt -= 1
                    continue
                delay = self._policy.next_delay(exc, attempt, self._deadline)
                if delay is None:
                    self._done = True
                    raise from_rpc_error(exc) from exc
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "retrying Completion stream after %s (attempt %d, waiting %.3fs)",
                        exc.code().name,
                        attempt,
                        delay,
                    )
                _retry.sleep(delay)
                continue
            self._headers(call.initial_metadata())
            return resp

    def close(self) -> None:
        """Cancel the RPC if it is still running; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        call = self._call
        if call is not None and not self._done:
            call.cancel()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed and not self._done and self._call is not None:
                self._call.cancel()
        except Exception:
            pass

    def get_final(self) -> CompletionResult:
        """Read the rest of the stream and return the result."""
        for _ in self:
            pass
        if self._final is None:
            raise RuntimeError("the stream was closed before it ended")
        return self._final

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the new text of the first alternative; a TextReset replaces what came before."""
        for alt in self:
            if alt.index == 0 and (alt.delta or alt.replaced):
                yield TextReset(alt.delta) if alt.replaced else alt.delta


StartAsync = Callable[[int], Any]


class AsyncCompletionStream(_StreamState):
    """The asyncio twin of CompletionStream: `async for`, `async with`, `aclose()`."""

    __slots__ = ("_deadline", "_on_auth_failure", "_policy", "_start")

    def __init__(
        self,
        start: StartAsync,
        policy: _retry.RetryPolicy,
        deadline: float | None,
        on_auth_failure: Callable[[], Awaitable[bool]],
    ) -> None:
        super().__init__()
        self._call: Any = None
        self._start = start
        self._policy = policy
        self._deadline = deadline
        self._on_auth_failure = on_auth_failure

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> Alternative:
        if self._pending:
            return self._pending.popleft()
        while True:
            if self._done or self._closed:
                raise StopAsyncIteration
            call = self._call
            if call is None:
                resp = await self._open()
            else:
                try:
                    resp = await call.read()
                except grpc.aio.AioRpcError as exc:
                    self._done = True
                    raise from_rpc_error(exc, partial=self._partial()) from exc
                if resp is grpc.aio.EOF:
                    self._end()
                    raise StopAsyncIteration
            if resp is None:
                raise StopAsyncIteration
            alt = self._consume(resp)
            if alt is not None:
                return alt

    async def _open(self) -> tg_pb2.CompletionResponse | None:
        attempt = 0
        while True:
            attempt += 1
            call = await self._start(attempt)
            self._call = call
            try:
                resp = await call.read()
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNAUTHENTICATED and await self._on_auth_failure():
                    attempt -= 1
                    continue
                delay = self._policy.next_delay(exc, attempt, self._deadline)
                if delay is None:
                    self._done = True
                    raise from_rpc_error(exc) from exc
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "retrying Completion stream after %s (attempt %d, waiting %.3fs)",
                        exc.code().name,
                        attempt,
                        delay,
                    )
                await _retry.asleep(delay)
                continue
            self._headers(await call.initial_metadata())
            if resp is grpc.aio.EOF:
                self._end()
                return None
            return resp  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Cancel the RPC if it is still running; safe to call twice."""
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        call = self._call
        if call is not None and not self._done:
            call.cancel()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed and not self._done and self._call is not None:
                self._call.cancel()
        except Exception:
            pass

    async def get_final(self) -> CompletionResult:
        async for _ in self:
            pass
        if self._final is None:
            raise RuntimeError("the stream was closed before it ended")
        return self._final

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """Only the new text of the first alternative; a TextReset replaces what came before."""
        return self._text_stream()

    async def _text_stream(self) -> AsyncIterator[str]:
        async for alt in self:
            if alt.index == 0 and (alt.delta or alt.replaced):
                yield TextReset(alt.delta) if alt.replaced else alt.delta
