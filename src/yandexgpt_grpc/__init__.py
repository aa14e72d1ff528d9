"""yandexgpt-grpc: a small, fast gRPC client for the Yandex Cloud Foundation Models text-generation API.

Start with `Client` (blocking) or `AsyncClient` (asyncio); test your code against
`yandexgpt_grpc.testing.Emulator`.
"""

from typing import TYPE_CHECKING

from ._errors import (
    AbortedError,
    AlreadyExistsError,
    APIError,
    AuthenticationError,
    CancelledError,
    ClientClosedError,
    ConfigurationError,
    CredentialsError,
    DataLossError,
    DeadlineExceededError,
    EventLoopError,
    FailedPreconditionError,
    IncompleteStreamError,
    InternalServerError,
    InvalidArgumentError,
    MessageTooLargeError,
    MetadataTooLargeError,
    NotFoundError,
    OperationNotDoneError,
    OperationTimeoutError,
    OutOfRangeError,
    PermissionDeniedError,
    RateLimitError,
    StreamConsumedError,
    StreamInterruptedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    YandexGPTError,
)
from ._logging import RedactingFilter
from ._retry import RetryPolicy
from ._types import (
    NOT_GIVEN,
    Alternative,
    AlternativeStatus,
    CompletionResult,
    Message,
    Token,
    TokenizeResult,
    ToolCall,
    ToolResult,
    Usage,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._auth import (
        ApiKey,
        Credentials,
        IamToken,
        IamTokenProvider,
        MetadataService,
        ServiceAccountKey,
        default_credentials,
        resolve_credentials,
    )
    from ._batch import (
        BatchAborted,
        BatchDiskFullError,
        BatchLockedError,
        BatchOutageError,
        BatchProblem,
        BatchSummary,
        arun_batch,
        run_batch,
    )
    from ._client import Client
    from ._cloud_batch import CloudBatchError, CloudBatchSummary
    from ._cloud_http import ObjectStorageError
    from ._cloud_jobs import AsyncBatchJob, AsyncBatchJobs, BatchJob, BatchJobs, JobState
    from ._operations import AsyncOperation, Operation
    from ._streaming import AsyncCompletionStream, CompletionStream, TextReset
    from ._tools import FunctionTool, function_tool

# Clients, credentials, streams and batches pull in the generated stubs (and http, json_format, uuid...);
# loading them on first use keeps `import yandexgpt_grpc` close to the cost of `import grpc`.
_LAZY = {
    "AsyncClient": "_async_client",
    "ApiKey": "_auth",
    "Credentials": "_auth",
    "IamToken": "_auth",
    "IamTokenProvider": "_auth",
    "MetadataService": "_auth",
    "ServiceAccountKey": "_auth",
    "default_credentials": "_auth",
    "resolve_credentials": "_auth",
    "BatchAborted": "_batch",
    "BatchDiskFullError": "_batch",
    "BatchLockedError": "_batch",
    "BatchOutageError": "_batch",
    "BatchProblem": "_batch",
    "BatchSummary": "_batch",
    "arun_batch": "_batch",
    "run_batch": "_batch",
    "Client": "_client",
    "CloudBatchError": "_cloud_batch",
    "CloudBatchSummary": "_cloud_batch",
    "ObjectStorageError": "_cloud_http",
    "AsyncBatchJob": "_cloud_jobs",
    "AsyncBatchJobs": "_cloud_jobs",
    "BatchJob": "_cloud_jobs",
    "BatchJobs": "_cloud_jobs",
    "JobState": "_cloud_jobs",
    "AsyncOperation": "_operations",
    "Operation": "_operations",
    "AsyncCompletionStream": "_streaming",
    "CompletionStream": "_streaming",
    "TextReset": "_streaming",
    "FunctionTool": "_tools",
    "function_tool": "_tools",
}

__all__ = [
    "NOT_GIVEN",
    "APIError",
    "AbortedError",
    "AlreadyExistsError",
    "Alternative",
    "AlternativeStatus",
    "ApiKey",
    "AsyncBatchJob",
    "AsyncBatchJobs",
    "AsyncClient",
    "AsyncCompletionStream",
    "AsyncOperation",
    "AuthenticationError",
    "BatchAborted",
    "BatchDiskFullError",
    "BatchJob",
    "BatchJobs",
    "BatchLockedError",
    "BatchOutageError",
    "BatchProblem",
    "BatchSummary",
    "CancelledError",
    "Client",
    "ClientClosedError",
    "CloudBatchError",
    "CloudBatchSummary",
    "CompletionResult",
    "CompletionStream",
    "ConfigurationError",
    "Credentials",
    "CredentialsError",
    "DataLossError",
    "DeadlineExceededError",
    "EventLoopError",
    "FailedPreconditionError",
    "FunctionTool",
    "IamToken",
    "IamTokenProvider",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidArgumentError",
    "JobState",
    "Message",
    "MessageTooLargeError",
    "MetadataService",
    "MetadataTooLargeError",
    "NotFoundError",
    "ObjectStorageError",
    "Operation",
    "OperationNotDoneError",
    "OperationTimeoutError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedactingFilter",
    "RetryPolicy",
    "ServiceAccountKey",
    "StreamConsumedError",
    "StreamInterruptedError",
    "TextReset",
    "Token",
    "TokenizeResult",
    "ToolCall",
    "ToolResult",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "Usage",
    "YandexGPTError",
    "__version__",
    "arun_batch",
    "default_credentials",
    "function_tool",
    "resolve_credentials",
    "run_batch",
]

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))
