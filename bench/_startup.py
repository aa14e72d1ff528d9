"""Start-up cost of a one-shot command: `yandexgpt-grpc "Hello"` against a minimal grpcio script.

Both are fresh processes making the same unary call to the same loopback server, timed from
process start to exit; they alternate so that load on the machine hits both alike. The raw
script loads the generated stubs without our package's `__init__`, as `raw_stubs` does in the
import figures. Alone: `python -m bench._startup [--reps N]` (starts its own server).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import API_KEY, MODEL_URI, PROMPT

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.15

_TG = "yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation"
RAW = f"""
import sys, types, importlib.util as u
s = u.find_spec('yandexgpt_grpc'); m = types.ModuleType('yandexgpt_grpc')
m.__path__ = list(s.submodule_search_locations); sys.modules['yandexgpt_grpc'] = m
import grpc
from {_TG} import text_generation_service_pb2 as pb2, text_generation_service_pb2_grpc as pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    request = pb2.CompletionRequest(model_uri={MODEL_URI!r})
    request.messages.add(role="user", text={PROMPT!r})
    stub = pb2_grpc.TextGenerationServiceStub(channel)
    for response in stub.Completion(request, metadata=(("authorization", "Api-Key {API_KEY}"),)):
        last = response
print(last.alternatives[0].message.text)
"""


def commands(port: int) -> dict[str, list[str]]:
    target = f"127.0.0.1:{port}"
    cli = [sys.executable, "-m", "yandexgpt_grpc"]
    script = Path(sys.executable).with_name("yandexgpt-grpc")
    if script.exists():  # the console script, as a user runs it
        cli = [str(script)]
    return {
        "raw": [sys.executable, "-c", RAW, target],
        "ours": [*cli, "--endpoint", target, "--insecure", "--api-key", API_KEY, "--model", MODEL_URI, PROMPT],
    }


def run_startup(port: int, cpu: int | None, reps: int) -> dict[str, Any]:
    cmds = commands(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_", "GRPC_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "0"  # both sides run from cached bytecode, as installed code does
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu_times: dict[str, list[float]] = {k: [] for k in cmds}  # user + system: less swayed by other load
    for i in range(reps + 1):  # the first pair warms the page cache and is dropped
        for key in cmds if i % 2 == 0 else list(cmds)[::-1]:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            out = subprocess.run(cmds[key], env=env, preexec_fn=pre, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if out.returncode or not out.stdout.strip():
                raise RuntimeError(f"startup/{key} failed ({out.returncode}):\n{out.stderr}")
            if i:
                times[key].append(elapsed)
                cpu_times[key].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
    ratio = med["ours"] / med["raw"]
    return {
        "reps": reps,
        "samples_ms": {k: [round(t * 1000, 1) for t in v] for k, v in times.items()},
        "median_ms": {k: v * 1000 for k, v in med.items()},
        "cpu_median_ms": {k: v * 1000 for k, v in med_cpu.items()},
        "ratio": ratio,
        "cpu_ratio": med_cpu["ours"] / med_cpu["raw"],
        "target": TARGET,
        "ok": ratio <= TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    from bench.run import Server

    parser = argparse.ArgumentParser(prog="python -m bench._startup", description=__doc__)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args(argv)
    server = Server(None, "aio")
    try:
        res = run_startup(server.port, None, args.reps)
    finally:
        server.close()
    for key, samples in res["samples_ms"].items():
        print(f"{key:5} median {res['median_ms'][key]:7.1f} ms (cpu {res['cpu_median_ms'][key]:.1f} ms)  {samples}")
    print(f"ratio {res['ratio']:.3f} (target <= {TARGET}); cpu ratio {res['cpu_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
