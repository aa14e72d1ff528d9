"""The bench runs end to end at tiny sizes (no timing is asserted: figures on a shared box are noise)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as yc_common
from yandex.cloud.ai.foundation_models.v1.text_generation import text_generation_service_pb2 as yc_pb2
from yandex.cloud.ai.foundation_models.v1.text_generation import text_generation_service_pb2_grpc as yc_grpc

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {"unary", "stream", "async_unary", "async_stream", "async_fanout"}
VARIANTS = {"raw", "raw_yc", "ours"}


@pytest.mark.timeout(200)  # the batch scenario starts an emulator and two CLI processes of its own
def test_quick_bench_writes_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--rounds", "2", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # about 20 s on a quiet machine; generous because the box is shared
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert set(res["latency"]) == SCENARIOS
    for r in res["latency"].values():
        assert set(r["rounds"]) == VARIANTS
        for v in VARIANTS:
            assert r["median"][f"{v}_us"] > 0
            assert len(r["rounds"][v]["median"]) == res["rounds"] == 2
        # Both baselines get their own paired ratio, and the target is judged on both.
        rounds = r["rounds"]
        for key, base in (("paired_ratio", "raw"), ("paired_ratio_yc", "raw_yc")):
            ratios = sorted(o / b for o, b in zip(rounds["ours"]["median"], rounds[base]["median"], strict=True))
            assert abs(r[key] - (ratios[0] + ratios[1]) / 2) < 1e-9
        assert r["ok"] == (max(r["paired_ratio"], r["paired_ratio_yc"]) <= r["target"])
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
        "raw yandexcloud",
        "ours/yc",
    ):
        assert label in proc.stdout
    assert res["table"] in proc.stdout
    assert res["batch"]["big"]["answered"] == 200


def test_bench_server_sends_the_real_api_shape() -> None:
    """Cumulative text, usage, model version, PARTIAL then FINAL, request-id headers: read with yandexcloud."""
    from bench._server import CHUNK, MODEL_VERSION
    from bench.run import Server

    server = Server(None, "aio")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = yc_grpc.TextGenerationServiceStub(channel)
            req = yc_pb2.CompletionRequest(model_uri="gpt://b1g/yandexgpt-lite/latest")
            req.completion_options.stream = True
            req.completion_options.max_tokens.value = 50
            req.messages.add(role="user", text="hi")
            call = stub.Completion(req)
            got = list(call)
            headers = dict(call.initial_metadata())
    finally:
        server.close()
    assert len(got) == 50 and len(CHUNK) == 8
    for i, resp in enumerate(got, 1):
        (alt,) = resp.alternatives
        assert alt.message.role == "assistant" and alt.message.text == CHUNK * i
        final, partial = (
            yc_common.Alternative.ALTERNATIVE_STATUS_FINAL,
            yc_common.Alternative.ALTERNATIVE_STATUS_PARTIAL,
        )
        assert alt.status == (final if i == 50 else partial)
        assert resp.usage.completion_tokens > 0 and resp.usage.input_text_tokens > 0
        assert resp.usage.total_tokens == resp.usage.input_text_tokens + resp.usage.completion_tokens
        assert resp.model_version == MODEL_VERSION
    assert headers.keys() >= {"x-request-id", "x-server-trace-id"}


def test_instr_child_runs_each_scenario_without_valgrind() -> None:
    """The process bench._instr puts under callgrind: one round of each scenario, every variant."""
    from bench._instr import ROUNDS
    from bench.run import Server

    server = Server(None, "aio")
    try:
        for scenario in ROUNDS:
            for variant in VARIANTS:
                proc = subprocess.run(
                    [sys.executable, "-m", "bench._instr", "--child", variant, scenario, str(server.port), "1"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=55,
                    check=False,
                )
                assert proc.returncode == 0, (scenario, variant, proc.stderr)
    finally:
        server.close()


def _callgrind_file(path: Path, costs: dict[str, int]) -> Path:
    lines = ["version: 1", "creator: test", "events: Ir", "fl=/src/Python/ceval.c", "ob=/lib/libpython3.11.so"]
    for i, (fn, cost) in enumerate(costs.items(), 1):
        lines += [f"fn={fn}", f"{i} {cost}"]
    lines.append(f"totals: {sum(costs.values())}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_instr_per_message_costs_from_two_run_lengths(tmp_path: Path) -> None:
    """(long run - short run) / messages, per function, and minus a baseline's pair."""
    from bench._instr import diff, key, total_instructions

    short = _callgrind_file(tmp_path / "a.out", {"eval": 1000, "alloc": 500})
    long = _callgrind_file(tmp_path / "b.out", {"eval": 3000, "alloc": 600})
    assert total_instructions(long) == 3600
    name = "/tmp/build/Python/ceval.c:_PyEval_EvalFrameDefault'2 [/usr/lib/libpython3.11.so.1.0]"
    assert key(name, "function") == "_PyEval_EvalFrameDefault (ceval.c, libpython3.11.so.1.0)"
    assert key(name, "object") == "libpython3.11.so.1.0"
    assert key(name, "file") == "ceval.c [libpython3.11.so.1.0]"
    if not shutil.which("callgrind_annotate"):
        pytest.skip("valgrind's callgrind_annotate is not installed")
    rows = dict(diff([short, long], 10, 10, False, None, "function"))
    assert rows == {"eval (ceval.c, libpython3.11.so)": 200.0, "alloc (ceval.c, libpython3.11.so)": 10.0}
    base_short = _callgrind_file(tmp_path / "c.out", {"eval": 1000, "alloc": 500})
    base_long = _callgrind_file(tmp_path / "d.out", {"eval": 2000, "alloc": 600})
    rows = dict(diff([short, long], 10, 10, False, [base_short, base_long], "function"))
    assert rows == {"eval (ceval.c, libpython3.11.so)": 100.0, "alloc (ceval.c, libpython3.11.so)": 0.0}
