"""`yandexgpt-grpc batch` at scale: throughput against the rate limit, and peak memory against the input size.

A standalone emulator process serves; the CLI runs 10 000 prompts at ``--rps 200 --concurrency 64``
and its throughput (answered / the run's own elapsed time) must reach 95 % of the rate. A run of a
tenth of the lines at the same rate gives the peak RSS to compare: the runner keeps no list of
results, so ten times the lines may not cost more than a few MiB (the ids it indexes).
Alone: ``python -m bench._batch [--lines N] [--rps R]``; ``--quick`` for tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import API_KEY

TARGET = 0.95  # of the rate limit
RSS_SLACK_MIB = 8.0  # 10x the lines may cost at most this much more peak RSS
FOLDER = "b1gbench"
_ELAPSED = re.compile(r"\((\d+(?:\.\d+)?)s\)")


class Emulator:
    """`python -m yandexgpt_grpc.testing` in its own process, so the runner has the interpreter to itself."""

    def __init__(self) -> None:
        cmd = [sys.executable, "-m", "yandexgpt_grpc.testing", "--port", "0", "--api-key", API_KEY]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            self.close()
            raise RuntimeError("the emulator did not start")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def one_run(address: str, lines: int, rps: float, concurrency: int, workdir: Path) -> dict[str, Any]:
    """One CLI batch run of `lines` prompts; its throughput and the child's peak RSS."""
    inp, out = workdir / f"in-{lines}.jsonl", workdir / f"out-{lines}.jsonl"
    with inp.open("w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(json.dumps({"id": i, "messages": f"prompt number {i}"}) + "\n")
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), "--no-progress"]
    cmd += ["--rps", str(rps), "--concurrency", str(concurrency), "--endpoint", address, "--insecure"]
    cmd += ["--folder-id", FOLDER]
    env = {**os.environ, "YC_API_KEY": API_KEY}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"batch exited {proc.returncode}: {err.strip()}")
    answered = sum(1 for _ in out.open("rb"))
    match = _ELAPSED.search(err)
    elapsed = float(match.group(1)) if match else wall
    return {
        "lines": lines,
        "answered": answered,
        "elapsed_s": elapsed,
        "wall_s": wall,
        "throughput": answered / elapsed,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "cpu_s": usage.ru_utime + usage.ru_stime,  # the runner's own CPU: what a loaded machine takes from it
    }


def run_batch_scale(lines: int = 10_000, rps: float = 200.0, concurrency: int = 64) -> dict[str, Any]:
    emu = Emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            small = one_run(emu.address, max(lines // 10, 1), rps, concurrency, Path(tmp))
            big = one_run(emu.address, lines, rps, concurrency, Path(tmp))
    finally:
        emu.close()
    share = big["throughput"] / rps
    rss_extra = big["peak_rss_mib"] - small["peak_rss_mib"]
    return {
        "rps": rps,
        "concurrency": concurrency,
        "small": small,
        "big": big,
        "share_of_rate": share,
        "rss_extra_mib": rss_extra,
        "target": TARGET,
        "ok": big["answered"] == lines and share >= TARGET and rss_extra <= RSS_SLACK_MIB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._batch", description=__doc__)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="200 lines: checks that it runs")
    args = parser.parse_args(argv)
    res = run_batch_scale(200 if args.quick else args.lines, args.rps, args.concurrency)
    big, small = res["big"], res["small"]
    print(
        f"batch {big['lines']} lines at --rps {res['rps']:g} --concurrency {res['concurrency']}: "
        f"{big['throughput']:.1f} req/s = {100 * res['share_of_rate']:.1f} % of the rate (target >= "
        f"{100 * TARGET:.0f} %); peak RSS {big['peak_rss_mib']:.1f} MiB vs {small['peak_rss_mib']:.1f} MiB "
        f"for {small['lines']} lines ({res['rss_extra_mib']:+.1f} MiB); runner CPU {big['cpu_s']:.1f} s "
        f"({1e3 * big['cpu_s'] / max(big['lines'], 1):.2f} ms per request); {'ok' if res['ok'] else 'MISS'}"
    )
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
