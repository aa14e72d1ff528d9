"""A cloud batch run against the emulator on loopback: IN -> dataset -> task -> OUT, resumable.

The run's steps are driven here with raw generated stubs (the clients' `batch_jobs` wiring uses
the same `drive`/`adrive` with their own unary call). A crash is an exception out of a step:
the state is saved atomically after each step, so stopping at a step boundary is what a kill
leaves behind, and OUT lines are whole lines (torn tails are repaired, as the tests show).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from yandexgpt_grpc import RetryPolicy
from yandexgpt_grpc._cloud_batch import (
    CloudBatchError,
    CloudBatchSummary,
    Poll,
    Rpc,
    adrive,
    cloud_run,
    drive,
)
from yandexgpt_grpc._cloud_http import HttpTransfer, ObjectStorageError
from yandexgpt_grpc._cloud_state import StateFile
from yandexgpt_grpc._errors import from_rpc_error
from yandexgpt_grpc._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2_grpc as bi_grpc
from yandexgpt_grpc._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as ds_grpc
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.operation import operation_service_pb2_grpc as op_grpc
from yandexgpt_grpc.testing import Emulator
from yandexgpt_grpc.testing._batch_engine import Schedule
from yandexgpt_grpc.testing._batch_services import BatchEngineService

FOLDER = "b1gfolder"
AUTH = (("authorization", "Api-Key test"),)
FAST = Poll(initial=0.0, growth=1.0, max_interval=0.0)


class Crash(Exception):
    pass


def stubs_for(channel: Any) -> dict[str, Any]:
    return {
        "datasets": ds_grpc.DatasetServiceStub(channel),
        "batch": tg_grpc.TextGenerationBatchServiceStub(channel),
        "tasks": bi_grpc.BatchInferenceServiceStub(channel),
        "operations": op_grpc.OperationServiceStub(channel),
    }


class Driver:
    """A blocking unary for `drive`, able to crash before or after a chosen call."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stubs = stubs_for(channel)
        self.calls: list[str] = []
        self.crash: Callable[[str, str, int], None] | None = None

    def __call__(self, step: Rpc) -> Any:
        name = f"{step.service}.{step.method}"
        self.calls.append(name)
        if self.crash is not None:
            self.crash(name, "before", self.calls.count(name))
        try:
            resp = getattr(self.stubs[step.service], step.method)(step.request, metadata=AUTH)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        if self.crash is not None:
            self.crash(name, "after", self.calls.count(name))
        return resp


def crash_at(name: str, when: str, nth: int = 1) -> Callable[[str, str, int], None]:
    def check(call: str, moment: str, count: int) -> None:
        if (call, moment, count) == (name, when, nth):
            raise Crash(f"{when} {name} #{nth}")

    return check


@pytest.fixture
def batch() -> Iterator[BatchEngineService]:
    with BatchEngineService(schedule=Schedule(batch_size=100, lines_per_file=300), min_part_size=1) as b:
        yield b


@pytest.fixture
def emu(batch: BatchEngineService) -> Iterator[Emulator]:
    with Emulator(extra_services=[batch]) as e:
        yield e


@pytest.fixture
def driver(emu: Emulator) -> Iterator[Driver]:
    with grpc.insecure_channel(emu.address) as channel:
        yield Driver(channel)


def write_in(tmp_path: Path, n: int, text: Callable[[int], str] = lambda i: f"question {i}") -> Path:
    path = tmp_path / "in.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "messages": text(i)}) + "\n")
    return path


def out_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(driver: Driver, src: Path, out: Path, **kwargs: Any) -> CloudBatchSummary:
    kwargs.setdefault("poll", FAST)
    transfer = HttpTransfer(retry=RetryPolicy(max_attempts=3, initial_backoff=0.0), sleep=lambda _: None)
    kwargs.setdefault("transfer", transfer)
    result: CloudBatchSummary = drive(
        cloud_run(src, out, model="yandexgpt-lite", folder_id=FOLDER, **kwargs), driver, sleep=lambda _: None
    )
    return result


def assert_all_answered(out: Path, n: int, text: Callable[[int], str] = lambda i: f"question {i}") -> None:
    lines = out_lines(out)
    assert sorted(x["id"] for x in lines) == list(range(n))
    for x in lines:
        assert list(x) == ["id", "text", "status", "usage", "model_version"]
        assert x["text"] == f'You said: "{text(x["id"]).strip()}". This is the emulator answering.'


