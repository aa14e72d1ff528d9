"""Production call behaviour against the emulator, for Client and AsyncClient alike.

Each test is one acceptance item of the reliability issue (numbered in its docstring). Retry
waits never really sleep: `waits` replaces the retry module's sleep hooks and records the delays.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from tests._certs import make_ca_and_server_cert
from yandexgpt_grpc import (
    AlternativeStatus,
    APIError,
    AsyncClient,
    AsyncCompletionStream,
    AuthenticationError,
    Client,
    CompletionStream,
    DeadlineExceededError,
    IamTokenProvider,
    IncompleteStreamError,
    InvalidArgumentError,
    MessageTooLargeError,
    PermissionDeniedError,
    RetryPolicy,
    StreamInterruptedError,
    UnavailableError,
    UnimplementedError,
    _retry,
)
from yandexgpt_grpc.testing import Emulator, Fault, Reply

from .conftest import API_KEY, FOLDER, Harness

MODEL = "yandexgpt-lite"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits, recorded instead of slept."""
    delays: list[float] = []

    def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    async def fake_asleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(_retry, "sleep", fake_sleep)
    monkeypatch.setattr(_retry, "asleep", fake_asleep)
    return delays


class BoundsRandom(random.Random):
    """Draws the middle of each jitter interval and remembers the interval."""

    def __init__(self) -> None:
        super().__init__(0)
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return (a + b) / 2


async def drain(h: Harness, stream: Any) -> list[Any]:
    return [alt async for alt in h.iterate(stream)]


async def call(h: Harness, how: str, *args: Any, **kwargs: Any) -> Any:
    """complete() or a drained stream's final result, so one test covers both call kinds."""
    if how == "unary":
        return await h.complete(MODEL, *args, **kwargs)
    stream = h.stream(MODEL, *args, **kwargs)
    await drain(h, stream)
    return stream.final


