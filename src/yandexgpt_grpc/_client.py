"""The synchronous client."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, TypeVar

import grpc

from . import _retry
from ._base import ClientBase, MetadataInput, Timeout
from ._channel import open_channel
from ._convert import MessagesInput, build_tokenize_request, completion_answer, model_uri, tokens_answer
from ._docs import document_client, documented
from ._errors import ClientClosedError
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from ._operations import Operation, call_unary
from ._public import public
from ._retry import AttemptFailed, CallRetry, RetryPolicy
from ._streaming import CompletionStream
from ._types import NOT_GIVEN, CompletionResult, NotGiven, TokenizeResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Unpack

    from ._channel import CompletionCall
    from ._cloud_jobs import BatchJobs
    from ._convert import GenerationOptions
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )
    from ._generated.yandex.cloud.operation import operation_service_pb2_grpc as op_grpc

S = TypeVar("S")


class Client(ClientBase):
    """A blocking client for the text-generation API; one channel, reused by every call.

    Thread-safe: share one instance; `close()` it, or use it as a context manager.
    """

    _sync = True
    _op_channel: grpc.Channel | None

    def _setup(self) -> None:
        cfg = self._config
        self._channel = open_channel(cfg, cfg.endpoint, aio=False)
        self._completion = tg_grpc.TextGenerationServiceStub(self._channel).Completion
        self._lock = threading.Lock()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this Client is closed")

    @documented(options=True, call_args=("model", "messages", "timeout", "metadata", "retry"))
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
        request = cfg.prepare(model, messages, options, False)
        tries = cfg.attempts("Completion", timeout, retry, metadata)
        return _retry.call(tries, self._complete_attempt, request)

    def _complete_attempt(
        self, tries: CallRetry, request: tg_pb2.CompletionRequest, timeout: float | None, md: _retry.Metadata
    ) -> CompletionResult:
        """One attempt of complete(): the unary answer read as the one message of the stream."""
        call = self._completion(request, timeout=timeout, metadata=md)
        resp: tg_pb2.CompletionResponse | None = None
        try:
            for resp in call:  # noqa: B007 - a unary answer is the stream's only message
                pass
        except grpc.RpcError as exc:
            if resp is None:
                raise
            raise AttemptFailed(exc, responded=True) from exc
        except BaseException:  # KeyboardInterrupt and the like: do not leave the RPC running
            call.cancel()
            raise
        initial = call.initial_metadata()
        tries.finished(grpc.StatusCode.OK, initial)
        return completion_answer(resp, initial, call.trailing_metadata())

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
    ) -> CompletionStream:
        """Partial alternatives as the text grows, then the final one.

        Arguments are checked now; the RPC starts (and `timeout` starts counting) when you
        begin iterating.
        """
        self._check_open()
        cfg = self._config
        request = cfg.prepare(model, messages, options, True)
        tries = cfg.attempts("Completion(stream)", timeout, retry, metadata, stream=True)
        return CompletionStream(self._stream_call, request, tries)

    def _stream_call(
        self, request: tg_pb2.CompletionRequest, timeout: float | None, md: _retry.Metadata
    ) -> CompletionCall:
        """Start one attempt of a stream (the stream's own attempt reads its first response)."""
        self._check_open()
        return self._completion(request, timeout=timeout, metadata=md)

    @documented(options=True, call_args=("model", "messages", "timeout", "metadata", "retry"))
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
        request = cfg.prepare(model, messages, options, False)
        tries = cfg.attempts("TextGenerationAsyncService.Completion", timeout, retry, metadata)
        pb, initial = call_unary(tries, lambda: self._stub(tg_grpc.TextGenerationAsyncServiceStub).Completion, request)
        return Operation(pb.id, cfg, self._operations, pb=pb, initial=initial)

    def operation(self, operation_id: str) -> Operation:
        """Re-attach to an operation by id (say, in another process); no I/O until you poll or wait."""
        self._check_open()
        return Operation(operation_id, self._config, self._operations)

    @documented(options=False, call_args=("model", "text", "timeout", "metadata", "retry"))
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
        tries = self._config.attempts("TokenizerService.Tokenize", timeout, retry, metadata)
        return tokens_answer(*call_unary(tries, lambda: self._stub(tg_grpc.TokenizerServiceStub).Tokenize, request))

    @documented(options=True, call_args=("model", "messages", "timeout", "metadata", "retry"))
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
        request = self._config.prepare(model, messages, options, False)
        tries = self._config.attempts("TokenizerService.TokenizeCompletion", timeout, retry, metadata)
        return tokens_answer(
            *call_unary(tries, lambda: self._stub(tg_grpc.TokenizerServiceStub).TokenizeCompletion, request)
        )

    def _stub(self, factory: Callable[[grpc.Channel], S]) -> S:
        """`factory` (a stub class) made on this client's channel once; looked up at call time."""
        self._check_open()
        stub = self._stubs.get(factory)
        if stub is None:
            with self._lock:
                self._check_open()
                stub = self._stubs.get(factory)
                if stub is None:
                    stub = self._stubs[factory] = factory(self._channel)
        return stub  # type: ignore[return-value]  # the cache holds factory(channel) under factory

    def _operations(self) -> op_grpc.OperationServiceStub:
        """The OperationService stub: on the main channel when operation_endpoint is the endpoint."""
        from ._generated.yandex.cloud.operation import operation_service_pb2_grpc as op_grpc  # operations only

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
        return stub  # type: ignore[return-value]  # the cache holds factory(channel) under factory

    @property
    def batch_jobs(self) -> BatchJobs:
        """The platform's batch engine: whole JSONL files answered on Yandex's fleet (BatchJobs)."""
        self._check_open()
        jobs: BatchJobs | None = getattr(self, "_batch_jobs", None)
        if jobs is None:
            from ._cloud_jobs import BatchJobs  # loaded on first use: most programs never need it

            jobs = self._batch_jobs = BatchJobs(self)
        return jobs

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


public(Client)
document_client(Client)
