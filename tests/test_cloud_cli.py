"""`yandexgpt-grpc batch IN OUT --cloud` and `batch-jobs`, as real subprocesses against the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import API_KEY, FOLDER
from yandexgpt_grpc._batch_io import OutputLock
from yandexgpt_grpc.testing import BatchEngineService, Emulator, Schedule

ANSWER = 'You said: "question {}". This is the emulator answering.'


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_"))}
    e.update(YC_API_KEY=API_KEY, YC_FOLDER_ID=FOLDER)
    return e


def command(emu: Emulator, *args: str) -> list[str]:
    return [sys.executable, "-m", "yandexgpt_grpc", *args, "--endpoint", emu.address, "--insecure"]


def run(emu: Emulator, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(command(emu, *args), capture_output=True, text=True, env=env(), timeout=timeout, check=False)
    assert API_KEY not in proc.stdout + proc.stderr
    return proc


def write_in(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "messages": f"question {i}"}) + "\n" for i in range(n)))
    return path


def answered(out: Path) -> dict[int, str]:
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    ids = [x["id"] for x in lines]
    assert len(ids) == len(set(ids)), "an id has two lines"
    return {x["id"]: x["text"] for x in lines}


def inputs(batch: BatchEngineService) -> int:
    return len([d for d in batch.engine.datasets if d.task_type == "TextToTextGenerationRequest"])


@pytest.fixture
def batch() -> Iterator[BatchEngineService]:
    with BatchEngineService(schedule=Schedule(batch_size=100, lines_per_file=400)) as b:
        yield b


@pytest.fixture
def emu(batch: BatchEngineService) -> Iterator[Emulator]:
    with Emulator(extra_services=[batch], api_keys=[API_KEY]) as e:
        yield e


def test_a_thousand_prompts_through_batch_cloud(emu: Emulator, batch: BatchEngineService, tmp_path: Path) -> None:
    src, out = write_in(tmp_path, 1000), tmp_path / "out.jsonl"
    proc = run(emu, "batch", str(src), str(out), "--cloud", "--temperature", "0.3")
    assert proc.returncode == 0, proc.stderr
    got = answered(out)
    assert got == {i: ANSWER.format(i) for i in range(1000)}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(list(x) == ["id", "text", "status", "usage", "model_version"] for x in lines)
    assert (inputs(batch), len(batch.store.uploads), len(batch.engine.tasks)) == (1, 1, 1)
    assert batch.engine.tasks[0].options == {"temperature": pytest.approx(0.3)}
    assert "COMPLETED: 1000 succeeded, 0 failed, 0 without an answer" in proc.stderr


def wait_for(predicate: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the run never reached the step"
        time.sleep(0.02)


def killed_at(emu: Emulator, args: list[str], reached: Callable[[], object]) -> None:
    """Start the command, SIGKILL it once `reached()` is true."""
    proc = subprocess.Popen(command(emu, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        wait_for(lambda: reached() or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=10)


def test_sigkill_at_every_stage_then_a_rerun_finishes_once(tmp_path: Path) -> None:
    schedule = Schedule(validation=1.0, pending=1.0, batch_size=100, lines_per_file=400)
    with BatchEngineService(schedule=schedule) as batch, Emulator(extra_services=[batch], api_keys=[API_KEY]) as emu:
        src, out = write_in(tmp_path, 1000), tmp_path / "out.jsonl"
        args = ["batch", str(src), str(out), "--cloud"]

        def seen(method: str) -> Callable[[], bool]:
            return lambda: any(c.method == method for c in emu.calls)

        batch.store.delay(30, method="PUT")  # the upload hangs: kill it mid-way
        killed_at(emu, args, lambda: batch.store._in_flight > 0)
        batch.store.reset(records=False)
        assert batch.store.uploads == []
        killed_at(emu, args, seen("OperationGet"))  # validating
        killed_at(emu, args, seen("BatchInference.Describe"))  # the task runs
        batch.store.delay(30, method="GET")  # downloading
        killed_at(emu, args, lambda: batch.store._in_flight > 0)
        batch.store.reset(records=False)
        proc = run(emu, *args)
        assert proc.returncode == 0, proc.stderr
        assert answered(out) == {i: ANSWER.format(i) for i in range(1000)}
        assert (inputs(batch), len(batch.store.uploads), len(batch.engine.tasks)) == (1, 1, 1)
        assert [c.method for c in emu.calls].count("Dataset.Validate") == 1
        assert [c.method for c in emu.calls].count("BatchCompletion") == 1
        # nothing left behind but OUT, its state file and its lock file
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "in.jsonl",
            "out.jsonl",
            "out.jsonl.cloud-state.json",
            "out.jsonl.lock",  # kept on purpose (see OutputLock): the lock is the OS lock, not the file
        ]


def test_validation_failure_names_the_in_line_and_exits_4(
    emu: Emulator, batch: BatchEngineService, tmp_path: Path
) -> None:
    src = write_in(tmp_path, 10)
    batch.engine.fail_validation({7: "line is over the model's context"})
    proc = run(emu, "batch", str(src), str(tmp_path / "out.jsonl"), "--cloud")
    assert proc.returncode == 4
    assert "yandexgpt-grpc: input line 7: validation error: line is over the model's context" in proc.stderr
    assert "the batch engine refused the dataset" in proc.stderr
    assert len(batch.engine.tasks) == 0


def test_a_second_run_on_the_same_out_exits_6_at_once(emu: Emulator, tmp_path: Path) -> None:
    src, out = write_in(tmp_path, 3), tmp_path / "out.jsonl"
    with OutputLock(out):
        proc = run(emu, "batch", str(src), str(out), "--cloud")
    assert proc.returncode == 6, proc.stderr
    assert "another batch run is writing" in proc.stderr and str(out) in proc.stderr
    assert emu.calls == []


def test_differing_options_per_line_exit_2_before_any_call(emu: Emulator, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "messages": "a", "max_tokens": 5}\n{"id": 2, "messages": "b", "max_tokens": 9}\n')
    proc = run(emu, "batch", str(src), str(tmp_path / "out.jsonl"), "--cloud")
    assert proc.returncode == 2
    assert 'line 1: {"max_tokens": 5}; line 2: {"max_tokens": 9}' in proc.stderr
    assert emu.calls == []


def started(emu: Emulator) -> Callable[[], bool]:
    return lambda: any(c.method == "BatchInference.Describe" for c in emu.calls)


@pytest.mark.parametrize("cancel", [False, True])
def test_ctrl_c_while_the_task_runs(tmp_path: Path, cancel: bool) -> None:
    with (
        BatchEngineService(schedule=Schedule(pending=60)) as batch,
        Emulator(extra_services=[batch], api_keys=[API_KEY]) as emu,
    ):
        args = ["batch", str(write_in(tmp_path, 5)), str(tmp_path / "out.jsonl"), "--cloud"]
        proc = subprocess.Popen(
            command(emu, *args, *(["--cancel"] if cancel else [])),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        wait_for(started(emu))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130
        [task] = batch.engine.tasks
        status = batch.engine.task(task.id)[1]
        if cancel:
            assert f"task {task.id} cancelled" in err
            assert status == "CANCELED"
        else:
            assert f"task {task.id} keeps running. Run the same command again to re-attach" in err
            assert f"batch-jobs cancel {task.id}" in err
            assert status == "PENDING"


def test_batch_jobs_list_status_results_cancel_delete(emu: Emulator, batch: BatchEngineService, tmp_path: Path) -> None:
    src, out = write_in(tmp_path, 30), tmp_path / "out.jsonl"
    assert run(emu, "batch", str(src), str(out), "--cloud").returncode == 0
    [task] = batch.engine.tasks
    proc = run(emu, "batch-jobs", "list")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"{task.id}\tCOMPLETED\t")
    proc = run(emu, "batch-jobs", "status", task.id)
    assert (proc.returncode, proc.stdout) == (0, f"{task.id}\tCOMPLETED\n")
    proc = run(emu, "batch-jobs", "results", task.id, "--input", str(src))
    assert proc.returncode == 0
    assert {json.loads(x)["id"] for x in proc.stdout.splitlines()} == set(range(30))
    assert "30 results" in proc.stderr
    proc = run(emu, "batch-jobs", "results", task.id)
    assert (proc.returncode, "needs --input IN" in proc.stderr) == (2, True)
    proc = run(emu, "batch-jobs", "cancel", task.id)
    assert (proc.returncode, "already COMPLETED" in proc.stderr) == (4, True)
    assert run(emu, "batch-jobs", "delete", task.id).returncode == 0
    proc = run(emu, "batch-jobs", "status", task.id)
    assert (proc.returncode, "not found" in proc.stderr) == (4, True)
    assert run(emu, "batch-jobs", "status").returncode == 2


def test_progress_display_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from yandexgpt_grpc._cli import _cloud as _cloud_cli

    monkeypatch.setattr(_cloud_cli.importlib.util, "find_spec", lambda name: None)
    err = io.StringIO()
    display = _cloud_cli._Display(err, enabled=True)
    for step in [
        ("PENDING", 0, 3),
        ("PENDING", 0, 3),
        ("IN_PROGRESS", 1, 3),
        ("IN_PROGRESS", 1, 3),
        ("COMPLETED", 3, 3),
    ]:
        display(*step)
    display.close()
    assert err.getvalue().splitlines() == [
        "yandexgpt-grpc: task PENDING",
        "yandexgpt-grpc: 0/3 batches",
        "yandexgpt-grpc: task IN_PROGRESS",
        "yandexgpt-grpc: 1/3 batches",
        "yandexgpt-grpc: task COMPLETED",
        "yandexgpt-grpc: 3/3 batches",
    ]
    quiet = io.StringIO()
    _cloud_cli._Display(quiet, enabled=False)("IN_PROGRESS", 1, 3)
    assert quiet.getvalue() == "yandexgpt-grpc: task IN_PROGRESS\n"
