"""The exception tree, its one mapping point, and the redaction of credentials from log records."""

from __future__ import annotations

import inspect
import logging
import pickle

import grpc
import pytest

import yandexgpt_grpc
from yandexgpt_grpc import (
    AbortedError,
    APIError,
    CancelledError,
    IncompleteStreamError,
    InternalServerError,
    MessageTooLargeError,
    MetadataTooLargeError,
    RateLimitError,
    RedactingFilter,
    StreamInterruptedError,
    UnavailableError,
    YandexGPTError,
    _errors,
    _logging,
)
from yandexgpt_grpc.testing import Emulator, Fault

from .conftest import Harness


def test_every_status_code_has_its_own_class() -> None:
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        cls = _errors.error_class(code)
        assert cls is not APIError and issubclass(cls, APIError), code
        assert cls(details="x").code is code
        assert cls.__name__ in yandexgpt_grpc.__all__
    assert _errors.error_class(grpc.StatusCode.RESOURCE_EXHAUSTED) is RateLimitError
    assert issubclass(APIError, YandexGPTError) and issubclass(IncompleteStreamError, YandexGPTError)


def test_interrupted_variants_are_both_kinds_and_have_real_names() -> None:
    bases = [*APIError._by_code.values(), APIError, MessageTooLargeError, MetadataTooLargeError]
    assert set(_errors._INTERRUPTED) == set(bases) and len(bases) == 19
    source = inspect.getsource(_errors)
    for base in bases:
        variant = _errors._INTERRUPTED[base]
        assert issubclass(variant, StreamInterruptedError) and issubclass(variant, base)
        assert variant.__name__ == "StreamInterrupted" + base.__name__
        assert getattr(_errors, variant.__name__) is variant
        # a static definition in the module (visible to type checkers), not one built with type()
        assert f"\nclass {variant.__name__}(StreamInterruptedError, {base.__name__})" in source
    assert _errors.StreamInterruptedUnavailableError.__qualname__ == "StreamInterruptedUnavailableError"
    assert pickle.loads(pickle.dumps(_errors.StreamInterruptedUnavailableError)) is (
        _errors.StreamInterruptedUnavailableError
    )
    err = _errors.StreamInterruptedNotFoundError("gone")
    assert err.code is grpc.StatusCode.NOT_FOUND and type(pickle.loads(pickle.dumps(err))) is type(err)


def test_str_names_code_details_request_and_attempts() -> None:
    err = UnavailableError("the backend\tis\r\ndown ☺", request_id="rid-1", attempts=3)
    assert str(err) == "UNAVAILABLE: the backend\tis\r\ndown ☺ (request_id=rid-1, after 3 attempts)"
    assert repr(err) == "UnavailableError(code=UNAVAILABLE, details='the backend\\tis\\r\\ndown ☺', request_id='rid-1')"
    assert str(CancelledError("stop")) == "CANCELLED: stop"
    hinted = UnavailableError("CERTIFICATE_VERIFY_FAILED", hint="pass root_certificates=")
    assert str(hinted).endswith("; pass root_certificates=")


def test_metadata_is_initial_then_trailing() -> None:
    err = InternalServerError(
        "x", initial_metadata=(("a", "1"),), trailing_metadata=(("b-bin", b"\x00"), ("x-request-id", "r"))
    )
    assert err.metadata == (("a", "1"), ("b-bin", b"\x00"), ("x-request-id", "r"))
    assert _errors.find_header(err.metadata, "b-bin") == "\x00"
    assert _errors.find_header(None, "a") is None


def test_too_large_and_untrusted_are_recognised() -> None:
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _errors.is_permanent(exhausted, "CLIENT: Received message larger than max (5242930 vs. 4194304)")
    assert not _errors.is_permanent(exhausted, "quota exceeded: 10 requests per second")
    assert _errors.is_permanent(grpc.StatusCode.UNAVAILABLE, "Ssl handshake failed: CERTIFICATE_VERIFY_FAILED")
    assert not _errors.is_permanent(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")


@pytest.mark.parametrize("after", [0, 1])
async def test_errors_are_raised_from_the_rpc_error(harness: Harness, emu: Emulator, after: int) -> None:
    """One mapping point for call-time and mid-stream errors; the grpc error stays the cause."""
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.ABORTED, details="try again later", after=after))
    with pytest.raises(AbortedError) as info:
        await harness.collect("yandexgpt-lite", "hi")
    err = info.value
    assert isinstance(err.__cause__, grpc.RpcError)
    assert err.code is err.__cause__.code() is grpc.StatusCode.ABORTED
    assert err.details == err.__cause__.details() == "try again later"
    assert err.request_id == emu.calls[0].request_id
    assert isinstance(err, StreamInterruptedError) is bool(after)


# --- redaction ---------------------------------------------------------------------------------

IAM = "t1.9euelZqRjJ2Zk5GQyZyQx5aKm5CPyu3rnpWanZKNnZ6RnJ-MkZ2JjJGUju_8." + "A" * 86
API_KEY = "AQVN1HHJReSrfo9jU3aopsXrJyfq_UHsssT5ICtm"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("authorization: Api-Key my-secret-key", "my-secret-key"),
        ("(('authorization', 'Bearer abc.def-ghi'),)", "abc.def-ghi"),
        ("header=bearer%20token123", "token123"),
        (f"token {IAM} leaked", IAM),
        (f"key={API_KEY}", API_KEY),
    ],
)
def test_redact(text: str, secret: str) -> None:
    out = _logging.redact(text)
    assert secret not in out and "<redacted>" in out


def test_redact_leaves_ordinary_text_alone() -> None:
    text = 'rpc Completion code=OK request_id=7b1c… "You said: hi" t1 AQVN'
    assert _logging.redact(text) == text


def test_the_filter_covers_child_loggers_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = "s3cr3t" + "-token"  # built, so no source line shown in a stack holds it
    for name in ("yandexgpt_grpc", "yandexgpt_grpc.auth", "yandexgpt_grpc.testing"):
        log = logging.getLogger(name)
        log.debug("sent %s", ("authorization", "Api-Key s3cr3t-key"))
        try:
            raise RuntimeError(f"refused Bearer {token}")
        except RuntimeError:
            log.exception("failed with Bearer %s", token, stack_info=True)
    assert len(caplog.records) == 6
    assert "s3cr3t" not in caplog.text
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)
    own = logging.getLogger("yandexgpt_grpc.something_new")
    assert _logging.get_logger("yandexgpt_grpc.something_new") is own
    assert any(isinstance(f, RedactingFilter) for f in own.filters)
    _logging.get_logger("yandexgpt_grpc.something_new")
    assert sum(isinstance(f, RedactingFilter) for f in own.filters) == 1


def test_the_filter_survives_a_bad_format_string(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.LogRecord("yandexgpt_grpc", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert RedactingFilter().filter(record) is True
