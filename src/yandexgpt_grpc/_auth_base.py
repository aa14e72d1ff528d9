"""The credentials interface and the caching, single-flight refresh core shared by token sources.

Kept apart from ``_auth.py`` so the service-account and metadata modules can build on it without an
import cycle; users import everything from ``yandexgpt_grpc``.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import ClassVar, Final

from ._errors import CredentialsError  # its home is _errors; importable from here as before
from ._public import public
from ._records import record

__all__ = ["Clock", "Credentials", "CredentialsError", "RefreshingCredentials", "Token"]

Clock = Callable[[], float]
logger = logging.getLogger("yandexgpt_grpc.auth")


class Credentials(abc.ABC):
    """Source of the ``authorization`` header value; subclasses may cache and refresh."""

    #: True when :meth:`invalidate` followed by a new call can produce a different value, so a
    #: retry after UNAUTHENTICATED is worth it.
    refreshable: ClassVar[bool] = False
    #: Whether the client should add ``x-folder-id``: user IAM tokens need it; API keys and
    #: service-account tokens carry their own folder.
    sends_folder_id: ClassVar[bool] = False
    #: True when fetching a token awaits a coroutine: the blocking Client then refuses to run
    #: inside a running event loop, which it would stall while the coroutine may need it.
    needs_event_loop: bool = False

    @abc.abstractmethod
    def authorization(self) -> str:
        """Return the full header value (``Api-Key …`` or ``Bearer …``); may block to refresh."""

    async def aauthorization(self) -> str:
        """Async twin of :meth:`authorization`; the default runs it in a worker thread."""
        return await asyncio.to_thread(self.authorization)

    @property
    def static_authorization(self) -> str | None:
        """The header value when it never changes (no I/O, no refresh), else None.

        AsyncClient uses it to skip awaiting :meth:`aauthorization` on every call.
        """
        return None

    def sent_secrets(self) -> tuple[str, ...]:
        """The secrets in header values this credential has handed out (no I/O): errors redact them."""
        header = self.static_authorization
        return (header.split(" ", 1)[-1],) if header else ()

    def invalidate(self, rejected: str) -> None:  # noqa: B027 - deliberately a no-op by default
        """Tell the credential that the server refused ``rejected`` (a previous header value).

        Static credentials ignore this; refreshing ones drop the cached token unless a newer one
        has already replaced it.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


def clean_secret(value: object, what: str) -> str:
    """Validate a secret without ever echoing it: a line break would corrupt gRPC metadata."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    cleaned = value.strip()
    if not cleaned:
        raise ValueError(f"{what} is empty")
    if any(ch in cleaned for ch in "\r\n\0"):
        raise ValueError(f"{what} contains a line break or NUL character; check how it was read")
    return cleaned


_set: Final = object.__setattr__


@record(frozen=True, repr=False)
class Token:
    """A bearer token and when it stops working (epoch seconds)."""

    value: str
    expires_at: float

    def __init__(self, value: str, expires_at: float) -> None:
        _set(self, "value", value)
        _set(self, "expires_at", expires_at)

    def __repr__(self) -> str:
        return f"Token(<redacted>, expires_at={self.expires_at})"


@record(frozen=True, repr=False)
class _Cached:
    header: str
    expires_at: float
    obtained_at: float

    def __init__(self, header: str, expires_at: float, obtained_at: float) -> None:
        _set(self, "header", header)
        _set(self, "expires_at", expires_at)
        _set(self, "obtained_at", obtained_at)

    @property
    def lifetime(self) -> float:
        return max(self.expires_at - self.obtained_at, 0.0)


_FRESH, _ADVISORY, _MANDATORY = "fresh", "advisory", "mandatory"
_RETRY = object()  # an in-flight refresh was abandoned (its task was cancelled): try again


class _Step:
    """One caller's turn at the cache: a header to use now, or a refresh to wait for or to run."""

    __slots__ = ("cached", "fut", "header", "owner", "state")

    def __init__(
        self,
        state: str,
        cached: _Cached | None,
        fut: concurrent.futures.Future[object] | None,
        owner: bool,
        header: str | None,
    ) -> None:
        self.state = state
        self.cached = cached
        self.fut = fut
        self.owner = owner
        self.header = header


