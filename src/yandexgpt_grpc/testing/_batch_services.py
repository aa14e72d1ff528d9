"""The batch engine's gRPC services on the Emulator, offline: datasets, batch completion, tasks.

>>> with BatchEngineService() as batch, Emulator(extra_services=[batch]) as emu:
...     # DatasetService, TextGenerationBatchService and BatchInferenceService on emu.address;
...     # uploads and downloads go to batch.store (an ObjectStore on loopback)

Every call goes through the Emulator's capture and auth, like the completion services (the
captured method names are ``Dataset.Create``, ``BatchCompletion``, ``BatchInference.Describe``
and so on). ``OperationService.Get`` answers for the validation and batch operations too:
validation metadata/response are ``ValidateDatasetMetadata``/``ValidateDatasetResponse``, the
batch operation's are ``BatchCompletionMetadata``/``BatchCompletionResponse``. What the engine
decides (statuses, schedule, errors, results) is in :class:`BatchEngine` (``batch.engine``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from yandexgpt_grpc._generated.yandex.cloud.ai.batch_inference.v1 import (
    batch_inference_service_pb2 as bi_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.batch_inference.v1 import (
    batch_inference_service_pb2_grpc as bi_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.batch_inference.v1 import (
    batch_inference_task_pb2 as task_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.dataset.v1 import dataset_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as ds_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as ds_grpc
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1 import (
    batch_inference_task_status_pb2 as status_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.operation import operation_pb2

from . import _model
from ._batch_engine import BatchEngine, EngineDataset, EngineError, EngineTask, Schedule
from ._model import struct_to_dict
from ._object_store import ObjectStore
from ._server import _Abort, _Rpc

if TYPE_CHECKING:
    from ._server import Emulator

__all__ = ["BatchEngineService"]

_REASONING_NAMES = {
    common_pb2.ReasoningOptions.DISABLED: "DISABLED",
    common_pb2.ReasoningOptions.ENABLED_HIDDEN: "ENABLED_HIDDEN",
}


class BatchEngineService:
    """The batch engine for ``Emulator(extra_services=[...])``, with its own object store.

    Use it as a context manager (or call :meth:`start`/:meth:`stop`) so the object store runs
    as long as the emulator. Scripting and records are on :attr:`engine` and :attr:`store`.
    """

    def __init__(
        self,
        *,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.monotonic,
        unsupported_models: Iterable[str] = (),
        max_line_bytes: int = 1 << 20,
        response_as_struct: bool = False,
        min_part_size: int = 5 * 1024 * 1024,
    ) -> None:
        self.store = ObjectStore(min_part_size=min_part_size)
        self.engine = BatchEngine(
            self.store,
            schedule=schedule,
            clock=clock,
            unsupported_models=unsupported_models,
            max_line_bytes=max_line_bytes,
            response_as_struct=response_as_struct,
        )
        self._emu: Emulator | None = None

    def start(self) -> BatchEngineService:
        self.store.start()
        return self

    def stop(self) -> None:
        self.store.stop()

    def __enter__(self) -> BatchEngineService:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __call__(self, server: grpc.aio.Server, emulator: Emulator) -> None:
        self._emu = emulator
        # Our servicers are async classes of their own, not subclasses of the generated sync ones.
        datasets, batch, tasks = (
            _Datasets(self, emulator),
            _BatchCompletion(self, emulator),
            _BatchInference(self, emulator),
        )
        ds_grpc.add_DatasetServiceServicer_to_server(datasets, server)  # type: ignore[arg-type]
        tg_grpc.add_TextGenerationBatchServiceServicer_to_server(batch, server)  # type: ignore[arg-type]
        bi_grpc.add_BatchInferenceServiceServicer_to_server(tasks, server)  # type: ignore[arg-type]
        emulator.add_operation_source(self.operation)

    # -- messages -----------------------------------------------------------------------------

    def dataset_info(self, ds: EngineDataset) -> Any:
        info = dataset_pb2.DatasetInfo(
            dataset_id=ds.id,
            folder_id=ds.folder_id,
            name=ds.name,
            status=dataset_pb2.DatasetInfo.Status.Value(ds.status),
            task_type=ds.task_type,
            rows=ds.rows,
            size_bytes=ds.size_bytes,
            created_by="emulator",
        )
        info.created_at.GetCurrentTime()
        for error, description, rows in ds.errors:
            info.validation_error.add(error=error, error_description=description, row_numbers=rows)
        return info

    def task_message(self, task: EngineTask, status: str) -> Any:
        msg = task_pb2.BatchInferenceTask(
            task_id=task.id,
            operation_id=task.operation_id,
            folder_id=task.folder_id,
            model_uri=task.model_uri,
            source_dataset_id=task.source_dataset_id,
            status=task_pb2.BatchInferenceTask.Status.Value(status),
            result_dataset_id=task.result_dataset_id,
            created_by="emulator",
        )
        msg.created_at.GetCurrentTime()
        if task.line_errors or task.batch_errors or (status == "FAILED"):
            errors = msg.errors
            if status == "FAILED":
                errors.status.code = grpc.StatusCode.INTERNAL.value[0]
                errors.status.message = task.failure
            for line, message in sorted(task.line_errors.items()):
                errors.line_errors.add(line_number=line, message=message)
            for batch, first, last, message in task.batch_errors:
                errors.batch_errors.add(batch_number=batch, first_line=first, last_line=last, message=message)
        return msg

    def operation(self, op_id: str) -> Any | None:
        """The current Operation message of one of the engine's operations (None: not ours)."""
        try:
            op, done, details = self.engine.operation(op_id)
        except EngineError:
            return None
        msg = operation_pb2.Operation(id=op.id, created_by="emulator", done=done)
        msg.created_at.GetCurrentTime()
        msg.modified_at.CopyFrom(msg.created_at)
        if op.kind == "validate":
            msg.description = "Validate dataset"
            msg.metadata.Pack(
                ds_pb2.ValidateDatasetMetadata(
                    dataset_id=details["dataset_id"],
                    valid_rows=details["valid_rows"],
                    processed_rows=details["processed_rows"],
                    total_rows=details["total_rows"],
                )
            )
            if done:
                response = ds_pb2.ValidateDatasetResponse(
                    dataset_id=details["dataset_id"], is_valid=details["is_valid"]
                )
                for error, description, rows in details["errors"]:
                    response.errors.add(error=error, error_description=description, row_numbers=rows)
                msg.response.Pack(response)
            return msg
        msg.description = "Batch completion"
        status = details["task_status"]
        msg.metadata.Pack(
            tg_pb2.BatchCompletionMetadata(
                task_id=details["task_id"],
                task_status=status_pb2.BatchInferenceTaskStatus.Value(status),
                completed_batches=details["completed_batches"],
                total_batches=details["total_batches"],
            )
        )
        if done:
            task, status, _, _ = self.engine.task(details["task_id"])
            if status == "FAILED":
                msg.error.code = grpc.StatusCode.INTERNAL.value[0]
                msg.error.message = task.failure
            else:
                msg.response.Pack(
                    tg_pb2.BatchCompletionResponse(
                        task_id=task.id,
                        task_status=status_pb2.BatchInferenceTaskStatus.Value(status),
                        result_dataset_id=task.result_dataset_id,
                    )
                )
        return msg


