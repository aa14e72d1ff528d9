"""The synchronous client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc

from . import _retry
from ._base import (
    ChannelOptions,
    ClientConfig,
    MetadataInput,
    Timeout,
    attempt_header,
    new_request_id,
)
from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._convert import MessagesInput, unary_result
from ._errors import IncompleteStreamError, find_header
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from ._retry import CallRetry, RetryPolicy
from ._streaming import CompletionStream
from ._types import NOT_GIVEN, CompletionResult, NotGiven

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._auth import Credentials
    from ._convert import GenerationOptions
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )


def loop_bound_credentials(creds: Credentials) -> bool:
    """Whether fetching a token awaits a coroutine function (an async IamTokenProvider)."""
    return bool(getattr(creds, "_is_async", False))


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


class Client:
    """A blocking client for the text-generation API; one channel, reused by every call.

    Thread-safe: share one instance. Arguments left out fall back to the
    environment (YC_API_KEY, YC_IAM_TOKEN, YC_FOLDER_ID, YANDEXGPT_ENDPOINT).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        folder_id: str | None = None,
        api_key: str | None = None,
        iam_token: str | None = None,
        credentials: Credentials | None = None,
        insecure: bool = False,
        root_certificates: bytes | None = None,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        data_logging: bool | None = None,
        channel_options: ChannelOptions | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        operation_endpoint: str | None = None,
    ) -> None:
        self._config = cfg = ClientConfig(
            endpoint=endpoint,
            folder_id=folder_id,
            api_key=api_key,
            iam_token=iam_token,
            credentials=credentials,
            insecure=insecure,
            root_certificates=root_certificates,
            timeout=timeout,
            metadata=metadata,
            data_logging=data_logging,
            channel_options=channel_options,
            max_retries=max_retries,
            retry=retry,
            operation_endpoint=operation_endpoint,
            sync=True,
        )
        if cfg.insecure:
            self._channel = grpc.insecure_channel(cfg.endpoint, options=cfg.options)
        else:
            creds = grpc.ssl_channel_credentials(root_certificates=cfg.root_certificates)
            self._channel = grpc.secure_channel(cfg.endpoint, creds, options=cfg.options)
        self._completion = tg_grpc.TextGenerationServiceStub(self._channel).Completion
        self._closed = False
        self._loop_bound_credentials = loop_bound_credentials(cfg.credentials)

    def __repr__(self) -> str:
        return self._config.describe(type(self).__name__)

    @property
    def endpoint(self) -> str:
        return self._config.endpoint

    @property
    def folder_id(self) -> str | None:
        return self._config.folder_id

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
        request_id = new_request_id()
        tries = CallRetry(
            cfg.policy(retry), cfg.call_timeout(timeout, stream=False), cfg.credentials, "Completion", request_id
        )
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
                    raise tries.failure(exc) from exc
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
        request_id = new_request_id()
        tries = CallRetry(
            cfg.policy(retry),
            cfg.call_timeout(timeout, stream=True),
            cfg.credentials,
            "Completion(stream)",
            request_id,
            stream=True,
        )
        completion = self._completion

        def start() -> tuple[Any, str]:
            self._check_open()
            auth = self._authorization()
            attempt_timeout = tries.start()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(tries.attempt)
            return completion(request, timeout=attempt_timeout, metadata=md), auth

        return CompletionStream(start, tries)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
