"""Batch runs: thousands of prompts from a JSONL file, none lost, none done twice.

Input: one JSON object per line, ``{"id": ..., "messages": ..., <options>}``. Output: one JSON
object per finished request, appended the moment it finishes, so a crash or Ctrl-C loses only
what was in flight and a rerun picks up where the last one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc

from ._async_client import AsyncClient
from ._convert import _OPTION_NAMES, MessagesInput, build_request, normalize_messages
from ._errors import (
    REDACTED,
    APIError,
    IncompleteStreamError,
    YandexGPTError,
    is_permanent,
    is_rate_limited,
    rpc_code,
    rpc_details,
    scrub,
)
from ._public import public
from ._retry import RetryPolicy
from ._types import NOT_GIVEN, CompletionResult, NotGiven

__all__ = [
    "BatchDiskFullError",
    "BatchOutageError",
    "BatchProblem",
    "BatchSummary",
    "RateLimiter",
    "arun_batch",
    "run_batch",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
PathLike = str | os.PathLike[str]

_RESERVED = frozenset({"id", "messages", "model"})
# How long an unreachable endpoint pauses a run before it stops (outage_wait=, --outage-wait).
DEFAULT_OUTAGE_WAIT = 60.0
# A request that fails with these while the breaker is open is waited out and sent again: its
# retry budget (or its deadline, spent waiting) ran out to the outage, not to the prompt.
_OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_PROBE_MODEL = "gpt://folder/model/latest"


@dataclass(frozen=True)
class BatchProblem:
    """An input line that was not sent (malformed or a duplicate id), or a repaired output line."""

    line: int
    message: str
    file: str = "input"

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.message}"


@dataclass
class BatchSummary:
    """What a run did; `failed` counts requests whose result line records an error."""

    total: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    problems: list[BatchProblem] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Every request answered and every input line usable (a repaired OUT tail is no failure)."""
        return not self.failed and not any(p.file == "input" for p in self.problems)


class BatchDiskFullError(YandexGPTError):
    """OUT could not be written (no space left, or over quota); the run stopped.

    `saved` results are in OUT, each a whole line: free some space and run again to continue.
    """

    def __init__(self, path: PathLike, saved: int) -> None:
        super().__init__(f"disk full while writing {os.fspath(path)} ({saved} results saved)")
        self.path = os.fspath(path)
        self.saved = saved


Record = dict[str, Any]  # an output line as on_result sees it: JSON values, indexed by callers without casts


@dataclass(frozen=True)
class _Item:
    line: int
    id: object  # any JSON value
    messages: MessagesInput  # as read from the file; prepare() checks it before any I/O
    model: str | None
    options: Mapping[str, object]


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


class BatchOutageError(YandexGPTError):
    """The endpoint stayed unreachable past `outage_wait`: the run stopped, nothing written for the rest.

    `saved` results are in OUT; run again to continue once the endpoint is back.
    """

    def __init__(self, waited: float, saved: int) -> None:
        super().__init__(
            f"the endpoint has been unreachable for {waited:.0f}s (outage_wait); {saved} results saved, "
            "run again to continue"
        )
        self.saved = saved


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


