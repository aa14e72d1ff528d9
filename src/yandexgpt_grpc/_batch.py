"""Batch runs: thousands of prompts from a JSONL file, none lost, none done twice, no setup mistake taken for a result.

Input: one JSON object per line, ``{"id": ..., "messages": ..., <options>}``. Output: one JSON
object per finished request, appended the moment it finishes, so a crash or Ctrl-C loses only
what was in flight and a rerun picks up where the last one stopped. A failure of the whole run
(credentials, permissions, TLS, an unknown model, an endpoint down for good, a full disk) stops
the run with BatchAborted instead of being written as thousands of per-prompt errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc

from . import _progress, _retry
from ._async_client import AsyncClient
from ._batch_io import (
    INCOMPLETE,
    BatchProblem,
    OutputLock,
    PathLike,
    _id_key,
    _Item,
    _iter_input,
    _Output,
    _read_done,
    _read_input,
    check_model,
    is_final_error,
)
from ._convert import model_uri
from ._errors import (
    _TLS_HINT,
    APIError,
    BatchAborted,
    BatchDiskFullError,
    BatchLockedError,
    BatchOutageError,
    CredentialsError,
    IncompleteStreamError,
    is_permanent,
    is_plaintext_server,
    is_rate_limited,
    plaintext_hint,
    rpc_code,
    rpc_details,
    scrub,
)
from ._progress import Progress
from ._public import public
from ._retry import RetryPolicy
from ._types import NOT_GIVEN, CompletionResult, NotGiven

__all__ = [
    "BatchAborted",
    "BatchDiskFullError",
    "BatchLockedError",
    "BatchOutageError",
    "BatchProblem",
    "BatchSummary",
    "Progress",
    "RateLimiter",
    "arun_batch",
    "run_batch",
]

# Kept importable from here: the cloud runner reads IN and writes OUT with the same helpers.
_ = (_read_input, _Output, PathLike)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# How long an unreachable endpoint pauses a run before it stops (outage_wait=, --outage-wait).
DEFAULT_OUTAGE_WAIT = 60.0
# A request that fails with these while the breaker is open is waited out and sent again: its
# retry budget (or its deadline, spent waiting) ran out to the outage, not to the prompt.
_OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# How often the progress bar is redrawn while requests are in flight (elapsed, rate, ETA move on).
_TICK = 0.5
NOT_RUN = "not run"
_AUTH_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_UNKNOWN_MODEL = "invalid model_uri"


@dataclass
class BatchSummary:
    """What a run did. `failed` counts this run's error lines; `skipped` the ids OUT already had a
    line for (a success, or an error that belongs to its prompt); `missing` the input ids with no
    success line yet, by reason (an error code, or "not run")."""

    total: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    problems: list[BatchProblem] = field(default_factory=list)
    elapsed: float = 0.0
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every valid input id has a success line and every input line was usable."""
        return not self.missing and not any(p.file == "input" for p in self.problems)

    def describe(self) -> str:
        """The run in one line, saying what is left and how it runs again."""
        inputs = sum(p.file == "input" for p in self.problems)
        text = (
            f"{self.succeeded} succeeded, {self.failed} failed, {self.skipped} already done, "
            f"{inputs} input problem{'' if inputs == 1 else 's'} ({self.elapsed:.1f}s)"
        )
        left = sum(self.missing.values())
        if not left:
            return f"{text}; all {self.total} ids answered"
        reasons = ", ".join(f"{n} {why} ({_how(why)})" for why, n in sorted(self.missing.items()))
        return f"{text}; {left} of {self.total} ids have no answer yet: {reasons}"


def _how(reason: str) -> str:
    if reason == NOT_RUN:
        return "a rerun runs them"
    if is_final_error({"code": reason}):
        return "the prompt's own error; --retry-failed runs them again"
    return "a rerun retries them"


