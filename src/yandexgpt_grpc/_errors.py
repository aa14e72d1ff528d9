"""The exception tree and the one place where grpc errors become it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID

if TYPE_CHECKING:
    from ._types import Alternative

Metadata = tuple[tuple[str, "str | bytes"], ...]


class YandexGPTError(Exception):
    """Base of every error this package raises on purpose."""


class APIError(YandexGPTError):
    """The server (or grpc on its behalf) ended a call with a non-OK status."""

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
        metadata: Metadata = (),
        status_details: Sequence[Any] = (),
        operation_id: str | None = None,
    ) -> None:
        resolved = code or self._code or grpc.StatusCode.UNKNOWN
        super().__init__(details)
        self.code = resolved
        self.details = details
        self.request_id = request_id
        self.trace_id = trace_id
        self.metadata = metadata
        self.status_details = tuple(status_details)
        self.operation_id = operation_id

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.details}"
        ids = [f"request_id={self.request_id}"] if self.request_id else []
        if self.operation_id:
            ids.append(f"operation_id={self.operation_id}")
        return f"{text} ({', '.join(ids)})" if ids else text

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
    pass


class FailedPreconditionError(APIError, code=grpc.StatusCode.FAILED_PRECONDITION):
    pass


class AbortedError(APIError, code=grpc.StatusCode.ABORTED):
    pass


class OutOfRangeError(APIError, code=grpc.StatusCode.OUT_OF_RANGE):
    pass


class RateLimitError(APIError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """A quota or rate limit was hit (or a message was too large)."""


class DeadlineExceededError(APIError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The call's deadline passed before it finished."""


class UnavailableError(APIError, code=grpc.StatusCode.UNAVAILABLE):
    """The service could not be reached or is overloaded; usually transient."""


class InternalServerError(APIError, code=grpc.StatusCode.INTERNAL):
    pass


class UnknownError(APIError, code=grpc.StatusCode.UNKNOWN):
    pass


class UnimplementedError(APIError, code=grpc.StatusCode.UNIMPLEMENTED):
    """The endpoint does not offer this method."""


class DataLossError(APIError, code=grpc.StatusCode.DATA_LOSS):
    pass


class CancelledError(APIError, code=grpc.StatusCode.CANCELLED):
    """The call was cancelled (by the caller, or an operation by someone)."""


class StreamInterruptedError(APIError):
    """A stream failed after some text had arrived; `partial` is the last alternative received.

    Raised as a subclass of the specific error too, so `except UnavailableError`
    still catches an interrupted stream.
    """

    partial: Alternative | None = None


class IncompleteStreamError(YandexGPTError):
    """The server ended a stream with OK but without a terminal alternative."""

    def __init__(self, message: str, *, partial: Alternative | None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.request_id = request_id


_interrupted: dict[type[APIError], type[StreamInterruptedError]] = {}


def _interrupted_class(base: type[APIError]) -> type[StreamInterruptedError]:
    cls = _interrupted.get(base)
    if cls is None:
        name = "StreamInterrupted" + base.__name__
        cls = type(name, (StreamInterruptedError, base), {"__module__": __name__})
        _interrupted[base] = cls
    return cls


def _pairs(md: Any) -> Metadata:
    if not md:
        return ()
    return tuple((str(k), v) for k, v in md)


def _lookup(md: Metadata, key: str) -> str | None:
    for k, v in md:
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
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


def error_class(code: grpc.StatusCode) -> type[APIError]:
    return APIError._by_code.get(code, APIError)


def from_rpc_error(
    exc: grpc.RpcError | grpc.aio.AioRpcError,
    *,
    partial: Alternative | None = None,
    operation_id: str | None = None,
) -> APIError:
    """Turn any grpc error into our tree; the caller raises it `from exc`."""
    code: grpc.StatusCode = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or ""
    initial = _pairs(exc.initial_metadata() if hasattr(exc, "initial_metadata") else None)
    trailing = _pairs(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None)
    metadata = initial + trailing
    cls = error_class(code)
    if partial is not None:
        cls = _interrupted_class(cls)
    try:
        status_details = _status_details(trailing)
    except Exception:  # a malformed trailer must not hide the real error
        status_details = []
    err = cls(
        details,
        code=code,
        request_id=_lookup(metadata, HEADER_REQUEST_ID),
        trace_id=_lookup(metadata, HEADER_TRACE_ID),
        metadata=metadata,
        status_details=status_details,
        operation_id=operation_id,
    )
    if partial is not None:
        assert isinstance(err, StreamInterruptedError)
        err.partial = partial
    return err


def pushback_ms(exc: grpc.RpcError | grpc.aio.AioRpcError) -> int | None:
    """The server's grpc-retry-pushback-ms, if it sent a well-formed one."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for k, v in trailing or ():
        if k == "grpc-retry-pushback-ms":
            try:
                return int(v)
            except (TypeError, ValueError):
                return None
    return None