def test_a_thousand_prompts_through_the_engine(driver: Driver, batch: BatchEngineService, tmp_path: Path) -> None:
    src, out = write_in(tmp_path, 1000), tmp_path / "out.jsonl"
    progress: list[tuple[str, int, int]] = []
    summary = run(driver, src, out, on_progress=lambda *p: progress.append(p))
    assert_all_answered(out, 1000)
    assert (summary.status, summary.total, summary.succeeded, summary.failed, summary.missing) == (
        "COMPLETED",
        1000,
        1000,
        0,
        0,
    )
    assert summary.ok
    assert len(batch.store.uploads) == 1
    assert len(batch.engine.tasks) == 1
    assert len([d for d in batch.engine.datasets if d.task_type == "TextToTextGenerationRequest"]) == 1
    assert progress[-1] == ("COMPLETED", 10, 10)
    state = StateFile(out)
    saved = json.loads(Path(state.path).read_text())
    assert saved["finished"] is True
    assert saved["task_id"] == summary.task_id
    assert saved["mapped"] == [f"part-0000{i}.parquet" for i in range(4)]
    # a rerun does nothing twice: no upload, no task, no line
    calls_before = len(driver.calls)
    again = run(driver, src, out)
    assert len(out_lines(out)) == 1000
    assert len(batch.store.uploads) == 1
    assert len(batch.engine.tasks) == 1
    assert "batch.Completion" not in driver.calls[calls_before:]
    assert "datasets.Create" not in driver.calls[calls_before:]
    assert again.succeeded == 1000


@pytest.mark.parametrize(
    ("name", "when", "nth"),
    [
        ("datasets.Create", "after", 1),  # the dataset exists, its id is not saved
        ("datasets.GetUploadDraftUrl", "after", 1),
        ("datasets.Validate", "after", 1),
        ("operations.Get", "before", 1),  # validation running
        ("batch.Completion", "after", 1),  # the task started, its id is not saved
        ("tasks.Describe", "before", 1),  # the task runs
        ("datasets.GetDownloadUrls", "after", 1),
    ],
)
def test_a_crash_at_any_step_resumes_without_doing_anything_twice(
    driver: Driver, batch: BatchEngineService, tmp_path: Path, name: str, when: str, nth: int
) -> None:
    src, out = write_in(tmp_path, 200), tmp_path / "out.jsonl"
    driver.crash = crash_at(name, when, nth)
    with pytest.raises(Crash):
        run(driver, src, out)
    driver.crash = None
    summary = run(driver, src, out)
    assert_all_answered(out, 200)
    assert summary.ok
    assert len(batch.engine.tasks) == 1
    uploads = len(batch.store.uploads)
    created = [d for d in batch.engine.datasets if d.task_type == "TextToTextGenerationRequest"]
    if name == "datasets.Create":
        assert len(created) == 2  # the first id was lost before it could be saved; nothing was uploaded to it
        assert [d.status for d in created].count("READY") == 1
    else:
        assert len(created) == 1
    assert uploads == 1


def test_a_crash_while_writing_out_keeps_every_line_once(
    driver: Driver, batch: BatchEngineService, tmp_path: Path
) -> None:
    src, out = write_in(tmp_path, 700, lambda i: "same" if i % 3 == 0 else f"question {i}"), tmp_path / "out.jsonl"
    run(driver, src, out)
    whole = sorted((x["id"], x["text"]) for x in out_lines(out))
    # rewind to mid-way through the download: first 350 lines, a torn one, the state before mapping
    data = out.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join(data[:350]) + b"\n" + data[350][:7])
    state = json.loads(Path(StateFile(out).path).read_text())
    state.update(finished=False, mapped=state["mapped"][:1])
    Path(StateFile(out).path).write_text(json.dumps(state))
    summary = run(driver, src, out)
    assert sorted((x["id"], x["text"]) for x in out_lines(out)) == whole
    assert [str(p) for p in summary.problems] == [
        "output line 351: incomplete last line (an interrupted write) removed"
    ]
    assert len(batch.engine.tasks) == 1


