"""Retry policy: which failures are worth another attempt, and how long to wait."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import grpc

from ._errors import pushback_ms

# Looked up at call time so tests can replace them with a fake clock.
monotonic = time.monotonic
sleep = time.sleep
asleep = asyncio.sleep

_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried.

    Only transient codes are retried (UNAVAILABLE, RESOURCE_EXHAUSTED, and INTERNAL
    while no response has reached the caller). Waits use full jitter: a uniform
    draw from [0, min(max_backoff, initial_backoff * multiplier ** n)]. A server's
    grpc-retry-pushback-ms replaces the draw; a negative one, or one beyond
    `max_pushback`, stops retrying. Every attempt and wait fits in the call's deadline.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    multiplier: float = 2.0
    attempt_timeout: float | None = None
    max_pushback: float = 60.0
    retry_codes: frozenset[grpc.StatusCode] = _TRANSIENT
    retry_internal: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (1 means no retries)")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive or None")

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def with_max_retries(self, max_retries: int) -> RetryPolicy:
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative int, got {max_retries!r}")
        from dataclasses import replace

        return replace(self, max_attempts=max_retries + 1)

    def is_retryable(self, code: grpc.StatusCode, responded: bool) -> bool:
        if responded:
            return False
        if code in self.retry_codes:
            return True
        return self.retry_internal and code is grpc.StatusCode.INTERNAL

    def backoff(self, attempt: int) -> float:
        """Jittered wait before attempt number `attempt + 1` (attempt counts from 1)."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return self.rng.uniform(0.0, cap)

    def next_delay(
        self,
        exc: grpc.RpcError,
        attempt: int,
        deadline: float | None,
        responded: bool = False,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if attempt >= self.max_attempts:
            return None
        code = exc.code() if hasattr(exc, "code") else None
        if code is None or not self.is_retryable(code, responded):
            return None
        push = pushback_ms(exc)
        if push is not None:
            if push < 0 or push / 1000.0 > self.max_pushback:
                return None
            delay = push / 1000.0
        else:
            delay = self.backoff(attempt)
        if deadline is not None and monotonic() + delay >= deadline:
            return None
        return delay

    def attempt_timeout_for(self, deadline: float | None) -> float | None:
        """Timeout of one attempt: what is left of the deadline, capped by attempt_timeout."""
        if deadline is None:
            return self.attempt_timeout
        left = deadline - monotonic()
        if self.attempt_timeout is not None and self.attempt_timeout < left:
            return self.attempt_timeout
        return left


DEFAULT_RETRY = RetryPolicy()