class RateLimiter:
    """A token bucket whose rate follows AIMD: halved on RESOURCE_EXHAUSTED, creeping back on success.

    `rate=None` means unlimited until the first slowdown, which starts limiting at half the
    rate observed over the last second; once the rate climbs back past that observed rate the
    limit lifts again. The bucket holds one token, so in any window of T seconds at most
    ``1 + rate * T`` requests start. Failures of requests that started before the last cut
    do not cut again: a burst of rejections is one signal, not many.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        min_rate: float = 0.2,
    ) -> None:
        if rate is not None and (not math.isfinite(rate) or rate <= 0):
            raise ValueError(f"rps must be a positive number, got {rate!r}")
        self.ceiling = rate
        self.rate = rate
        self.min_rate = min(min_rate, rate) if rate is not None else min_rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._cut_at = -math.inf
        self._peak = math.inf
        self._step = (rate or 1.0) / 20.0
        self._recent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for this request's turn; returns its start time (for `slow_down`)."""
        async with self._lock:
            now = self._clock()
            if self.rate is not None:
                start = max(now, self._next)
                self._next = start + 1.0 / self.rate
                if start > now:
                    await self._sleep(start - now)
                    now = self._clock()
            recent = self._recent
            recent.append(now)
            while recent and recent[0] < now - 1.0:
                recent.popleft()
            return now

    def slow_down(self, started: float) -> None:
        if started <= self._cut_at:
            return
        self._cut_at = self._clock()
        if self.rate is None:
            recent = self._recent
            span = recent[-1] - recent[0] if recent else 0.0
            observed = (len(recent) - 1) / span if span > 0 else float(max(len(recent), 1))
            self._step = observed / 20.0
            self.rate = max(self.min_rate, observed / 2.0)
            self._peak = observed
        else:
            self.rate = max(self.min_rate, self.rate / 2.0)

    def speed_up(self) -> None:
        if self.rate is None:
            return
        self.rate += self._step
        if self.ceiling is not None:
            self.rate = min(self.rate, self.ceiling)
        elif self.rate >= self._peak:
            self.rate = None


class _Breaker:
    """A circuit breaker shared by every request of a run: an outage pauses the run, not each request.

    After `threshold` UNAVAILABLE answers in a row (from any requests) the breaker opens: requests
    wait instead of burning their retry budgets, and one at a time probes the endpoint, with
    exponential backoff up to `max_probe` seconds between probes. Any answer other than
    UNAVAILABLE closes it and everyone goes on; UNAVAILABLE while it is open costs no attempt.
    Open for longer than `bound` seconds, it stops the run (BatchOutageError).
    """

    def __init__(
        self, bound: float, clock: Clock, sleep: Sleep, *, threshold: int = 3, first_probe: float = 0.25
    ) -> None:
        self.bound = bound
        self._clock = clock
        self._sleep = sleep
        self._threshold = threshold
        self._first_probe = first_probe
        self._max_probe = 2.0
        self._in_a_row = 0
        self.opened_at: float | None = None
        self._probe_wait = first_probe
        self._probing = False
        self._closed = asyncio.Event()
        self._closed.set()
        self.saved: Callable[[], int] = lambda: 0  # OUT's result count, for the error

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def _check(self) -> float:
        """Seconds left before the bound; raises once it has passed."""
        assert self.opened_at is not None
        left = self.opened_at + self.bound - self._clock()
        if left <= 0:
            raise BatchOutageError(self.bound, self.saved())
        return left

    async def ready(self) -> None:
        """Return when this request may make an attempt (at once while the breaker is closed)."""
        while self.opened_at is not None:
            left = self._check()
            if not self._probing:
                self._probing = True  # this request is the probe
                delay, self._probe_wait = self._probe_wait, min(self._probe_wait * 2, self._max_probe)
                await self._sleep(min(delay, left))
                if self.opened_at is not None:
                    self._check()
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closed.wait(), min(left, 1.0))

    def unavailable(self) -> bool:
        """Record an UNAVAILABLE answer; True when the breaker is (now) open: the attempt costs nothing."""
        self._in_a_row += 1
        self._probing = False
        if self.opened_at is None and self._in_a_row >= self._threshold:
            self.opened_at = self._clock()
            self._probe_wait = self._first_probe
            self._closed.clear()
        return self.opened_at is not None

    def reachable(self) -> None:
        """Any other answer: the endpoint is there."""
        self._in_a_row = 0
        self._probing = False
        if self.opened_at is not None:
            self.opened_at = None
            self._closed.set()


def _tls_failure(code: grpc.StatusCode, details: str) -> bool:
    low = details.lower()
    return code is grpc.StatusCode.UNAVAILABLE and (
        "handshake failed" in low or "ssl_error" in low or "certificate_verify_failed" in low
    )