class RefreshingCredentials(Credentials):
    """Caches a bearer token and refreshes it before it expires, at most one refresh at a time.

    Policy, with ``lifetime`` the validity the source promised when the token arrived:

    * *advisory* once less than half the lifetime remains: one caller refreshes; on failure the
      current token stays in use, a WARNING is logged and the next attempt waits a little;
    * *mandatory* once less than ``min(5 min, lifetime / 10)`` remains, after expiry or after
      :meth:`invalidate`: callers wait for the refresh, and its failure raises
      :class:`CredentialsError` in every waiting caller.

    Threads and asyncio tasks share one in-flight refresh (a ``concurrent.futures.Future``), so 50
    concurrent callers cause one fetch. Subclasses implement :meth:`_fetch` (blocking) and may
    override :meth:`_afetch` (the default runs :meth:`_fetch` in a worker thread).
    """

    refreshable: ClassVar[bool] = True
    sends_folder_id: ClassVar[bool] = False
    #: Shown in log lines and errors instead of the (secret) token.
    _source: ClassVar[str] = "token source"

    MANDATORY_WINDOW: ClassVar[float] = 300.0
    ADVISORY_FRACTION: ClassVar[float] = 0.5
    ADVISORY_BACKOFF: ClassVar[float] = 30.0

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or time.time
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._inflight: concurrent.futures.Future[object] | None = None
        self._advisory_not_before = 0.0
        #: Number of completed fetch attempts (successful or not); tests and metrics read it.
        self.fetch_count = 0

    @abc.abstractmethod
    def _fetch(self) -> Token:
        """Obtain a new token, blocking; raise on failure (messages must not contain secrets)."""

    async def _afetch(self) -> Token:
        """Obtain a new token without blocking the event loop."""
        return await asyncio.to_thread(self._fetch)

    # -- policy ---------------------------------------------------------------------------------

    def _state(self, cached: _Cached | None, now: float) -> str:
        if cached is None:
            return _MANDATORY
        remaining = cached.expires_at - now
        if remaining <= min(self.MANDATORY_WINDOW, cached.lifetime / 10):
            return _MANDATORY
        if remaining <= cached.lifetime * self.ADVISORY_FRACTION:
            return _ADVISORY
        return _FRESH

    def _claim(self) -> _Step:
        """Decide under the lock: use the cache, join a refresh, or own a new one."""
        now = self._clock()
        with self._lock:
            cached = self._cached
            state = self._state(cached, now)
            if state == _FRESH or (state == _ADVISORY and now < self._advisory_not_before and self._inflight is None):
                assert cached is not None
                return _Step(state, cached, None, False, cached.header)
            if self._inflight is not None:
                # Someone else refreshes: an advisory caller keeps the current token, others wait.
                header = cached.header if state == _ADVISORY and cached is not None else None
                return _Step(state, cached, self._inflight, False, header)
            fut: concurrent.futures.Future[object] = concurrent.futures.Future()
            # RUNNING futures cannot be cancelled, so an awaiting task that is cancelled cannot
            # cancel the refresh other callers wait for.
            fut.set_running_or_notify_cancel()
            self._inflight = fut
            return _Step(state, cached, fut, True, None)

    def _header(self, token: Token) -> str:
        return "Bearer " + clean_secret(token.value, f"the token from {self._source}")

    def _fetched(self, step: _Step, token: Token, started: float) -> str:
        """Publish a fetched token to every waiting caller, or record why it is unusable."""
        try:
            header = self._header(token)
        except Exception as exc:
            return self._failed(step, exc)
        with self._lock:
            self._cached = _Cached(header, float(token.expires_at), started)
            self._inflight = None
            self._advisory_not_before = 0.0
            self.fetch_count += 1
        step.fut.set_result(None)  # type: ignore[union-attr]
        return header

    def _failed(self, step: _Step, exc: BaseException) -> str:
        """Record a failed refresh; return the old header (advisory) or raise (mandatory).

        Cancelled or interrupted (not an Exception): give the refresh up so a waiting caller takes over.
        """
        fut, state, cached = step.fut, step.state, step.cached
        assert fut is not None
        if not isinstance(exc, Exception):
            with self._lock:
                self._inflight = None
            fut.set_result(_RETRY)
            raise exc
        err = exc if isinstance(exc, CredentialsError) else _wrap(self._source, exc)
        now = self._clock()
        with self._lock:
            self._inflight = None
            self.fetch_count += 1
            if state == _ADVISORY and cached is not None:
                backoff = min(self.ADVISORY_BACKOFF, cached.lifetime / 20)
                self._advisory_not_before = now + backoff
        if state == _ADVISORY and cached is not None:
            fut.set_result(None)
            logger.warning(
                "advisory refresh from %s failed (%s); keeping the current token (%.0f s left)",
                self._source,
                err,
                cached.expires_at - now,
            )
            return cached.header
        fut.set_exception(err)
        raise err

    def _after_wait(self, step: _Step, result: object) -> str | None:
        """What a caller that waited for someone else's refresh does next (None: claim again)."""
        if result is _RETRY:
            return None
        with self._lock:
            fresh = self._cached
        return fresh.header if fresh is not None and fresh is not step.cached else None

    # -- public: the two twins only wait or fetch; every decision above is shared --------------

    def authorization(self) -> str:
        while True:
            step = self._claim()
            if step.header is not None:
                return step.header
            if not step.owner:
                header = self._after_wait(step, step.fut.result())  # type: ignore[union-attr]
            else:
                started = self._clock()
                try:
                    token = self._fetch()
                except BaseException as exc:
                    return self._failed(step, exc)
                return self._fetched(step, token, started)
            if header is not None:
                return header

    async def aauthorization(self) -> str:
        while True:
            step = self._claim()
            if step.header is not None:
                return step.header
            if not step.owner:
                header = self._after_wait(step, await asyncio.wrap_future(step.fut))  # type: ignore[arg-type]
            else:
                started = self._clock()
                try:
                    token = await self._afetch()
                except BaseException as exc:  # cancelled: _failed lets a waiting caller take over
                    return self._failed(step, exc)
                return self._fetched(step, token, started)
            if header is not None:
                return header

    def sent_secrets(self) -> tuple[str, ...]:
        cached = self._cached
        return (cached.header.split(" ", 1)[-1],) if cached is not None else ()

    def invalidate(self, rejected: str) -> None:
        with self._lock:
            if self._cached is not None and self._cached.header == rejected:
                self._cached = None

    @property
    def expires_at(self) -> float | None:
        """Expiry (epoch seconds) of the cached token, or None before the first fetch."""
        cached = self._cached
        return None if cached is None else cached.expires_at


def _wrap(source: str, exc: Exception) -> CredentialsError:
    """A CredentialsError that names the failure without repeating its (possibly secret) text."""
    err = CredentialsError(f"could not obtain a token from {source}: {type(exc).__name__}")
    err.__cause__ = exc
    return err


public(Credentials)
