"""The synchronous client."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import grpc

from . import _retry
from ._base import (
    ChannelOptions,
    ClientConfig,
    MetadataInput,
    Timeout,
    attempt_header,
    deadline_of,
    new_request_id,
)
from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._convert import MessagesInput, unary_result
from ._errors import IncompleteStreamError, from_rpc_error
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from ._logging import logger
from ._retry import RetryPolicy
from ._streaming import CompletionStream, find_header
from ._types import NOT_GIVEN, CompletionResult, NotGiven

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._auth import Credentials
    from ._convert import GenerationOptions
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


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
        retry: RetryPolicy | None = None,
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

    def _refresh_after_auth_failure(self, rejected: str) -> bool:
        creds = self._config.credentials
        if not creds.refreshable:
            return False
        creds.invalidate(rejected)
        return True

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
        policy = cfg.policy(retry)
        deadline = deadline_of(cfg.call_timeout(timeout, stream=False))
        request_id = new_request_id()
        creds = cfg.credentials
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            auth = creds.authorization()
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(attempt)
            started = time.perf_counter()
            call = self._completion(request, timeout=policy.attempt_timeout_for(deadline), metadata=md)
            try:
                resp: tg_pb2.CompletionResponse | None = None
                for resp in call:  # noqa: B007 - a unary answer is the stream's only message
                    pass
                initial = call.initial_metadata()
            except grpc.RpcError as exc:
                _log_rpc(exc.code(), started, attempt, request_id)
                if exc.code() is _UNAUTHENTICATED and not refreshed and self._refresh_after_auth_failure(auth):
                    refreshed = True
                    attempt -= 1
                    continue
                delay = policy.next_delay(exc, attempt, deadline)
                if delay is None:
                    raise from_rpc_error(exc) from exc
                logger.warning(
                    "retrying Completion after %s (attempt %d, waiting %.3fs)", exc.code().name, attempt, delay
                )
                _retry.sleep(delay)
                continue
            if logger.isEnabledFor(logging.DEBUG):
                _log_rpc(grpc.StatusCode.OK, started, attempt, request_id)
            rid = find_header(initial, HEADER_REQUEST_ID)
            if resp is None:
                raise IncompleteStreamError(
                    "the server answered without a response message", partial=None, request_id=rid
                )
            return unary_result(resp, rid, find_header(initial, HEADER_TRACE_ID))

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

        Arguments are checked now; the RPC starts when you begin iterating.
        """
        self._check_open()
        cfg = self._config
        request = cfg.prepare(model, messages, options, stream=True)
        policy = cfg.policy(retry)
        deadline = deadline_of(cfg.call_timeout(timeout, stream=True))
        request_id = new_request_id()
        creds = cfg.credentials
        completion = self._completion
        last_auth: list[str] = []

        def start(attempt: int) -> Any:
            auth = creds.authorization()
            last_auth[:] = [auth]
            md = cfg.metadata(auth, request_id, metadata) + attempt_header(attempt)
            return completion(request, timeout=policy.attempt_timeout_for(deadline), metadata=md)

        refreshed: list[bool] = []

        def on_auth_failure() -> bool:
            if refreshed or not last_auth:
                return False
            refreshed.append(True)
            return self._refresh_after_auth_failure(last_auth[0])

        return CompletionStream(start, policy, deadline, on_auth_failure)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _log_rpc(code: grpc.StatusCode, started: float, attempt: int, request_id: str) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "rpc Completion code=%s duration=%.1fms attempt=%d client_request_id=%s",
            code.name,
            (time.perf_counter() - started) * 1000.0,
            attempt,
            request_id,
        )
