"""The transport modules are typed against the service stubs and grpc's own types: mypy catches a misused stub."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "yandexgpt_grpc"
TRANSPORT = ("_client", "_async_client", "_streaming", "_operations", "_base", "_retry", "_batch", "_channel")

# Transport-shaped code the way _client/_async_client/_operations write it; each marked line is one mistake.
_PROBE = """
from collections.abc import Callable

import grpc

from yandexgpt_grpc._channel import unparsable_error
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.operation import operation_service_pb2 as op_pb2
from yandexgpt_grpc._operations import acall_unary, call_unary
from yandexgpt_grpc._retry import CallRetry


def blocking(channel: grpc.Channel, tries: CallRetry) -> None:
    tokenizer = tg_grpc.TokenizerServiceStub(channel)
    call_unary(tries, lambda: tokenizer.Tokenise, tg_pb2.TokenizeRequest())  # line 18: no such method
    call_unary(tries, lambda: tokenizer.Tokenize, tg_pb2.CompletionRequest())  # line 19: wrong request
    call = tg_grpc.TextGenerationServiceStub(channel).Completion(tg_pb2.TokenizeRequest())  # line 20: wrong request
    resp: tg_pb2.TokenizeResponse = next(call)  # line 21: a Completion answers CompletionResponse
    call_unary(tries, lambda: tokenizer.Tokenize, tg_pb2.TokenizeRequest())  # right


async def asyncio(channel: grpc.aio.Channel, tries: CallRetry, get: Callable[[], object]) -> None:
    stub = tg_grpc.TextGenerationServiceStub(channel)
    call = stub.Completion(tg_pb2.CompletionRequest(), timeout=1.0)
    async for resp in call:
        resp.alternativs  # line 29: a misspelled field of the response
    await acall_unary(tries, lambda: tg_grpc.TokenizerServiceStub(channel).Tokenize, op_pb2.GetOperationRequest())  # 30
    unparsable_error(await stub.Completion(tg_pb2.CompletionRequest(), metadata=(("k", "v"),)).initial_metadata())
    blocking(channel, tries)  # line 32: an aio channel where a blocking one is needed
"""


def test_mypy_catches_a_misused_stub_in_transport_code(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy (the [dev] extra) is not installed")
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE, encoding="utf-8")
    config = ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", *config, "--no-error-summary", "--hide-error-context", str(probe)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    out = proc.stdout
    lines = sorted({int(m.group(1)) for m in re.finditer(r"^probe\.py:(\d+): error:", out, re.M)})
    assert lines == [18, 19, 20, 21, 29, 30, 32], out + proc.stderr


def test_transport_modules_hold_at_most_ten_commented_any() -> None:
    """Where the transport is not typed by the stubs (JSON records, keyword pass-through), a comment says why."""
    total = 0
    for name in TRANSPORT:
        source = (SRC / f"{name}.py").read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name) and node.id == "Any":
                total += 1
                line = lines[node.lineno - 1]
                assert "#" in line, f"{name}.py:{node.lineno}: an Any without a comment saying why: {line.strip()}"
    assert total <= 10, total
