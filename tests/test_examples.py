"""Every script in examples/ runs against the emulator and does what its docstring says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc

from tests.conftest import API_KEY, FOLDER
from yandexgpt_grpc.testing import Emulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ANSWER = 'You said: "{}". This is the emulator answering.'


def run_example(
    emu: Emulator, name: str, *args: str, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_"))}
    env.update(YC_API_KEY=API_KEY, YC_FOLDER_ID=FOLDER)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args, "--endpoint", emu.address, "--insecure"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=30,
        check=False,
    )
    assert API_KEY not in proc.stdout + proc.stderr
    return proc


def test_every_example_is_tested() -> None:
    tested = {"streaming_chat.py", "async_fanout.py", "batch.py", "tool_call.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_streaming_chat_keeps_the_conversation(emu: Emulator) -> None:
    proc = run_example(emu, "streaming_chat.py", stdin="Hello\nAnd again\n\nnot sent\n")
    assert proc.returncode == 0, proc.stderr
    system = "[You are a concise assistant.] "
    assert proc.stdout == (
        f"assistant> {system}{ANSWER.format('Hello')}\nassistant> {system}{ANSWER.format('And again')}\n"
    )
    first, second = emu.calls_for("Completion")
    assert [m.role for m in second.request.messages] == ["system", "user", "assistant", "user"]
    assert second.request.messages[2].text == system + ANSWER.format("Hello")
    assert first.request.completion_options.stream


def test_async_fanout_answers_in_order_and_survives_a_failure(emu: Emulator) -> None:
    emu.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT, "emulator: no")
    questions = [f"question {i}" for i in range(6)]
    proc = run_example(emu, "async_fanout.py", *questions, "--concurrency", "3")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [f"Q: {q}" for q in questions]
    answers = [b.splitlines()[1] for b in blocks]
    assert sum(a.startswith("A: (failed: INVALID_ARGUMENT: emulator: no") for a in answers) == 1
    assert sum(a == "A: " + ANSWER.format(q) for a, q in zip(answers, questions, strict=True)) == 5
    assert len(emu.calls_for("Completion")) == 6


def test_batch_example_writes_then_resumes(emu: Emulator, tmp_path: Path) -> None:
    proc = run_example(emu, "batch.py", "in.jsonl", "out.jsonl", "--demo", "25", "--rps", "500", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("25 answered, 0 failed, 0 already done in ")
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(f"p{i}" for i in range(25))
    again = run_example(emu, "batch.py", "in.jsonl", "out.jsonl", cwd=tmp_path)
    assert again.stdout.startswith("0 answered, 0 failed, 25 already done in ")
    assert len(emu.calls_for("Completion")) == 25


def test_tool_call_round_trip(emu: Emulator) -> None:
    proc = run_example(emu, "tool_call.py", "Weather in Oslo?", "--tool-choice", "required")
    assert proc.returncode == 0, proc.stderr
    called, final = proc.stdout.splitlines()
    assert called.startswith("called get_weather({'city': ")
    assert final.startswith("Tool results: get_weather: {")
    first, second = emu.calls_for("Completion")
    assert [t.function.name for t in first.request.tools] == ["get_weather"]
    roles = [(m.role, m.WhichOneof("Content")) for m in second.request.messages]
    assert roles == [("user", "text"), ("assistant", "tool_call_list"), ("user", "tool_result_list")]
