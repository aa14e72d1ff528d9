"""RetryPolicy and CallRetry on their own: validation, backoff, deadlines, the credential refresh."""

from __future__ import annotations

import dataclasses
import random
import statistics

import grpc
import pytest

from tests._clock import ManualClock as FakeClock
from yandexgpt_grpc import (
    ApiKey,
    DeadlineExceededError,
    IamTokenProvider,
    InternalServerError,
    InvalidArgumentError,
    MessageTooLargeError,
    RateLimitError,
    RetryPolicy,
    UnavailableError,
    _retry,
)
from yandexgpt_grpc._retry import CallRetry


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(100.0)
    monkeypatch.setattr(_retry, "monotonic", fake)
    return fake


class Top(random.Random):
    """Always draws the top of the jitter interval, so the cap is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": True}, ValueError),
        ({"initial_backoff": -1}, ValueError),
        ({"multiplier": 0.5}, ValueError),
        ({"attempt_timeout": 0}, ValueError),
        ({"max_pushback": -1}, ValueError),
        ({"retry_codes": frozenset({grpc.StatusCode.UNAUTHENTICATED})}, ValueError),
        ({"retry_codes": frozenset({grpc.StatusCode.OK})}, ValueError),
        ({"retry_codes": frozenset({14})}, TypeError),
    ],
)
def test_policy_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen_and_comparable() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 9  # type: ignore[misc]
    assert RetryPolicy(rng=random.Random(1)) == RetryPolicy(rng=random.Random(2))
    assert policy.with_max_retries(0).max_attempts == 1
    assert policy.with_max_retries(5) == dataclasses.replace(policy, max_attempts=6)
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="max_retries"):
            policy.with_max_retries(bad)  # type: ignore[arg-type]


def test_defaults_are_a_few_attempts_from_half_a_second_to_eight() -> None:
    policy = RetryPolicy(rng=Top())
    assert policy.max_attempts == 4
    assert [policy.backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_never_overflows() -> None:
    policy = RetryPolicy(rng=Top(), multiplier=10.0, max_backoff=3.0)
    assert policy.backoff(10_000) == 3.0


def test_full_jitter_spreads_over_the_whole_interval() -> None:
    policy = RetryPolicy(rng=random.Random(7))
    draws = [policy.backoff(3) for _ in range(2000)]
    assert 0.0 <= min(draws) < 0.1 and 1.9 < max(draws) <= 2.0
    assert 0.9 < statistics.mean(draws) < 1.1


def test_which_errors_are_retried(clock: FakeClock) -> None:
    policy = RetryPolicy(rng=Top())
    unavailable = UnavailableError("down")
    assert policy.next_delay(unavailable, 1, None) == 0.5
    assert policy.next_delay(RateLimitError("slow down"), 2, None) == 1.0
    assert policy.next_delay(InternalServerError("oops"), 1, None) == 0.5
    assert policy.next_delay(InternalServerError("oops"), 1, None, responded=True) is None
    assert RetryPolicy(retry_internal=False).next_delay(InternalServerError("oops"), 1, None) is None
    assert policy.next_delay(InvalidArgumentError("bad"), 1, None) is None
    assert policy.next_delay(unavailable, 4, None) is None  # the fourth attempt was the last
    too_large = MessageTooLargeError("Received message larger than max (5 vs. 4)")
    assert too_large.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert policy.next_delay(too_large, 1, None) is None
    untrusted = UnavailableError("Ssl handshake failed: CERTIFICATE_VERIFY_FAILED")
    assert policy.next_delay(untrusted, 1, None) is None


def test_waits_never_reach_the_deadline(clock: FakeClock) -> None:
    policy = RetryPolicy(rng=Top())
    assert policy.next_delay(UnavailableError("down"), 3, deadline=clock.now + 2.01) == 2.0
    assert policy.next_delay(UnavailableError("down"), 3, deadline=clock.now + 2.0) is None


def test_pushback_rules(clock: FakeClock) -> None:
    policy = RetryPolicy(max_pushback=10.0)
    assert policy._wait(300, 1, None) == 0.3
    assert policy._wait(0, 1, None) == 0.0
    assert policy._wait(-1, 1, None) is None
    assert policy._wait(10_001, 1, None) is None
    assert policy._wait(5_000, 1, clock.now + 4.0) is None


def test_call_deadline_starts_with_the_first_attempt(clock: FakeClock) -> None:
    tries = CallRetry(RetryPolicy(), 10.0, ApiKey("k"), "Completion", "rid")
    clock.now += 50  # time passes before the first attempt (a stream not iterated yet)
    assert tries.start() == 10.0
    assert tries.deadline == clock.now + 10.0 and tries.attempt == 1
    clock.now += 4
    assert tries.start() == 6.0


def test_no_attempt_starts_after_the_deadline(clock: FakeClock) -> None:
    tries = CallRetry(RetryPolicy(), 1.0, ApiKey("k"), "Completion", "rid")
    tries.start()
    last = UnavailableError("down")
    assert tries.delay(last, "Api-Key k") is not None
    clock.now += 1.0
    with pytest.raises(DeadlineExceededError) as info:
        tries.start()
    assert info.value.__cause__ is last and info.value.attempts == 1


def test_per_attempt_timeout_unary_and_stream(clock: FakeClock) -> None:
    policy = RetryPolicy(attempt_timeout=2.0, rng=Top())
    unary = CallRetry(policy, 5.0, ApiKey("k"), "Completion", "rid")
    assert unary.start() == 2.0 and unary.limited
    timed_out = DeadlineExceededError("attempt ran out")
    assert unary.delay(timed_out, "Api-Key k") == 0.5  # the attempt's own timeout: worth another try
    clock.now += 4.0
    assert unary.start() == 1.0 and not unary.limited  # the call's deadline is now the tighter one
    assert unary.delay(timed_out, "Api-Key k") is None
    stream = CallRetry(policy, 5.0, ApiKey("k"), "Completion", "rid", stream=True)
    assert stream.start() == 5.0  # a stream's attempt may run to the deadline once it answers
    assert stream.first_response_timeout == 2.0
    assert stream.delay(None, "Api-Key k", timed_out=True) == 0.5
    err = stream.failure(None, timed_out=True)
    assert isinstance(err, DeadlineExceededError) and "attempt timeout (2s)" in str(err)
    no_deadline = CallRetry(RetryPolicy(), None, ApiKey("k"), "Completion", "rid", stream=True)
    assert no_deadline.start() is None and no_deadline.first_response_timeout is None


def test_unauthenticated_gets_one_refresh_only_for_refreshable_credentials() -> None:
    from yandexgpt_grpc import AuthenticationError

    refused = AuthenticationError("expired")
    static = CallRetry(RetryPolicy(), None, ApiKey("k"), "Completion", "rid")
    static.start()
    assert static.delay(refused, "Api-Key k") is None

    fetched: list[int] = []
    provider = IamTokenProvider(lambda: f"token-{len(fetched)}" if not fetched.append(1) else "")
    header = provider.authorization()
    tries = CallRetry(RetryPolicy(max_attempts=2), None, provider, "Completion", "rid")
    tries.start()
    assert tries.delay(refused, header) == 0.0  # refresh at once
    assert provider.authorization() != header  # the refused token was dropped
    tries.start()
    assert tries.delay(UnavailableError("down"), header) is not None  # the refresh used no retry budget
    tries.start()
    assert tries.delay(refused, provider.authorization()) is None  # never a second refresh
    assert len(fetched) == 2
