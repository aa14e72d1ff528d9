"""The clients' face of the batch engine: `BatchJobs` / `AsyncBatchJobs` and the `BatchJob` handles.

Both are thin: the steps live in `_cloud_batch` (one generator, driven by `drive` or `adrive`),
and every RPC goes through the client's own unary call, so the batch services get the same
credentials, headers, retries and deadlines as completions.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._batch_io import BatchProblem, OutputLock, PathLike, _Output
from ._cloud_batch import (
    Blocking,
    CloudBatchError,
    CloudBatchSummary,
    Poll,
    Rpc,
    Run,
    Sleep,
    adrive,
    cloud_run,
    drive,
)
from ._cloud_batch_files import RequestIndex, map_results
from ._cloud_http import MULTIPART_THRESHOLD, HttpTransfer
from ._errors import OperationTimeoutError
from ._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2 as bi_pb2
from ._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2_grpc as bi_grpc
from ._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_task_pb2 as task_pb2
from ._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as ds_pb2
from ._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as ds_grpc
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from ._generated.yandex.cloud.operation import operation_service_pb2 as op_pb2
from ._operations import acall_unary, call_unary
from ._public import public
from ._types import NOT_GIVEN

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client

__all__ = ["AsyncBatchJob", "AsyncBatchJobs", "BatchJob", "BatchJobs", "JobState"]

_STUBS: dict[str, tuple[Any, str]] = {
    "datasets": (ds_grpc.DatasetServiceStub, "DatasetService"),
    "batch": (tg_grpc.TextGenerationBatchServiceStub, "TextGenerationBatchService"),
    "tasks": (bi_grpc.BatchInferenceServiceStub, "BatchInferenceService"),
}
_TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED"})


def _method(client: Client | AsyncClient, step: Rpc) -> tuple[Callable[[], Any], str]:
    """The stub callable (looked up at call time) and the full method name for logs and errors."""
    if step.service == "operations":
        return (lambda: getattr(client._operations(), step.method)), f"OperationService.{step.method}"
    factory, service = _STUBS[step.service]
    return (lambda: getattr(client._stub(factory), step.method)), f"{service}.{step.method}"


def _unary(client: Client) -> Callable[[Rpc], Any]:
    """Each step's RPC through the client's one retry driver: its credentials, headers, retries, deadlines."""

    def call(step: Rpc) -> Any:
        method, name = _method(client, step)
        resp, _ = call_unary(client._config.attempts(name, NOT_GIVEN, NOT_GIVEN), method, step.request)
        return resp

    return call


def _aunary(client: AsyncClient) -> Callable[[Rpc], Awaitable[Any]]:
    async def call(step: Rpc) -> Any:
        method, name = _method(client, step)
        resp, _ = await acall_unary(client._config.attempts(name, NOT_GIVEN, NOT_GIVEN), method, step.request)
        return resp

    return call


@dataclass(frozen=True)
class JobState:
    """A task as last seen: status, progress (completed / total batches) and errors."""

    id: str
    status: str
    completed_batches: int
    total_batches: int
    result_dataset_id: str
    source_dataset_id: str
    model_uri: str
    task: Any  # the BatchInferenceTask message

    @property
    def done(self) -> bool:
        return self.status in _TERMINAL


def _state_of(task: Any, completed: int = 0, total: int = 0) -> JobState:
    status = task_pb2.BatchInferenceTask.Status.Name(task.status)
    if status == "COMPLETED" and total:
        completed = total
    return JobState(
        task.task_id, status, completed, total, task.result_dataset_id, task.source_dataset_id, task.model_uri, task
    )


# -- the steps of the job operations (shared by both clients) --------------------------------


def _refresh(task_id: str, operation_id: str) -> Run:
    completed = total = 0
    if operation_id:
        try:
            op = yield Rpc("operations", "Get", op_pb2.GetOperationRequest(operation_id=operation_id))
            meta = tg_pb2.BatchCompletionMetadata()
            if op.metadata.Unpack(meta):
                completed, total = meta.completed_batches, meta.total_batches
        except Exception:
            pass
    resp = yield Rpc("tasks", "Describe", bi_pb2.DescribeBatchInferenceRequest(task_id=task_id))
    return _state_of(resp.task, completed, total)


def _wait(task_id: str, operation_id: str, poll: Poll, timeout: float | None, clock: Callable[[], float]) -> Run:
    started = clock()
    waits = poll.waits()
    while True:
        state = yield from _refresh(task_id, operation_id)
        if state.done:
            return state
        wait = next(waits)
        if timeout is not None and clock() - started + wait > timeout:
            raise OperationTimeoutError(
                f"batch task {task_id} is still {state.status} after {timeout} s; wait again or cancel it",
                operation_id=operation_id or task_id,
            )
        yield Sleep(wait)


def _submit(
    input_path: PathLike,
    *,
    model: str,
    folder_id: str | None,
    options: Mapping[str, Any],
    transfer: HttpTransfer,
    poll: Poll,
) -> Run:
    """Upload IN as a dataset, validate it, start a task: (task id, operation id).

    The shared run's steps, stopped once the task has started; its state file lives in a
    temporary directory, so `submit` is not resumable (`run` is).
    """
    with tempfile.TemporaryDirectory(prefix="yandexgpt-batch-") as tmp:
        run = cloud_run(
            input_path,
            os.path.join(tmp, "job.jsonl"),
            model=model,
            folder_id=folder_id,
            options=options,
            transfer=transfer,
            poll=poll,
            follow=False,
        )
        summary: CloudBatchSummary = yield from run
    return summary.task_id or "", summary.operation_id or ""


def _results(input_path: PathLike, result_dataset_id: str, transfer: HttpTransfer) -> Run:
    """Download and match the results: a list of OUT-shaped dicts, written through a temporary OUT."""
    resp = yield Rpc("datasets", "GetDownloadUrls", ds_pb2.GetDownloadUrlsRequest(dataset_id=result_dataset_id))
    urls = [(u.key, u.url) for u in resp.download_urls]

    def work() -> tuple[str, list[BatchProblem]]:
        tmp = tempfile.mkdtemp(prefix="yandexgpt-batch-")
        out = os.path.join(tmp, "out.jsonl")
        problems: list[BatchProblem] = []
        with RequestIndex.build(input_path, os.path.join(tmp, "index.sqlite")) as index:
            output = _Output(out)
            try:
                for n, (key, url) in enumerate(urls):
                    local = os.path.join(tmp, f"part-{n}")
                    transfer.get_file(url, local)
                    map_results(local, index, output, problems, label=key)
                    os.unlink(local)
            finally:
                output.close()
        return out, problems

    out, _ = yield Blocking(work)
    return out


def _iter_out(path: str) -> Iterator[dict[str, Any]]:
    import json
    import shutil

    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


# -- blocking client -------------------------------------------------------------------------


class BatchJob:
    """A batch inference task: `status`, `progress`, `wait()`, `cancel()`, `results()`, `delete()`.

    Cheap to make (no I/O until asked); `client.batch_jobs.get(id)` re-attaches in another process.
    """

    def __init__(
        self, jobs: BatchJobs, task_id: str, operation_id: str = "", input_path: PathLike | None = None
    ) -> None:
        self._jobs = jobs
        self.id = task_id
        self.operation_id = operation_id
        self.input_path = input_path
        self.last: JobState | None = None

    def __repr__(self) -> str:
        status = self.last.status if self.last else "?"
        return f"BatchJob(id={self.id!r}, status={status})"

    def refresh(self) -> JobState:
        self.last = self._jobs._drive(_refresh(self.id, self.operation_id))
        return self.last

    @property
    def status(self) -> str:
        """The task's status now (one Describe call)."""
        return self.refresh().status

    @property
    def progress(self) -> tuple[int, int]:
        """(completed, total) batches now; (0, 0) when the engine does not say."""
        state = self.refresh()
        return state.completed_batches, state.total_batches

    def wait(self, timeout: float | None = None, *, poll: Poll | None = None) -> JobState:
        """Poll (backing off) until the task ends; OperationTimeoutError after `timeout` seconds."""
        run = _wait(self.id, self.operation_id, poll or self._jobs.poll, timeout, time.monotonic)
        self.last = self._jobs._drive(run)
        return self.last

    def cancel(self) -> None:
        self._jobs._drive(_one(Rpc("tasks", "Cancel", bi_pb2.CancelBatchInferenceRequest(task_id=self.id))))

    def delete(self) -> None:
        """Delete the task (it must have ended: cancel a running one first)."""
        self._jobs._drive(_one(Rpc("tasks", "Delete", bi_pb2.DeleteBatchInferenceRequest(task_id=self.id))))

    def results(self, input_path: PathLike | None = None) -> Iterator[dict[str, Any]]:
        """Per-input results in `run_batch`'s line shape (status, usage, model_version are None).

        `input_path` is the IN the job was made from (remembered by `submit`; give it after `get`).
        """
        source = input_path or self.input_path
        if source is None:
            raise ValueError("results() needs the IN file the job was made from: pass input_path=")
        state = self.last if self.last is not None and self.last.done else self.refresh()
        if state.status != "COMPLETED":
            raise CloudBatchError(f"batch task {self.id} is {state.status}; results exist once it is COMPLETED")
        out = self._jobs._drive(_results(source, state.result_dataset_id, self._jobs.transfer))
        return _iter_out(out)


