"""The bench runs end to end at tiny sizes (no timing is asserted: figures on a shared box are noise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {"unary", "stream", "async_unary", "async_stream", "async_fanout"}


@pytest.mark.timeout(120)  # the batch scenario starts an emulator and two CLI processes of its own
def test_quick_bench_writes_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert set(res["latency"]) == SCENARIOS
    for r in res["latency"].values():
        assert r["median"]["raw_us"] > 0 and r["median"]["ours_us"] > 0
        assert len(r["rounds"]["raw"]["median"]) == len(r["rounds"]["ours"]["median"]) == res["rounds"]
    assert res["memory"]["peak_raw_mib"] > 0 and res["memory"]["peak_ours_mib"] > 0
    assert set(res["import"]["median_ms"]) == {"raw", "ours", "ours_client", "raw_stubs"}
    for label in (
        "sync unary",
        "sync stream",
        "async unary",
        "async stream",
        "fan-out",
        "cold import",
        "peak RSS",
        "RSS growth",
        "batch 200 lines",
    ):
        assert label in proc.stdout
    assert res["table"] in proc.stdout
    assert res["batch"]["big"]["answered"] == 200