def user_threads() -> set[threading.Thread]:
    """Live threads apart from the event loop's executor workers (they are pooled)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def settle(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


both_calls = pytest.mark.parametrize("how", ["unary", "stream"])


# --- 1-3: what a stream delivers ----------------------------------------------------------------


async def test_01_partials_in_order_and_byte_exact_final(harness: Harness, emu: Emulator) -> None:
    chunks = ["При", "вет,\t", "мир ☺", " 😈\r\n", "конец\r\n"]
    emu.enqueue("Completion", Reply(chunks=chunks), Reply(chunks=chunks))
    alts, stream = await harness.collect(MODEL, "hi")
    expected = "".join(chunks)
    assert [a.status for a in alts] == [AlternativeStatus.PARTIAL] * len(chunks) + [AlternativeStatus.FINAL]
    assert [a.text for a in alts[:-1]] == ["".join(chunks[: i + 1]) for i in range(len(chunks))]
    assert [a.delta for a in alts[:-1]] == chunks
    assert alts[-1].text.encode() == stream.final.text.encode() == expected.encode()
    result = await harness.complete(MODEL, "hi")
    assert result.text.encode() == expected.encode()
    assert result.status is AlternativeStatus.FINAL


async def test_02_ok_without_final_is_incomplete_with_the_last_partial(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["one ", "two ", "three"], terminal=False))
    stream = harness.stream(MODEL, "hi")
    seen = [await harness.next(stream) for _ in range(3)]
    with pytest.raises(IncompleteStreamError) as info:
        await harness.next(stream)
    assert [a.text for a in seen] == ["one ", "one two ", "one two three"]
    assert info.value.partial == seen[-1]
    assert info.value.request_id == emu.calls[0].request_id
    assert stream.final is None
    emu.enqueue("Completion", Reply(terminal=False))
    with pytest.raises(IncompleteStreamError) as unary:
        await harness.complete(MODEL, "hi")
    assert unary.value.partial is None
    assert len(emu.calls) == 2  # never retried


@pytest.mark.parametrize("status", ["TRUNCATED_FINAL", "CONTENT_FILTER"])
async def test_03_truncated_and_filtered_end_the_stream(harness: Harness, emu: Emulator, status: str) -> None:
    final_text = "Hello, wor" if status == "TRUNCATED_FINAL" else "[filtered]"
    emu.enqueue("Completion", Reply(chunks=["Hello, ", "wor"], status=status, final_text=final_text))
    alts, stream = await harness.collect(MODEL, "hi")
    assert alts[-1].status is AlternativeStatus[status] and alts[-1].is_final
    assert stream.final.status is AlternativeStatus[status]
    assert stream.final.text == final_text
    assert alts[-1].replaced is (status == "CONTENT_FILTER")
    emu.enqueue("Completion", Reply(chunks=["x"], status=status, final_text=final_text))
    result = await harness.complete(MODEL, "hi")
    assert result.status is AlternativeStatus[status] and result.text == final_text


# --- 4-7: retries ------------------------------------------------------------------------------


@both_calls
async def test_04_unavailable_twice_then_success_on_attempt_3(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float], how: str
) -> None:
    rng = BoundsRandom()
    h = make_harness(retry=RetryPolicy(rng=rng))
    emu.fail_next(2)
    result = await call(h, how, "hi")
    assert result.status is AlternativeStatus.FINAL
    calls = emu.calls_for("Completion")
    assert len(calls) == 3
    assert len({c.client_request_id for c in calls}) == 1
    assert [c.header("x-retry-attempt") for c in calls] == [None, "2", "3"]
    assert rng.bounds == [(0.0, 0.5), (0.0, 1.0)]  # full jitter under a doubling cap
    assert waits == [0.25, 0.5]


@both_calls
async def test_04b_jitter_is_random_and_capped(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float], how: str
) -> None:
    policy = RetryPolicy(max_attempts=6, initial_backoff=0.5, multiplier=10.0, max_backoff=2.0)
    h = make_harness(retry=policy)
    emu.fail_next(5)
    await call(h, how, "hi")
    caps = [0.5, 2.0, 2.0, 2.0, 2.0]
    assert len(waits) == 5 and all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert len(set(waits)) == 5  # drawn, not fixed


async def test_05_unavailable_after_first_partial_is_not_retried(
    harness: Harness, emu: Emulator, waits: list[float]
) -> None:
    emu.enqueue("Completion", Fault(after=1, chunks=["Hello"], details="backend went away"))
    stream = harness.stream(MODEL, "hi")
    first = await harness.next(stream)
    with pytest.raises(UnavailableError) as info:
        await harness.next(stream)
    err = info.value
    assert isinstance(err, StreamInterruptedError)
    assert err.partial == first and err.partial.text == "Hello"
    assert err.details == "backend went away"
    assert isinstance(err.__cause__, grpc.RpcError)
    assert len(emu.calls) == 1 and waits == []
    with pytest.raises(StopAsyncIteration):
        await harness.next(stream)


CODES = [
    (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
    (grpc.StatusCode.UNAUTHENTICATED, AuthenticationError),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
    (grpc.StatusCode.UNIMPLEMENTED, UnimplementedError),
]


@both_calls
@pytest.mark.parametrize(("code", "cls"), CODES, ids=[c.name for c, _ in CODES])
async def test_06_permanent_codes_make_one_attempt(
    harness: Harness, emu: Emulator, waits: list[float], how: str, code: grpc.StatusCode, cls: type[APIError]
) -> None:
    emu.enqueue("Completion", Fault(code=code, details=f"no: {code.name}"))
    with pytest.raises(cls) as info:
        await call(harness, how, "hi")
    assert type(info.value) is cls and info.value.code is code
    assert not isinstance(info.value, StreamInterruptedError)
    assert len(emu.calls) == 1 and waits == []
    assert info.value.attempts == 1


@both_calls
async def test_06b_unauthenticated_gets_one_forced_refresh_for_refreshable_credentials(
    make_harness: Callable[..., Harness], yandexgpt_emulator_factory: Any, waits: list[float], how: str
) -> None:
    emu = yandexgpt_emulator_factory(iam_tokens=["t-good"])
    issued = iter(["t-stale", "t-good", "t-stale-again", "t-also-bad"])
    provider = IamTokenProvider(lambda: next(issued))
    h = make_harness(endpoint=emu.address, api_key=None, credentials=provider, retry=RetryPolicy(max_attempts=1))
    result = await call(h, how, "hi")  # t-stale refused -> refresh -> t-good
    assert result.status is AlternativeStatus.FINAL
    assert [c.header("authorization") for c in emu.calls] == ["Bearer t-stale", "Bearer t-good"]
    emu.remove_iam_token("t-good")
    with pytest.raises(AuthenticationError):
        await call(h, how, "hi")  # t-good refused -> one refresh -> t-stale-again refused -> give up
    assert [c.header("authorization") for c in emu.calls[2:]] == ["Bearer t-good", "Bearer t-stale-again"]
    assert waits == []


@both_calls
async def test_07_unavailable_forever_fails_within_the_deadline(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float], how: str
) -> None:
    h = make_harness(retry=RetryPolicy(max_attempts=1000, initial_backoff=0.01, max_backoff=0.05))
    emu.enqueue("Completion", *[Fault(delay=0.15)] * 50)  # each attempt takes 150 ms of real time
    started = time.monotonic()
    with pytest.raises((UnavailableError, DeadlineExceededError)):
        await call(h, how, "hi", timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed <= 1.3, elapsed
    assert 4 <= len(emu.calls) <= 8


@both_calls
async def test_07b_never_sleeps_past_the_deadline(
    make_harness: Callable[..., Harness], emu: Emulator, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Fake clock: every wait advances it; no wait may end at or after the deadline."""
    now = [1000.0]
    ends: list[float] = []

    def advance(seconds: float) -> None:
        now[0] += seconds
        ends.append(now[0])

    async def aadvance(seconds: float) -> None:
        advance(seconds)

    monkeypatch.setattr(_retry, "monotonic", lambda: now[0])
    monkeypatch.setattr(_retry, "sleep", advance)
    monkeypatch.setattr(_retry, "asleep", aadvance)
    h = make_harness(retry=RetryPolicy(max_attempts=10_000))
    emu.fail_next(10_000)
    with pytest.raises(UnavailableError) as info:
        await call(h, how, "hi", timeout=30.0)
    assert ends and max(ends) < 1030.0
    assert info.value.attempts == len(emu.calls) == len(ends) + 1
    assert sum(b - a for a, b in zip([1000.0, *ends], ends, strict=False)) < 30.0


