"""Batch runs against the emulator: nothing lost, nothing twice, rate limits kept, resumable after kills."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import API_KEY, FOLDER
from yandexgpt_grpc import AsyncClient, RetryPolicy, arun_batch, run_batch
from yandexgpt_grpc._batch import RateLimiter
from yandexgpt_grpc.testing import Emulator, Fault, Reply

FAST = RetryPolicy(max_attempts=10, initial_backoff=0.001, max_backoff=0.004)


def write_input(path: Path, n: int, extra: tuple[str, ...] | list[str] = ()) -> None:
    lines = [json.dumps({"id": f"q{i}", "messages": [{"role": "user", "text": f"prompt {i}"}]}) for i in range(n)]
    path.write_text("\n".join([*lines, *extra]) + "\n", encoding="utf-8")


def read_output(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "OUT must end with a whole line"
    return [json.loads(line) for line in data.decode().splitlines()]


def assert_complete(path: Path, n: int) -> None:
    records = read_output(path)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "an id was answered twice"
    assert sorted(ids) == sorted(f"q{i}" for i in range(n))
    for r in records:  # each answer belongs to its own prompt
        assert r["text"] == f'You said: "prompt {r["id"][1:]}". This is the emulator answering.', r
        assert r["status"] == "FINAL"
        assert r["usage"]["total_tokens"] > 0


@pytest.fixture
async def aclient(emu: Emulator) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER, retry=FAST)
    yield client
    await client.close()


async def test_500_prompts_with_faults_all_answered_once(emu: Emulator, aclient: AsyncClient, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 500)
    script: list[Any] = []
    for i in range(60):
        code = grpc.StatusCode.UNAVAILABLE if i % 2 else grpc.StatusCode.RESOURCE_EXHAUSTED
        script.append(Fault(code=code))
        script.extend([Reply()] * 5)
    emu.enqueue("Completion", *script)
    summary = await arun_batch(aclient, inp, out, model="yandexgpt-lite", concurrency=16, progress=False)
    assert (summary.succeeded, summary.failed, summary.skipped, summary.problems) == (500, 0, 0, [])
    assert_complete(out, 500)
    assert emu.pending("Completion") == 0
    codes = [c.code for c in emu.calls_for("Completion")]
    assert codes.count(grpc.StatusCode.UNAVAILABLE) == 30
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 30
    assert len(codes) == 560  # every fault cost exactly one extra call


async def test_rerun_skips_done_ids_and_repairs_a_torn_last_line(
    emu: Emulator, aclient: AsyncClient, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 20)
    await arun_batch(aclient, inp, out, model="yandexgpt-lite", concurrency=4, progress=False)
    records = read_output(out)
    keep = b"".join(json.dumps(r).encode() + b"\n" for r in records[:12])
    out.write_bytes(keep + b'{"id":"q99","text":"half a li')  # a write cut short by a crash
    calls_before = len(emu.calls)
    problems: list[str] = []
    summary = await arun_batch(
        aclient, inp, out, model="yandexgpt-lite", progress=False, on_problem=lambda p: problems.append(str(p))
    )
    assert summary.skipped == 12
    assert summary.succeeded == 8
    assert len(emu.calls) - calls_before == 8
    assert problems == ["output line 13: incomplete last line (an interrupted write) removed"]
    assert_complete(out, 20)


async def test_input_problems_are_reported_with_line_numbers(aclient: AsyncClient, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(
        inp,
        3,
        extra=[
            "{not json",
            json.dumps({"id": "q1", "messages": "again"}),
            json.dumps({"id": "x", "messages": "hi", "colour": "red"}),
            json.dumps({"messages": "no id"}),
            json.dumps({"id": "y", "messages": [{"role": "robot", "text": "hi"}]}),
            json.dumps({"id": "z", "messages": "hi", "temperature": 7}),
            "",
            json.dumps({"id": 5, "messages": "an int id is fine"}),
        ],
    )
    summary = await arun_batch(aclient, inp, out, model="yandexgpt-lite", progress=False)
    found = {p.line: p.message for p in summary.problems}
    assert sorted(found) == [4, 5, 6, 7, 8, 9]
    assert found[4].startswith("not valid JSON")
    assert found[5] == "duplicate id 'q1' (first on line 2)"
    assert "unknown keys ['colour']" in found[6]
    assert "'id' must be" in found[7]
    assert "unknown role 'robot'" in found[8]
    assert "temperature" in found[9]
    assert summary.succeeded == 4
    assert not summary.ok
    assert {r["id"] for r in read_output(out)} == {"q0", "q1", "q2", 5}


async def test_permanent_failures_are_recorded_and_retry_failed_reruns_them(
    emu: Emulator, aclient: AsyncClient, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 5)
    emu.fail_next(2, grpc.StatusCode.INVALID_ARGUMENT, details="emulator: bad request")
    summary = await arun_batch(aclient, inp, out, model="yandexgpt-lite", concurrency=1, progress=False)
    assert (summary.succeeded, summary.failed) == (3, 2)
    errors = [r for r in read_output(out) if "error" in r]
    assert [e["error"]["code"] for e in errors] == ["INVALID_ARGUMENT"] * 2
    assert errors[0]["error"]["message"] == "emulator: bad request"
    again = await arun_batch(aclient, inp, out, model="yandexgpt-lite", progress=False)
    assert (again.skipped, again.succeeded) == (5, 0)  # errors count as done unless asked
    again = await arun_batch(aclient, inp, out, model="yandexgpt-lite", retry_failed=True, progress=False)
    assert (again.skipped, again.succeeded, again.failed) == (3, 2, 0)
    assert_complete(out, 5)


async def test_progress_bar_shows_counts_rate_eta_failures(emu: Emulator, aclient: AsyncClient, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 6)
    emu.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT)
    bar = io.StringIO()
    await arun_batch(aclient, inp, out, model="yandexgpt-lite", concurrency=1, progress=bar)
    last = bar.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("100%|##########| 6/6 [00:00<00:00, ")
    assert last.endswith("req/s, 1 failed]")
    assert bar.getvalue().endswith("\n")


async def test_quiet_when_stderr_is_not_a_terminal(
    aclient: AsyncClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 3)
    await arun_batch(aclient, inp, out, model="yandexgpt-lite")
    assert capsys.readouterr() == ("", "")


def test_run_batch_is_the_blocking_face(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 10)
    summary = run_batch(
        inp,
        out,
        model="yandexgpt-lite",
        concurrency=3,
        progress=False,
        endpoint=emu.address,
        insecure=True,
        api_key=API_KEY,
        folder_id=FOLDER,
    )
    assert summary.ok and summary.succeeded == 10
    assert_complete(out, 10)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_rate_limiter_keeps_the_rate_under_concurrency() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20.0, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def worker() -> None:
        for _ in range(25):
            starts.append(await limiter.acquire())

    await asyncio.gather(*(worker() for _ in range(16)))
    assert len(starts) == 400
    for i, t in enumerate(starts):  # any one-second window holds at most rate + 1 starts
        assert sum(1 for s in starts[i:] if s < t + 1.0) <= 21
    assert starts[-1] - starts[0] == pytest.approx(399 / 20.0)


async def test_rate_limiter_halves_once_per_burst_and_recovers() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    began = [await limiter.acquire() for _ in range(5)]
    for t in began:  # five rejections of requests sent before the cut: one signal
        limiter.slow_down(t)
    assert limiter.rate == 5.0
    later = await limiter.acquire()
    limiter.slow_down(later)
    assert limiter.rate == 2.5
    for _ in range(200):
        limiter.speed_up()
    assert limiter.rate == 10.0  # never above what was asked for


async def test_unlimited_limiter_starts_limiting_at_half_the_observed_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(40):
        await limiter.acquire()
        clock.now += 0.01  # 100 requests/s
    limiter.slow_down(clock.now)
    assert limiter.rate == pytest.approx(50.0, abs=5)
    for _ in range(100):
        limiter.speed_up()
    assert limiter.rate is None


async def test_rps_is_respected_end_to_end(emu: Emulator, aclient: AsyncClient, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 31)
    started = time.monotonic()
    await arun_batch(aclient, inp, out, model="yandexgpt-lite", concurrency=16, rps=100.0, progress=False)
    assert time.monotonic() - started >= 0.3  # 31 starts at 100/s span 0.3 s at least
    arrivals = sorted(c.started_at for c in emu.calls_for("Completion"))
    assert arrivals[-1] - arrivals[0] >= 0.25  # spread out, not one burst of 16


def _batch_cmd(emu: Emulator, inp: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "yandexgpt_grpc",
        "batch",
        str(inp),
        str(out),
        "--model",
        "yandexgpt-lite",
        "--concurrency",
        "16",
        "--endpoint",
        emu.address,
        "--insecure",
        "--api-key",
        API_KEY,
        "--folder-id",
        FOLDER,
    ]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_mid_run_then_rerun_gives_exactly_500(emu: Emulator, tmp_path: Path, sig: signal.Signals) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 500)
    emu.enqueue("Completion", *[Reply(delay=0.02)] * 500)  # slow enough to kill in the middle
    proc = subprocess.Popen(_batch_cmd(emu, inp, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while _lines(out) < 100 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert API_KEY not in err
    first = read_output(out)
    assert 100 <= len(first) < 500, "the kill should land mid-run"
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert err.count("interrupted") == 1 and "run the same command again to continue" in err
        assert emu.wait_for(lambda: any(c.cancelled for c in emu.calls_for("Completion")))
    else:
        assert proc.returncode == -signal.SIGKILL
    rerun = subprocess.run(_batch_cmd(emu, inp, out), check=False, capture_output=True, text=True, timeout=30)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{500 - len(first)} succeeded, 0 failed, {len(first)} already done" in rerun.stderr
    assert_complete(out, 500)


def test_cli_batch_reports_problems_and_exits_1(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 2, extra=["[1, 2]", json.dumps({"id": "q0", "messages": "dup"})])
    proc = subprocess.run(_batch_cmd(emu, inp, out), check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "input line 3: expected a JSON object with 'id' and 'messages'" in proc.stderr
    assert "input line 4: duplicate id 'q0' (first on line 1)" in proc.stderr
    assert_complete(out, 2)
    assert os.path.getsize(out) > 0
