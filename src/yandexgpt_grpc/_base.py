"""What Client and AsyncClient share: the constructor, its configuration, metadata checks and request ids.

The channel and the transport's call shapes are in `_channel.py`; the retry loop in `_retry.py`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from random import getrandbits
from typing import TYPE_CHECKING, ClassVar

from ._auth import Credentials, resolve_credentials
from ._channel import ChannelOptions, build_channel_options
from ._checks import (
    ENV_INSECURE,
    check_bool,
    check_metadata_pairs,
    check_str,
    env_flag,
    given,
    parse_endpoint,
    unencodable_text,
)
from ._constants import (
    DEFAULT_ENDPOINT,
    DEFAULT_OPERATION_ENDPOINT,
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    ENV_ENDPOINT,
    ENV_FOLDER_ID,
    HEADER_AUTHORIZATION,
    HEADER_CLIENT_REQUEST_ID,
    HEADER_DATA_LOGGING,
    HEADER_FOLDER_ID,
)
from ._convert import MessagesInput, build_request, message_texts, model_uri, normalize_messages
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from ._retry import DEFAULT_RETRY, NO_RETRIES, CallRetry, RetryPolicy
from ._types import NOT_GIVEN, NotGiven

if TYPE_CHECKING:
    import grpc

Timeout = float | None | NotGiven
MetadataInput = Mapping[str, str] | Sequence[tuple[str, str]] | None


def check_endpoint(endpoint: str, insecure: bool, name: str = "endpoint", insecure_from: str = "insecure=True") -> str:
    """The grpc target for what the user gave (see _checks.parse_endpoint); refused before any I/O."""
    return parse_endpoint(endpoint, name, insecure=insecure, insecure_from=insecure_from)


def resolve_timeout(value: Timeout, default: float | None) -> float | None:
    if isinstance(value, NotGiven):
        return default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {given(value)}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"timeout must be a positive number of seconds or None (no deadline), got {value!r}")
    return float(value)


def resolve_policy(retry: RetryPolicy | NotGiven | None, default: RetryPolicy) -> RetryPolicy:
    """`retry=` as given: left out -> the default, None -> no retries."""
    if isinstance(retry, NotGiven):
        return default
    if retry is None:
        return NO_RETRIES
    if not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
    return retry


def _user_metadata(metadata: MetadataInput) -> tuple[tuple[str, str], ...]:
    if metadata is None:
        return ()
    pairs = check_metadata_pairs("metadata", metadata)
    out = []
    for key, value in pairs:
        if not isinstance(key, str) or key != key.lower() or not key:
            raise ValueError(f"metadata keys must be non-empty lowercase str, got {key!r}")
        if key == HEADER_AUTHORIZATION:
            raise ValueError("pass credentials with api_key=, iam_token= or credentials=, not as metadata")
        _check_metadata_value(key, value)
        out.append((key, value))
    return tuple(out)


def _check_metadata_value(key: str, value: object) -> None:
    """Refuse what grpc would fail as INTERNAL "Invalid metadata" (and retry) after the call began.

    The message names the key only: values may be secrets.
    """
    if key.endswith("-bin"):
        if not isinstance(value, (bytes, str)):
            raise TypeError(f"metadata {key!r}: a -bin value must be bytes, got {type(value).__name__}")
        return
    if not isinstance(value, str):
        raise TypeError(f"metadata {key!r}: the value must be str (or use a key ending in -bin for bytes)")
    if not value.isascii() or not value.isprintable():
        raise ValueError(
            f"metadata {key!r}: the value must be printable ASCII; send other text under a key ending in -bin"
        )


class ClientConfig:
    """Everything resolved once at construction; nothing here does I/O."""

    __slots__ = (
        "_static_metadata",
        "credentials",
        "endpoint",
        "folder_id",
        "insecure",
        "operation_endpoint",
        "options",
        "retry",
        "root_certificates",
        "stream_timeout",
        "timeout",
    )

    def __init__(
        self,
        *,
        endpoint: str | None,
        folder_id: str | None,
        api_key: str | None,
        iam_token: str | None,
        credentials: Credentials | None,
        insecure: bool | None,
        root_certificates: bytes | None,
        timeout: Timeout,
        metadata: MetadataInput,
        data_logging: bool | None,
        channel_options: ChannelOptions | None,
        max_retries: int | None,
        retry: RetryPolicy | NotGiven | None,
        operation_endpoint: str | None,
        sync: bool,
    ) -> None:
        env = os.environ
        if check_bool("insecure", insecure, optional=True) is None:
            self.insecure, plain_from = env_flag(env, ENV_INSECURE), f"{ENV_INSECURE}=1"
        else:
            self.insecure, plain_from = bool(insecure), "insecure=True"
        explicit = endpoint if endpoint is not None and endpoint != "" else None
        from_env = env.get(ENV_ENDPOINT, "").strip() if explicit is None else ""
        self.endpoint = check_endpoint(
            explicit if explicit is not None else from_env or DEFAULT_ENDPOINT,
            self.insecure,
            "endpoint" if explicit is not None or not from_env else ENV_ENDPOINT,
            plain_from,
        )
        default_ops = self.endpoint if explicit is not None or from_env else DEFAULT_OPERATION_ENDPOINT
        self.operation_endpoint = check_endpoint(
            operation_endpoint if operation_endpoint else default_ops,
            self.insecure,
            "operation_endpoint" if operation_endpoint else "endpoint",
            plain_from,
        )
        if root_certificates is not None and not isinstance(root_certificates, bytes):
            raise TypeError(f"root_certificates must be PEM bytes or None, got {given(root_certificates, show=False)}")
        check_bool("data_logging", data_logging, optional=True)
        if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)):
            raise TypeError(f"max_retries must be an int or None, got {given(max_retries)}")
        if root_certificates is not None and self.insecure:
            raise ValueError("root_certificates and insecure=True contradict each other: pick one")
        self.root_certificates = root_certificates
        if folder_id is not None:
            check_str("folder_id", folder_id, "a str such as 'b1g...'")
        self.folder_id = (folder_id or env.get(ENV_FOLDER_ID) or "").strip() or None
        self.credentials = resolve_credentials(api_key=api_key, iam_token=iam_token, credentials=credentials)
        default = resolve_timeout(timeout, DEFAULT_TIMEOUT)
        self.timeout = default
        self.stream_timeout = default if not isinstance(timeout, NotGiven) else DEFAULT_STREAM_TIMEOUT
        policy = resolve_policy(retry, DEFAULT_RETRY)
        if max_retries is not None:
            policy = policy.with_max_retries(max_retries)
        self.retry = policy
        self.options = build_channel_options(channel_options, sync)
        static = list(_user_metadata(metadata))
        if self.folder_id and self.credentials.sends_folder_id:
            static.append((HEADER_FOLDER_ID, self.folder_id))
        if data_logging is not None:
            static.append((HEADER_DATA_LOGGING, "true" if data_logging else "false"))
        self._static_metadata = tuple(static)

    def metadata(self, authorization: str, request_id: str, extra: MetadataInput) -> tuple[tuple[str, str], ...]:
        md = ((HEADER_AUTHORIZATION, authorization), (HEADER_CLIENT_REQUEST_ID, request_id), *self._static_metadata)
        if extra:
            md += _user_metadata(extra)
        return md

    def prepare(
        self, model: str, messages: MessagesInput, options: Mapping[str, object], stream: bool
    ) -> tg_pb2.CompletionRequest:
        turns = messages if isinstance(messages, str) else normalize_messages(messages)
        uri = model_uri(model, self.folder_id)
        try:
            return build_request(uri, turns, options, stream)
        except UnicodeEncodeError as exc:  # a lone surrogate: say where, before any I/O
            texts = [("messages[0]", turns)] if isinstance(turns, str) else message_texts(turns)
            raise unencodable_text(exc, [("model", uri), *texts]) from None

    def call_timeout(self, timeout: Timeout, stream: bool) -> float | None:
        return resolve_timeout(timeout, self.stream_timeout if stream else self.timeout)

    def policy(self, retry: RetryPolicy | NotGiven | None) -> RetryPolicy:
        return resolve_policy(retry, self.retry)

    def attempts(
        self,
        method: str,
        timeout: Timeout,
        retry: RetryPolicy | NotGiven | None,
        metadata: MetadataInput = None,
        *,
        stream: bool = False,
        operation_id: str | None = None,
    ) -> CallRetry:
        """The attempts of one logical call under this configuration, with a fresh request id."""
        # Left-out arguments (nearly every call) skip the resolvers: this runs once per call.
        if timeout is NOT_GIVEN:
            seconds = self.stream_timeout if stream else self.timeout
        else:
            seconds = self.call_timeout(timeout, stream)
        return CallRetry(
            self.retry if retry is NOT_GIVEN else self.policy(retry),
            seconds,
            self.credentials,
            method,
            new_request_id(),
            stream,
            self,
            metadata,
            operation_id,
        )

    def describe(self, name: str) -> str:
        folder = f", folder_id={self.folder_id!r}" if self.folder_id else ""
        return f"{name}(endpoint={self.endpoint!r}{folder}, credentials={self.credentials!r})"


# Version 4 and the RFC 4122 variant, stamped into 128 random bits.
_UUID4_KEEP = ((1 << 128) - 1) ^ ((0xF << 76) | (0x3 << 62))
_UUID4_STAMP = (0x4 << 76) | (0x2 << 62)


def new_request_id() -> str:
    """A random (version 4) UUID string at a quarter of str(uuid.uuid4())'s cost.

    The id only has to be unique, not unguessable, so it comes from `random` (no system
    call per request); `random` reseeds itself in a forked child, so workers do not repeat.
    """
    h = "%032x" % (getrandbits(128) & _UUID4_KEEP | _UUID4_STAMP)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class ClientBase:
    """What Client and AsyncClient share: the constructor, configuration and identity.

    Arguments left out fall back to the environment (YC_API_KEY, YC_IAM_TOKEN,
    YC_FOLDER_ID, YANDEXGPT_ENDPOINT, YANDEXGPT_INSECURE). `endpoint` is host:port;
    `https://host[/path]` means host:443. `insecure=True` (plaintext) is allowed only to
    loopback addresses and Unix sockets; `timeout` is the default per call (None: no
    deadline); `retry=None` or `max_retries=0` turns retries off.
    """

    _sync: ClassVar[bool]

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        folder_id: str | None = None,
        api_key: str | None = None,
        iam_token: str | None = None,
        credentials: Credentials | None = None,
        insecure: bool | None = None,
        root_certificates: bytes | None = None,
        timeout: Timeout = NOT_GIVEN,
        metadata: MetadataInput = None,
        data_logging: bool | None = None,
        channel_options: ChannelOptions | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | NotGiven | None = NOT_GIVEN,
        operation_endpoint: str | None = None,
    ) -> None:
        self._config = ClientConfig(
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
            sync=self._sync,
        )
        self._closed = False
        # Stubs for the async, tokenizer and operation services, made on first use.
        # Each key is a stub class, its value that class made on the client's channel (see `_stub`).
        self._stubs: dict[object, object] = {}
        self._op_channel: grpc.Channel | grpc.aio.Channel | None = None
        self._setup()

    def _setup(self) -> None:
        """The subclass's own state (channels, locks); no I/O."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self._config.describe(type(self).__name__)

    @property
    def endpoint(self) -> str:
        return self._config.endpoint

    @property
    def folder_id(self) -> str | None:
        return self._config.folder_id