# --- 8-11: deadlines and cancellation ------------------------------------------------------------


@both_calls
async def test_08_sleeping_server_and_a_50ms_deadline(harness: Harness, emu: Emulator, how: str) -> None:
    emu.enqueue("Completion", Reply(delay=5.0))
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as info:
        await call(harness, how, "hi", timeout=0.05)
    assert time.monotonic() - started < 1.0
    assert not isinstance(info.value, StreamInterruptedError)
    assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 1.0)
    assert emu.calls[0].code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(emu.calls) == 1


async def test_09_stall_after_two_partials_keeps_the_partial(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(after=2, chunks=["ab", "cd"], stall=True))
    stream = harness.stream(MODEL, "hi", timeout=0.3)
    seen = [await harness.next(stream), await harness.next(stream)]
    with pytest.raises(DeadlineExceededError) as info:
        await harness.next(stream)
    assert isinstance(info.value, StreamInterruptedError)
    assert info.value.partial == seen[-1] and info.value.partial.text == "abcd"
    assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 1.0)
    assert len(emu.calls) == 1


async def _cancel_sync(client: Client, mode: str, marks: dict[str, float]) -> None:
    def consume() -> None:
        if mode == "break":
            for _ in client.stream(MODEL, "hi"):
                marks["t0"] = time.monotonic()
                break  # the stream is garbage now: that cancels it
            return
        stream = client.stream(MODEL, "hi")
        if mode == "with":
            with stream:
                next(stream)
                marks["t0"] = time.monotonic()
            return
        next(stream)
        if mode == "close":
            marks["t0"] = time.monotonic()
            stream.close()
            return
        # "cancel": another thread closes the stream while this one waits for the next message.
        closer = threading.Timer(0.1, lambda: (marks.__setitem__("t0", time.monotonic()), stream.close()))
        closer.start()
        assert list(stream) == []  # iteration ends quietly
        closer.join()

    thread = threading.Thread(target=consume)
    thread.start()
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()