def _tls_aborted(details: str, endpoint: str) -> BatchAborted:
    if "certificate_verify_failed" in details.lower():
        what = _TLS_HINT
    elif is_plaintext_server(grpc.StatusCode.UNAVAILABLE, details):
        what = f"the TLS handshake with {endpoint} failed: {plaintext_hint(details)}"
    else:
        what = f"the TLS handshake with {endpoint} failed: check the endpoint and its port (--insecure for plaintext)"
    return BatchAborted(f"{what} ({details})", code=grpc.StatusCode.UNAVAILABLE)


def _auth_aborted(exc: APIError | CredentialsError) -> BatchAborted:
    if isinstance(exc, CredentialsError):
        return BatchAborted(
            f"could not get credentials: {exc}; check them, then run again", code=grpc.StatusCode.UNAUTHENTICATED
        )
    if exc.code is grpc.StatusCode.PERMISSION_DENIED:
        what = (
            "the credentials may not use this model or folder (PERMISSION_DENIED): check the folder id and that "
            "the account has the ai.languageModels.user role"
        )
    else:
        what = (
            "the service refused the credentials (UNAUTHENTICATED): check the API key or IAM token "
            "(api_key=/iam_token=, --api-key/--iam-token, YC_API_KEY/YC_IAM_TOKEN)"
        )
    return BatchAborted(f"{what}; the server said: {exc.details}", code=exc.code)


def _model_aborted(exc: APIError, uri: str) -> BatchAborted:
    return BatchAborted(
        f"the service does not know model {uri!r} ({exc.code.name}: {exc.details}): check the model name "
        "(model=, --model) and the folder id (folder_id=, --folder-id, YC_FOLDER_ID)",
        code=exc.code,
    )


Record = dict[str, Any]  # an output line as on_result sees it: JSON values, indexed by callers without casts


