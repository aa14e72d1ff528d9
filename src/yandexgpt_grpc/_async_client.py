"""The asyncio client: the same methods and signatures as Client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc

from . import _retry
from ._base import ClientBase, MetadataInput, Timeout
from ._channel import closed_client_error, open_channel, unparsable_error
from ._convert import MessagesInput, build_tokenize_request, completion_answer, model_uri, tokens_answer
from ._docs import document_client, documented
from ._errors import ClientClosedError, EventLoopError
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from ._generated.yandex.cloud.operation import operation_service_pb2_grpc as op_grpc
from ._operations import AsyncOperation, acall_unary
from ._public import public
from ._retry import AttemptFailed, CallRetry, RetryPolicy
from ._streaming import AsyncCompletionStream
from ._types import NOT_GIVEN, CompletionResult, NotGiven, TokenizeResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._channel import AsyncCompletionCall
    from ._cloud_jobs import AsyncBatchJobs
    from ._convert import GenerationOptions
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )

    AsyncCompletion = grpc.aio.UnaryStreamMultiCallable[tg_pb2.CompletionRequest, tg_pb2.CompletionResponse]

S = TypeVar("S")


class AsyncClient(ClientBase):
    """An asyncio client; one channel per client, bound to the event loop that first uses it.

    The same methods and arguments as Client, awaited; `await client.aclose()` (or `async with`) closes it.
    """

    _sync = False
    _op_channel: grpc.aio.Channel | None

    def _setup(self) -> None:
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set with the channel, before any call can reach it (see _ensure_channel).
        self._completion: AsyncCompletion = None  # type: ignore[assignment]

    def _ensure_channel(self) -> AsyncCompletion:
        """The Completion callable, creating the channel on first use in this loop."""
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed")
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return self._completion
        if self._loop is not None:
            closed = self._loop.is_closed()
            why = "in a loop that has closed since (a second asyncio.run()?)" if closed else "in another loop"
            raise EventLoopError(
                f"this AsyncClient was first used {why}, and grpc channels cannot move between event loops: "
                "create the AsyncClient inside the loop that uses it (one per loop)"
            )
        channel = open_channel(self._config, self._config.endpoint, aio=True)
        self._channel = channel
        self._loop = loop
        self._completion = tg_grpc.TextGenerationServiceStub(channel).Completion
        return self._completion

    @documented(options=True, call_args=("model", "messages", "timeout", "metadata", "retry"))
    async def complete(
        self,
        model: str,
        messages: MessagesInput,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        **options: Unpack[GenerationOptions],
    ) -> CompletionResult:
        """One request, one answer: waits for the whole text."""
        cfg = self._config
        request = cfg.prepare(model, messages, options, False)
        self._ensure_channel()
        return await _retry.acall(cfg.attempts("Completion", timeout, retry, metadata), self._complete_attempt, request)

    def _completion_call(
        self,
        request: tg_pb2.CompletionRequest,
        tries: CallRetry,
        before: Callable[[], Awaitable[object]] | None = None,
        on_error: Callable[[grpc.RpcError | None], object] | None = None,
    ) -> Awaitable[CompletionResult]:
        """complete() for a built request, with the driver's hooks (arun_batch's rate limiter)."""
        self._ensure_channel()
        return _retry.acall(tries, self._complete_attempt, request, before, on_error)

    async def _complete_attempt(
        self, tries: CallRetry, request: tg_pb2.CompletionRequest, timeout: float | None, md: _retry.Metadata
    ) -> CompletionResult:
        """One attempt of complete(): the answer read as the stream it is, as the blocking client reads it.

        Not as a unary call: that waits for a status after the first message, so a second message,
        an abort after one, a missing status or a GOAWAY would hang until the deadline.
        """
        call = self._completion(request, timeout=timeout, metadata=md)
        resp: tg_pb2.CompletionResponse | None = None
        try:
            async for message in call:
                if message is None:  # grpc.aio's word for a message it could not parse
                    call.cancel()
                    raise unparsable_error(await call.initial_metadata())
                resp = message
            initial = await call.initial_metadata()
            trailing = await call.trailing_metadata()
        except grpc.RpcError as exc:
            if resp is None:
                raise
            raise AttemptFailed(exc, responded=True) from exc
        except asyncio.CancelledError:
            err = closed_client_error(self._closed, tries.attempt)  # close() from another task?
            if err is not None:
                raise err from None
            call.cancel()
            raise
        except BaseException:  # KeyboardInterrupt and the like: do not leave the RPC running
            call.cancel()
            raise
        tries.finished(grpc.StatusCode.OK, initial)
        return completion_answer(resp, initial, trailing)

    @documented(options=True, call_args=("model", "messages", "timeout", "metadata", "retry"))
    def stream(
        self,
        model: str,
        messages: MessagesInput,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        **options: Unpack[GenerationOptions],
    ) -> AsyncCompletionStream:
        """Partial alternatives as the text grows, then the final one (`async for`).

        Not a coroutine: arguments are checked now; the RPC starts when you begin iterating.
        """
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed")
        cfg = self._config
        request = cfg.prepare(model, messages, options, True)
        tries = cfg.attempts("Completion(stream)", timeout, retry, metadata, stream=True)
        return AsyncCompletionStream(self._stream_call, request, tries, lambda: self._closed)

    def _stream_call(
        self, request: tg_pb2.CompletionRequest, timeout: float | None, md: _retry.Metadata
    ) -> AsyncCompletionCall:
        """Start one attempt of a stream, creating the channel on first use in this loop."""
        return self._ensure_channel()(request, timeout=timeout, metadata=md)

    @documented(options=True, call_args=("model", "messages", "timeout", "metadata", "retry"))
    async def submit(
        self,
        model: str,
        messages: MessagesInput,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        **options: Unpack[GenerationOptions],
    ) -> AsyncOperation:
        """Start a generation in asynchronous mode; returns a handle to poll, wait for or cancel."""
        cfg = self._config
        request = cfg.prepare(model, messages, options, False)
        tries = cfg.attempts("TextGenerationAsyncService.Completion", timeout, retry, metadata)
        pb, initial = await acall_unary(
            tries, lambda: self._stub(tg_grpc.TextGenerationAsyncServiceStub).Completion, request
        )
        return AsyncOperation(pb.id, cfg, self._operations, pb=pb, initial=initial)

    def operation(self, operation_id: str) -> AsyncOperation:
        """Re-attach to an operation by id (say, in another process); no I/O until you poll or wait."""
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed")
        return AsyncOperation(operation_id, self._config, self._operations)

    @documented(options=False, call_args=("model", "text", "timeout", "metadata", "retry"))
    async def tokenize(
        self,
        model: str,
        text: str,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
    ) -> TokenizeResult:
        """The model's tokens of `text`."""
        request = build_tokenize_request(model_uri(model, self._config.folder_id), text)
        tries = self._config.attempts("TokenizerService.Tokenize", timeout, retry, metadata)
        return tokens_answer(
            *await acall_unary(tries, lambda: self._stub(tg_grpc.TokenizerServiceStub).Tokenize, request)
        )

    @documented(options=True, call_args=("model", "messages", "timeout", "metadata", "retry"))
    async def tokenize_messages(
        self,
        model: str,
        messages: MessagesInput,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        **options: Unpack[GenerationOptions],
    ) -> TokenizeResult:
        """The tokens of a whole request (messages, tools, options): what its input costs."""
        request = self._config.prepare(model, messages, options, False)
        tries = self._config.attempts("TokenizerService.TokenizeCompletion", timeout, retry, metadata)
        return tokens_answer(
            *await acall_unary(tries, lambda: self._stub(tg_grpc.TokenizerServiceStub).TokenizeCompletion, request)
        )

    def _stub(self, factory: Callable[[grpc.aio.Channel], S]) -> S:
        """`factory` (a stub class) made on this client's channel once; looked up at call time."""
        self._ensure_channel()
        stub = self._stubs.get(factory)
        if stub is None:
            stub = self._stubs[factory] = factory(self._channel)  # type: ignore[arg-type]  # made just above
        return stub  # type: ignore[return-value]  # the cache holds factory(channel) under factory

    def _operations(self) -> op_grpc.OperationServiceAsyncStub:
        """The OperationService stub: on the main channel when operation_endpoint is the endpoint."""
        self._ensure_channel()
        stub = self._stubs.get(op_grpc.OperationServiceStub)
        if stub is None:
            cfg = self._config
            channel = self._channel
            if cfg.operation_endpoint != cfg.endpoint:
                channel = self._op_channel = open_channel(cfg, cfg.operation_endpoint, aio=True)
            stub = self._stubs[op_grpc.OperationServiceStub] = op_grpc.OperationServiceStub(channel)  # type: ignore[arg-type]  # made just above
        return stub  # type: ignore[return-value]  # the cache holds factory(channel) under factory

    @property
    def batch_jobs(self) -> AsyncBatchJobs:
        """The platform's batch engine: whole JSONL files answered on Yandex's fleet (AsyncBatchJobs)."""
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed")
        jobs: AsyncBatchJobs | None = getattr(self, "_batch_jobs", None)
        if jobs is None:
            from ._cloud_jobs import AsyncBatchJobs  # loaded on first use: most programs never need it

            jobs = self._batch_jobs = AsyncBatchJobs(self)
        return jobs

    async def aclose(self) -> None:
        """Close the channel; calls in flight are cancelled. Safe to call twice."""
        await self.close()

    async def close(self) -> None:
        """The same as `aclose()` (the name every async object of this package offers)."""
        if self._closed:
            return
        self._closed = True
        if self._channel is not None:
            await self._channel.close()
        if self._op_channel is not None:
            await self._op_channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


public(AsyncClient)
document_client(AsyncClient)