async def _cancel_async(client: AsyncClient, mode: str, marks: dict[str, float]) -> None:
    if mode == "break":
        async for _ in client.stream(MODEL, "hi"):
            marks["t0"] = time.monotonic()
            break
        return
    stream = client.stream(MODEL, "hi")
    if mode == "with":
        async with stream:
            await stream.__anext__()
            marks["t0"] = time.monotonic()
        return
    if mode == "close":
        await stream.__anext__()
        marks["t0"] = time.monotonic()
        await stream.aclose()
        return
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in stream:
            got_one.set()

    task = asyncio.create_task(consume())
    await got_one.wait()
    await asyncio.sleep(0.05)  # the task now waits inside the RPC's read
    marks["t0"] = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("mode", ["break", "close", "with", "cancel"])
async def test_10_leaving_a_stream_cancels_the_rpc_within_200ms(harness: Harness, emu: Emulator, mode: str) -> None:
    await harness.complete(MODEL, "warm up")  # channel, executor threads
    threads, tasks = user_threads(), len(asyncio.all_tasks())
    emu.enqueue("Completion", Fault(after=1, stall=True))
    marks: dict[str, float] = {}
    if isinstance(harness.client, AsyncClient):
        await _cancel_async(harness.client, mode, marks)
    else:
        await _cancel_sync(harness.client, mode, marks)
    rpc = emu.calls_for("Completion")[-1]
    assert await asyncio.to_thread(emu.wait_for, lambda: rpc.cancelled, 1.0)
    assert rpc.finished_at is not None and rpc.finished_at - marks["t0"] <= 0.2, rpc.finished_at - marks["t0"]
    assert rpc.code is grpc.StatusCode.CANCELLED
    assert await settle(lambda: user_threads() == threads), (threads, user_threads())
    assert await settle(lambda: len(asyncio.all_tasks()) == tasks)


