"""Every retry of every RPC: the policy, the rule, and the one loop per flavour that applies them.

Where is the retry rule? Here, in `CallRetry.retry_after`: it decides, for a failed attempt,
whether to wait and try again (and how long) or which error to raise. `call` (blocking) and
`acall` (asyncio) are the only retry loops in the package: every unary RPC, the opening of every
stream up to its first response, and every batch request go through one of them. They own the
authorization of each attempt, its deadline, its metadata (request id, attempt number), the
decision and the wait; a call site only says how to make one attempt and what to do with its answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import field, replace
from typing import TYPE_CHECKING, TypeVar, cast

import grpc

from ._constants import HEADER_ATTEMPT
from ._errors import (
    APIError,
    DeadlineExceededError,
    EventLoopError,
    from_rpc_error,
    is_permanent,
    pushback_ms,
    rpc_code,
    rpc_details,
)
from ._logging import log_rpc, logger
from ._public import public
from ._records import FACTORY, record

if TYPE_CHECKING:
    from ._auth import Credentials
    from ._base import ClientConfig, MetadataInput
    from ._channel import Headers
    from ._otel import CallSpan, Telemetry, _Off
    from ._types import Alternative

T = TypeVar("T")
R = TypeVar("R")  # the request an attempt sends
Metadata = tuple[tuple[str, str], ...]

# Looked up at call time so tests can replace them with a fake clock.
monotonic = time.monotonic
sleep = time.sleep
asleep = asyncio.sleep

_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# UNAUTHENTICATED gets exactly one retry, after a forced credential refresh, and only for refreshable
# credentials (see CallRetry); a policy cannot add more.
_NEVER = frozenset({grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED})
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED
_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
_DEBUG = logging.DEBUG

# yandexgpt_grpc.otel.instrument() puts its hooks here; while it is None (not instrumented) a call pays
# one test of it and nothing is imported or measured.
_hooks: Telemetry | None = None


@record(frozen=True)
class RetryPolicy:
    """How a call is retried.

    Only transient codes are retried (UNAVAILABLE, RESOURCE_EXHAUSTED other than an
    oversized message, and INTERNAL while no response has arrived). Waits use full
    jitter: a uniform draw from [0, min(max_backoff, initial_backoff * multiplier ** n)].
    A server's grpc-retry-pushback-ms replaces the draw; a negative or malformed one, or
    one beyond `max_pushback` seconds, stops retrying. Every attempt and wait fits in the
    call's deadline. `attempt_timeout` bounds one unary attempt, or a stream's wait for
    its first response; an attempt that runs out of it is retried while the deadline allows.
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

    def __init__(  # noqa: PLR0917 - the dataclass's positional order, kept
        self,
        max_attempts: int = 4,
        initial_backoff: float = 0.5,
        max_backoff: float = 8.0,
        multiplier: float = 2.0,
        attempt_timeout: float | None = None,
        max_pushback: float = 60.0,
        retry_codes: frozenset[grpc.StatusCode] = _TRANSIENT,
        retry_internal: bool = True,
        rng: random.Random = FACTORY,  # random.Random() when not given
    ) -> None:
        _set = object.__setattr__
        _set(self, "max_attempts", max_attempts)
        _set(self, "initial_backoff", initial_backoff)
        _set(self, "max_backoff", max_backoff)
        _set(self, "multiplier", multiplier)
        _set(self, "attempt_timeout", attempt_timeout)
        _set(self, "max_pushback", max_pushback)
        _set(self, "retry_codes", retry_codes)
        _set(self, "retry_internal", retry_internal)
        _set(self, "rng", random.Random() if rng is FACTORY else rng)
        self.__post_init__()

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("max_attempts must be an int >= 1 (1 means no retries)")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive or None")
        if self.max_pushback < 0:
            raise ValueError("max_pushback must be >= 0")
        if not all(isinstance(c, grpc.StatusCode) for c in self.retry_codes):
            raise TypeError("retry_codes must hold grpc.StatusCode members")
        if self.retry_codes & _NEVER:
            raise ValueError("retry_codes cannot include OK or UNAUTHENTICATED (credentials get one refresh, no more)")
        object.__setattr__(self, "retry_codes", frozenset(self.retry_codes))

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def with_max_retries(self, max_retries: int) -> RetryPolicy:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative int, got {max_retries!r}")
        return replace(self, max_attempts=max_retries + 1)

    def is_retryable(self, code: grpc.StatusCode, responded: bool = False) -> bool:
        if code in self.retry_codes:
            return True
        return self.retry_internal and not responded and code is grpc.StatusCode.INTERNAL

    def backoff(self, attempt: int) -> float:
        """Jittered wait before attempt number `attempt + 1` (attempt counts from 1)."""
        try:
            cap = self.initial_backoff * self.multiplier ** (attempt - 1)
        except OverflowError:
            cap = self.max_backoff
        return self.rng.uniform(0.0, min(cap, self.max_backoff))

    def next_delay(
        self,
        exc: grpc.RpcError | APIError | None,
        attempt: int,
        deadline: float | None,
        responded: bool = False,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now.

        `exc` is a grpc.RpcError (or an APIError); `deadline` is on the `monotonic` clock.
        """
        code = rpc_code(exc)
        if attempt >= self.max_attempts or not self.is_retryable(code, responded):
            return None
        if is_permanent(code, rpc_details(exc)):
            return None
        return self._wait(pushback_ms(exc.__cause__ if isinstance(exc, APIError) else exc), attempt, deadline)

    def _wait(self, push: int | None, attempt: int, deadline: float | None) -> float | None:
        if push is None:
            delay = self.backoff(attempt)
        elif push < 0 or push / 1000.0 > self.max_pushback:
            return None
        else:
            delay = push / 1000.0
        if deadline is not None and monotonic() + delay >= deadline:
            return None  # never sleep past the deadline, nor start an attempt with no time left
        return delay


DEFAULT_RETRY = RetryPolicy()
NO_RETRIES = RetryPolicy.no_retries()


class CallRetry:
    """The attempts of one logical call: numbering, deadline, waits and the one credential refresh.

    Both clients and both stream classes drive their loops with it, so the rules live in one
    place. The deadline starts with the first attempt (a stream's first iteration).
    """

    __slots__ = (
        "attempt",
        "config",
        "creds",
        "deadline",
        "extra",
        "first_response_timeout",
        "last",
        "limited",
        "method",
        "operation_id",
        "policy",
        "refreshed",
        "request_id",
        "span",
        "started",
        "stream",
        "timeout",
    )

    def __init__(  # noqa: PLR0917 - made on every call; passed positionally (keywords cost ~3 k instructions)
        self,
        policy: RetryPolicy,
        timeout: float | None,
        creds: Credentials,
        method: str,
        request_id: str,
        stream: bool = False,
        config: ClientConfig | None = None,
        metadata: MetadataInput = None,
        operation_id: str | None = None,
    ) -> None:
        self.config = config
        self.operation_id = operation_id  # set on the errors of OperationService calls
        self.extra = metadata  # the call's own metadata=, checked again per attempt (cheap: usually None)
        self.policy = policy
        self.timeout = timeout
        self.creds = creds
        self.method = method
        self.request_id = request_id
        self.stream = stream
        self.deadline: float | None = None
        self.attempt = 0
        self.refreshed = False
        self.limited = False
        self.first_response_timeout: float | None = None
        self.started: float | None = None
        self.last: BaseException | None = None
        self.span: CallSpan | _Off | None = None  # the call's telemetry while instrumented (see yandexgpt_grpc.otel)

    def start(self) -> float | None:
        """Begin the next attempt and return the grpc timeout to give it.

        Raises DeadlineExceededError when the call's deadline has already passed (a slow
        token refresh, or a wait that overslept), instead of starting a doomed attempt.
        """
        self.attempt += 1
        self.started = time.perf_counter() if logger.isEnabledFor(_DEBUG) else None
        per_attempt = self.policy.attempt_timeout
        if self.timeout is None:
            left = None
        else:
            now = monotonic()
            if self.deadline is None:
                self.deadline = now + self.timeout
            left = self.deadline - now
            if left <= 0:
                err = DeadlineExceededError(
                    f"the call's deadline ({self.timeout:g}s) passed before attempt {self.attempt} could start",
                    attempts=self.attempt - 1,
                    operation_id=self.operation_id,
                )
                err.__cause__ = self.last
                raise err
        self.limited = per_attempt is not None and (left is None or per_attempt < left)
        if self.stream:
            # A stream's attempt ends with its first response; after that only the deadline applies.
            self.first_response_timeout = per_attempt if self.limited else None
            return left
        return per_attempt if self.limited else left

    def retried(self, md: Metadata) -> Metadata:
        """A retry's metadata: the first attempt's plus the attempt number."""
        return (*md, (HEADER_ATTEMPT, str(self.attempt)))

    def retry_after(
        self, exc: grpc.RpcError | None, rejected: str, *, responded: bool = False, timed_out: bool = False
    ) -> float:
        """THE retry rule: seconds to wait before the next attempt (0: at once), or raise the call's error.

        `exc` is the attempt's grpc.RpcError (None when it timed out before grpc said anything);
        `rejected` the authorization it sent; `responded` that a response had arrived (INTERNAL is
        then not retried); `timed_out` that it ran out of the policy's attempt_timeout.
        """
        if exc is None:
            self.finished(_DEADLINE)
        else:
            self.failed(exc)
        delay = self.delay(exc, rejected, responded, timed_out)
        if delay is None:
            err = self.failure(exc, timed_out=timed_out)
            raise err from err.__cause__  # grpc's error, or its redacted stand-in
        if self.span is not None:
            self.span.retrying(self, exc, delay, timed_out)
        return delay

    def after_failure(
        self,
        exc: grpc.RpcError | AttemptFailed,
        rejected: str,
        on_error: Callable[[grpc.RpcError | None], object] | None,
    ) -> float:
        """What both drivers do with a failed attempt: show its error to `on_error`, then apply `retry_after`."""
        if isinstance(exc, AttemptFailed):
            error, responded, timed_out = exc.error, exc.responded, exc.timed_out
        else:
            error, responded, timed_out = exc, False, False
        if on_error is not None:
            on_error(error)
        return self.retry_after(error, rejected, responded=responded, timed_out=timed_out)

    def delay(
        self, exc: grpc.RpcError | None, rejected: str, responded: bool = False, timed_out: bool = False
    ) -> float | None:
        """Seconds to wait before the next attempt (0: at once), or None to give up.

        `rejected` is the authorization value the failed attempt sent; `timed_out` says the
        attempt ran out of the policy's attempt_timeout (for a stream: no first response).
        """
        self.last = exc
        code = _DEADLINE if timed_out else rpc_code(exc)
        if code is _UNAUTHENTICATED:
            if self.refreshed or not self.creds.refreshable:
                return None
            self.refreshed = True
            self.creds.invalidate(rejected)
            logger.info("%s: credentials refused, refreshing them for one more attempt", self.method)
            return 0.0
        policy = self.policy
        used = self.attempt - self.refreshed  # the forced refresh does not use up the retry budget
        if code is _DEADLINE and self.limited:
            delay = None if used >= policy.max_attempts else policy._wait(None, used, self.deadline)
        else:
            delay = policy.next_delay(exc, used, self.deadline, responded)
        if delay is not None:
            logger.info(
                "%s failed with %s (attempt %d of %d, client_request_id=%s); retrying in %.3fs",
                self.method,
                code.name,
                used,
                policy.max_attempts,
                self.request_id,
                delay,
            )
        return delay

    def failure(
        self, exc: grpc.RpcError | None, partial: Alternative | None = None, timed_out: bool = False
    ) -> APIError:
        """The error to raise (`from` its `__cause__`) for an attempt the call will not retry."""
        if timed_out:
            err: APIError = DeadlineExceededError(
                f"no response within the attempt timeout ({self.policy.attempt_timeout:g}s)",
                attempts=self.attempt,
                operation_id=self.operation_id,
            )
            err.__cause__ = exc
            return err
        assert exc is not None, "only a timed-out attempt comes without a grpc error"
        return from_rpc_error(
            exc,
            partial=partial,
            attempts=self.attempt,
            operation_id=self.operation_id,
            secrets=self.creds.sent_secrets(),
        )

    def finished(self, code: grpc.StatusCode, md: Headers = ()) -> None:
        """The DEBUG record of one RPC; nothing to do unless DEBUG was on when it started."""
        if self.started is not None:
            log_rpc(self.method, code, self.started, self.attempt, self.request_id, md=md)

    def failed(self, exc: grpc.RpcError) -> None:
        if self.started is not None:
            call = cast("grpc.Call", exc)  # grpc's errors are its call objects too (typeshed: only RpcError)
            md = (*(call.initial_metadata() or ()), *(call.trailing_metadata() or ()))
            log_rpc(self.method, rpc_code(exc), self.started, self.attempt, self.request_id, md=md)


class AttemptFailed(Exception):
    """Raised by an attempt to tell the driver more than its grpc error says (rare paths only)."""

    def __init__(self, error: grpc.RpcError | None, *, responded: bool = False, timed_out: bool = False) -> None:
        super().__init__(error)
        self.error = error  # the grpc.RpcError, or None for an attempt timed out before grpc spoke
        self.responded = responded
        self.timed_out = timed_out


def check_no_running_loop() -> None:
    """Refuse the one case where a blocking call inside a running event loop would deadlock.

    Ordinary blocking use inside a running loop (a notebook) is allowed. But a token
    coroutine may need this very loop, which the blocking call keeps from running.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise EventLoopError(
        "this Client fetches tokens with a coroutine function, and it was called inside a running asyncio "
        "event loop, which the blocking call would stall while the coroutine may need it (a deadlock): "
        "use AsyncClient here, or run the call in a worker thread (await asyncio.to_thread(client.complete, ...))"
    )


def _authorize(creds: Credentials) -> str:
    if creds.needs_event_loop:
        check_no_running_loop()
    return creds.authorization()


def call(
    tries: CallRetry,
    attempt: Callable[[CallRetry, R, float | None, Metadata], T],
    request: R,
    before: Callable[[], object] | None = None,
    on_error: Callable[[grpc.RpcError | None], object] | None = None,
) -> T:
    """Run one logical blocking call: `attempt(tries, request, timeout, metadata)` until it answers or gives up.

    `attempt` makes one RPC and returns what the caller wants from its answer; it raises the
    grpc.RpcError of a failed RPC (or AttemptFailed for a timed-out or half-answered one). `before`
    runs ahead of every attempt, `on_error` sees every failed attempt's error (a rate limiter's hooks).
    """
    if _hooks is not None and tries.span is None:  # instrumented: open the call's span, which comes back here
        return _hooks.call(tries, attempt, request, before, on_error)  # type: ignore[no-any-return]
    creds, cfg, request_id, extra = tries.creds, tries.config, tries.request_id, tries.extra
    assert cfg is not None, "a CallRetry made without a ClientConfig cannot drive a call"
    while True:
        if before is not None:
            before()
        auth = creds.static_authorization or _authorize(creds)
        timeout = tries.start()
        md = cfg.metadata(auth, request_id, extra)
        try:
            return attempt(tries, request, timeout, md if tries.attempt == 1 else tries.retried(md))
        except (grpc.RpcError, AttemptFailed) as exc:
            delay = tries.after_failure(exc, auth, on_error)
        if delay:
            sleep(delay)


async def acall(
    tries: CallRetry,
    attempt: Callable[[CallRetry, R, float | None, Metadata], Awaitable[T]],
    request: R,
    before: Callable[[], Awaitable[object]] | None = None,
    on_error: Callable[[grpc.RpcError | None], object] | None = None,
) -> T:
    """The asyncio twin of `call`: the same loop, with the attempt, the token and the wait awaited."""
    if _hooks is not None and tries.span is None:  # instrumented: open the call's span, which comes back here
        return await _hooks.acall(tries, attempt, request, before, on_error)  # type: ignore[no-any-return]
    creds, cfg, request_id, extra = tries.creds, tries.config, tries.request_id, tries.extra
    assert cfg is not None, "a CallRetry made without a ClientConfig cannot drive a call"
    while True:
        if before is not None:
            await before()
        auth = creds.static_authorization or await creds.aauthorization()
        timeout = tries.start()
        md = cfg.metadata(auth, request_id, extra)
        try:
            return await attempt(tries, request, timeout, md if tries.attempt == 1 else tries.retried(md))
        except (grpc.RpcError, AttemptFailed) as exc:
            delay = tries.after_failure(exc, auth, on_error)
        if delay:
            await asleep(delay)


public(RetryPolicy)