def _success(item: _Item, result: CompletionResult) -> Record:
    usage = result.usage
    record: Record = {
        "id": item.id,
        "text": result.text,
        "status": result.status.name,
        "usage": {
            "input_tokens": usage.input_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "model_version": result.model_version,
    }
    if result.tool_calls:
        record["tool_calls"] = [{"name": c.name, "arguments": dict(c.arguments)} for c in result.tool_calls]
    return record


def _failure(item: _Item, exc: APIError | IncompleteStreamError) -> Record:
    """An error line: a gRPC status name, or INCOMPLETE for an answer without a final alternative."""
    error: Record
    if isinstance(exc, IncompleteStreamError):  # an answer that may be cut short is not a result
        error = {"code": INCOMPLETE, "message": scrub(str(exc))}
        if exc.partial is not None:
            error["partial"] = exc.partial.text
    else:
        error = {"code": exc.code.name, "message": exc.details}
        if exc.request_id:
            error["request_id"] = exc.request_id
    return {"id": item.id, "error": error}


def _progress_stream(progress: bool | TextIO | None) -> TextIO | None:
    if progress is None:
        return sys.stderr if sys.stderr.isatty() and _progress.available() else None
    if progress is False:
        return None
    if not _progress.available():
        raise ValueError(f"progress= draws with tqdm, which is not installed: {_progress.INSTALL_HINT}")
    return sys.stderr if progress is True else progress


async def arun_batch(
    client: AsyncClient,
    input_path: PathLike,
    output_path: PathLike,
    *,
    model: str | None = None,
    concurrency: int = 8,
    rps: float | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | NotGiven | None = NOT_GIVEN,
    retry_failed: bool = False,
    outage_wait: float = DEFAULT_OUTAGE_WAIT,
    progress: bool | TextIO | None = None,
    on_problem: Callable[[BatchProblem], None] | None = None,
    on_result: Callable[[Record], None] | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> BatchSummary:
    """Answer every input line not yet in OUT, appending one result line each.

    `model` is the default for lines without their own. At most `concurrency` requests run
    at once and at most `rps` start per second (halved on every RESOURCE_EXHAUSTED, then
    recovering). Transient failures are retried with `retry` (default: the client's policy);
    what still fails is recorded as an error line with its gRPC status name (INCOMPLETE for an
    answer without a final alternative). A rerun retries transient error lines by itself; errors
    that belong to their prompt stay unless `retry_failed`. While the endpoint is down (UNAVAILABLE
    from several requests in a row) every request waits and one probes, for up to `outage_wait`
    seconds; such an outage writes no error line.

    A failure of the whole run is never a result: a model that does not resolve raises ValueError
    before anything is written; refused credentials, no permission, a failed TLS handshake, a model
    or folder the service does not know (the first answers say so and none succeeded), an outage
    past `outage_wait`, a full disk or another run on the same OUT (an OS lock on ``OUT.lock``)
    raise BatchAborted (with `.summary`): the requests in flight are cancelled, nothing is written
    for them. `progress`: a stream, True for stderr, None for stderr only when it is a terminal
    (tqdm, the `cli` extra). Cancelling the task (Ctrl-C) cancels the calls in flight and leaves
    OUT with whole lines only.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    if isinstance(outage_wait, bool) or not isinstance(outage_wait, (int, float)) or not outage_wait > 0:
        raise ValueError(f"outage_wait must be a positive number of seconds, got {outage_wait!r}")
    out_stream = _progress_stream(progress)
    started = clock()
    summary = BatchSummary()
    problems = summary.problems
    cfg = client._config
    # Pre-flight, before OUT is touched: every model resolves (a short name needs a folder).
    default_uri = model_uri(model, cfg.folder_id) if model is not None else None
    found: list[BatchProblem] = []
    valid: set[str] = set()
    needs_default = False
    for item in _iter_input(input_path, found):
        if check_model(item, cfg.folder_id, found):
            valid.add(_id_key(item.id))
            needs_default = needs_default or item.model is None
    if needs_default and default_uri is None:
        raise ValueError("no model: pass model= (--model) or give every input line a 'model'")

    def problem(p: BatchProblem) -> None:
        problems.append(p)
        if on_problem is not None:
            on_problem(p)

    lock = OutputLock(output_path)
    lock.acquire()
    try:
        state = _read_done(output_path, found, retry_failed)
        for p in found:
            problem(p)
        summary.total = len(valid)
        done_keys = {k for k in valid if state.done(k)}
        summary.skipped = len(done_keys)
        missing: Counter[str] = Counter(state.errors[k] for k in done_keys if k in state.errors)
        todo_count = len(valid) - len(done_keys)
        del done_keys
        queue: Iterator[_Item] = (
            item for item in _iter_input(input_path, []) if (key := _id_key(item.id)) in valid and not state.done(key)
        )
        try:
            await _run(
                client,
                queue,
                todo_count=todo_count,
                output_path=output_path,
                saved=state.lines,
                summary=summary,
                missing=missing,
                model=model,
                default_uri=default_uri,
                concurrency=concurrency,
                rps=rps,
                retry=retry,
                timeout=timeout,
                outage_wait=outage_wait,
                out_stream=out_stream,
                problem=problem,
                on_result=on_result,
                clock=clock,
                sleep=sleep,
            )
        finally:
            not_run = todo_count - summary.succeeded - summary.failed
            if not_run > 0:
                missing[NOT_RUN] += not_run
            summary.missing = dict(missing)
            summary.elapsed = clock() - started
    except BatchAborted as exc:
        exc.summary = summary
        raise
    finally:
        lock.release()
    return summary


async def _run(
    client: AsyncClient,
    queue: Iterator[_Item],
    *,
    todo_count: int,
    output_path: PathLike,
    saved: int,
    summary: BatchSummary,
    missing: Counter[str],
    model: str | None,
    default_uri: str | None,
    concurrency: int,
    rps: float | None,
    retry: RetryPolicy | None,
    timeout: float | NotGiven | None,
    outage_wait: float,
    out_stream: TextIO | None,
    problem: Callable[[BatchProblem], None],
    on_result: Callable[[Record], None] | None,
    clock: Clock,
    sleep: Sleep,
) -> None:
    cfg = client._config
    policy = retry if retry is not None else cfg.retry
    limiter = RateLimiter(rps, clock=clock, sleep=sleep)
    secrets = cfg.credentials.sent_secrets()
    output = _Output(output_path, secrets, saved=saved)
    breaker = _Breaker(outage_wait, clock, sleep)
    breaker.saved = lambda: output.saved
    default_answered = False  # an "unknown model" answer stops the run only while this is False

    async def answer(item: _Item) -> Record | None:
        # Every attempt goes through the client's retry driver; the limiter and the outage breaker
        # only add hooks: before each attempt wait for the endpoint and a turn, after each failure
        # tell them what happened (a TLS failure stops the run here, before any retry).
        nonlocal default_answered
        began = 0.0

        async def before() -> None:
            nonlocal began
            await breaker.ready()
            began = await limiter.acquire()

        def on_error(exc: grpc.RpcError | None) -> None:
            code, details = rpc_code(exc), rpc_details(exc)
            if _tls_failure(code, details):
                raise _tls_aborted(scrub(details, secrets), cfg.endpoint)
            if code is grpc.StatusCode.UNAVAILABLE and not is_permanent(code, details):
                breaker.unavailable()
            else:
                breaker.reachable()
            if is_rate_limited(exc):  # not a size error: that says nothing about the rate
                limiter.slow_down(began)

        while True:
            try:
                request = cfg.prepare(item.model or model or "", item.messages, item.options, False)
                tries = cfg.attempts("Completion", timeout, policy)
                result = await client._completion_call(request, tries, before, on_error)
            except BatchAborted:
                raise
            except APIError as exc:
                if breaker.open and exc.code in _OUTAGE_CODES:
                    continue  # the endpoint is down, not this prompt's fault: wait it out, start afresh
                if exc.code in _AUTH_CODES:
                    raise _auth_aborted(exc) from exc
                if (
                    item.model is None
                    and not default_answered
                    and (exc.code is grpc.StatusCode.NOT_FOUND or _UNKNOWN_MODEL in exc.details)
                ):
                    raise _model_aborted(exc, default_uri or "") from exc
                breaker.reachable()
                return _failure(item, exc)
            except IncompleteStreamError as exc:
                breaker.reachable()
                return _failure(item, exc)
            except CredentialsError as exc:
                raise _auth_aborted(exc) from exc
            except (ValueError, TypeError) as exc:  # the pre-flight checks missed it: the line's problem
                problem(BatchProblem(item.line, str(exc)))
                return None
            breaker.reachable()
            limiter.speed_up()
            if item.model is None:
                default_answered = True
            return _success(item, result)

    bar = Progress(out_stream, summary.total, initial=summary.skipped) if out_stream is not None else None

    async def worker() -> None:
        for item in queue:
            record = await answer(item)
            if record is None:
                continue
            output.write(record)
            if "error" in record:
                summary.failed += 1
                missing[record["error"]["code"]] += 1
            else:
                summary.succeeded += 1
            if on_result is not None:
                on_result(record)
            if bar is not None:
                bar.update("error" in record)

    async def tick() -> None:
        assert bar is not None
        while True:
            await asyncio.sleep(_TICK)
            bar.refresh()

    # Instrumented (yandexgpt_grpc.otel): the run is one span, current while the workers start, so
    # each request's span is its child.
    span = None if _retry._hooks is None else _retry._hooks.batch(cfg, model, todo_count)
    failure: BaseException | None = None
    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, todo_count))]
    ticker = asyncio.ensure_future(tick()) if bar is not None else None
    try:
        await asyncio.gather(*tasks)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        for task in tasks:  # one worker failed, or we were cancelled: stop the rest
            task.cancel()
        if ticker is not None:
            ticker.cancel()
        await asyncio.gather(*tasks, *([ticker] if ticker else []), return_exceptions=True)
        try:
            output.close()
        finally:
            if bar is not None:
                bar.finish()
            if span is not None:
                span.batch_ended(summary, failure)


def run_batch(
    input_path: PathLike,
    output_path: PathLike,
    *,
    model: str | None = None,
    concurrency: int = 8,
    rps: float | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | NotGiven | None = NOT_GIVEN,
    retry_failed: bool = False,
    outage_wait: float = DEFAULT_OUTAGE_WAIT,
    progress: bool | TextIO | None = None,
    on_problem: Callable[[BatchProblem], None] | None = None,
    on_result: Callable[[Record], None] | None = None,
    **client_kwargs: Any,  # AsyncClient's keyword arguments, each checked by AsyncClient itself
) -> BatchSummary:
    """The blocking face of `arun_batch`: builds an AsyncClient from `client_kwargs` and runs it.

    `client_kwargs` are AsyncClient's arguments (endpoint=, api_key=, folder_id=, ...).
    """

    async def main() -> BatchSummary:
        async with AsyncClient(**client_kwargs) as client:
            return await arun_batch(
                client,
                input_path,
                output_path,
                model=model,
                concurrency=concurrency,
                rps=rps,
                retry=retry,
                timeout=timeout,
                retry_failed=retry_failed,
                outage_wait=outage_wait,
                progress=progress,
                on_problem=on_problem,
                on_result=on_result,
            )

    return asyncio.run(main())


public(BatchSummary)