CHILD = """
import asyncio, sys
from yandexgpt_grpc import AsyncClient, Client

kw = dict(endpoint=sys.argv[1], insecure=True, api_key="k", folder_id="f")
kind, mode = sys.argv[2], sys.argv[3]
KEEP = []
if kind == "sync":
    client = Client(**kw)
    stream = client.stream("yandexgpt-lite", "hi")
    if mode == "hold":
        print(next(stream).text, flush=True)
        KEEP.append(stream)
    else:
        gen = (alt.text for alt in stream)
        print(next(gen), flush=True)
        KEEP.append(gen)
else:
    async def main():
        client = AsyncClient(**kw)
        stream = client.stream("yandexgpt-lite", "hi")
        if mode == "hold":
            print((await stream.__anext__()).text, flush=True)
            KEEP.append((client, stream))
        else:
            first = asyncio.Event()

            async def consume():
                async for alt in stream:
                    print(alt.text, flush=True)
                    first.set()

            KEEP.append(asyncio.get_running_loop().create_task(consume()))
            await first.wait()
    asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["hold", "pending"])
async def test_11_abandoned_stream_does_not_hold_up_interpreter_exit(kind: str, emu: Emulator, mode: str) -> None:
    emu.enqueue("Completion", Fault(after=1, chunks=["first"], stall=True))
    started = time.monotonic()
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHILD, emu.address, kind, mode],
        capture_output=True,
        text=True,
        timeout=15,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "first"
    assert elapsed < 5.0, elapsed
    assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 2.0)


# --- 12-13: what errors and results carry ----------------------------------------------------------

ODD = "tab\there\r\nnew line ☺ 😈 %41 \\ end"


@pytest.mark.parametrize("where", ["unary", "stream", "mid-stream"])
async def test_12_status_message_is_preserved(harness: Harness, emu: Emulator, where: str) -> None:
    emu.enqueue(
        "Completion", Fault(code=grpc.StatusCode.INVALID_ARGUMENT, details=ODD, after=int(where == "mid-stream"))
    )
    with pytest.raises(InvalidArgumentError) as info:
        await call(harness, "unary" if where == "unary" else "stream", "hi")
    assert info.value.details == ODD
    assert ODD in str(info.value)
    assert info.value.request_id and info.value.request_id in str(info.value)
    assert "INVALID_ARGUMENT" in str(info.value)
    assert isinstance(info.value, StreamInterruptedError) is (where == "mid-stream")


@both_calls
async def test_13_initial_and_trailing_metadata_reach_results_and_errors(
    harness: Harness, emu: Emulator, how: str
) -> None:
    blob = bytes(range(256))
    emu.enqueue(
        "Completion",
        Reply(
            chunks=["ok"],
            initial_metadata=[("x-served-by", "node-7"), ("x-blob-bin", blob)],
            trailing_metadata=[("x-cost", "3"), ("x-trail-bin", b"\x00\xff")],
        ),
    )
    result = await call(harness, how, "hi", metadata={"x-tag-bin": b"\x00\x01\xfe", "x-tag": "v1"})
    rpc = emu.calls[0]
    assert ("x-served-by", "node-7") in result.initial_metadata
    assert ("x-blob-bin", blob) in result.initial_metadata
    assert ("x-request-id", rpc.request_id) in result.initial_metadata
    assert ("x-cost", "3") in result.trailing_metadata
    assert ("x-trail-bin", b"\x00\xff") in result.trailing_metadata
    assert result.request_id == rpc.request_id and result.trace_id == rpc.trace_id
    assert ("x-tag-bin", b"\x00\x01\xfe") in rpc.metadata and rpc.header("x-tag") == "v1"

    emu.enqueue(
        "Completion",
        Fault(code=grpc.StatusCode.FAILED_PRECONDITION, trailing_metadata=[("x-why-bin", b"\x01\x02"), ("x-why", "w")]),
    )
    with pytest.raises(APIError) as info:
        await call(harness, how, "hi")
    err, rpc = info.value, emu.calls[1]
    assert ("x-why-bin", b"\x01\x02") in err.trailing_metadata and ("x-why", "w") in err.metadata
    # Initial metadata sent just before an error may travel with the trailers (grpc's trailers-only form).
    assert ("x-request-id", rpc.request_id) in err.metadata
    assert err.request_id == rpc.request_id and err.trace_id == rpc.trace_id


async def test_13b_a_bad_metadata_value_is_refused_before_the_call(harness: Harness, emu: Emulator) -> None:
    with pytest.raises(ValueError, match="x-note") as info:
        await harness.complete(MODEL, "hi", metadata={"x-note": "привет"})
    assert "привет" not in str(info.value)
    assert emu.calls == []


# --- 14: pushback -----------------------------------------------------------------------------------


@both_calls
@pytest.mark.parametrize(("pushback", "attempts"), [(300, 2), (0, 2), (-1, 1), (10**9, 1)])
async def test_14_server_pushback(
    harness: Harness, emu: Emulator, waits: list[float], how: str, pushback: int, attempts: int
) -> None:
    emu.fail_next(1, pushback_ms=pushback)
    if attempts == 2:
        await call(harness, how, "hi")
        assert waits == ([pushback / 1000] if pushback else [])  # 0: retry at once
    else:
        with pytest.raises(UnavailableError):
            await call(harness, how, "hi")
        assert waits == []
    assert len(emu.calls) == attempts


# --- 15: secrets ------------------------------------------------------------------------------------

SECRET_KEY = "AQVN-secret-api-key-0123456789abcdefghijklmnop"
SECRET_TOKENS = ["t1.secret-iam-token-ONE", "t1.secret-iam-token-TWO"]


def exception_texts(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield str(e)
        yield repr(e)
        todo += [e.__cause__, e.__context__]
    yield "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@both_calls
@pytest.mark.parametrize("creds", ["api_key", "refreshing"])
async def test_15_no_secret_in_logs_reprs_errors_or_tracebacks(
    make_harness: Callable[..., Harness],
    yandexgpt_emulator_factory: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    creds: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    if creds == "api_key":
        emu = yandexgpt_emulator_factory(api_keys=[SECRET_KEY])
        h = make_harness(endpoint=emu.address, api_key=SECRET_KEY)
        secrets = [SECRET_KEY]

        def between(attempt: int) -> None:
            if attempt == 2:  # the key is revoked while the client retries
                emu.remove_api_key(SECRET_KEY)

    else:
        emu = yandexgpt_emulator_factory(iam_tokens=[SECRET_TOKENS[0]])
        issued = iter(SECRET_TOKENS)
        h = make_harness(endpoint=emu.address, api_key=None, credentials=IamTokenProvider(lambda: next(issued)))
        secrets = SECRET_TOKENS

        def between(attempt: int) -> None:
            if attempt == 2:
                emu.remove_iam_token(SECRET_TOKENS[0])

    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        between(len(slept))

    async def fake_asleep(seconds: float) -> None:
        fake_sleep(seconds)

    monkeypatch.setattr(_retry, "sleep", fake_sleep)
    monkeypatch.setattr(_retry, "asleep", fake_asleep)
    emu.fail_next(2, details=f"overloaded; you sent authorization: Bearer {secrets[0]}")
    with pytest.raises(AuthenticationError) as info:
        await call(h, how, "hi")
    assert len(slept) == 2
    assert len(emu.calls) == (3 if creds == "api_key" else 4)  # a refreshable credential gets one more try
    records = [r for r in caplog.records if r.name.startswith("yandexgpt_grpc")]
    assert any(r.levelno == logging.DEBUG and "rpc Completion" in r.getMessage() for r in records)
    assert any(r.levelno == logging.INFO and "retrying in" in r.getMessage() for r in records)
    texts = [caplog.text, repr(h.client), str(h.client), *exception_texts(info.value)]
    texts += [r.getMessage() for r in caplog.records]
    for secret in secrets:
        for text in texts:
            assert secret not in text


# --- 16-17: transport security ------------------------------------------------------------------------


@both_calls
async def test_16_tls_unknown_ca_fails_and_the_test_ca_passes(
    make_harness: Callable[..., Harness], yandexgpt_emulator_factory: Any, waits: list[float], how: str
) -> None:
    ca, cert, key = make_ca_and_server_cert()
    emu = yandexgpt_emulator_factory(tls=(cert, key, ca))
    untrusted = make_harness(endpoint=emu.address, insecure=False)
    with pytest.raises(UnavailableError) as info:
        await call(untrusted, how, "hi")
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.details
    assert "root_certificates" in str(info.value)
    assert waits == []  # an untrusted certificate does not heal by waiting
    assert emu.calls == []
    trusted = make_harness(endpoint=emu.address, insecure=False, root_certificates=ca)
    result = await call(trusted, how, "hi")
    assert result.status is AlternativeStatus.FINAL and len(emu.calls) == 1


def _primary_address() -> str | None:
    """A non-loopback address of this machine, when it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.mark.parametrize(
    "host", ["example.com", "localhost.example.com", "127.0.0.1.nip.io", "10.1.2.3", "[2001:db8::1]", "dns:///db"]
)
async def test_17_plaintext_to_a_remote_host_is_refused_at_construction(kind: str, host: str) -> None:
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    listener.settimeout(0.05)
    port = listener.getsockname()[1]
    targets = [f"{host}:{port}"]
    primary = _primary_address()
    if primary is not None:
        targets.append(f"{primary}:{port}")  # a real interface, listening: must stay untouched
    cls = AsyncClient if kind == "async" else Client
    with listener:
        for target in targets:
            with pytest.raises(ValueError, match="loopback") as info:
                cls(target, insecure=True, api_key=API_KEY, folder_id=FOLDER)
            assert "TLS" in str(info.value)
        with pytest.raises(socket.timeout):
            listener.accept()


