"""The public surface is exactly what we mean to export: adding or dropping a name is a decision."""

from __future__ import annotations

import importlib
import pkgutil

import yandexgpt_grpc
import yandexgpt_grpc.testing

PACKAGE = {
    "NOT_GIVEN",
    "APIError",
    "AbortedError",
    "AlreadyExistsError",
    "Alternative",
    "AlternativeStatus",
    "ApiKey",
    "AsyncClient",
    "AsyncCompletionStream",
    "AsyncOperation",
    "AuthenticationError",
    "BatchDiskFullError",
    "BatchOutageError",
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
    "FunctionTool",
    "IamToken",
    "IamTokenProvider",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidArgumentError",
    "Message",
    "MessageTooLargeError",
    "MetadataService",
    "MetadataTooLargeError",
    "NotFoundError",
    "Operation",
    "OperationTimeoutError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedactingFilter",
    "RetryPolicy",
    "ServiceAccountKey",
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
}

TESTING = {
    "DEFAULT_MODELS",
    "METHODS",
    "MODEL_VERSIONS",
    "CapturedCall",
    "Emulator",
    "Fault",
    "IamService",
    "IssuedToken",
    "OperationScript",
    "Reply",
    "sample_value",
    "tokenize",
}


def test_package_exports_are_pinned() -> None:
    assert set(yandexgpt_grpc.__all__) == PACKAGE
    assert len(yandexgpt_grpc.__all__) == len(PACKAGE)  # no duplicates


def test_testing_exports_are_pinned() -> None:
    assert set(yandexgpt_grpc.testing.__all__) == TESTING
    for name in TESTING:
        assert getattr(yandexgpt_grpc.testing, name) is not None


def test_implementation_modules_are_private() -> None:
    """Everything but the entry points lives in _modules behind __init__."""
    public = {m.name for m in pkgutil.iter_modules(yandexgpt_grpc.__path__) if not m.name.startswith("_")}
    assert public == {"cli", "demo", "langchain", "testing"}
    for name in public:
        importlib.import_module(f"yandexgpt_grpc.{name}")


def test_langchain_module_exports() -> None:
    """An optional extra: public, but only its chat model."""
    module = importlib.import_module("yandexgpt_grpc.langchain")
    assert module.__all__ == ["ChatYandexGPT"]


def test_errors_derive_from_one_base() -> None:
    for name in PACKAGE:
        obj = getattr(yandexgpt_grpc, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, yandexgpt_grpc.YandexGPTError), name
