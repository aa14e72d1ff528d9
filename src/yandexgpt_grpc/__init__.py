"""yandexgpt-grpc: a small, fast gRPC client for the Yandex Cloud Foundation Models text-generation API.

Start with `Client` (blocking) or `AsyncClient` (asyncio); test your code against
`yandexgpt_grpc.testing.Emulator`.
"""

from ._async_client import AsyncClient
from ._auth import (
    ApiKey,
    Credentials,
    CredentialsError,
    IamToken,
    IamTokenProvider,
    MetadataService,
    ServiceAccountKey,
    default_credentials,
    resolve_credentials,
)
from ._batch import BatchProblem, BatchSummary, arun_batch, run_batch
from ._client import Client
from ._errors import (
    AbortedError,
    AlreadyExistsError,
    APIError,
    AuthenticationError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    IncompleteStreamError,
    InternalServerError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RateLimitError,
    StreamInterruptedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    YandexGPTError,
)
from ._retry import RetryPolicy
from ._streaming import AsyncCompletionStream, CompletionStream, TextReset
from ._types import (
    NOT_GIVEN,
    Alternative,
    AlternativeStatus,
    CompletionResult,
    Message,
    ToolCall,
    ToolResult,
    Usage,
)
from ._version import __version__

__all__ = [
    "NOT_GIVEN",
    "APIError",
    "AbortedError",
    "AlreadyExistsError",
    "Alternative",
    "AlternativeStatus",
    "ApiKey",
    "AsyncClient",
    "AsyncCompletionStream",
    "AuthenticationError",
    "BatchProblem",
    "BatchSummary",
    "CancelledError",
    "Client",
    "CompletionResult",
    "CompletionStream",
    "Credentials",
    "CredentialsError",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "IamToken",
    "IamTokenProvider",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidArgumentError",
    "Message",
    "MetadataService",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "ServiceAccountKey",
    "StreamInterruptedError",
    "TextReset",
    "ToolCall",
    "ToolResult",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "Usage",
    "YandexGPTError",
    "__version__",
    "default_credentials",
    "arun_batch",
    "resolve_credentials",
    "run_batch",
]