# --- 18: big messages ---------------------------------------------------------------------------------


@both_calls
async def test_18_a_response_over_4mb(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float], how: str
) -> None:
    big = "x" * (5 * 1024 * 1024) + " 😈"
    emu.enqueue("Completion", Reply(chunks=[big], usage=(1, 2, 3)))
    result = await call(make_harness(), how, "hi")
    assert result.text == big
    small = make_harness(channel_options=[("grpc.max_receive_message_length", 4 * 1024 * 1024)])
    emu.enqueue("Completion", Reply(chunks=[big], usage=(1, 2, 3)), Reply(chunks=[big], usage=(1, 2, 3)))
    with pytest.raises(MessageTooLargeError) as info:
        await call(small, how, "hi")
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in info.value.details
    assert len(emu.calls) == 2 and waits == []  # not retried


# --- 20-21: reconnects and event loops ------------------------------------------------------------------


async def test_20_emulator_restarted_on_the_same_port(
    harness: Harness, emu: Emulator, yandexgpt_emulator_factory: Any
) -> None:
    assert (await harness.complete(MODEL, "before")).status is AlternativeStatus.FINAL
    port = emu.port
    await asyncio.to_thread(emu.stop)
    with pytest.raises(UnavailableError):
        await harness.complete(MODEL, "while down", retry=None)
    await asyncio.sleep(0.3)  # let the channel's reconnect backoff start
    back = await asyncio.to_thread(yandexgpt_emulator_factory, port=port)
    started = time.monotonic()
    while True:
        try:
            result = await harness.complete(MODEL, "after", retry=None)
            break
        except UnavailableError:
            assert time.monotonic() - started < 2.0, "the client did not reconnect within 2 s"
            await asyncio.sleep(0.02)
    assert result.status is AlternativeStatus.FINAL
    alts, _ = await harness.collect(MODEL, "and a stream")
    assert alts[-1].is_final and len(back.calls) >= 2