def test_multipart_parts_are_retried_and_a_rerun_sends_only_the_missing_ones(
    driver: Driver, batch: BatchEngineService, tmp_path: Path
) -> None:
    src = write_in(tmp_path, 3000, lambda i: f"question {i} " + "padding " * 250)  # ~6 MB: parts of 5 + 1 MiB
    out = tmp_path / "out.jsonl"
    sizes = {"multipart_threshold": 5 << 20, "part_size": 5 << 20}
    batch.store.fail(503, part=2, times=3)  # part 2 fails for good (3 attempts): the run stops
    with pytest.raises(ObjectStorageError, match="HTTP 503"):
        run(driver, src, out, **sizes)
    saved = json.loads(Path(StateFile(out).path).read_text())
    assert list(saved["upload_parts"]) == ["1"]  # part 1 finished and was saved
    assert batch.store.uploads == []
    batch.store.reset()
    batch.store.fail(500, part=2)  # once: retried
    summary = run(driver, src, out, **sizes)
    assert summary.ok
    assert_all_answered(out, 3000, lambda i: f"question {i} " + "padding " * 250)
    assert [(r.part, r.status) for r in batch.store.requests if r.method == "PUT"] == [(2, 500), (2, 200)]
    assert driver.calls.count("datasets.StartMultipartUploadDraft") == 1
    [upload] = batch.store.uploads
    assert upload.parts == 2


def test_validation_failure_is_reported_at_the_in_line(
    driver: Driver, batch: BatchEngineService, tmp_path: Path
) -> None:
    src = write_in(tmp_path, 10)
    lines = src.read_text().splitlines()
    lines[2] = "{not json"  # IN line 3 is refused locally, so the converted file is one line shorter
    src.write_text("\n".join(lines) + "\n")
    batch.engine.fail_validation({6: "line is over the model's context"})  # converted line 6 = IN line 7
    out = tmp_path / "out.jsonl"
    with pytest.raises(CloudBatchError) as info:
        run(driver, src, out)
    assert [(p.line, p.message) for p in info.value.problems] == [
        (7, "validation error: line is over the model's context")
    ]
    assert "input line 7: validation error" in str(info.value)
    assert not out.exists()
    assert len(batch.engine.tasks) == 0


def test_a_failed_task_writes_its_errors_per_id(driver: Driver, batch: BatchEngineService, tmp_path: Path) -> None:
    src, out = write_in(tmp_path, 12), tmp_path / "out.jsonl"
    batch.engine.fail_task(line_errors={2: "content filter"}, batch_errors=[(2, 5, 6, "worker lost")])
    summary = run(driver, src, out)
    assert summary.status == "FAILED"
    assert not summary.ok
    errors = {x["id"]: x["error"] for x in out_lines(out)}
    assert errors == {
        1: {"code": "INVALID_ARGUMENT", "message": "content filter"},
        4: {"code": "INTERNAL", "message": "batch 2 failed: worker lost"},
        5: {"code": "INTERNAL", "message": "batch 2 failed: worker lost"},
    }
    assert (summary.failed, summary.missing, summary.succeeded) == (3, 9, 0)


def test_a_task_completed_with_line_errors(driver: Driver, batch: BatchEngineService, tmp_path: Path) -> None:
    src, out = write_in(tmp_path, 5), tmp_path / "out.jsonl"
    batch.engine.fail_task(line_errors={3: "too long"}, fail=False)
    summary = run(driver, src, out)
    assert (summary.status, summary.succeeded, summary.failed, summary.missing) == ("COMPLETED", 4, 1, 0)
    assert {x["id"]: x.get("error") for x in out_lines(out)}[2] == {"code": "INVALID_ARGUMENT", "message": "too long"}


def test_an_unsupported_model_is_the_engines_error(emu: Emulator, tmp_path: Path) -> None:
    with BatchEngineService(unsupported_models={"yandexgpt-lite"}) as b2, Emulator(extra_services=[b2]) as e2:
        with grpc.insecure_channel(e2.address) as channel:
            with pytest.raises(Exception, match="does not support batch inference") as info:
                run(Driver(channel), write_in(tmp_path, 3), tmp_path / "out.jsonl")
    assert type(info.value).__name__ == "InvalidArgumentError"