def _one(step: Rpc) -> Run:
    resp = yield step
    return resp


class BatchJobs:
    """``client.batch_jobs``: the platform's batch engine, for files too big for `run_batch`."""

    def __init__(self, client: Client, *, transfer: HttpTransfer | None = None, poll: Poll | None = None) -> None:
        self._client = client
        self.transfer = transfer or HttpTransfer()
        self.poll = poll or Poll()
        self._sleep: Callable[[float], None] = time.sleep

    def _drive(self, run: Run) -> Any:
        return drive(run, _unary(self._client), self._sleep)

    def run(
        self,
        input_path: PathLike,
        output_path: PathLike,
        *,
        model: str = "yandexgpt-lite",
        on_progress: Callable[[str, int, int], None] | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        **options: Any,
    ) -> CloudBatchSummary:
        """IN -> OUT through the engine, resumable: rerun the same call after a crash to continue."""
        run = cloud_run(
            input_path,
            output_path,
            model=model,
            folder_id=self._client._config.folder_id,
            options=options,
            transfer=self.transfer,
            poll=self.poll,
            on_progress=on_progress,
            multipart_threshold=multipart_threshold,
        )
        with OutputLock(output_path):  # one writer per OUT, as for run_batch: never two tasks for one IN
            summary: CloudBatchSummary = self._drive(run)
        return summary

    def submit(self, input_path: PathLike, *, model: str = "yandexgpt-lite", **options: Any) -> BatchJob:
        """Upload IN, validate it and start a task; returns its handle at once (no state file)."""
        run = _submit(
            input_path,
            model=model,
            folder_id=self._client._config.folder_id,
            options=options,
            transfer=self.transfer,
            poll=self.poll,
        )
        task_id, operation_id = self._drive(run)
        return BatchJob(self, task_id, operation_id, input_path)

    def get(self, task_id: str) -> BatchJob:
        """Re-attach to a task by id; no I/O until you ask for something."""
        return BatchJob(self, task_id)

    def list(self, folder_id: str | None = None) -> list[BatchJob]:
        """The folder's tasks (every page), each with its last state filled in."""
        jobs = []
        for task in self._drive(_list(folder_id or self._client._config.folder_id or "")):
            job = BatchJob(self, task.task_id, task.operation_id)
            job.last = _state_of(task)
            jobs.append(job)
        return jobs


