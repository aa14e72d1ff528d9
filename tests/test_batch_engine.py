"""The emulated batch engine's logic, and the cloud path's files through it end to end (no gRPC yet)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._clock import ManualClock as Clock
from yandexgpt_grpc import RetryPolicy
from yandexgpt_grpc._batch import BatchProblem, _Output
from yandexgpt_grpc._cloud_batch_files import RequestIndex, convert_input, map_results
from yandexgpt_grpc._cloud_http import HttpTransfer, Part
from yandexgpt_grpc.testing._batch_engine import (
    INPUT_TASK_TYPE,
    BatchEngine,
    EngineError,
    Schedule,
)
from yandexgpt_grpc.testing._object_store import ObjectStore

FOLDER = "b1gfolder"
MODEL = f"gpt://{FOLDER}/yandexgpt-lite/latest"


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    with ObjectStore(min_part_size=1) as s:
        yield s


@pytest.fixture
def transfer() -> HttpTransfer:
    return HttpTransfer(retry=RetryPolicy(max_attempts=3, initial_backoff=0.0), sleep=lambda _: None)


def engine_with(store: ObjectStore, clock: Clock, **kwargs: Any) -> BatchEngine:
    schedule = kwargs.pop("schedule", Schedule(validation=5, created=10, pending=60, per_batch=30, batch_size=10))
    return BatchEngine(store, schedule=schedule, clock=clock, **kwargs)


def write_in(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "text": f"question {i}"}]}) + "\n")
    return path


def upload(engine: BatchEngine, transfer: HttpTransfer, data_path: str, size: int, parts: int = 0) -> str:
    ds = engine.create_dataset(FOLDER, "in.jsonl", INPUT_TASK_TYPE, "jsonlines")
    if parts:
        step = -(-size // parts)
        plan = [Part(n + 1, n * step, min(step, size - n * step)) for n in range(parts)]
        urls = engine.start_multipart(ds.id, size, parts)
        engine.finish_multipart(ds.id, transfer.put_parts(urls, data_path, plan))
    else:
        transfer.put_file(engine.upload_url(ds.id, size), data_path)
    return ds.id


def test_the_whole_path_in_to_out(store: ObjectStore, clock: Clock, transfer: HttpTransfer, tmp_path: Path) -> None:
    engine = engine_with(store, clock, response_as_struct=True)
    src = write_in(tmp_path, 25)
    conv = convert_input(src, dest_dir=tmp_path)
    ds_id = upload(engine, transfer, conv.path, conv.size, parts=3)
    op = engine.validate(ds_id)
    assert engine.operation(op.id)[1:] == (
        False,
        {"dataset_id": ds_id, "total_rows": 25, "processed_rows": 0, "valid_rows": 0, "is_valid": True, "errors": []},
    )
    assert engine.dataset(ds_id).status == "VALIDATING"
    clock.now += 5
    assert engine.operation(op.id)[1] is True
    assert engine.dataset(ds_id).status == "READY"
    assert engine.dataset(ds_id).size_bytes == conv.size

    task = engine.start_task(FOLDER, MODEL, ds_id, {"temperature": 0.5})
    seen = []
    for step in (0, 10, 60, 30, 30, 29, 1):
        clock.now += step
        _, status, done, total = engine.task(task.id)
        seen.append((status, done, total))
    assert seen == [
        ("CREATED", 0, 3),
        ("PENDING", 0, 3),
        ("IN_PROGRESS", 0, 3),
        ("IN_PROGRESS", 1, 3),
        ("IN_PROGRESS", 2, 3),
        ("IN_PROGRESS", 2, 3),
        ("COMPLETED", 3, 3),
    ]
    assert engine.operation(task.operation_id)[1:] == (
        True,
        {"task_id": task.id, "task_status": "COMPLETED", "completed_batches": 3, "total_batches": 3},
    )
    result_id = engine.task(task.id)[0].result_dataset_id
    files = engine.download_urls(result_id)
    assert [name for name, _ in files] == ["part-00000.parquet"]

    out = tmp_path / "out.jsonl"
    problems: list[BatchProblem] = []
    with RequestIndex.build(src, tmp_path / "index.sqlite") as index:
        output = _Output(out)
        for name, url in files:
            transfer.get_file(url, tmp_path / name)
            map_results(tmp_path / name, index, output, problems)
        output.close()
        assert list(index.unanswered()) == []
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert problems == []
    assert sorted(x["id"] for x in lines) == sorted(f"q{i}" for i in range(25))
    for x in lines:
        n = x["id"][1:]
        assert x["text"] == f'You said: "question {n}". This is the emulator answering.'
    assert [u.parts for u in store.uploads] == [3]
    assert len(engine.datasets) == 2  # the input and the result
    assert len(engine.tasks) == 1
    os.unlink(conv.path)


def test_results_are_split_into_files_in_no_promised_order(
    store: ObjectStore, clock: Clock, transfer: HttpTransfer, tmp_path: Path
) -> None:
    engine = engine_with(store, clock, schedule=Schedule(lines_per_file=4))
    conv = convert_input(write_in(tmp_path, 10), dest_dir=tmp_path)
    ds_id = upload(engine, transfer, conv.path, conv.size)
    engine.validate(ds_id)
    task = engine.start_task(FOLDER, MODEL, ds_id, {"json_object": True, "max_tokens": 3})
    result = engine.dataset(engine.task(task.id)[0].result_dataset_id)
    assert (result.status, result.task_type, result.rows) == ("READY", "TextToTextGeneration", 10)
    names = [name for name, _ in engine.download_urls(result.id)]
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    import pyarrow.parquet as pq

    table = pq.read_table(store.object_path(f"datasets/{result.id}/part-00000.parquet"))
    assert table.column_names == ["request", "response", "line"]
    first = table.to_pylist()
    assert [r["request"][0]["text"] for r in first] == [f"question {i}" for i in (3, 2, 1, 0)]
    assert first[0]["response"] == '{"answer'  # json_object, cut to max_tokens=3 by the emulator's tokenizer


def test_validation_errors_name_the_lines(
    store: ObjectStore, clock: Clock, transfer: HttpTransfer, tmp_path: Path
) -> None:
    engine = engine_with(store, clock, max_line_bytes=200)
    data = tmp_path / "data.jsonl"
    lines = [json.dumps({"request": [{"role": "user", "text": f"q{i}"}]}) for i in range(10)]
    lines[2] = "{not json"
    lines[4] = json.dumps({"request": [{"role": "robot", "text": "x"}]})
    lines[8] = json.dumps({"request": [{"role": "user", "text": "x" * 300}]})
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds_id = upload(engine, transfer, str(data), data.stat().st_size)
    engine.fail_validation({7: "scripted: line 7 is over the token limit"})
    op = engine.validate(ds_id)
    clock.now += 5
    _, done, details = engine.operation(op.id)
    assert done
    assert not details["is_valid"]
    assert (details["total_rows"], details["valid_rows"]) == (10, 6)
    assert sorted(details["errors"], key=lambda e: e[2]) == [
        ("format error", "line is not valid JSON", [3]),
        ("format error", "each message needs a role (system, user, assistant) and a text", [5]),
        ("validation error", "scripted: line 7 is over the token limit", [7]),
        ("format error", "line is longer than 200 bytes", [9]),
    ]
    assert engine.dataset(ds_id).status == "INVALID"
    with pytest.raises(EngineError, match="is INVALID, not READY") as info:
        engine.start_task(FOLDER, MODEL, ds_id, {})
    assert info.value.code == "FAILED_PRECONDITION"
    # the script is used once
    ds2 = upload(engine, transfer, str(data), data.stat().st_size)
    assert all(
        e[1] != "scripted: line 7 is over the token limit"
        for e in engine.operation(engine.validate(ds2).id)[2]["errors"]
    )


def test_a_failed_task_reports_line_and_batch_errors(
    store: ObjectStore, clock: Clock, transfer: HttpTransfer, tmp_path: Path
) -> None:
    engine = engine_with(store, clock, schedule=Schedule())
    conv = convert_input(write_in(tmp_path, 30), dest_dir=tmp_path)
    ds_id = upload(engine, transfer, conv.path, conv.size)
    engine.validate(ds_id)
    engine.fail_task(
        line_errors={4: "content filter"}, batch_errors=[(2, 11, 20, "worker lost")], message="task failed"
    )
    task = engine.start_task(FOLDER, MODEL, ds_id, {})
    got, status, _, _ = engine.task(task.id)
    assert status == "FAILED"
    assert got.line_errors == {4: "content filter"}
    assert got.batch_errors == [(2, 11, 20, "worker lost")]
    assert got.failure == "task failed"
    assert got.result_dataset_id == ""


def test_a_completed_task_with_line_errors_leaves_those_lines_out(
    store: ObjectStore, clock: Clock, transfer: HttpTransfer, tmp_path: Path
) -> None:
    engine = engine_with(store, clock, schedule=Schedule())
    src = write_in(tmp_path, 6)
    conv = convert_input(src, dest_dir=tmp_path)
    ds_id = upload(engine, transfer, conv.path, conv.size)
    engine.validate(ds_id)
    engine.fail_task(line_errors={2: "too long", 5: "filtered"}, fail=False)
    task, status, _, _ = engine.task(engine.start_task(FOLDER, MODEL, ds_id, {}).id)
    assert status == "COMPLETED"
    [(name, url)] = engine.download_urls(task.result_dataset_id)
    transfer.get_file(url, tmp_path / name)
    with RequestIndex.build(src, tmp_path / "index.sqlite") as index:
        output = _Output(tmp_path / "out.jsonl")
        map_results(tmp_path / name, index, output, [])
        output.close()
        assert list(index.unanswered()) == [("q1", 2), ("q4", 5)]


def test_cancel_list_and_delete(store: ObjectStore, clock: Clock, transfer: HttpTransfer, tmp_path: Path) -> None:
    engine = engine_with(store, clock)
    conv = convert_input(write_in(tmp_path, 3), dest_dir=tmp_path)
    ds_id = upload(engine, transfer, conv.path, conv.size)
    engine.validate(ds_id)
    clock.now += 5
    a = engine.start_task(FOLDER, MODEL, ds_id, {})
    b = engine.start_task(FOLDER, MODEL, ds_id, {})
    assert {(t.id, s) for t, s in engine.list_tasks(FOLDER)} == {(a.id, "CREATED"), (b.id, "CREATED")}
    assert engine.list_tasks("other") == []
    with pytest.raises(EngineError, match="cancel it first"):
        engine.delete_task(a.id)
    clock.now += 80
    engine.cancel_task(a.id)
    clock.now += 1000
    assert engine.task(a.id)[1] == "CANCELED"
    assert engine.task(b.id)[1] == "COMPLETED"
    with pytest.raises(EngineError, match="already CANCELED"):
        engine.cancel_task(a.id)
    engine.delete_task(a.id)
    with pytest.raises(EngineError, match="not found") as info:
        engine.task(a.id)
    assert info.value.code == "NOT_FOUND"
    assert [t.id for t, _ in engine.list_tasks(FOLDER)] == [b.id]
    result = engine.task(b.id)[0].result_dataset_id
    keys = [f"datasets/{result}/{name}" for name, _ in engine.download_urls(result)]
    engine.delete_dataset(result)
    assert not any(store.has(k) for k in keys)
    with pytest.raises(EngineError, match="not found"):
        engine.dataset(result)


def test_refusals(store: ObjectStore, clock: Clock, transfer: HttpTransfer, tmp_path: Path) -> None:
    engine = engine_with(store, clock, unsupported_models={"yandexgpt-32k"})
    with pytest.raises(EngineError, match="1 to 63"):
        engine.create_dataset(FOLDER, "x" * 64, INPUT_TASK_TYPE, "jsonlines")
    with pytest.raises(EngineError, match="unsupported task_type"):
        engine.create_dataset(FOLDER, "n", "TextClassification", "jsonlines")
    ds = engine.create_dataset(FOLDER, "n", INPUT_TASK_TYPE, "jsonlines")
    with pytest.raises(EngineError, match="no uploaded data yet") as info:
        engine.validate(ds.id)
    assert info.value.code == "FAILED_PRECONDITION"
    with pytest.raises(EngineError, match="not found"):
        engine.upload_url("nope", 10)
    conv = convert_input(write_in(tmp_path, 2), dest_dir=tmp_path)
    urls = engine.start_multipart(ds.id, conv.size, 2)
    half = conv.size // 2
    etags = transfer.put_parts(urls, conv.path, [Part(1, 0, half), Part(2, half, conv.size - half)])
    with pytest.raises(EngineError, match="etag") as info:
        engine.finish_multipart(ds.id, [(1, etags[1][1]), (2, etags[1][1])])
    assert info.value.code == "INVALID_ARGUMENT"
    engine.finish_multipart(ds.id, etags)
    engine.validate(ds.id)
    clock.now += 5
    with pytest.raises(EngineError, match="is READY, not DRAFT"):
        engine.upload_url(ds.id, 10)
    with pytest.raises(EngineError, match="does not support batch inference") as info:
        engine.start_task(FOLDER, f"gpt://{FOLDER}/yandexgpt-32k/latest", ds.id, {})
    assert info.value.code == "INVALID_ARGUMENT"
    with pytest.raises(EngineError, match="is DRAFT, not READY"):
        engine.download_urls(engine.create_dataset(FOLDER, "m", INPUT_TASK_TYPE, "jsonlines").id)
