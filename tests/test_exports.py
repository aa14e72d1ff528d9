"""The public surface is exactly what we mean to export: adding or dropping a name is a decision."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import yandexgpt_grpc
import yandexgpt_grpc.testing

PACKAGE = {
    "AsyncBatchJob",
    "AsyncBatchJobs",
    "BatchJob",
    "BatchJobs",
    "CloudBatchError",
    "CloudBatchSummary",
    "JobState",
    "ObjectStorageError",
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
    "BatchAborted",
    "BatchDiskFullError",
    "BatchLockedError",
    "BatchOutageError",
    "BatchProblem",
    "BatchSummary",
    "CancelledError",
    "ClientClosedError",
    "Client",
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
    "Message",
    "MessageTooLargeError",
    "MetadataService",
    "MetadataTooLargeError",
    "NotFoundError",
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
}

TESTING = {
    "BatchEngineService",
    "ObjectStore",
    "Schedule",
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


def test_errors_outside_the_api_keep_their_builtin_base() -> None:
    """`except ValueError` / `except RuntimeError` written before these joined the tree still catch them."""
    pinned = {
        "ConfigurationError": ValueError,
        "ClientClosedError": RuntimeError,
        "StreamConsumedError": RuntimeError,
        "EventLoopError": RuntimeError,
        "OperationNotDoneError": RuntimeError,
        "OperationTimeoutError": TimeoutError,
    }
    for name, builtin in pinned.items():
        cls = getattr(yandexgpt_grpc, name)
        assert cls.__mro__[1:3] == (yandexgpt_grpc.YandexGPTError, builtin), name


def _public_classes() -> list[type]:
    return [obj for name in PACKAGE if isinstance(obj := getattr(yandexgpt_grpc, name), type)]


def test_public_classes_print_under_the_package() -> None:
    """Tracebacks and reprs say yandexgpt_grpc.NotFoundError, not the private module that defines it."""
    classes = _public_classes()
    assert len(classes) > 40
    for cls in classes:
        assert cls.__module__ == "yandexgpt_grpc", cls
        assert getattr(yandexgpt_grpc, cls.__qualname__) is cls
    assert repr(yandexgpt_grpc.NotFoundError) == "<class 'yandexgpt_grpc.NotFoundError'>"


def test_public_values_and_errors_pickle() -> None:
    from yandexgpt_grpc import (
        Alternative,
        AlternativeStatus,
        BatchProblem,
        CredentialsError,
        Message,
        NotFoundError,
        OperationTimeoutError,
        RetryPolicy,
        TextReset,
        Token,
        ToolCall,
        Usage,
    )

    for cls in _public_classes():  # every class by reference
        assert pickle.loads(pickle.dumps(cls)) is cls
    values = [
        Alternative("hi", "hi", AlternativeStatus.FINAL, 0, False, ()),
        AlternativeStatus.PARTIAL,
        BatchProblem(3, "bad"),
        Message("user", "hi"),
        RetryPolicy(max_attempts=2),
        TextReset("x"),
        Token(1, "a", False),
        ToolCall("f", {"a": 1}),
        Usage(1, 2, 3),
    ]
    for value in values:
        assert pickle.loads(pickle.dumps(value)) == value, value
    err = pickle.loads(pickle.dumps(NotFoundError("gone", request_id="rid", attempts=2)))
    assert (
        type(err) is NotFoundError
        and err.request_id == "rid"
        and str(err) == "NOT_FOUND: gone (request_id=rid, after 2 attempts)"
    )
    assert pickle.loads(pickle.dumps(OperationTimeoutError("late", operation_id="op"))).operation_id == "op"
    assert str(pickle.loads(pickle.dumps(CredentialsError("no token")))) == "no token"


def test_moved_errors_stay_importable_from_their_old_modules() -> None:
    from yandexgpt_grpc import _auth, _auth_base, _errors, _operations

    assert _auth.CredentialsError is _auth_base.CredentialsError is _errors.CredentialsError
    assert _operations.OperationTimeoutError is _errors.OperationTimeoutError
    assert yandexgpt_grpc.CredentialsError is _errors.CredentialsError


def test_errors_with_required_keywords_pickle() -> None:
    from yandexgpt_grpc import Alternative, AlternativeStatus, IncompleteStreamError

    partial = Alternative("hi", "hi", AlternativeStatus.PARTIAL, 0, False, ())
    err = pickle.loads(pickle.dumps(IncompleteStreamError("cut", partial=partial, request_id="r")))
    assert (str(err), err.partial, err.request_id) == ("cut", partial, "r")
