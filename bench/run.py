"""Orchestration: start the server, run workers in alternating rounds, print and save the table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._batch import run_batch_scale
from bench._common import cpus
from bench._startup import run_startup

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
# raw: a hand-written stub call on our generated stubs; raw_yc: the same on the `yandexcloud` package's
# stubs; ours: Client / AsyncClient. Every latency round runs all three (memory compares raw and ours).
VARIANTS = ("raw", "raw_yc", "ours")
BASELINES = {"raw": "", "raw_yc": "_yc"}  # baseline -> suffix of its keys in a scenario's results


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    target: float  # the highest acceptable paired ours/baseline ratio, against each baseline
    n: int
    warmup: int
    messages: int = 1
    concurrency: int = 1


def scenarios(quick: bool) -> list[Scenario]:
    """Sizes for a full run (a few minutes on 2 cores) or a smoke run (seconds)."""
    q = quick
    return [
        Scenario("unary", "sync unary latency", 1.05, 20 if q else 1500, 5 if q else 200),
        Scenario("stream", "sync stream, per message (50/stream)", 0.85, 3 if q else 120, 1 if q else 20, 50),
        Scenario("async_unary", "async unary latency", 1.05, 20 if q else 1500, 5 if q else 200),
        Scenario("async_stream", "async stream, per message (50/stream)", 1.05, 3 if q else 120, 1 if q else 20, 50),
        Scenario(
            "async_fanout",
            "async fan-out, per message (200 x 20)",
            1.08,
            1 if q else 12,
            1 if q else 2,
            20,
            20 if q else 200,
        ),
    ]


class Server:
    """The loopback server process, pinned to its own CPU when there is one to spare."""

    def __init__(self, cpu: int | None, kind: str) -> None:
        cmd = [sys.executable, "-m", "bench._server", "--kind", kind]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.proc.kill()
            raise RuntimeError("the bench server did not start")
        self.port = int(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench._workers", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"worker {spec['scenario']}/{spec['variant']} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def run_latency(sc: Scenario, port: int, cpu: int | None, rounds: int) -> dict[str, Any]:
    """Rounds alternate the variants; a figure is the median over rounds of each round's figure.

    The order flips every round (raw raw_yc ours, ours raw_yc raw, …), so ours runs after each
    baseline in one round and before it in the next: whatever favours the earlier or later worker
    (the server's state, page cache) cancels out of the paired ratios.
    """
    per: dict[str, dict[str, list[float]]] = {v: {"median": [], "p99": []} for v in VARIANTS}
    for i in range(rounds):
        for v in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
            spec = {"scenario": sc.name, "variant": v, "port": port, "cpu": cpu, "n": sc.n, "warmup": sc.warmup}
            spec |= {"messages": sc.messages, "concurrency": sc.concurrency}
            samples = worker(spec)["samples"]
            per[v]["median"].append(statistics.median(samples))
            per[v]["p99"].append(pct(samples, 0.99))
    out: dict[str, Any] = {"label": sc.label, "target": sc.target, "rounds": per}
    for stat in ("median", "p99"):
        med = {v: statistics.median(per[v][stat]) for v in VARIANTS}
        out[stat] = {f"{v}_us": t * 1e6 for v, t in med.items()}
        for base, sfx in BASELINES.items():
            out[stat]["ratio" + sfx] = med["ours"] / med[base]
    # The target figure, against each baseline: the median of each round's own ours/baseline ratio
    # (ours and the baseline ran back to back, so slow phases of the shared machine hit both).
    for base, sfx in BASELINES.items():
        pairs = zip(per["ours"]["median"], per[base]["median"], strict=True)
        out["paired_ratio" + sfx] = statistics.median(o / r for o, r in pairs)
    out["ok"] = all(out["paired_ratio" + sfx] <= sc.target for sfx in BASELINES.values())
    return out


def run_memory(port: int, cpu: int | None, calls: int, rounds: int) -> dict[str, Any]:
    per: dict[str, list[dict[str, int]]] = {v: [] for v in ("raw", "ours")}
    for _ in range(rounds):
        for v, results in per.items():
            spec = {"scenario": "memory", "variant": v, "port": port, "cpu": cpu, "n": calls}
            # 2000 warm-up calls first: before that the allocators' high-water mark is still moving, and
            # the "growth" of either variant swung by ±500 KiB with nothing but the checkout's path changed.
            results.append(worker(spec | {"warmup": min(2000, calls), "messages": 5}))
    med = {
        v: {
            "peak": statistics.median(r["peak"] for r in per[v]),
            "growth": statistics.median(r["rss_after"] - r["rss_before"] for r in per[v]),
        }
        for v in per
    }
    extra_peak = med["ours"]["peak"] - med["raw"]["peak"]
    return {
        "calls": calls,
        "rounds": per,
        "peak_raw_mib": med["raw"]["peak"] / 2**20,
        "peak_ours_mib": med["ours"]["peak"] / 2**20,
        "peak_extra_mib": extra_peak / 2**20,
        "growth_raw_kib": med["raw"]["growth"] / 1024,
        "growth_ours_kib": med["ours"]["growth"] / 1024,
        "ok": extra_peak <= 3 * 2**20 and med["ours"]["growth"] <= 200 * 1024,
    }


IMPORTS = {
    "raw": "import grpc, google.protobuf",
    "ours": "import yandexgpt_grpc",
    # Not a target: what a user pays before the first call, against importing the generated stubs by hand.
    "ours_client": "from yandexgpt_grpc import Client, AsyncClient",
    "raw_stubs": "import grpc; from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation "
    "import text_generation_service_pb2_grpc",
}
_SHELL = (
    "import sys, types, importlib.util as u; s = u.find_spec('yandexgpt_grpc'); "
    "m = types.ModuleType('yandexgpt_grpc'); "
    "m.__path__ = list(s.submodule_search_locations); sys.modules['yandexgpt_grpc'] = m; "
)


def run_import(cpu: int | None, reps: int) -> dict[str, Any]:
    """Fresh interpreters in alternation; `raw_stubs` loads the stubs without our package's __init__."""
    times: dict[str, list[float]] = {k: [] for k in IMPORTS}
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    for _ in range(reps):
        for key, code in IMPORTS.items():
            src = _SHELL + code if key == "raw_stubs" else code
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", src], check=True, env=env, preexec_fn=pre)
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "reps": reps,
        "median_ms": {k: v * 1000 for k, v in med.items()},
        "ratio": med["ours"] / med["raw"],
        "client_ratio": med["ours_client"] / med["raw_stubs"],
        "target": 1.25,
        "ok": med["ours"] / med["raw"] <= 1.25,
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    import google.protobuf
    import grpc

    return {
        "cpu": model,
        "cpus": len(cpus()) or os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def table(res: dict[str, Any]) -> str:
    """Both baselines side by side; `paired` is the target figure (median of per-round ratios)."""
    head = ("scenario", "raw stub", "raw yandexcloud", "ours", "ours/raw", "paired", "ours/yc", "paired", "target", "")
    rows = [head]
    for name, r in res["latency"].items():
        m, p = r["median"], r["p99"]
        rows.append(
            (
                r["label"] + " median",
                f"{m['raw_us']:.1f} us",
                f"{m['raw_yc_us']:.1f} us",
                f"{m['ours_us']:.1f} us",
                f"{m['ratio']:.3f}",
                f"{r['paired_ratio']:.3f}",
                f"{m['ratio_yc']:.3f}",
                f"{r['paired_ratio_yc']:.3f}",
                f"<= {r['target']:.2f}",
                "ok" if r["ok"] else "MISS",
            )
        )
        if name in ("unary", "async_unary"):
            rows.append(
                (
                    r["label"] + " p99",
                    f"{p['raw_us']:.1f} us",
                    f"{p['raw_yc_us']:.1f} us",
                    f"{p['ours_us']:.1f} us",
                    f"{p['ratio']:.3f}",
                    "",
                    f"{p['ratio_yc']:.3f}",
                    "",
                    "",
                    "",
                )
            )
    im = res["import"]
    ms = im["median_ms"]
    rows.append(
        (
            "cold import (grpc+protobuf vs ours)",
            f"{ms['raw']:.1f} ms",
            "",
            f"{ms['ours']:.1f} ms",
            f"{im['ratio']:.3f}",
            "",
            "",
            "",
            "<= 1.25",
            "ok" if im["ok"] else "MISS",
        )
    )
    rows.append(
        (
            "import to a usable client (stubs vs ours)",
            f"{ms['raw_stubs']:.1f} ms",
            "",
            f"{ms['ours_client']:.1f} ms",
            f"{im['client_ratio']:.3f}",
            "",
            "",
            "",
            "",
            "",
        )
    )
    st = res["startup"]
    rows.append(
        (
            "one-shot CLI call, start to exit (grpcio script vs ours)",
            f"{st['median_ms']['raw']:.1f} ms",
            "",
            f"{st['median_ms']['ours']:.1f} ms",
            f"{st['ratio']:.3f}",
            "",
            "",
            "",
            f"<= {st['target']:.2f}",
            "ok" if st["ok"] else "MISS",
        )
    )
    mem = res["memory"]
    rows.append(
        (
            f"peak RSS ({mem['calls']} calls)",
            f"{mem['peak_raw_mib']:.1f} MiB",
            "",
            f"{mem['peak_ours_mib']:.1f} MiB",
            f"{mem['peak_extra_mib']:+.2f} MiB",
            "",
            "",
            "",
            "<= +3 MiB",
            "ok" if mem["peak_extra_mib"] <= 3 else "MISS",
        )
    )
    rows.append(
        (
            f"RSS growth over {mem['calls']} calls",
            f"{mem['growth_raw_kib']:.0f} KiB",
            "",
            f"{mem['growth_ours_kib']:.0f} KiB",
            "",
            "",
            "",
            "",
            "<= 200 KiB",
            "ok" if mem["growth_ours_kib"] <= 200 else "MISS",
        )
    )
    if "batch" in res:
        ba = res["batch"]
        big, small = ba["big"], ba["small"]
        rows.append(
            (
                f"batch {big['lines']} lines, --rps {ba['rps']:g} --concurrency {ba['concurrency']}: req/s",
                f"{ba['rps']:g} limit",
                "",
                f"{big['throughput']:.1f}",
                f"{ba['share_of_rate']:.3f}",
                "",
                "",
                "",
                f">= {ba['target']:.2f}",
                "ok" if ba["share_of_rate"] >= ba["target"] else "MISS",
            )
        )
        rows.append(
            (
                f"batch peak RSS, {small['lines']} vs {big['lines']} lines",
                f"{small['peak_rss_mib']:.1f} MiB",
                "",
                f"{big['peak_rss_mib']:.1f} MiB",
                f"{ba['rss_extra_mib']:+.2f} MiB",
                "",
                "",
                "",
                "<= +8 MiB",
                "ok" if ba["rss_extra_mib"] <= 8 else "MISS",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per variant")
    parser.add_argument("--only", nargs="*", default=None, help="run only these latency scenarios")
    parser.add_argument("--server", choices=("aio", "sync"), default="aio")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write results (default {RESULTS})")
    args = parser.parse_args(argv)
    # 8 rounds of three workers: the minimum for paired figures, and a full run stays near 4 minutes.
    rounds = args.rounds or (1 if args.quick else 8)
    avail = cpus()
    server_cpu, client_cpu = (avail[0], avail[1]) if len(avail) >= 2 else (None, None)
    started = time.perf_counter()
    res: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "rounds": rounds,
        "server": args.server,
        "pinning": {"server": server_cpu, "client": client_cpu},
        "latency": {},
    }
    server = Server(server_cpu, args.server)
    try:
        for sc in scenarios(args.quick):
            if args.only is None or sc.name in args.only:
                res["latency"][sc.name] = run_latency(sc, server.port, client_cpu, rounds)
                r = res["latency"][sc.name]
                print(
                    f"  {sc.name}: paired {r['paired_ratio']:.3f} (raw) {r['paired_ratio_yc']:.3f} (yandexcloud)",
                    file=sys.stderr,
                    flush=True,
                )
        res["memory"] = run_memory(server.port, client_cpu, 50 if args.quick else 5000, 1 if args.quick else 2)
        res["startup"] = run_startup(server.port, client_cpu, 2 if args.quick else 20)
    finally:
        server.close()
    res["import"] = run_import(client_cpu, 3 if args.quick else 40)
    res["batch"] = run_batch_scale(200 if args.quick else 10_000)
    res["seconds"] = time.perf_counter() - started
    res["ok"] = all(r["ok"] for r in res["latency"].values()) and all(
        res[part]["ok"] for part in ("memory", "import", "startup", "batch")
    )
    text = table(res)
    res["table"] = text
    print(text)
    print(
        f"\n{'all targets hold' if res['ok'] else 'some targets MISSED'}; {res['seconds']:.0f} s; "
        f"written to {args.json}"
    )
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0
