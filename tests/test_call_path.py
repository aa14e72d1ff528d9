"""One call path: every RPC's retries go through `_retry.call`/`_retry.acall` and `CallRetry.retry_after`."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

import yandexgpt_grpc
from yandexgpt_grpc import AsyncClient, AsyncOperation, RetryPolicy, arun_batch
from yandexgpt_grpc._retry import CallRetry
from yandexgpt_grpc.testing import Emulator, OperationScript

from .conftest import API_KEY, FOLDER, Harness

MODEL = "yandexgpt-lite"
FAST = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002)
SRC = Path(yandexgpt_grpc.__file__).parent


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, grpc.StatusCode]]:
    """Every (method, code) that reached THE retry rule, CallRetry.retry_after."""
    seen: list[tuple[str, grpc.StatusCode]] = []
    rule = CallRetry.retry_after

    def spy(self: CallRetry, exc: Any, rejected: str, **kwargs: Any) -> float:
        seen.append((self.method, exc.code() if exc is not None else grpc.StatusCode.DEADLINE_EXCEEDED))
        return rule(self, exc, rejected, **kwargs)

    monkeypatch.setattr(CallRetry, "retry_after", spy)
    return seen


async def _await(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def test_every_rpc_is_retried_through_the_one_rule(
    harness: Harness, emu: Emulator, decisions: list[tuple[str, grpc.StatusCode]]
) -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    emu.fail_next(1, unavailable, method="Completion")
    assert (await harness.complete(MODEL, "hi", retry=FAST)).text
    emu.fail_next(1, unavailable, method="Completion")
    alts, _ = await harness.collect(MODEL, "hi", retry=FAST)
    assert alts[-1].is_final
    emu.fail_next(1, unavailable, method="Tokenize")
    assert (await harness.call("tokenize", MODEL, "hi", retry=FAST)).tokens
    emu.fail_next(1, unavailable, method="TokenizeCompletion")
    assert (await harness.call("tokenize_messages", MODEL, "hi", retry=FAST)).tokens
    emu.fail_next(1, unavailable, method="AsyncCompletion")
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=100))
    op = await harness.call("submit", MODEL, "hi", retry=FAST)
    emu.fail_next(1, unavailable, method="OperationGet")
    emu.fail_next(1, unavailable, method="OperationCancel")
    if isinstance(op, AsyncOperation):
        await op.poll()
        await op.cancel()
    else:
        await asyncio.to_thread(op.poll)
        await asyncio.to_thread(op.cancel)
    assert decisions == [
        ("Completion", unavailable),
        ("Completion(stream)", unavailable),
        ("TokenizerService.Tokenize", unavailable),
        ("TokenizerService.TokenizeCompletion", unavailable),
        ("TextGenerationAsyncService.Completion", unavailable),
        ("OperationService.Get", unavailable),
        ("OperationService.Cancel", unavailable),
    ]


async def test_batch_requests_use_the_driver_and_its_hooks(
    emu: Emulator, tmp_path: Path, decisions: list[tuple[str, grpc.StatusCode]]
) -> None:
    """arun_batch has no retry loop of its own: the driver retries, the limiter slows down via a hook."""
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": 1, "messages": "hi"}) + "\n")
    emu.fail_next(2, grpc.StatusCode.RESOURCE_EXHAUSTED, method="Completion")
    async with AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER) as client:
        summary = await arun_batch(client, inp, out, model=MODEL, retry=FAST, rps=1000.0, progress=False)
    assert summary.succeeded == 1
    assert decisions == [("Completion", grpc.StatusCode.RESOURCE_EXHAUSTED)] * 2
    calls = emu.calls_for("Completion")
    assert len(calls) == 3 and len({c.client_request_id for c in calls}) == 1  # one logical call
    assert [c.header("x-retry-attempt") for c in calls] == [None, "2", "3"]


def test_no_module_but_retry_decides_or_waits_between_attempts() -> None:
    """The rule (delay/retry_after/next_delay) and the waits between attempts live in _retry.py only."""
    offenders = []
    for path in sorted(SRC.glob("*.py")):
        if path.name == "_retry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"retry_after", "delay", "next_delay", "failure"}:
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offenders == []
