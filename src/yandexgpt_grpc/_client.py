"""The synchronous client."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import grpc

from . import _retry
from ._base import (
    ClientBase,
    MetadataInput,
    Timeout,
    attempt_header,
    open_channel,
)
from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._convert import MessagesInput, build_tokenize_request, model_uri, unary_result
from ._errors import IncompleteStreamError, find_header
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from ._generated.yandex.cloud.operation import operation_service_pb2_grpc as op_grpc
from ._operations import Operation, call_unary, tokens_result
from ._retry import RetryPolicy
from ._streaming import CompletionStream
from ._types import NOT_GIVEN, CompletionResult, NotGiven, TokenizeResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._auth import Credentials
    from ._convert import GenerationOptions
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )


def loop_bound_credentials(creds: Credentials) -> bool:
    """Whether fetching a token awaits a coroutine function (an async IamTokenProvider)."""
    return creds.needs_event_loop


def check_no_running_loop() -> None:
    """Refuse the one case where a blocking call inside a running event loop would deadlock.

    Ordinary blocking use inside a running loop (a notebook) is allowed. But a token
    coroutine may need this very loop, which the blocking call keeps from running.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "this Client fetches tokens with a coroutine function, and it was called inside a running asyncio "
        "event loop, which the blocking call would stall while the coroutine may need it (a deadlock): "
        "use AsyncClient here, or run the call in a worker thread (await asyncio.to_thread(client.complete, ...))"
    )


class Client(ClientBase):
    """A blocking client for the text-generation API; one channel, reused by every call.

    Thread-safe: share one instance. Constructor arguments: see ClientBase.
    """

    _sync = True

    def _setup(self) -> None:
        cfg = self._config
        self._channel = open_channel(cfg, cfg.endpoint, aio=False)
        self._completion = tg_grpc.TextGenerationServiceStub(self._channel).Completion
        self._loop_bound_credentials = loop_bound_credentials(cfg.credentials)
        self._lock = threading.Lock()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Client is closed")

    def _authorization(self) -> str:
        creds = self._config.credentials
        if self._loop_bound_credentials:
            check_no_running_loop()
        return creds.authorization()

    def complete(
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
        self._check_open()
        cfg = self._config
        request = cfg.prepare(model, messages, options, stream=False)
        tries = cfg.attempts("Completion", timeout, retry)
        request_id = tries.request_id
        while True:
            auth = self._authorization()
            attempt_timeout = tries.start()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(tries.attempt)
            call = self._completion(request, timeout=attempt_timeout, metadata=md)
            resp: tg_pb2.CompletionResponse | None = None
            try:
                for resp in call:  # noqa: B007 - a unary answer is the stream's only message
                    pass
            except grpc.RpcError as exc:
                tries.failed(exc)
                delay = tries.delay(exc, auth, responded=resp is not None)
                if delay is None:
                    err = tries.failure(exc)
                    raise err from err.__cause__  # grpc's error, or its redacted stand-in
                if delay:
                    _retry.sleep(delay)
                continue
            except BaseException:  # KeyboardInterrupt and the like: do not leave the RPC running
                call.cancel()
                raise
            initial = call.initial_metadata()
            tries.finished(grpc.StatusCode.OK, initial)
            rid = find_header(initial, HEADER_REQUEST_ID)
            if resp is None:
                raise IncompleteStreamError(
                    "the server answered without a response message", partial=None, request_id=rid
                )
            trace_id = find_header(initial, HEADER_TRACE_ID)
            return unary_result(resp, rid, trace_id, initial=initial, trailing=call.trailing_metadata())

    def stream(
        self,
        model: str,
        messages: MessagesInput,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        **options: Unpack[GenerationOptions],
    ) -> CompletionStream:
        """Partial alternatives as the text grows, then the final one.

        Arguments are checked now; the RPC starts (and `timeout` starts counting) when you
        begin iterating.
        """
        self._check_open()
        cfg = self._config
        request = cfg.prepare(model, messages, options, stream=True)
        tries = cfg.attempts("Completion(stream)", timeout, retry, stream=True)
        request_id = tries.request_id
        completion = self._completion

        def start() -> tuple[Any, str]:
            self._check_open()
            auth = self._authorization()
            attempt_timeout = tries.start()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(tries.attempt)
            return completion(request, timeout=attempt_timeout, metadata=md), auth

        return CompletionStream(start, tries)

    def submit(
        self,
        model: str,
        messages: MessagesInput,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        **options: Unpack[GenerationOptions],
    ) -> Operation:
        """Start a generation in asynchronous mode; returns a handle to poll, wait for or cancel."""
        self._check_open()
        cfg = self._config
        request = cfg.prepare(model, messages, options, stream=False)
        pb, initial = call_unary(
            cfg,
            lambda: self._stub(tg_grpc.TextGenerationAsyncServiceStub).Completion,
            request,
            name="TextGenerationAsyncService.Completion",
            timeout=timeout,
            metadata=metadata,
            retry=retry,
            authorize=self._authorization,
        )
        return Operation(pb.id, cfg, self._operations, self._authorization, pb=pb, initial=initial)

    def operation(self, operation_id: str) -> Operation:
        """Re-attach to an operation by id (say, in another process); no I/O until you poll or wait."""
        self._check_open()
        return Operation(operation_id, self._config, self._operations, self._authorization)

    def tokenize(
        self,
        model: str,
        text: str,
        *,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
    ) -> TokenizeResult:
        """The model's tokens of `text`."""
        self._check_open()
        request = build_tokenize_request(model_uri(model, self._config.folder_id), text)
        resp, initial = call_unary(
            self._config,
            lambda: self._stub(tg_grpc.TokenizerServiceStub).Tokenize,
            request,
            name="TokenizerService.Tokenize",
            timeout=timeout,
            metadata=metadata,
            retry=retry,
            authorize=self._authorization,
        )
        return tokens_result(resp, initial)

    def tokenize_messages(
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
        self._check_open()
        request = self._config.prepare(model, messages, options, stream=False)
        resp, initial = call_unary(
            self._config,
            lambda: self._stub(tg_grpc.TokenizerServiceStub).TokenizeCompletion,
            request,
            name="TokenizerService.TokenizeCompletion",
            timeout=timeout,
            metadata=metadata,
            retry=retry,
            authorize=self._authorization,
        )
        return tokens_result(resp, initial)

    def _stub(self, factory: Any) -> Any:
        self._check_open()
        stub = self._stubs.get(factory)
        if stub is None:
            with self._lock:
                self._check_open()
                stub = self._stubs.get(factory)
                if stub is None:
                    stub = self._stubs[factory] = factory(self._channel)
        return stub

    def _operations(self) -> Any:
        """The OperationService stub: on the main channel when operation_endpoint is the endpoint."""
        self._check_open()
        stub = self._stubs.get(op_grpc.OperationServiceStub)
        if stub is None:
            with self._lock:
                self._check_open()
                stub = self._stubs.get(op_grpc.OperationServiceStub)
                if stub is None:
                    cfg = self._config
                    channel = self._channel
                    if cfg.operation_endpoint != cfg.endpoint:
                        channel = self._op_channel = open_channel(cfg, cfg.operation_endpoint, aio=False)
                    stub = self._stubs[op_grpc.OperationServiceStub] = op_grpc.OperationServiceStub(channel)
        return stub

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled. Safe to call twice."""
        if not self._closed:
            with self._lock:
                self._closed = True
            self._channel.close()
            if self._op_channel is not None:
                self._op_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