class Progress:
    """One redrawn status line on a terminal: counts, rate, ETA and failures."""

    def __init__(self, out: TextIO, total: int, clock: Clock, interval: float = 0.1) -> None:
        self._out = out
        self._total = total
        self._clock = clock
        self._start = clock()
        self._last = -math.inf
        self._interval = interval
        self.done = 0
        self.failed = 0

    def update(self, failed: bool, force: bool = False) -> None:
        self.done += 1
        self.failed += failed
        self.draw(force)

    def draw(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._interval and self.done < self._total:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        left = self._total - self.done
        eta = _duration(left / rate) if rate > 0 else "?"
        width = 24
        filled = width * self.done // self._total if self._total else width
        bar = "#" * filled + "." * (width - filled)
        self._out.write(
            f"\r[{bar}] {self.done}/{self._total} done, {self.failed} failed, {rate:.1f}/s, ETA {eta}\x1b[K"
        )
        self._out.flush()

    def finish(self) -> None:
        self.draw(force=True)
        self._out.write("\n")
        self._out.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _id_key(value: object) -> str:
    """Ids compare as JSON, so "1" and 1 stay different requests."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _read_input(path: PathLike, problems: list[BatchProblem]) -> list[_Item]:
    return list(_iter_input(path, problems))


def _iter_input(
    path: PathLike, problems: list[BatchProblem], seen: MutableMapping[str, int] | None = None
) -> Iterator[_Item]:
    """The valid input lines one by one (the cloud runner streams them); problems are appended.

    `seen` (id -> first line) may live on disk, so a file of millions of ids needs no memory for them.
    """
    if seen is None:
        seen = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(BatchProblem(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})"))
                continue
            if not isinstance(obj, dict):
                problems.append(BatchProblem(lineno, "expected a JSON object with 'id' and 'messages'"))
                continue
            item_id = obj.get("id")
            if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or item_id == "":
                problems.append(BatchProblem(lineno, "'id' must be a non-empty string or an integer"))
                continue
            key = _id_key(item_id)
            if key in seen:
                problems.append(BatchProblem(lineno, f"duplicate id {item_id!r} (first on line {seen[key]})"))
                continue
            seen[key] = lineno
            unknown = sorted(set(obj) - _RESERVED - _OPTION_NAMES)
            if unknown:
                problems.append(
                    BatchProblem(
                        lineno,
                        f"unknown keys {unknown}; allowed: id, messages, model, {', '.join(sorted(_OPTION_NAMES))}",
                    )
                )
                continue
            model = obj.get("model")
            if model is not None and not isinstance(model, str):
                problems.append(BatchProblem(lineno, "'model' must be a string"))
                continue
            options = {k: v for k, v in obj.items() if k not in _RESERVED}
            try:  # the checks the client would make, now, so the report can name the line
                build_request(_PROBE_MODEL, normalize_messages(obj.get("messages", [])), options, False)
            except (TypeError, ValueError) as exc:
                problems.append(BatchProblem(lineno, str(exc)))
                continue
            yield _Item(lineno, item_id, obj["messages"], model, options)


# The error code of an answer without a final alternative (it may be cut short).
INCOMPLETE = "INCOMPLETE"
# Error lines a rerun retries without being asked (--retry-failed retries every error line).
_RERUN_CODES = frozenset({INCOMPLETE})


def _rerun(error: object) -> bool:
    return isinstance(error, dict) and error.get("code") in _RERUN_CODES


def _read_done(path: PathLike, problems: list[BatchProblem], retry_failed: bool) -> set[str]:
    """Ids already answered in OUT; repair a torn last line, drop error lines if asked to."""
    done: set[str] = set()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return done
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" unless the last write was torn
    keep_len = len(data) - len(tail)
    if tail:
        problems.append(BatchProblem(len(lines) + 1, "incomplete last line (an interrupted write) removed", "output"))
    kept: list[bytes] = []
    dropped = False
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            key = _id_key(obj["id"])
        except (ValueError, KeyError, TypeError):
            if lineno == len(lines):  # a last line cut short but ending in a newline
                problems.append(BatchProblem(lineno, "unreadable last line removed", "output"))
                keep_len -= len(raw) + 1
                break
            raise ValueError(
                f"{os.fspath(path)} line {lineno} is not a result line; refusing to append to it"
            ) from None
        if "error" in obj and (retry_failed or _rerun(obj["error"])):
            dropped = True
            continue
        kept.append(raw)
        done.add(key)
    if dropped:
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(line + b"\n" for line in kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    elif keep_len < len(data):
        os.truncate(path, keep_len)
    return done


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class _Output:
    """Append-only result file: each line goes out in one write(2), so no line is ever torn by us.

    The client's own secrets never reach it, whatever a line would quote.
    """

    def __init__(self, path: PathLike, secrets: tuple[str, ...] = (), saved: int = 0) -> None:
        self._path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._secrets = secrets
        self.saved = saved  # whole result lines in the file

    def write(self, record: Mapping[str, object]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        for secret in self._secrets:  # only the exact secret: answers keep their text otherwise
            if len(secret) >= 8 and secret in line:
                line = line.replace(secret, REDACTED)
        data = (line + "\n").encode("utf-8")
        view = memoryview(data)
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            with contextlib.suppress(OSError):  # take back our own torn part; a rerun repairs it otherwise
                os.ftruncate(self._fd, start)
            raise BatchDiskFullError(self._path, self.saved) from exc
        self.saved += 1

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
        finally:
            os.close(self._fd)


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


def _failure(item: _Item, exc: Exception) -> Record:
    if isinstance(exc, IncompleteStreamError):  # an answer that may be cut short is not a result
        error = {"code": INCOMPLETE, "message": str(exc)}
        if exc.partial is not None:
            error["partial"] = exc.partial.text
    elif isinstance(exc, APIError):
        error = {"code": exc.code.name, "message": exc.details}
        if exc.request_id:
            error["request_id"] = exc.request_id
    else:
        error = {"code": type(exc).__name__, "message": scrub(str(exc))}
    return {"id": item.id, "error": error}


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
    what still fails is recorded as an error line. While the endpoint is down (UNAVAILABLE from
    several requests in a row) every request waits and one probes, for up to `outage_wait`
    seconds; such an outage writes no error line, a longer one stops the run with
    BatchOutageError. `retry_failed` drops earlier error lines
    from OUT so those ids run again. `progress`: a stream, True for stderr, None for stderr
    only when it is a terminal. Cancelling the task (Ctrl-C) cancels the calls in flight and
    leaves OUT with whole lines only.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    if isinstance(outage_wait, bool) or not isinstance(outage_wait, (int, float)) or not outage_wait > 0:
        raise ValueError(f"outage_wait must be a positive number of seconds, got {outage_wait!r}")
    started = clock()
    summary = BatchSummary()
    problems = summary.problems

    def problem(p: BatchProblem) -> None:
        problems.append(p)
        if on_problem is not None:
            on_problem(p)

    found: list[BatchProblem] = []
    done = _read_done(output_path, found, retry_failed)
    items = _read_input(input_path, found)
    for p in found:
        problem(p)
    if model is None and any(item.model is None for item in items):
        raise ValueError("no model: pass model= (--model) or give every input line a 'model'")
    todo = [item for item in items if _id_key(item.id) not in done]
    summary.total = len(items)
    summary.skipped = len(items) - len(todo)

    cfg = client._config
    policy = retry if retry is not None else cfg.retry
    limiter = RateLimiter(rps, clock=clock, sleep=sleep)
    out_stream: TextIO | None
    if progress is None:
        out_stream = sys.stderr if sys.stderr.isatty() else None
    elif progress is True:
        out_stream = sys.stderr
    elif progress is False:
        out_stream = None
    else:
        out_stream = progress
    bar = Progress(out_stream, len(todo), clock) if out_stream is not None and todo else None

    output = _Output(output_path, client._config.credentials.sent_secrets(), saved=len(done))
    breaker = _Breaker(outage_wait, clock, sleep)
    breaker.saved = lambda: output.saved
    queue: Iterator[_Item] = iter(todo)

    async def answer(item: _Item) -> Record:
        # Every attempt goes through the client's retry driver; the limiter and the outage breaker
        # only add hooks: before each attempt wait for the endpoint and a turn, after each failure
        # tell them what happened.
        began = 0.0

        async def before() -> None:
            nonlocal began
            await breaker.ready()
            began = await limiter.acquire()

        def on_error(exc: grpc.RpcError | None) -> None:
            code = rpc_code(exc)
            if code is grpc.StatusCode.UNAVAILABLE and not is_permanent(code, rpc_details(exc)):
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
            except BatchOutageError:
                raise  # the run stops: no line for this request
            except APIError as exc:
                if breaker.open and exc.code in _OUTAGE_CODES:
                    continue  # the endpoint is down, not this prompt's fault: wait it out, start afresh
                return _failure(item, exc)
            except (YandexGPTError, ValueError, TypeError) as exc:
                breaker.reachable()
                return _failure(item, exc)
            breaker.reachable()
            limiter.speed_up()
            return _success(item, result)

    async def worker() -> None:
        for item in queue:
            record = await answer(item)
            output.write(record)
            failed = "error" in record
            if failed:
                summary.failed += 1
            else:
                summary.succeeded += 1
            if on_result is not None:
                on_result(record)
            if bar is not None:
                bar.update(failed)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(todo)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # one worker failed, or we were cancelled: stop the rest
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        output.close()
        if bar is not None:
            bar.finish()
        summary.elapsed = clock() - started
    return summary


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


public(BatchProblem, BatchSummary, BatchDiskFullError, BatchOutageError)
