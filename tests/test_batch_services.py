"""The emulated batch engine over gRPC (raw generated stubs on loopback): datasets, tasks, operations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests._clock import ManualClock as Clock
from yandexgpt_grpc._cloud_http import HttpTransfer, Part
from yandexgpt_grpc._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2 as bi_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2_grpc as bi_grpc
from yandexgpt_grpc._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_task_pb2 as task_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.dataset.v1 import dataset_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as ds_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as ds_grpc
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1 import batch_inference_task_status_pb2 as st_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.operation import operation_service_pb2, operation_service_pb2_grpc
from yandexgpt_grpc.testing import Emulator
from yandexgpt_grpc.testing._batch_engine import Schedule
from yandexgpt_grpc.testing._batch_services import BatchEngineService

FOLDER = "b1gfolder"
MODEL = f"gpt://{FOLDER}/yandexgpt-lite/latest"
AUTH = (("authorization", "Api-Key test"),)


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.ds = ds_grpc.DatasetServiceStub(channel)
        self.batch = tg_grpc.TextGenerationBatchServiceStub(channel)
        self.tasks = bi_grpc.BatchInferenceServiceStub(channel)
        self.ops = operation_service_pb2_grpc.OperationServiceStub(channel)


@pytest.fixture
def clock() -> Clock:
    return Clock(0.0)


@pytest.fixture
def batch(clock: Clock) -> Iterator[BatchEngineService]:
    schedule = Schedule(validation=1, created=1, pending=1, per_batch=1, batch_size=2)
    with BatchEngineService(schedule=schedule, clock=clock, unsupported_models={"yandexgpt-32k"}, min_part_size=1) as b:
        yield b


@pytest.fixture
def emu(batch: BatchEngineService) -> Iterator[Emulator]:
    with Emulator(extra_services=[batch]) as e:
        yield e


@pytest.fixture
def stubs(emu: Emulator) -> Iterator[Stubs]:
    with grpc.insecure_channel(emu.address) as channel:
        yield Stubs(channel)


def jsonl(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"request": [{"role": "user", "text": t}]}) + "\n" for t in texts))
    return path


def unpack(any_msg: Any, cls: Any) -> Any:
    msg = cls()
    assert any_msg.Unpack(msg)
    return msg


def test_a_dataset_goes_through_validation_and_a_task_to_results(
    stubs: Stubs, emu: Emulator, batch: BatchEngineService, clock: Clock, tmp_path: Path
) -> None:
    data = jsonl(tmp_path, ["a", "b", "c"])
    size = data.stat().st_size
    created = stubs.ds.Create(
        ds_pb2.CreateDatasetRequest(
            folder_id=FOLDER, name="in", task_type="TextToTextGenerationRequest", upload_format="jsonlines"
        ),
        metadata=AUTH,
    )
    ds_id = created.dataset_id
    assert created.dataset.status == dataset_pb2.DatasetInfo.DRAFT
    urls = stubs.ds.StartMultipartUploadDraft(
        ds_pb2.StartMultipartUploadDraftRequest(dataset_id=ds_id, size_bytes=size, parts=2), metadata=AUTH
    ).multipart_upload_urls
    half = size // 2
    etags = HttpTransfer().put_parts(list(urls), data, [Part(1, 0, half), Part(2, half, size - half)])
    stubs.ds.FinishMultipartUploadDraft(
        ds_pb2.FinishMultipartUploadDraftRequest(
            dataset_id=ds_id, uploaded_parts=[ds_pb2.UploadedPartInfo(part_num=n, etag=e) for n, e in etags]
        ),
        metadata=AUTH,
    )
    op = stubs.ds.Validate(ds_pb2.ValidateDatasetRequest(dataset_id=ds_id), metadata=AUTH)
    assert not op.done
    assert unpack(op.metadata, ds_pb2.ValidateDatasetMetadata).total_rows == 3
    clock.now += 1
    op = stubs.ops.Get(operation_service_pb2.GetOperationRequest(operation_id=op.id), metadata=AUTH)
    assert op.done
    assert unpack(op.response, ds_pb2.ValidateDatasetResponse).is_valid
    described = stubs.ds.Describe(ds_pb2.DescribeDatasetRequest(dataset_id=ds_id), metadata=AUTH).dataset
    assert (described.status, described.rows, described.size_bytes) == (dataset_pb2.DatasetInfo.READY, 3, size)

    req = tg_pb2.BatchCompletionRequest(model_uri=MODEL, source_dataset_id=ds_id, json_object=True)
    req.completion_options.temperature.value = 0.1
    op = stubs.batch.Completion(req, metadata=AUTH)
    meta = unpack(op.metadata, tg_pb2.BatchCompletionMetadata)
    assert (meta.task_status, meta.completed_batches, meta.total_batches) == (st_pb2.CREATED, 0, 2)
    [task] = batch.engine.tasks
    assert task.options == {"temperature": pytest.approx(0.1), "json_object": True}
    clock.now += 3
    op = stubs.ops.Get(operation_service_pb2.GetOperationRequest(operation_id=op.id), metadata=AUTH)
    meta = unpack(op.metadata, tg_pb2.BatchCompletionMetadata)
    assert (op.done, meta.task_status, meta.completed_batches) == (False, st_pb2.IN_PROGRESS, 1)
    clock.now += 1
    op = stubs.ops.Get(operation_service_pb2.GetOperationRequest(operation_id=op.id), metadata=AUTH)
    response = unpack(op.response, tg_pb2.BatchCompletionResponse)
    assert (op.done, response.task_status) == (True, st_pb2.COMPLETED)
    described_task = stubs.tasks.Describe(
        bi_pb2.DescribeBatchInferenceRequest(task_id=meta.task_id), metadata=AUTH
    ).task
    assert described_task.status == task_pb2.BatchInferenceTask.COMPLETED
    assert described_task.result_dataset_id == response.result_dataset_id
    urls = stubs.ds.GetDownloadUrls(
        ds_pb2.GetDownloadUrlsRequest(dataset_id=response.result_dataset_id), metadata=AUTH
    ).download_urls
    assert [u.key for u in urls] == ["part-00000.parquet"]
    HttpTransfer().get_file(urls[0].url, tmp_path / "r.parquet")
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert sorted(r["response"] for r in rows) == [
        json.dumps({"answer": f'You said: "{t}". This is the emulator answering.'}) for t in "abc"
    ]
    methods = [c.method for c in emu.calls]
    assert methods[:6] == [
        "Dataset.Create",
        "Dataset.StartMultipartUploadDraft",
        "Dataset.FinishMultipartUploadDraft",
        "Dataset.Validate",
        "OperationGet",
        "Dataset.Describe",
    ]
    assert "BatchCompletion" in methods


def test_auth_and_errors_map_to_status_codes(stubs: Stubs, batch: BatchEngineService, tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stubs.ds.Describe(ds_pb2.DescribeDatasetRequest(dataset_id="x"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stubs.ds.Describe(ds_pb2.DescribeDatasetRequest(dataset_id="nope"), metadata=AUTH)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.NOT_FOUND, "dataset nope not found")
    with pytest.raises(grpc.RpcError) as info:
        stubs.tasks.Describe(bi_pb2.DescribeBatchInferenceRequest(task_id="nope"), metadata=AUTH)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        stubs.ds.ListTypes(ds_pb2.ListTypesRequest(folder_id=FOLDER), metadata=AUTH)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as info:
        stubs.batch.Completion(
            tg_pb2.BatchCompletionRequest(model_uri="nonsense", source_dataset_id="x"), metadata=AUTH
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid model_uri" in info.value.details()


def test_an_unsupported_model_and_an_unready_dataset_are_refused(
    stubs: Stubs, batch: BatchEngineService, clock: Clock, tmp_path: Path
) -> None:
    data = jsonl(tmp_path, ["a"])
    ds = batch.engine.create_dataset(FOLDER, "in", "TextToTextGenerationRequest", "jsonlines")
    url = stubs.ds.GetUploadDraftUrl(
        ds_pb2.GetUploadDraftUrlRequest(dataset_id=ds.id, size_bytes=data.stat().st_size), metadata=AUTH
    ).upload_url
    HttpTransfer().put_file(url, data)
    stubs.ds.Validate(ds_pb2.ValidateDatasetRequest(dataset_id=ds.id), metadata=AUTH)
    with pytest.raises(grpc.RpcError) as info:
        stubs.batch.Completion(tg_pb2.BatchCompletionRequest(model_uri=MODEL, source_dataset_id=ds.id), metadata=AUTH)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "VALIDATING" in info.value.details()
    clock.now += 1
    with pytest.raises(grpc.RpcError) as info:
        stubs.batch.Completion(
            tg_pb2.BatchCompletionRequest(model_uri=f"gpt://{FOLDER}/yandexgpt-32k/latest", source_dataset_id=ds.id),
            metadata=AUTH,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "does not support batch inference" in info.value.details()


def test_failed_task_list_cancel_and_delete(
    stubs: Stubs, batch: BatchEngineService, clock: Clock, tmp_path: Path
) -> None:
    data = jsonl(tmp_path, ["a", "b", "c", "d"])
    ds = batch.engine.create_dataset(FOLDER, "in", "TextToTextGenerationRequest", "jsonlines")
    HttpTransfer().put_file(batch.engine.upload_url(ds.id, data.stat().st_size), data)
    batch.engine.validate(ds.id)
    clock.now += 1
    batch.engine.fail_task(line_errors={2: "content filter"}, batch_errors=[(2, 3, 4, "worker lost")])
    failing = stubs.batch.Completion(
        tg_pb2.BatchCompletionRequest(model_uri=MODEL, source_dataset_id=ds.id), metadata=AUTH
    )
    running = stubs.batch.Completion(
        tg_pb2.BatchCompletionRequest(model_uri=MODEL, source_dataset_id=ds.id), metadata=AUTH
    )
    failing_id = unpack(failing.metadata, tg_pb2.BatchCompletionMetadata).task_id
    running_id = unpack(running.metadata, tg_pb2.BatchCompletionMetadata).task_id
    clock.now += 2.5
    stubs.tasks.Cancel(bi_pb2.CancelBatchInferenceRequest(task_id=running_id), metadata=AUTH)
    clock.now += 10
    tasks = stubs.tasks.List(bi_pb2.ListBatchInferencesRequest(folder_id=FOLDER), metadata=AUTH).tasks
    assert {t.task_id: t.status for t in tasks} == {
        failing_id: task_pb2.BatchInferenceTask.FAILED,
        running_id: task_pb2.BatchInferenceTask.CANCELED,
    }
    failed = next(t for t in tasks if t.task_id == failing_id)
    assert [(e.line_number, e.message) for e in failed.errors.line_errors] == [(2, "content filter")]
    assert [(e.batch_number, e.first_line, e.last_line) for e in failed.errors.batch_errors] == [(2, 3, 4)]
    op = stubs.ops.Get(operation_service_pb2.GetOperationRequest(operation_id=failing.id), metadata=AUTH)
    assert (op.done, op.error.code, op.error.message) == (
        True,
        grpc.StatusCode.INTERNAL.value[0],
        "batch inference failed",
    )
    only_failed = stubs.tasks.List(
        bi_pb2.ListBatchInferencesRequest(folder_id=FOLDER, status=task_pb2.BatchInferenceTask.FAILED), metadata=AUTH
    ).tasks
    assert [t.task_id for t in only_failed] == [failing_id]
    stubs.tasks.Delete(bi_pb2.DeleteBatchInferenceRequest(task_id=failing_id), metadata=AUTH)
    assert [
        t.task_id for t in stubs.tasks.List(bi_pb2.ListBatchInferencesRequest(folder_id=FOLDER), metadata=AUTH).tasks
    ] == [running_id]
    stubs.ds.Delete(ds_pb2.DeleteDatasetRequest(dataset_id=ds.id), metadata=AUTH)
    with pytest.raises(grpc.RpcError) as info:
        stubs.ds.Describe(ds_pb2.DescribeDatasetRequest(dataset_id=ds.id), metadata=AUTH)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
