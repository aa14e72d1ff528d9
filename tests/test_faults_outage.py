"""A batch run through an endpoint outage (issue 17 item 8): pause all, probe, go on; stop past the bound."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from yandexgpt_grpc import AsyncClient, BatchOutageError, arun_batch
from yandexgpt_grpc.testing import Emulator

from ._faultnet import FaultProxy
from .conftest import API_KEY, FOLDER

MODEL = "yandexgpt-lite"


def write_input(path: Path, n: int) -> None:
    path.write_text("".join(json.dumps({"id": i, "messages": f"prompt {i}"}) + "\n" for i in range(n)), "utf-8")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def proxy(emu: Emulator) -> Iterator[FaultProxy]:
    with FaultProxy(emu.address) as p:
        yield p


async def _outage(proxy: FaultProxy, after: asyncio.Event, seconds: float) -> None:
    await after.wait()
    proxy.refuse = True  # the endpoint goes away: open connections reset, new ones refused
    proxy.reset_all()
    await asyncio.sleep(seconds)
    proxy.refuse = False


async def test_a_4s_outage_in_a_300_id_batch_writes_no_error_line(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 300)
    halfway = asyncio.Event()

    def on_result(record: dict[str, Any]) -> None:
        if record["id"] == 0 or len(done) >= 40:
            halfway.set()
        done.append(record)

    done: list[dict[str, Any]] = []
    # The client's default retry policy: on its own, each request in flight burns it in ~2 s.
    async with AsyncClient(proxy.address, insecure=True, api_key=API_KEY, folder_id=FOLDER) as client:
        fault = asyncio.ensure_future(_outage(proxy, halfway, 4.0))
        summary = await arun_batch(client, inp, out, model=MODEL, concurrency=8, rps=60, on_result=on_result)
        await fault
    got = records(out)
    assert [r for r in got if "error" in r] == []
    assert sorted(r["id"] for r in got) == list(range(300))
    assert summary.succeeded == 300 and summary.failed == 0


async def test_an_outage_past_the_bound_stops_the_run(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 50)
    first = asyncio.Event()
    async with AsyncClient(proxy.address, insecure=True, api_key=API_KEY, folder_id=FOLDER) as client:
        fault = asyncio.ensure_future(_outage(proxy, first, 60.0))
        started = time.monotonic()
        with pytest.raises(BatchOutageError) as info:
            await arun_batch(
                client, inp, out, model=MODEL, concurrency=4, rps=20, outage_wait=1.5, on_result=lambda r: first.set()
            )
        elapsed = time.monotonic() - started
        fault.cancel()
    got = records(out)
    assert [r for r in got if "error" in r] == []  # nothing written for the requests it stopped
    assert 0 < len(got) < 50 and info.value.saved == len(got)
    assert f"{len(got)} results saved" in str(info.value)
    assert elapsed < 10.0


def test_cli_outage_wait_flag_and_exit_5(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 3)
    with FaultProxy("127.0.0.1:9") as dead:  # refuses everything: never reachable
        dead.refuse = True
        cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), "--model", MODEL]
        cmd += ["--endpoint", dead.address, "--insecure", "--api-key", API_KEY, "--folder-id", FOLDER]
        proc = subprocess.run([*cmd, "--outage-wait", "1"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 5, proc.stderr
    assert "unreachable for 1s (outage_wait); 0 results saved" in proc.stderr
    assert not out.exists() or out.read_text(encoding="utf-8") == ""
