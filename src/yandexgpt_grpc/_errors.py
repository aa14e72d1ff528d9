"""The exception tree and the one place where grpc errors become it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

from ._constants import HEADER_PUSHBACK, HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._public import public

if TYPE_CHECKING:
    from ._types import Alternative, CompletionResult

Metadata = tuple[tuple[str, "str | bytes"], ...]


class YandexGPTError(Exception):
    """Base of every error this package raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__, whose keyword-only arguments pickle's default would miss.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[YandexGPTError], args: tuple[Any, ...], state: dict[str, Any]) -> YandexGPTError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class ConfigurationError(YandexGPTError, ValueError):
    """The client cannot work as configured: no credentials, no folder for a short model name, a bad
    endpoint or environment variable. Also a ValueError, as these were before they joined the tree."""


class ClientClosedError(YandexGPTError, RuntimeError):
    """A call on a client after close() (or after its `with` block)."""


class StreamConsumedError(YandexGPTError, RuntimeError):
    """A stream iterated again after it ended, failed or was closed: a stream is read once.

    Iterating again after a `break` is fine (it continues); `stream.final` keeps the result.
    """


class EventLoopError(YandexGPTError, RuntimeError):
    """A client used where it cannot work: an AsyncClient from another event loop, or a blocking
    Client with an async token function inside a running loop (a deadlock)."""


class OperationNotDoneError(YandexGPTError, RuntimeError):
    """The result of an operation that is still running was asked for: wait() for it, or poll() later."""


class APIError(YandexGPTError):
    """The server (or grpc on its behalf) ended a call with a non-OK status.

    `details` is the status message exactly as sent; `metadata` holds the initial
    then the trailing metadata (`-bin` values as bytes); `attempts` counts the
    attempts the call made before giving up.
    """

    code: grpc.StatusCode
    _by_code: ClassVar[dict[grpc.StatusCode, type[APIError]]] = {}
    _code: ClassVar[grpc.StatusCode | None] = None

    def __init_subclass__(cls, code: grpc.StatusCode | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls._code = code
            APIError._by_code[code] = cls

    def __init__(
        self,
        details: str,
        *,
        code: grpc.StatusCode | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
        metadata: Metadata | None = None,
        status_details: Sequence[Any] = (),
        operation_id: str | None = None,
        initial_metadata: Metadata = (),
        trailing_metadata: Metadata = (),
        hint: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(details)
        self.code = code or self._code or grpc.StatusCode.UNKNOWN
        self.details = details
        self.request_id = request_id
        self.trace_id = trace_id
        self.initial_metadata = initial_metadata
        self.trailing_metadata = trailing_metadata
        self.metadata = initial_metadata + trailing_metadata if metadata is None else metadata
        self.status_details = tuple(status_details)
        self.operation_id = operation_id
        self.hint = hint
        self.attempts = attempts

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.details}"
        ids = [f"request_id={self.request_id}"] if self.request_id else []
        if self.operation_id:
            ids.append(f"operation_id={self.operation_id}")
        if self.attempts > 1:
            ids.append(f"after {self.attempts} attempts")
        if ids:
            text += f" ({', '.join(ids)})"
        return f"{text}; {self.hint}" if self.hint else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, details={self.details!r}, request_id={self.request_id!r})"