async def test_21_wrong_loop_or_deadlocking_running_loop_is_a_clear_error(
    kind: str, harness: Harness, client_kwargs: dict[str, Any]
) -> None:
    if isinstance(harness.client, AsyncClient):
        client = harness.client
        await client.complete(MODEL, "bind to this loop")

        def elsewhere() -> None:
            asyncio.run(client.complete(MODEL, "from another loop"))

        with pytest.raises(RuntimeError, match="another loop"):
            await asyncio.wait_for(asyncio.to_thread(elsewhere), 5)
        with pytest.raises(RuntimeError, match="another loop"):
            await asyncio.wait_for(asyncio.to_thread(lambda: asyncio.run(drain_async(client))), 5)
        # A client first used by a loop that has closed (a second asyncio.run()) says so.
        orphan = AsyncClient(**client_kwargs)
        await asyncio.to_thread(lambda: asyncio.run(orphan.complete(MODEL, "first loop")))
        with pytest.raises(RuntimeError, match="closed"):
            await orphan.complete(MODEL, "second loop")
        return
    # Ordinary blocking use inside a running loop works (the server is elsewhere) ...
    assert (await asyncio.wait_for(_blocking(harness.client), 5)).status is AlternativeStatus.FINAL

    # ... but a token coroutine that may need this very loop would deadlock: refused up front.
    async def token() -> str:
        await asyncio.sleep(0)
        return "loop-bound-token"

    bound = Client(**{**client_kwargs, "api_key": None}, credentials=IamTokenProvider(token))
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="AsyncClient"):
            bound.complete(MODEL, "hi")
        with pytest.raises(RuntimeError, match="deadlock"):
            next(bound.stream(MODEL, "hi"))
        assert time.monotonic() - started < 1.0
        assert (await asyncio.to_thread(bound.complete, MODEL, "from a worker thread")).text
    finally:
        bound.close()


async def drain_async(client: AsyncClient) -> None:
    async for _ in client.stream(MODEL, "hi"):
        pass


async def _blocking(client: Client) -> Any:
    return client.complete(MODEL, "called on the loop's own thread")


# --- the rest of the stream contract --------------------------------------------------------------------


async def test_attempt_timeout_retries_a_stuck_attempt(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float]
) -> None:
    h = make_harness(retry=RetryPolicy(attempt_timeout=0.2))
    emu.enqueue("Completion", Reply(delay=3.0), Reply(chunks=["ok"]))
    started = time.monotonic()
    assert (await h.complete(MODEL, "hi")).text == "ok"
    assert time.monotonic() - started < 2.0
    assert len(emu.calls) == 2 and len(waits) == 1
    assert emu.calls[0].deadline is not None and emu.calls[0].deadline < 0.3  # not the 60 s call default