def _list(folder_id: str) -> Run:
    if not folder_id:
        raise ValueError("listing batch jobs needs a folder: pass folder_id= or set YC_FOLDER_ID")
    tasks: list[Any] = []
    token = ""
    while True:
        resp = yield Rpc(
            "tasks", "List", bi_pb2.ListBatchInferencesRequest(folder_id=folder_id, page_size=100, page_token=token)
        )
        tasks.extend(resp.tasks)
        token = resp.next_page_token
        if not token:
            return tasks


# -- asyncio client --------------------------------------------------------------------------


class AsyncBatchJob:
    """The asyncio twin of `BatchJob`."""

    def __init__(
        self, jobs: AsyncBatchJobs, task_id: str, operation_id: str = "", input_path: PathLike | None = None
    ) -> None:
        self._jobs = jobs
        self.id = task_id
        self.operation_id = operation_id
        self.input_path = input_path
        self.last: JobState | None = None

    def __repr__(self) -> str:
        status = self.last.status if self.last else "?"
        return f"AsyncBatchJob(id={self.id!r}, status={status})"

    async def refresh(self) -> JobState:
        self.last = await self._jobs._drive(_refresh(self.id, self.operation_id))
        return self.last

    async def status(self) -> str:
        return (await self.refresh()).status

    async def progress(self) -> tuple[int, int]:
        state = await self.refresh()
        return state.completed_batches, state.total_batches

    async def wait(self, timeout: float | None = None, *, poll: Poll | None = None) -> JobState:
        run = _wait(self.id, self.operation_id, poll or self._jobs.poll, timeout, time.monotonic)
        self.last = await self._jobs._drive(run)
        return self.last

    async def cancel(self) -> None:
        await self._jobs._drive(_one(Rpc("tasks", "Cancel", bi_pb2.CancelBatchInferenceRequest(task_id=self.id))))

    async def delete(self) -> None:
        await self._jobs._drive(_one(Rpc("tasks", "Delete", bi_pb2.DeleteBatchInferenceRequest(task_id=self.id))))

    async def results(self, input_path: PathLike | None = None) -> Iterator[dict[str, Any]]:
        source = input_path or self.input_path
        if source is None:
            raise ValueError("results() needs the IN file the job was made from: pass input_path=")
        state = self.last if self.last is not None and self.last.done else await self.refresh()
        if state.status != "COMPLETED":
            raise CloudBatchError(f"batch task {self.id} is {state.status}; results exist once it is COMPLETED")
        out = await self._jobs._drive(_results(source, state.result_dataset_id, self._jobs.transfer))
        return _iter_out(out)