def test_bad_input_fails_before_any_call(driver: Driver, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "messages": "a", "temperature": 0.1}\n{"id": 2, "messages": "b", "temperature": 0.9}\n')
    with pytest.raises(ValueError, match="one cloud batch task has one model and one set of options"):
        run(driver, src, tmp_path / "out.jsonl")
    src.write_text("")
    with pytest.raises(ValueError, match="has no request to send"):
        run(driver, src, tmp_path / "out2.jsonl")
    with pytest.raises(ValueError, match="temperature must be in"):
        run(driver, write_in(tmp_path, 1), tmp_path / "out3.jsonl", options={"temperature": 3})
    assert driver.calls == []


def test_the_task_takes_the_options_of_in(driver: Driver, batch: BatchEngineService, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": i, "messages": f"q{i}", "response_format": "json", "max_tokens": 50}) + "\n"
            for i in range(3)
        )
    )
    run(driver, src, tmp_path / "out.jsonl")
    [task] = batch.engine.tasks
    assert task.options == {"max_tokens": 50, "json_object": True}
    assert all(json.loads(x["text"])["answer"].startswith("You said") for x in out_lines(tmp_path / "out.jsonl"))


def test_another_in_on_the_same_out_is_refused(driver: Driver, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run(driver, write_in(tmp_path, 3), out)
    with pytest.raises(ValueError, match="belongs to another run: IN has changed"):
        run(driver, write_in(tmp_path, 4), out)


async def test_the_async_driver_runs_the_same_steps(batch: BatchEngineService, emu: Emulator, tmp_path: Path) -> None:
    src, out = write_in(tmp_path, 150), tmp_path / "out.jsonl"
    async with grpc.aio.insecure_channel(emu.address) as channel:
        stubs = stubs_for(channel)

        async def unary(step: Rpc) -> Any:
            try:
                return await getattr(stubs[step.service], step.method)(step.request, metadata=AUTH)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from exc

        async def no_sleep(_: float) -> None:
            return None

        summary = await adrive(
            cloud_run(src, out, model="yandexgpt-lite", folder_id=FOLDER, poll=FAST), unary, sleep=no_sleep
        )
    assert summary.ok
    assert_all_answered(out, 150)


def test_ctrl_c_while_the_task_runs_leaves_it_running_and_a_rerun_reattaches(
    driver: Driver, batch: BatchEngineService, tmp_path: Path
) -> None:
    src, out = write_in(tmp_path, 50), tmp_path / "out.jsonl"

    def interrupt(call: str, moment: str, count: int) -> None:
        if (call, moment) == ("tasks.Describe", "before"):
            raise KeyboardInterrupt

    driver.crash = interrupt
    with pytest.raises(KeyboardInterrupt):
        run(driver, src, out)
    saved = json.loads(Path(StateFile(out).path).read_text())
    assert saved["task_id"] == batch.engine.tasks[0].id
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".jsonl"] == ["in.jsonl"]  # no converted file left
    driver.crash = None
    assert run(driver, src, out).ok
    assert len(batch.engine.tasks) == 1
    assert_all_answered(out, 50)


def test_lines_over_the_engines_limit_are_named_by_in_line(emu: Emulator, tmp_path: Path) -> None:
    src = write_in(tmp_path, 5, lambda i: "long " * 100 if i == 3 else f"question {i}")
    with BatchEngineService(max_line_bytes=200) as b2, Emulator(extra_services=[b2]) as e2:
        with grpc.insecure_channel(e2.address) as channel:
            with pytest.raises(CloudBatchError, match="input line 4: format error: line is longer than 200 bytes"):
                run(Driver(channel), src, tmp_path / "out.jsonl")


def test_a_batch_operation_that_names_its_task_only_later(
    driver: Driver, batch: BatchEngineService, tmp_path: Path
) -> None:
    """The engine may answer Completion before the task exists: the run polls the operation for its id."""
    original = driver.stubs["batch"]

    class Late:
        def Completion(self, request: Any, metadata: Any) -> Any:
            op = original.Completion(request, metadata=metadata)
            op.ClearField("metadata")
            return op

    driver.stubs["batch"] = Late()
    src, out = write_in(tmp_path, 20), tmp_path / "out.jsonl"
    batch.engine.schedule = Schedule(created=0.3)  # the operation is not done when Completion answers
    assert run(driver, src, out).ok
    assert driver.calls.index("operations.Get", driver.calls.index("batch.Completion")) < driver.calls.index(
        "tasks.Describe"
    )
    assert len(batch.engine.tasks) == 1
    assert_all_answered(out, 20)
