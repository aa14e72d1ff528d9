"""Batch runs you can trust (issue 14): a setup mistake stops the run and is never a result.

Each run-level failure on a 50-line IN stops the run before or at its first failing request,
leaves no line in OUT, and the corrected rerun answers all 50. Per-request errors carry gRPC
status names; transient ones run again by themselves. One writer per OUT. Bad bytes in IN
are that line's problem only.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import API_KEY, FOLDER
from yandexgpt_grpc import (
    AsyncClient,
    BatchAborted,
    BatchLockedError,
    RetryPolicy,
    arun_batch,
    run_batch,
)
from yandexgpt_grpc._batch_io import OutputLock, is_final_error
from yandexgpt_grpc.testing import Emulator, Fault, Reply

MODEL = "yandexgpt-lite"
FAST = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.002)
N = 50


def write_input(path: Path, n: int = N) -> None:
    path.write_text("".join(json.dumps({"id": f"q{i}", "messages": f"prompt {i}"}) + "\n" for i in range(n)), "utf-8")


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n")
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def assert_all_answered(path: Path, n: int = N) -> None:
    got = records(path)
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)), "an id has two lines"
    assert sorted(ids) == sorted(f"q{i}" for i in range(n))
    for r in got:
        assert "error" not in r, r
        assert r["text"] == f'You said: "prompt {r["id"][1:]}". This is the emulator answering.'


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp)
    return inp, out


def good_client(emu: Emulator, **kwargs: Any) -> AsyncClient:
    args: dict[str, Any] = {"insecure": True, "api_key": API_KEY, "folder_id": FOLDER, "retry": FAST}
    args.update(kwargs)
    return AsyncClient(emu.address, **args)


async def rerun_answers_all(emu: Emulator, inp: Path, out: Path) -> None:
    async with good_client(emu) as client:
        summary = await arun_batch(client, inp, out, model=MODEL, progress=False)
    assert summary.ok and summary.succeeded == N and summary.missing == {}
    assert_all_answered(out)


# -- 1. run-level failures -------------------------------------------------------------------


async def test_no_folder_stops_before_any_request_and_out_is_not_touched(
    emu: Emulator, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inp, out = files
    monkeypatch.delenv("YC_FOLDER_ID", raising=False)
    async with AsyncClient(emu.address, insecure=True, api_key=API_KEY) as client:
        with pytest.raises(ValueError, match="short name, which needs a folder"):
            await arun_batch(client, inp, out, model=MODEL, progress=False)
    assert not out.exists() and not Path(f"{out}.lock").exists()
    assert emu.calls_for("Completion") == []
    await rerun_answers_all(emu, inp, out)


async def test_a_short_model_on_one_line_without_folder_is_that_lines_problem(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YC_FOLDER_ID", raising=False)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    uri = f"gpt://{FOLDER}/{MODEL}/latest"
    lines = [{"id": 1, "messages": "a"}, {"id": 2, "messages": "b", "model": MODEL}, {"id": 3, "messages": "c"}]
    inp.write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    async with AsyncClient(emu.address, insecure=True, api_key=API_KEY) as client:
        summary = await arun_batch(client, inp, out, model=uri, progress=False)
    assert [(p.line, "needs a folder" in p.message) for p in summary.problems] == [(2, True)]
    assert sorted(r["id"] for r in records(out)) == [1, 3]
    assert summary.total == 2 and summary.missing == {} and not summary.ok  # an input problem is not ok


async def test_wrong_api_key_stops_the_run_and_the_right_key_finishes_it(files: tuple[Path, Path]) -> None:
    inp, out = files
    with Emulator(api_keys=["the-right-key-0123456789"]) as emu:
        async with AsyncClient(emu.address, insecure=True, api_key="a-wrong-key-0123456789", folder_id=FOLDER) as bad:
            with pytest.raises(BatchAborted) as info:
                await arun_batch(bad, inp, out, model=MODEL, concurrency=8, progress=False)
        err = info.value
        assert err.code is grpc.StatusCode.UNAUTHENTICATED
        assert "refused the credentials" in str(err) and "API key" in str(err)
        assert "a-wrong-key-0123456789" not in str(err)
        assert records(out) == []
        assert len(emu.calls_for("Completion")) <= 8  # at most the first wave, never all 50
        assert err.summary is not None and err.summary.missing == {"not run": N}
        async with AsyncClient(emu.address, insecure=True, api_key="the-right-key-0123456789", folder_id=FOLDER) as ok:
            summary = await arun_batch(ok, inp, out, model=MODEL, progress=False)
    assert summary.ok and summary.succeeded == N
    assert_all_answered(out)


async def test_permission_denied_stops_the_run(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.fail_next(8, grpc.StatusCode.PERMISSION_DENIED, details="emulator: no role in this folder")
    async with good_client(emu) as client:
        with pytest.raises(BatchAborted) as info:
            await arun_batch(client, inp, out, model=MODEL, concurrency=4, progress=False)
    assert info.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert "ai.languageModels.user" in str(info.value) and "no role in this folder" in str(info.value)
    assert records(out) == []
    assert len(emu.calls_for("Completion")) <= 4
    emu.reset()  # the faults the stopped run did not use up: the permission is granted now
    await rerun_answers_all(emu, inp, out)


async def test_plaintext_endpoint_without_insecure_stops_at_the_first_request(
    emu: Emulator, files: tuple[Path, Path]
) -> None:
    inp, out = files
    started = time.monotonic()
    async with AsyncClient(emu.address, api_key=API_KEY, folder_id=FOLDER) as client:  # TLS to a plaintext port
        with pytest.raises(BatchAborted) as info:
            await arun_batch(client, inp, out, model=MODEL, concurrency=4, progress=False)
    assert time.monotonic() - started < 10  # no outage wait, no retry budget burnt
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert "TLS handshake" in str(info.value) and "--insecure" in str(info.value)
    assert records(out) == []
    await rerun_answers_all(emu, inp, out)


async def test_unknown_model_stops_the_run(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    async with good_client(emu) as client:
        with pytest.raises(BatchAborted) as info:
            await arun_batch(client, inp, out, model="yandexgpt-nonesuch", concurrency=4, progress=False)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "does not know model 'gpt://b1gtestfolder/yandexgpt-nonesuch/latest'" in str(info.value)
    assert "invalid model_uri" in str(info.value)
    assert records(out) == []
    assert len(emu.calls_for("Completion")) <= 4
    await rerun_answers_all(emu, inp, out)


async def test_an_unknown_model_named_on_one_line_is_that_lines_error(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [{"id": i, "messages": f"p{i}"} for i in range(5)]
    lines[0]["model"] = "yandexgpt-nonesuch"  # the first request, before any success
    inp.write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    async with good_client(emu) as client:
        summary = await arun_batch(client, inp, out, model=MODEL, concurrency=1, progress=False)
    errors = [r for r in records(out) if "error" in r]
    assert [(e["id"], e["error"]["code"], e["error"]["message"]) for e in errors] == [
        (0, "INVALID_ARGUMENT", "invalid model_uri")
    ]
    assert (summary.succeeded, summary.failed, summary.missing) == (4, 1, {"INVALID_ARGUMENT": 1})
    assert not summary.ok
    assert "1 of 5 ids have no answer yet: 1 INVALID_ARGUMENT (the prompt's own error" in summary.describe()


async def test_in_flight_requests_are_cancelled_when_the_run_stops(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.PERMISSION_DENIED, delay=0.3), *[Reply(delay=30)] * 3)
    async with good_client(emu) as client:
        started = time.monotonic()
        with pytest.raises(BatchAborted):
            await arun_batch(client, inp, out, model=MODEL, concurrency=4, progress=False)
    assert time.monotonic() - started < 10
    assert records(out) == []
    assert emu.wait_for(lambda: sum(c.cancelled for c in emu.calls_for("Completion")) == 3)


def test_run_batch_raises_the_same(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    with pytest.raises(BatchAborted) as info:
        run_batch(
            inp, out, model="yandexgpt-nonesuch", progress=False, endpoint=emu.address, insecure=True, api_key=API_KEY,
            folder_id=FOLDER,
        )  # fmt: skip
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert records(out) == []


# -- 2. honest per-request results -----------------------------------------------------------


async def test_transient_failures_on_10_of_100_rerun_without_a_flag(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 100)
    script: list[Any] = []
    for i in range(100):  # concurrency 1: request i takes the next entries; FAST gives each two attempts
        if i % 10 == 3:
            code = grpc.StatusCode.INTERNAL if i < 50 else grpc.StatusCode.RESOURCE_EXHAUSTED
            script += [Fault(code=code, details=f"emulator: busy {i}")] * 2
        else:
            script.append(Reply())
    emu.enqueue("Completion", *script)
    async with good_client(emu) as client:
        first = await arun_batch(client, inp, out, model=MODEL, concurrency=1, rps=1000, progress=False)
        assert (first.succeeded, first.failed) == (90, 10)
        assert first.missing == {"INTERNAL": 5, "RESOURCE_EXHAUSTED": 5} and not first.ok
        assert "10 of 100 ids have no answer yet: 5 INTERNAL (a rerun retries them)" in first.describe()
        errors = {r["id"]: r["error"]["code"] for r in records(out) if "error" in r}
        assert errors == {f"q{i}": ("INTERNAL" if i < 50 else "RESOURCE_EXHAUSTED") for i in range(3, 100, 10)}
        second = await arun_batch(client, inp, out, model=MODEL, progress=False)
    assert (second.skipped, second.succeeded, second.failed) == (90, 10, 0) and second.ok
    assert_all_answered(out, 100)


async def test_prompt_errors_stay_unless_retry_failed(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.enqueue("Completion", Reply(), Fault(code=grpc.StatusCode.INVALID_ARGUMENT, details="emulator: bad prompt"))
    async with good_client(emu) as client:
        first = await arun_batch(client, inp, out, model=MODEL, concurrency=1, progress=False)
        assert first.missing == {"INVALID_ARGUMENT": 1}
        again = await arun_batch(client, inp, out, model=MODEL, progress=False)
        assert (again.skipped, again.succeeded, again.missing) == (N, 0, {"INVALID_ARGUMENT": 1})
        last = await arun_batch(client, inp, out, model=MODEL, retry_failed=True, progress=False)
    assert (last.succeeded, last.missing) == (1, {})
    assert_all_answered(out)


async def test_error_lines_left_by_setup_mistakes_of_older_versions_run_again(
    emu: Emulator, files: tuple[Path, Path]
) -> None:
    inp, out = files
    old = [
        {"id": "q0", "error": {"code": "ValueError", "message": "model 'yandexgpt-lite' is a short name, ..."}},
        {"id": "q1", "error": {"code": "UNAUTHENTICATED", "message": "bad key"}},
        {"id": "q2", "error": {"code": "INCOMPLETE", "message": "no final alternative"}},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in old), "utf-8")
    async with good_client(emu) as client:
        summary = await arun_batch(client, inp, out, model=MODEL, progress=False)
    assert (summary.skipped, summary.succeeded) == (0, N) and summary.ok
    assert_all_answered(out)


def test_which_error_lines_are_final() -> None:
    final = ["INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE", "NOT_FOUND"]
    rerun = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "CANCELLED", "INCOMPLETE", "RESOURCE_EXHAUSTED"]
    assert all(is_final_error({"code": c, "message": "x"}) for c in final)
    assert not any(is_final_error({"code": c, "message": "x"}) for c in rerun)
    too_large = {"code": "RESOURCE_EXHAUSTED", "message": "Received message larger than max (5 vs. 4)"}
    assert is_final_error(too_large)
    assert not is_final_error({"code": "TypeError", "message": "x"})
    assert not is_final_error("not a dict")


# -- 3. one writer per OUT -------------------------------------------------------------------


async def test_a_second_run_on_the_same_out_refuses_at_once(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.enqueue("Completion", *[Reply(delay=0.05)] * N)
    async with good_client(emu) as client:
        first = asyncio.ensure_future(arun_batch(client, inp, out, model=MODEL, concurrency=4, progress=False))
        while not Path(f"{out}.lock").exists() or not records(out):
            await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(BatchLockedError) as info:
            await arun_batch(client, inp, out, model=MODEL, progress=False)
        assert time.monotonic() - started < 1.0
        assert f"pid {os.getpid()} on " in str(info.value) and "started 20" in str(info.value)
        summary = await first
    assert summary.succeeded == N
    assert_all_answered(out)
    again = await _rerun_summary(emu, inp, out)  # the lock went with the run
    assert again.skipped == N


async def _rerun_summary(emu: Emulator, inp: Path, out: Path) -> Any:
    async with good_client(emu) as client:
        return await arun_batch(client, inp, out, model=MODEL, progress=False)


_HOLD = """
import sys, time
from yandexgpt_grpc._batch_io import OutputLock
OutputLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        yield proc, out
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_run_in_another_process_is_named_and_a_sigkilled_one_never_blocks(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, out = holder
    with pytest.raises(BatchLockedError, match=f"pid {proc.pid} on "):
        OutputLock(out).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with OutputLock(out):  # the kernel dropped the dead process's lock: no manual cleanup
        pass
    with OutputLock(out):
        pass


# -- 4. partly bad input ---------------------------------------------------------------------


async def test_bom_crlf_and_a_latin1_byte_only_cost_that_line(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [json.dumps({"id": i, "messages": f"prompt {i}"}, ensure_ascii=False).encode() for i in range(6)]
    lines[1] = b'{"id": 1, "messages": "caf\xe9"}'  # latin-1, not UTF-8
    lines[3] = json.dumps({"id": 3, "messages": "café ёж"}, ensure_ascii=False).encode()
    inp.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    async with good_client(emu) as client:
        summary = await arun_batch(client, inp, out, model=MODEL, progress=False)
    assert [str(p) for p in summary.problems] == ["input line 2: not valid UTF-8 (byte 0xe9 at byte 27)"]
    got = {r["id"]: r for r in records(out)}
    assert sorted(got) == [0, 2, 3, 4, 5] and summary.succeeded == 5
    assert got[3]["text"] == 'You said: "café ёж". This is the emulator answering.'


# -- 5. progress (library side; the terminal tests are with the CLI) --------------------------


async def test_progress_counts_the_whole_file_and_failures(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    write_input(inp, 10)
    out.write_text("".join(json.dumps({"id": f"q{i}", "text": "x"}) + "\n" for i in range(4)), "utf-8")
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.INVALID_ARGUMENT, details="bad"))
    bar = io.StringIO()
    async with good_client(emu) as client:
        await arun_batch(client, inp, out, model=MODEL, concurrency=1, progress=bar)
    frames = [f for f in bar.getvalue().split("\r") if f.strip()]
    assert frames[0].startswith(" 40%|") and " 4/10 " in frames[0] and "0 failed" in frames[0]
    last = frames[-1].rstrip("\n")
    assert last.startswith("100%|") and " 10/10 [" in last and "req/s, 1 failed]" in last
    assert bar.getvalue().endswith("\n")


async def test_progress_without_tqdm_is_refused_before_any_io(
    emu: Emulator, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from yandexgpt_grpc import _progress

    monkeypatch.setattr(_progress, "available", lambda: False)
    inp, out = files
    async with good_client(emu) as client:
        with pytest.raises(ValueError, match=r"pip install 'yandexgpt-grpc\[cli\]'"):
            await arun_batch(client, inp, out, model=MODEL, progress=io.StringIO())
        summary = await arun_batch(client, inp, out, model=MODEL)  # None: quiet, no error
    assert summary.ok and not out.with_suffix(".jsonl.tmp").exists()
