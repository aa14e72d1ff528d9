"""User-space instructions per message under callgrind: repeatable on a loaded machine, unlike wall-clock.

    python -m bench._instr async_stream raw raw_yc ours      # k instructions per message, per variant
    python -m bench._instr async_fanout ours --keep /tmp/cg  # keep the callgrind files for callgrind_annotate
    python -m bench._instr --diff /tmp/cg/ours-async_fanout-{1,6}.out 5000 --base /tmp/cg/raw-async_fanout-{1,6}.out

The bench server runs outside valgrind (pinned to CPU 0); each client process runs under
`valgrind --tool=callgrind` twice, for 1 and for 6 rounds of the scenario (the same variants as
`make bench`: `raw`, `raw_yc`, `ours`). Instructions per message = (I(6) - I(1)) / (5 rounds' messages):
start-up, imports, connecting and the first round cancel out. `--diff A B MSGS` prints, per
function, (B - A) / MSGS from `callgrind_annotate` of both files: where the per-message cost goes;
with `--base A' B'`, minus the same for the baseline's pair: where ours spends more than the raw loop.
MSGS is the messages of the 5 extra rounds: async_stream 2500, async_fanout 5000, async_calls and async_unary 500.
The yandexgpt_grpc imported is whichever is first on the path (PYTHONPATH=/scratch/src tries a copy);
BENCH_INSTR_VARIANTS=file.py adds the client classes of that file's `VARIANTS` dict (same interface as
bench._workers' classes) to the variants one can name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._common import cpus, pin

ROOT = Path(__file__).resolve().parent.parent
# One round: messages per stream, concurrent streams, sequential repeats.
ROUNDS: dict[str, tuple[int, int, int]] = {
    "async_stream": (50, 1, 10),  # 10 streams of 50 messages, one after another: 500 messages
    "async_fanout": (20, 50, 1),  # 50 concurrent 20-message streams: 1000 messages
    "stream": (50, 1, 10),  # the blocking client's stream, for comparison
    "async_calls": (1, 1, 100),  # 100 one-message streams: the per-call cost on its own
    "async_unary": (1, 1, 100),  # 100 complete() calls (the raw loop: one non-streaming Completion each)
}
SHORT, LONG = 1, 6


def messages_per_round(scenario: str) -> int:
    msgs, concurrency, repeats = ROUNDS[scenario]
    return msgs * concurrency * repeats


def child(variant: str, scenario: str, port: int, rounds: int) -> None:
    """The measured process: `rounds` rounds of the scenario, nothing else."""
    from bench._workers import VARIANTS as variants

    extra = os.environ.get("BENCH_INSTR_VARIANTS")
    if extra:  # a file defining VARIANTS: more client classes to measure (A/B of candidate changes)
        import runpy

        variants = {**variants, **runpy.run_path(extra)["VARIANTS"]}
    msgs, concurrency, repeats = ROUNDS[scenario]
    target = f"127.0.0.1:{port}"
    if scenario == "stream":
        c = variants[variant](target, False)
        for _ in range(rounds * repeats):
            assert c.stream(msgs) == msgs
        return

    async def main() -> None:
        c = variants[variant](target, True)
        if scenario == "async_unary":
            for _ in range(rounds * repeats):
                await c.aunary()
        for _ in range(rounds * repeats if scenario != "async_unary" else 0):
            counts = await asyncio.gather(*(c.astream(msgs) for _ in range(concurrency)))
            assert counts == [msgs] * concurrency
        closer = getattr(c, "client", None) or c.channel
        await closer.close()

    asyncio.run(main())


def total_instructions(out_file: Path) -> int:
    """The `totals:` (or `summary:`) line callgrind writes into its output file."""
    text = out_file.read_text()
    match = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
    if not match:
        raise RuntimeError(f"no totals in {out_file}")
    return int(match.group(1))


def measure(variant: str, scenario: str, port: int, cpu: int | None, keep: Path) -> float:
    """Instructions per message of the rounds after the first."""
    totals = {}
    for rounds in (SHORT, LONG):
        out = keep / f"{variant}-{scenario}-{rounds}.out"
        cmd = ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, "-m", "bench._instr", "--child", variant, scenario, str(port), str(rounds)]
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        subprocess.run(cmd, cwd=ROOT, check=True, preexec_fn=pre)
        totals[rounds] = total_instructions(out)
    return (totals[LONG] - totals[SHORT]) / ((LONG - SHORT) * messages_per_round(scenario))


_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)\s*$")
_NAME = re.compile(r"^(?P<file>[^:]*):(?P<func>.*?)(?:'\d+)?(?: \[(?P<obj>[^\]]*)\])?$")


def key(name: str, group: str) -> str:
    """`path/file.c:function [path/lib.so]` shortened to the function, its source file, or its library."""
    m = _NAME.match(name)
    if not m:
        return name
    file, func, obj = Path(m["file"]).name, m["func"], Path(m["obj"]).name if m["obj"] else ""
    if group == "object":
        return obj or "(inlined) " + file
    if group == "file":
        return f"{file} [{obj}]" if obj else file
    return f"{func} ({file}{', ' + obj if obj else ''})"


def annotate(out_file: Path, inclusive: bool, group: str = "function") -> dict[str, int]:
    """Function (or source file, or library) -> instructions, from callgrind_annotate."""
    cmd = ["callgrind_annotate", "--threshold=100", f"--inclusive={'yes' if inclusive else 'no'}", str(out_file)]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    costs: dict[str, int] = {}
    body = text.split("file:function", 1)[-1]
    for line in body.splitlines():
        m = _LINE.match(line)
        if m and not m.group(2).startswith("PROGRAM TOTALS"):
            name = key(m.group(2), group)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def per_message(short: Path, long: Path, messages: int, inclusive: bool, group: str) -> dict[str, float]:
    """Per function: (long - short) / messages."""
    a, b = annotate(short, inclusive, group), annotate(long, inclusive, group)
    return {name: (b.get(name, 0) - a.get(name, 0)) / messages for name in a.keys() | b.keys()}


def diff(  # noqa: PLR0917 - the command line's knobs, passed once
    files: list[Path], messages: int, top: int, inclusive: bool, base: list[Path] | None, group: str
) -> list[tuple[str, float]]:
    """Per function and message, largest first; with `base`, the excess over the baseline's run pair."""
    cost = per_message(files[0], files[1], messages, inclusive, group)
    if base:
        other = per_message(base[0], base[1], messages, inclusive, group)
        cost = {name: cost.get(name, 0.0) - other.get(name, 0.0) for name in cost.keys() | other.keys()}
    rows = sorted(cost.items(), key=lambda r: -abs(r[1]))
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        variant, scenario, port, rounds = argv[1:5]
        pin(cpus()[-1] if len(cpus()) >= 2 else None)
        child(variant, scenario, int(port), int(rounds))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench._instr", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", choices=sorted(ROUNDS))
    parser.add_argument("variants", nargs="*", default=["raw", "raw_yc", "ours"])
    parser.add_argument("--keep", type=Path, default=None, help="directory for the callgrind output files")
    parser.add_argument("--diff", nargs=3, metavar=("SHORT", "LONG", "MESSAGES"), default=None)
    parser.add_argument("--base", nargs=2, metavar=("SHORT", "LONG"), default=None, help="with --diff: minus these")
    parser.add_argument("--inclusive", action="store_true", help="with --diff: inclusive costs")
    parser.add_argument("--group", choices=("function", "file", "object"), default="function")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    if args.diff:
        files, messages = [Path(f) for f in args.diff[:2]], int(args.diff[2])
        base = [Path(f) for f in args.base] if args.base else None
        rows = diff(files, messages, args.top, args.inclusive, base, args.group)
        print(f"{sum(per for _, per in rows):10.1f}  (sum of these rows)")
        for name, per in rows:
            print(f"{per:10.1f}  {name}")
        return 0
    if not args.scenario:
        parser.error("a scenario, or --diff")
    from bench.run import Server

    avail = cpus()
    server_cpu, client_cpu = (avail[0], avail[1]) if len(avail) >= 2 else (None, None)
    keep = args.keep or Path(tempfile.mkdtemp(prefix="bench-instr-"))
    keep.mkdir(parents=True, exist_ok=True)
    server = Server(server_cpu, "aio")
    results: dict[str, Any] = {}
    try:
        for variant in args.variants:
            results[variant] = per = measure(variant, args.scenario, server.port, client_cpu, keep)
            print(f"{args.scenario} {variant}: {per / 1000:.1f} k instructions per message", flush=True)
    finally:
        server.close()
    if "ours" in results:
        for base in ("raw", "raw_yc"):
            if base in results:
                print(f"ours / {base}: {results['ours'] / results[base]:.3f}")
    print(json.dumps({"scenario": args.scenario, "per_message": results, "files": str(keep)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
