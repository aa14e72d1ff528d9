"""The asyncio client: the same methods and signatures as Client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc

from . import _retry
from ._base import (
    UNPARSABLE,
    ClientBase,
    MetadataInput,
    Timeout,
    attempt_header,
    completion_once,
    open_channel,
    unparsable_error,
)
from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._convert import MessagesInput, build_tokenize_request, model_uri, unary_result
from ._errors import IncompleteStreamError, find_header
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from ._generated.yandex.cloud.operation import operation_service_pb2_grpc as op_grpc
from ._operations import AsyncOperation, acall_unary, tokens_result
from ._retry import RetryPolicy
from ._streaming import AsyncCompletionStream
from ._types import NOT_GIVEN, CompletionResult, NotGiven, TokenizeResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._convert import GenerationOptions


class AsyncClient(ClientBase):
    """An asyncio client; one channel per client, bound to the event loop that first uses it.

    Constructor arguments: see ClientBase (the same as Client's).
    """

    _sync = False

    def _setup(self) -> None:
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._completion: Any = None
        self._completion_once: Any = None

    def _ensure_channel(self) -> Any:
        """The Completion callable, creating the channel on first use in this loop."""
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return self._completion
        if self._loop is not None:
            closed = self._loop.is_closed()
            why = "in a loop that has closed since (a second asyncio.run()?)" if closed else "in another loop"
            raise RuntimeError(
                f"this AsyncClient was first used {why}, and grpc channels cannot move between event loops: "
                "create the AsyncClient inside the loop that uses it (one per loop)"
            )
        channel = open_channel(self._config, self._config.endpoint, aio=True)
        self._channel = channel
        self._loop = loop
        self._completion = tg_grpc.TextGenerationServiceStub(channel).Completion
        self._completion_once = completion_once(channel)
        return self._completion

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
        request = cfg.prepare(model, messages, options, stream=False)
        self._ensure_channel()
        completion = self._completion_once
        tries = cfg.attempts("Completion", timeout, retry)
        request_id = tries.request_id
        creds = cfg.credentials
        while True:
            auth = creds.static_authorization or await creds.aauthorization()
            attempt_timeout = tries.start()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(tries.attempt)
            call = completion(request, timeout=attempt_timeout, metadata=md)
            resp = None
            try:
                resp = await call
                if resp is UNPARSABLE:
                    raise unparsable_error(await call.initial_metadata())
                initial = await call.initial_metadata()
                trailing = await call.trailing_metadata()
            except grpc.aio.AioRpcError as exc:
                tries.failed(exc)
                delay = tries.delay(exc, auth, responded=resp is not None)
                if delay is None:
                    err = tries.failure(exc)
                    raise err from err.__cause__  # grpc's error, or its redacted stand-in
                if delay:
                    await _retry.asleep(delay)
                continue
            except BaseException:  # task cancelled (grpc has cancelled the RPC already), or worse
                call.cancel()
                raise
            tries.finished(grpc.StatusCode.OK, initial)
            rid = find_header(initial, HEADER_REQUEST_ID)
            if resp is None:
                raise IncompleteStreamError(
                    "the server answered without a response message", partial=None, request_id=rid
                )
            trace_id = find_header(initial, HEADER_TRACE_ID)
            return unary_result(resp, rid, trace_id, initial=tuple(initial), trailing=tuple(trailing))

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
            raise RuntimeError("this AsyncClient is closed")
        cfg = self._config
        request = cfg.prepare(model, messages, options, stream=True)
        tries = cfg.attempts("Completion(stream)", timeout, retry, stream=True)
        request_id = tries.request_id
        creds = cfg.credentials

        async def start() -> tuple[Any, str]:
            completion = self._ensure_channel()
            auth = creds.static_authorization or await creds.aauthorization()
            attempt_timeout = tries.start()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(tries.attempt)
            return completion(request, timeout=attempt_timeout, metadata=md), auth

        return AsyncCompletionStream(start, tries)

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
        request = cfg.prepare(model, messages, options, stream=False)
        pb, initial = await acall_unary(
            cfg,
            lambda: self._stub(tg_grpc.TextGenerationAsyncServiceStub).Completion,
            request,
            name="TextGenerationAsyncService.Completion",
            timeout=timeout,
            metadata=metadata,
            retry=retry,
            authorize=self._config.credentials.aauthorization,
        )
        return AsyncOperation(pb.id, cfg, self._operations, cfg.credentials.aauthorization, pb=pb, initial=initial)

    def operation(self, operation_id: str) -> AsyncOperation:
        """Re-attach to an operation by id (say, in another process); no I/O until you poll or wait."""
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        return AsyncOperation(operation_id, self._config, self._operations, self._config.credentials.aauthorization)

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
        resp, initial = await acall_unary(
            self._config,
            lambda: self._stub(tg_grpc.TokenizerServiceStub).Tokenize,
            request,
            name="TokenizerService.Tokenize",
            timeout=timeout,
            metadata=metadata,
            retry=retry,
            authorize=self._config.credentials.aauthorization,
        )
        return tokens_result(resp, initial)

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
        request = self._config.prepare(model, messages, options, stream=False)
        resp, initial = await acall_unary(
            self._config,
            lambda: self._stub(tg_grpc.TokenizerServiceStub).TokenizeCompletion,
            request,
            name="TokenizerService.TokenizeCompletion",
            timeout=timeout,
            metadata=metadata,
            retry=retry,
            authorize=self._config.credentials.aauthorization,
        )
        return tokens_result(resp, initial)

    def _stub(self, factory: Any) -> Any:
        self._ensure_channel()
        stub = self._stubs.get(factory)
        if stub is None:
            stub = self._stubs[factory] = factory(self._channel)
        return stub

    def _operations(self) -> Any:
        """The OperationService stub: on the main channel when operation_endpoint is the endpoint."""
        self._ensure_channel()
        stub = self._stubs.get(op_grpc.OperationServiceStub)
        if stub is None:
            cfg = self._config
            channel = self._channel
            if cfg.operation_endpoint != cfg.endpoint:
                channel = self._op_channel = open_channel(cfg, cfg.operation_endpoint, aio=True)
            stub = self._stubs[op_grpc.OperationServiceStub] = op_grpc.OperationServiceStub(channel)
        return stub

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled. Safe to call twice."""
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
        await self.close()