async def test_attempt_timeout_bounds_only_a_streams_first_response(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float]
) -> None:
    h = make_harness(retry=RetryPolicy(attempt_timeout=0.3))
    # Attempt 1 never answers; attempt 2 streams for longer than the attempt timeout in total.
    emu.enqueue("Completion", Reply(delay=3.0), Reply(chunks=["a", "b", "c", "d", "e"], between=0.1))
    alts, stream = await h.collect(MODEL, "hi")
    assert stream.final.text == "abcde" and len(alts) == 6
    assert len(emu.calls) == 2 and len(waits) == 1
    assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 1.0)
    emu.enqueue("Completion", *[Reply(delay=3.0)] * 2)
    one_try = make_harness(retry=RetryPolicy(attempt_timeout=0.2, max_attempts=2))
    with pytest.raises(DeadlineExceededError, match="attempt timeout"):
        await drain(one_try, one_try.stream(MODEL, "hi"))


async def test_stream_timeout_starts_with_the_first_iteration(harness: Harness, emu: Emulator) -> None:
    stream = harness.stream(MODEL, "hi", timeout=0.5)
    await asyncio.sleep(0.7)  # longer than the timeout, before iterating
    alts = await drain(harness, stream)
    assert alts[-1].is_final
    assert emu.calls[0].deadline is not None and emu.calls[0].deadline > 0.3


async def test_internal_is_retried_only_before_a_response(harness: Harness, emu: Emulator, waits: list[float]) -> None:
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.INTERNAL))
    assert (await harness.complete(MODEL, "hi")).status is AlternativeStatus.FINAL
    assert len(emu.calls) == 2 and len(waits) == 1
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.INTERNAL, after=1))
    stream = harness.stream(MODEL, "hi")
    await harness.next(stream)
    with pytest.raises(StreamInterruptedError):
        await harness.next(stream)
    assert len(emu.calls) == 3 and len(waits) == 1


async def test_retry_override_per_call_and_max_retries(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float]
) -> None:
    h = make_harness(max_retries=1)
    emu.fail_next(2)
    with pytest.raises(UnavailableError) as info:
        await h.complete(MODEL, "hi")
    assert len(emu.calls) == 2 and info.value.attempts == 2 and "after 2 attempts" in str(info.value)
    emu.fail_next(1)
    with pytest.raises(UnavailableError):
        await h.complete(MODEL, "hi", retry=None)
    emu.fail_next(3)
    assert (await h.complete(MODEL, "hi", retry=RetryPolicy(max_attempts=4))).text
    assert len(emu.calls) == 2 + 1 + 4
    none = make_harness(retry=None)
    emu.fail_next(1)
    with pytest.raises(UnavailableError):
        await none.complete(MODEL, "hi")
    assert len(emu.calls) == 8


async def test_status_details_are_unpacked(harness: Harness, emu: Emulator) -> None:
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status()
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="QUOTA", domain="llm.api.cloud.yandex.net"))
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.FAILED_PRECONDITION, status_details=status))
    with pytest.raises(APIError) as info:
        await harness.complete(MODEL, "hi")
    (detail,) = info.value.status_details
    assert isinstance(detail, error_details_pb2.ErrorInfo) and detail.reason == "QUOTA"


async def test_close_on_a_stream_never_started_and_twice(harness: Harness, emu: Emulator) -> None:
    stream = harness.stream(MODEL, "hi")
    await harness.close_stream(stream)
    await harness.close_stream(stream)
    assert await drain(harness, stream) == []
    assert emu.calls == []


def test_streams_cancel_when_collected(emu: Emulator, client_kwargs: dict[str, Any]) -> None:
    emu.enqueue("Completion", Fault(after=1, stall=True))
    with Client(**client_kwargs) as client:
        stream: CompletionStream | None = client.stream(MODEL, "hi")
        assert stream is not None
        next(stream)
        del stream
        assert emu.wait_for(lambda: emu.calls[0].cancelled, 1.0)


async def test_async_streams_cancel_when_collected(emu: Emulator, client_kwargs: dict[str, Any]) -> None:
    emu.enqueue("Completion", Fault(after=1, stall=True))
    async with AsyncClient(**client_kwargs) as client:
        stream: AsyncCompletionStream | None = client.stream(MODEL, "hi")
        assert stream is not None
        await stream.__anext__()
        del stream
        assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 1.0)