def _engine_call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except EngineError as exc:
        raise _Abort(grpc.StatusCode[exc.code], exc.message) from None


class _Base:
    def __init__(self, service: BatchEngineService, emu: Emulator) -> None:
        self._service = service
        self._engine = service.engine
        self._emu = emu

    async def _run(self, method: str, request: Any, context: Any, body: Callable[[_Rpc], Any]) -> Any:
        async def run(rpc: _Rpc) -> Any:
            result = _engine_call(lambda: body(rpc))
            await rpc.send_initial()
            return result

        return await self._emu.handle(method, request, context, run)


class _Datasets(_Base):
    async def Create(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            ds = self._engine.create_dataset(request.folder_id, request.name, request.task_type, request.upload_format)
            return ds_pb2.CreateDatasetResponse(dataset_id=ds.id, dataset=self._service.dataset_info(ds))

        return await self._run("Dataset.Create", request, context, body)

    async def Describe(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            ds = self._engine.dataset(request.dataset_id)
            return ds_pb2.DescribeDatasetResponse(dataset=self._service.dataset_info(ds))

        return await self._run("Dataset.Describe", request, context, body)

    async def Validate(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            op = self._engine.validate(request.dataset_id)
            return self._service.operation(op.id)

        return await self._run("Dataset.Validate", request, context, body)

    async def Delete(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            self._engine.delete_dataset(request.dataset_id)
            return ds_pb2.DeleteDatasetResponse()

        return await self._run("Dataset.Delete", request, context, body)

    async def List(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            found = [d for d in self._engine.datasets if not request.folder_id or d.folder_id == request.folder_id]
            return ds_pb2.ListDatasetsResponse(datasets=[self._service.dataset_info(d) for d in found])

        return await self._run("Dataset.List", request, context, body)

    async def GetUploadDraftUrl(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            url = self._engine.upload_url(request.dataset_id, request.size_bytes)
            return ds_pb2.GetUploadDraftUrlResponse(dataset_id=request.dataset_id, upload_url=url)

        return await self._run("Dataset.GetUploadDraftUrl", request, context, body)

    async def StartMultipartUploadDraft(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            urls = self._engine.start_multipart(request.dataset_id, request.size_bytes, request.parts)
            return ds_pb2.StartMultipartUploadDraftResponse(dataset_id=request.dataset_id, multipart_upload_urls=urls)

        return await self._run("Dataset.StartMultipartUploadDraft", request, context, body)

    async def FinishMultipartUploadDraft(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            parts = [(p.part_num, p.etag) for p in request.uploaded_parts]
            self._engine.finish_multipart(request.dataset_id, parts)
            return ds_pb2.FinishMultipartUploadDraftResponse(dataset_id=request.dataset_id)

        return await self._run("Dataset.FinishMultipartUploadDraft", request, context, body)

    async def GetDownloadUrls(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            urls = self._engine.download_urls(request.dataset_id)
            return ds_pb2.GetDownloadUrlsResponse(
                dataset_id=request.dataset_id,
                download_urls=[dataset_pb2.DatasetFileDownloadUrl(key=k, url=u) for k, u in urls],
            )

        return await self._run("Dataset.GetDownloadUrls", request, context, body)

    async def _unimplemented(self, method: str, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, f"the emulator does not implement DatasetService.{method}")

        return await self._run(f"Dataset.{method}", request, context, body)

    async def Update(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("Update", request, context)

    async def ListUploadFormats(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("ListUploadFormats", request, context)

    async def ListUploadSchemas(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("ListUploadSchemas", request, context)

    async def ListTypes(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("ListTypes", request, context)

    async def GetPreview(self, request: Any, context: Any) -> Any:
        return await self._unimplemented("GetPreview", request, context)

    async def ListOperationsIds(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            found = {ds: op for ds in request.dataset_id if (op := self._engine.validation_of(ds)) is not None}
            return ds_pb2.ListOperationsIdsResponse(dataset_id_to_operation_id=found)

        return await self._run("Dataset.ListOperationsIds", request, context, body)


class _BatchCompletion(_Base):
    async def Completion(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            try:
                _model.validate_model_uri(request.model_uri, rpc.call.header("x-folder-id"), self._emu.folder_id)
            except _model.ValidationError as exc:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            folder = request.model_uri.split("/")[2] if request.model_uri.startswith("gpt://") else ""
            task = self._engine.start_task(folder, request.model_uri, request.source_dataset_id, _options(request))
            return self._service.operation(task.operation_id)

        return await self._run("BatchCompletion", request, context, body)


def _options(request: Any) -> dict[str, Any]:
    opts = request.completion_options
    out: dict[str, Any] = {}
    if opts.HasField("temperature"):
        out["temperature"] = opts.temperature.value
    if opts.HasField("max_tokens"):
        out["max_tokens"] = opts.max_tokens.value
    mode = _REASONING_NAMES.get(opts.reasoning_options.mode)
    if mode is not None:
        out["reasoning_mode"] = mode
    which = request.WhichOneof("ResponseFormat")
    if which == "json_object" and request.json_object:
        out["json_object"] = True
    elif which == "json_schema":
        out["json_schema"] = struct_to_dict(request.json_schema.schema)
    return out


class _BatchInference(_Base):
    async def Describe(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            task, status, _, _ = self._engine.task(request.task_id)
            return bi_pb2.DescribeBatchInferenceResponse(task=self._service.task_message(task, status))

        return await self._run("BatchInference.Describe", request, context, body)

    async def List(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            found = self._engine.list_tasks(request.folder_id)
            if request.status:
                wanted = task_pb2.BatchInferenceTask.Status.Name(request.status)
                found = [(t, s) for t, s in found if s == wanted]
            return bi_pb2.ListBatchInferencesResponse(tasks=[self._service.task_message(t, s) for t, s in found])

        return await self._run("BatchInference.List", request, context, body)

    async def Cancel(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            self._engine.cancel_task(request.task_id)
            return bi_pb2.CancelBatchInferenceResponse(task_id=request.task_id)

        return await self._run("BatchInference.Cancel", request, context, body)

    async def Delete(self, request: Any, context: Any) -> Any:
        def body(rpc: _Rpc) -> Any:
            self._engine.delete_task(request.task_id)
            return bi_pb2.DeleteBatchInferenceResponse(task_id=request.task_id)

        return await self._run("BatchInference.Delete", request, context, body)