class AsyncBatchJobs:
    """``async_client.batch_jobs``: the asyncio twin of `BatchJobs`."""

    def __init__(self, client: AsyncClient, *, transfer: HttpTransfer | None = None, poll: Poll | None = None) -> None:
        self._client = client
        self.transfer = transfer or HttpTransfer()
        self.poll = poll or Poll()
        self._sleep: Callable[[float], Awaitable[None]] | None = None

    async def _drive(self, run: Run) -> Any:
        if self._sleep is None:
            return await adrive(run, _aunary(self._client))
        return await adrive(run, _aunary(self._client), self._sleep)

    async def run(
        self,
        input_path: PathLike,
        output_path: PathLike,
        *,
        model: str = "yandexgpt-lite",
        on_progress: Callable[[str, int, int], None] | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        **options: Any,
    ) -> CloudBatchSummary:
        run = cloud_run(
            input_path,
            output_path,
            model=model,
            folder_id=self._client._config.folder_id,
            options=options,
            transfer=self.transfer,
            poll=self.poll,
            on_progress=on_progress,
            multipart_threshold=multipart_threshold,
        )
        with OutputLock(output_path):  # one writer per OUT, as for run_batch: never two tasks for one IN
            summary: CloudBatchSummary = await self._drive(run)
        return summary

    async def submit(self, input_path: PathLike, *, model: str = "yandexgpt-lite", **options: Any) -> AsyncBatchJob:
        run = _submit(
            input_path,
            model=model,
            folder_id=self._client._config.folder_id,
            options=options,
            transfer=self.transfer,
            poll=self.poll,
        )
        task_id, operation_id = await self._drive(run)
        return AsyncBatchJob(self, task_id, operation_id, input_path)

    def get(self, task_id: str) -> AsyncBatchJob:
        return AsyncBatchJob(self, task_id)

    async def list(self, folder_id: str | None = None) -> list[AsyncBatchJob]:
        jobs = []
        for task in await self._drive(_list(folder_id or self._client._config.folder_id or "")):
            job = AsyncBatchJob(self, task.task_id, task.operation_id)
            job.last = _state_of(task)
            jobs.append(job)
        return jobs


public(BatchJob, AsyncBatchJob, BatchJobs, AsyncBatchJobs, JobState)