class InvalidArgumentError(APIError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """The request is malformed; retrying it unchanged cannot help."""


class AuthenticationError(APIError, code=grpc.StatusCode.UNAUTHENTICATED):
    """Missing, malformed or expired credentials."""


class PermissionDeniedError(APIError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The credentials are valid but may not use this folder or model."""


class NotFoundError(APIError, code=grpc.StatusCode.NOT_FOUND):
    """No such model, folder or operation."""


class AlreadyExistsError(APIError, code=grpc.StatusCode.ALREADY_EXISTS):
    """The resource to create exists already."""


class FailedPreconditionError(APIError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The system is not in a state the call needs (e.g. an operation in the wrong state)."""


class AbortedError(APIError, code=grpc.StatusCode.ABORTED):
    """The call was aborted, typically by a concurrency conflict; retrying the whole sequence may help."""


class OutOfRangeError(APIError, code=grpc.StatusCode.OUT_OF_RANGE):
    """A value was past the valid range (e.g. too many tokens for the model's context)."""


class RateLimitError(APIError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """A quota or rate limit was hit; waiting helps (retried by default)."""


class MessageTooLargeError(APIError):
    """A message exceeded a size limit (RESOURCE_EXHAUSTED that no wait can fix; never retried).

    For a response, raise the client's limit: channel_options=[("grpc.max_receive_message_length", n)].
    """

    _code = grpc.StatusCode.RESOURCE_EXHAUSTED  # its code, but not the class that code maps to


class MetadataTooLargeError(MessageTooLargeError):
    """The server's headers or trailers exceeded the client's metadata size limit (never retried).

    grpc reports it as RESOURCE_EXHAUSTED, but it is a size error, not rate limiting.
    """


class DeadlineExceededError(APIError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The call's deadline passed before it finished."""


class UnavailableError(APIError, code=grpc.StatusCode.UNAVAILABLE):
    """The service could not be reached or is overloaded; usually transient."""


class InternalServerError(APIError, code=grpc.StatusCode.INTERNAL):
    """The server failed; retried while no response has reached you."""


class UnknownError(APIError, code=grpc.StatusCode.UNKNOWN):
    """The server sent an error without a known status (or grpc could not map it)."""


class UnimplementedError(APIError, code=grpc.StatusCode.UNIMPLEMENTED):
    """The endpoint does not offer this method."""


class DataLossError(APIError, code=grpc.StatusCode.DATA_LOSS):
    """Unrecoverable data loss or corruption."""


class CancelledError(APIError, code=grpc.StatusCode.CANCELLED):
    """The call was cancelled (by the caller, or an operation by someone)."""


class StreamInterruptedError(APIError):
    """A stream failed after some text had arrived; `partial` is the last alternative received.

    Raised as a subclass of the specific error too, so `except UnavailableError`
    still catches an interrupted stream. When every alternative had already arrived final
    (only the server's closing status was lost), `final` holds the CompletionResult built
    from them; otherwise it is None.
    """

    partial: Alternative | None = None
    final: CompletionResult | None = None


class IncompleteStreamError(YandexGPTError):
    """The server ended a stream with OK but without a terminal alternative."""

    def __init__(self, message: str, *, partial: Alternative | None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.request_id = request_id


class CredentialsError(YandexGPTError):
    """A token source could not produce a token (exchange refused, metadata service down, …).

    ``code`` is the gRPC status of a failed IAM exchange, when there was one.
    """

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class OperationTimeoutError(YandexGPTError, TimeoutError):
    """`wait(timeout=...)` ran out before the operation finished; it goes on: wait again or cancel it."""

    def __init__(self, message: str, *, operation_id: str) -> None:
        super().__init__(message)
        self.operation_id = operation_id


# A stream that fails after text arrived raises both StreamInterruptedError and the specific class,
# one static class per code so type checkers and IDEs see them (from_rpc_error picks one).
class StreamInterruptedInvalidArgumentError(StreamInterruptedError, InvalidArgumentError): ...


class StreamInterruptedAuthenticationError(StreamInterruptedError, AuthenticationError): ...


class StreamInterruptedPermissionDeniedError(StreamInterruptedError, PermissionDeniedError): ...


class StreamInterruptedNotFoundError(StreamInterruptedError, NotFoundError): ...


class StreamInterruptedAlreadyExistsError(StreamInterruptedError, AlreadyExistsError): ...


class StreamInterruptedFailedPreconditionError(StreamInterruptedError, FailedPreconditionError): ...


class StreamInterruptedAbortedError(StreamInterruptedError, AbortedError): ...


class StreamInterruptedOutOfRangeError(StreamInterruptedError, OutOfRangeError): ...


class StreamInterruptedRateLimitError(StreamInterruptedError, RateLimitError): ...


class StreamInterruptedDeadlineExceededError(StreamInterruptedError, DeadlineExceededError): ...


class StreamInterruptedUnavailableError(StreamInterruptedError, UnavailableError): ...


class StreamInterruptedInternalServerError(StreamInterruptedError, InternalServerError): ...


class StreamInterruptedUnknownError(StreamInterruptedError, UnknownError): ...


class StreamInterruptedUnimplementedError(StreamInterruptedError, UnimplementedError): ...


class StreamInterruptedDataLossError(StreamInterruptedError, DataLossError): ...


class StreamInterruptedCancelledError(StreamInterruptedError, CancelledError): ...


class StreamInterruptedMessageTooLargeError(StreamInterruptedError, MessageTooLargeError): ...


class StreamInterruptedMetadataTooLargeError(StreamInterruptedError, MetadataTooLargeError): ...


class StreamInterruptedAPIError(StreamInterruptedError, APIError): ...


_INTERRUPTED: dict[type[APIError], type[StreamInterruptedError]] = {
    InvalidArgumentError: StreamInterruptedInvalidArgumentError,
    AuthenticationError: StreamInterruptedAuthenticationError,
    PermissionDeniedError: StreamInterruptedPermissionDeniedError,
    NotFoundError: StreamInterruptedNotFoundError,
    AlreadyExistsError: StreamInterruptedAlreadyExistsError,
    FailedPreconditionError: StreamInterruptedFailedPreconditionError,
    AbortedError: StreamInterruptedAbortedError,
    OutOfRangeError: StreamInterruptedOutOfRangeError,
    RateLimitError: StreamInterruptedRateLimitError,
    DeadlineExceededError: StreamInterruptedDeadlineExceededError,
    UnavailableError: StreamInterruptedUnavailableError,
    InternalServerError: StreamInterruptedInternalServerError,
    UnknownError: StreamInterruptedUnknownError,
    UnimplementedError: StreamInterruptedUnimplementedError,
    DataLossError: StreamInterruptedDataLossError,
    CancelledError: StreamInterruptedCancelledError,
    MessageTooLargeError: StreamInterruptedMessageTooLargeError,
    MetadataTooLargeError: StreamInterruptedMetadataTooLargeError,
    APIError: StreamInterruptedAPIError,
}


def _pairs(md: Any) -> Metadata:
    if not md:
        return ()
    return tuple((str(k), v) for k, v in md)


def find_header(md: Any, key: str) -> str | None:
    """The first value of `key` in grpc metadata (any iterable of pairs), as text."""
    for k, v in md or ():
        if k == key:
            return v if isinstance(v, str) else bytes(v).decode("utf-8", "replace")
    return None


def _status_details(trailing: Metadata) -> list[Any]:
    """Unpack google.rpc.Status details sent in grpc-status-details-bin."""
    raw = next((v for k, v in trailing if k == "grpc-status-details-bin"), None)
    if not isinstance(raw, bytes):
        return []
    from google.protobuf import symbol_database
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status.FromString(raw)
    out: list[Any] = []
    db = symbol_database.Default()
    _ = error_details_pb2  # registers the standard detail types
    for any_msg in status.details:
        name = any_msg.TypeName()
        try:
            cls = db.GetSymbol(name)
        except KeyError:
            out.append(any_msg)
            continue
        msg = cls()
        any_msg.Unpack(msg)
        out.append(msg)
    return out


# grpc core's words for a message over a size limit ("Received message larger than max (N vs. M)").
_TOO_LARGE = ("larger than max", "message too large", "exceeds maximum")
# ... and for headers or trailers over the client's limit ("received metadata size exceeds hard limit (...)").
_METADATA_TOO_LARGE = "metadata size exceeds"
_METADATA_HINT = (
    "the server's headers or trailers are larger than this client accepts; raise the limits with "
    'channel_options=[("grpc.max_metadata_size", n), ("grpc.absolute_max_metadata_size", n)]'
)
_UNTRUSTED = "CERTIFICATE_VERIFY_FAILED"
# What grpc says to calls in flight when their channel closes, and what we add to it.
CHANNEL_CLOSED = "Channel closed!"
CLIENT_CLOSED = "the client was closed"
_TLS_HINT = (
    "the server's TLS certificate is not trusted: pass root_certificates=<PEM bytes of its CA> "
    "(verification is never turned off)"
)


# What a TLS client reads when the server answers in plaintext (an HTTP/2 frame is no TLS record).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LENGTH_MISMATCH")
# Patterns here are compiled on first use (re caches them): only errors need them, and compiling
# at import was part of every start-up.
_PEER = r"(?:ipv4:|ipv6:|unix:)?(\[[^\]]*\]:\d+|[^\s;,]+?:\d+|/[^\s:;,]+)(?=: Tls handshake failed)"


def is_too_large(code: grpc.StatusCode, details: str) -> bool:
    """A message or metadata over a size limit: RESOURCE_EXHAUSTED that no wait can fix."""
    return code is grpc.StatusCode.RESOURCE_EXHAUSTED and (
        any(s in details for s in _TOO_LARGE) or _METADATA_TOO_LARGE in details
    )


def is_rate_limited(exc: Any) -> bool:
    """RESOURCE_EXHAUSTED that means "slow down" (a quota), not a size error; grpc or our errors."""
    code = rpc_code(exc)
    return code is grpc.StatusCode.RESOURCE_EXHAUSTED and not is_too_large(code, rpc_details(exc))


def is_plaintext_server(code: grpc.StatusCode, details: str) -> bool:
    """The TLS handshake failed because the server speaks plaintext (a local emulator or proxy)."""
    return (
        code is grpc.StatusCode.UNAVAILABLE
        and "handshake failed" in details.lower()
        and any(s in details for s in _NOT_TLS)
    )


def is_permanent(code: grpc.StatusCode, details: str) -> bool:
    """A failure under a transient code that no retry can fix: oversized message, untrusted certificate,
    a plaintext server spoken to over TLS."""
    return (
        is_too_large(code, details)
        or (code is grpc.StatusCode.UNAVAILABLE and _UNTRUSTED in details)
        or is_plaintext_server(code, details)
    )


def plaintext_hint(details: str) -> str:
    """What to do about a plaintext server: plaintext is for loopback and Unix sockets only."""
    from ._net import is_local

    match = re.search(_PEER, details)
    peer = match.group(1).replace("%5B", "[").replace("%5D", "]") if match else None
    where = f"the server at {peer}" if peer else "the server"
    if peer is None or peer.startswith("/") or is_local(peer):
        return (
            f"{where} does not speak TLS — a local emulator? pass insecure=True / --insecure "
            "(or set YANDEXGPT_INSECURE=1)"
        )
    return (
        f"{where} does not speak TLS — a plaintext server or proxy? plaintext is allowed only to "
        "loopback addresses and Unix sockets: check the endpoint"
    )


def error_class(code: grpc.StatusCode) -> type[APIError]:
    return APIError._by_code.get(code, APIError)


def rpc_code(exc: Any) -> grpc.StatusCode:
    """The status code of a grpc error (sync or aio), or of one of ours."""
    code = getattr(exc, "code", None)
    if callable(code):
        code = code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def rpc_details(exc: Any) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        details = details()
    return utf8_details(details) if isinstance(details, str) else ""


def utf8_details(text: str) -> str:
    """A status message as the gRPC spec says to read it: UTF-8, a bad byte replaced, the rest kept.

    grpc percent-decodes grpc-message, but text that is not valid UTF-8 then reaches Python as
    Latin-1 (so valid Russian text around one bad byte turns into mojibake). Such text has no
    character above U+00FF; its bytes are recovered and decoded as UTF-8 with replacement. Text
    that grpc did decode as UTF-8 (say "café") is kept: repaired only when the bytes hold UTF-8
    sequences, which genuine Latin-1-range text does not.
    """
    if text.isascii() or max(text) > "\xff":
        return text
    raw = text.encode("latin-1")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        fixed = raw.decode("utf-8", "replace")
        if any(c > "\x7f" and c != "\ufffd" for c in fixed):
            return fixed
    return text


REDACTED = "<redacted>"
# An authorization value as it may be quoted back: the scheme, then the secret.
_AUTH_VALUE = r"(?i:\b(api-key|bearer)(\s+|%20|\+))[^\s'\",;)\]}]+"
# Shorter "secrets" are not worth redacting (and would mangle ordinary text).
_MIN_SECRET = 8


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with `secrets` and any `Api-Key …` / `Bearer …` value replaced by a marker; the rest as it was."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    if "earer" in text or "pi-" in text.lower():  # skip the regex for the usual message
        text = re.sub(_AUTH_VALUE, lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return text


def _scrub_value(value: str | bytes, secrets: Sequence[str]) -> str | bytes:
    if isinstance(value, str):
        return scrub(value, secrets)
    text = value.decode("utf-8", "surrogateescape")
    clean = scrub(text, secrets)
    return value if clean == text else clean.encode("utf-8", "surrogateescape")


def _scrub_md(md: Metadata, secrets: Sequence[str]) -> Metadata:
    return tuple((k, _scrub_value(v, secrets)) for k, v in md)


class RedactedRpcError(grpc.RpcError):
    """Stands in for grpc's exception as `__cause__` when that one quoted a credential.

    grpc's own exception cannot be changed, and its text (and debug string) would show the
    secret in every traceback; this one has the same code and the redacted rest.
    """

    def __init__(self, code: grpc.StatusCode, details: str, initial: Metadata, trailing: Metadata, debug: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self._debug = code, details, debug
        self._initial, self._trailing = initial, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Metadata:
        return self._initial

    # typeshed types RpcError's as _Metadatum objects; grpc's own errors give (key, value) pairs, as here.
    def trailing_metadata(self) -> Metadata:  # type: ignore[override]
        return self._trailing

    def debug_error_string(self) -> str:
        return self._debug


def from_rpc_error(
    exc: grpc.RpcError | grpc.aio.AioRpcError,
    *,
    partial: Alternative | None = None,
    operation_id: str | None = None,
    attempts: int = 1,
    secrets: Sequence[str] = (),
) -> APIError:
    """Turn any grpc error into our tree; the caller raises it `from` its `__cause__`.

    Credentials the server quoted back (`secrets`, the client's own, and any `Api-Key …` /
    `Bearer …` value) are redacted from every field; when there were any, `__cause__` is a
    RedactedRpcError instead of grpc's exception.
    """
    code = rpc_code(exc)
    raw_details = rpc_details(exc)
    raw_initial = _pairs(exc.initial_metadata() if hasattr(exc, "initial_metadata") else None)
    raw_trailing = _pairs(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None)
    details = scrub(raw_details, secrets)
    initial = _scrub_md(raw_initial, secrets)
    trailing = _scrub_md(raw_trailing, secrets)
    cause: BaseException = exc
    if details != raw_details or initial != raw_initial or trailing != raw_trailing:
        debug = getattr(exc, "debug_error_string", None)
        debug_text = scrub(str(debug()), secrets) if callable(debug) else ""
        cause = RedactedRpcError(code, details, initial, trailing, debug_text)
    metadata = initial + trailing
    hint = None
    if is_too_large(code, details):
        cls: type[APIError] = MessageTooLargeError
        if _METADATA_TOO_LARGE in details:
            cls, hint = MetadataTooLargeError, _METADATA_HINT
    else:
        cls = error_class(code)
        if code is grpc.StatusCode.UNAVAILABLE and _UNTRUSTED in details:
            hint = _TLS_HINT
        elif is_plaintext_server(code, details):
            hint = plaintext_hint(details)
        elif code is grpc.StatusCode.CANCELLED and CHANNEL_CLOSED in details:
            hint = CLIENT_CLOSED
    if partial is not None:
        cls = _INTERRUPTED[cls]
    try:
        status_details = _status_details(trailing)
    except Exception:  # a malformed trailer must not hide the real error
        status_details = []
    err = cls(
        details,
        code=code,
        request_id=find_header(metadata, HEADER_REQUEST_ID),
        trace_id=find_header(metadata, HEADER_TRACE_ID),
        initial_metadata=initial,
        trailing_metadata=trailing,
        status_details=status_details,
        operation_id=operation_id,
        hint=hint,
        attempts=attempts,
    )
    if partial is not None:
        assert isinstance(err, StreamInterruptedError)
        err.partial = partial
    err.__cause__ = cause
    return err


def pushback_ms(exc: Any) -> int | None:
    """The server's grpc-retry-pushback-ms: None when absent, -1 (do not retry) when malformed."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for k, v in trailing or ():
        if k == HEADER_PUSHBACK:
            try:
                return int(v)
            except (TypeError, ValueError):
                return -1
    return None


class BatchAborted(YandexGPTError):
    """A batch run stopped on a failure of the whole run, not of one prompt; nothing was written for it.

    Credentials refused, no permission, a TLS handshake that fails, a model or folder the service
    does not know, an endpoint down past the outage wait, a full disk, another run on the same OUT.
    `code` is the gRPC status behind it (None for a local cause), `saved` the result lines in OUT,
    `summary` the run's BatchSummary so far. Fix the cause and run again: the run continues.
    """

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, saved: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.saved = saved
        self.summary: Any = None


class BatchOutageError(BatchAborted):
    """The endpoint stayed unreachable past `outage_wait`: the run stopped, nothing written for the rest.

    `saved` results are in OUT; run again to continue once the endpoint is back.
    """

    def __init__(self, waited: float, saved: int) -> None:
        super().__init__(
            f"the endpoint has been unreachable for {waited:.0f}s (outage_wait); {saved} results saved, "
            "run again to continue",
            code=grpc.StatusCode.UNAVAILABLE,
            saved=saved,
        )


class BatchDiskFullError(BatchAborted):
    """OUT could not be written (no space left, or over quota); the run stopped.

    `saved` results are in OUT, each a whole line: free some space and run again to continue.
    """

    def __init__(self, path: str, saved: int) -> None:
        super().__init__(f"disk full while writing {path} ({saved} results saved)", saved=saved)
        self.path = path


class BatchLockedError(BatchAborted):
    """Another run is writing the same OUT (it holds the lock file next to it); this one did nothing."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(f"another batch run is writing {path} ({holder}); let it finish or stop it, then run again")
        self.path = path
        self.holder = holder


public(
    YandexGPTError,
    APIError,
    InvalidArgumentError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    AlreadyExistsError,
    FailedPreconditionError,
    AbortedError,
    OutOfRangeError,
    RateLimitError,
    MessageTooLargeError,
    MetadataTooLargeError,
    DeadlineExceededError,
    UnavailableError,
    InternalServerError,
    UnknownError,
    UnimplementedError,
    DataLossError,
    CancelledError,
    StreamInterruptedError,
    IncompleteStreamError,
    CredentialsError,
    OperationTimeoutError,
    ConfigurationError,
    ClientClosedError,
    StreamConsumedError,
    EventLoopError,
    OperationNotDoneError,
    BatchAborted,
    BatchOutageError,
    BatchDiskFullError,
    BatchLockedError,
)
