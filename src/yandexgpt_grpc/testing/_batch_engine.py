"""The emulated batch engine's state: datasets, validation, batch tasks and their results.

This is the logic behind the emulated ``DatasetService``, ``TextGenerationBatchService`` and
``BatchInferenceService`` (the gRPC servicers translate requests and answers; everything they
decide is decided here), with the uploaded and result files in an :class:`ObjectStore`.

Time is read from ``clock`` and statuses are computed from it when asked, so a test moves a
task along by advancing a fake clock (or sets the :class:`Schedule` to zeros for "at once"):

* validation takes ``schedule.validation`` seconds;
* a task is CREATED for ``schedule.created``, PENDING for ``schedule.pending``, then
  IN_PROGRESS for ``schedule.per_batch`` seconds per batch of ``schedule.batch_size`` lines,
  then COMPLETED (or FAILED when scripted). The result is written when first asked for after
  that: one Parquet file per ``schedule.lines_per_file`` lines, each answered by the
  emulator's default model, rows in reverse order (the engine promises no order).

Scripting: :meth:`BatchEngine.fail_validation` (an error on given lines),
:meth:`BatchEngine.fail_task` (line and batch errors, FAILED or COMPLETED without those
lines), ``unsupported_models`` (Completion refused as the engine does for models without
batch support). Records: :attr:`BatchEngine.datasets`, :attr:`BatchEngine.tasks`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common_pb2
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)

from . import _model
from ._object_store import ObjectStore

__all__ = [
    "BatchEngine",
    "EngineDataset",
    "EngineError",
    "EngineOperation",
    "EngineTask",
    "Schedule",
    "write_result_file",
]

INPUT_TASK_TYPE = "TextToTextGenerationRequest"
RESULT_TASK_TYPE = "TextToTextGeneration"
UPLOAD_FORMAT = "jsonlines"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED"})
_ROLES = ("system", "user", "assistant")
_REASONING = {
    "DISABLED": common_pb2.ReasoningOptions.DISABLED,
    "ENABLED_HIDDEN": common_pb2.ReasoningOptions.ENABLED_HIDDEN,
}


class EngineError(Exception):
    """A request the engine refuses; `code` is the gRPC status name the servicer answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Schedule:
    """Seconds each stage takes (see the module docstring); all zero means "done when asked"."""

    validation: float = 0.0
    created: float = 0.0
    pending: float = 0.0
    per_batch: float = 0.0
    batch_size: int = 100
    lines_per_file: int = 1000


@dataclass
class EngineDataset:
    id: str
    folder_id: str
    name: str
    task_type: str
    upload_format: str
    created_at: float
    status: str = "DRAFT"
    size_bytes: int = 0
    rows: int = 0
    key: str = ""
    announced_size: int | None = None
    multipart_id: str | None = None
    files: list[str] = field(default_factory=list)  # object keys (results)
    # (error, description, row numbers from 1) as in ValidationError
    errors: list[tuple[str, str, list[int]]] = field(default_factory=list)


@dataclass
class EngineOperation:
    """An operation the engine started: validation of a dataset, or a batch completion."""

    id: str
    kind: str  # "validate" | "batch"
    target: str  # dataset id | task id
    created_at: float


@dataclass
class EngineTask:
    id: str
    operation_id: str
    folder_id: str
    model_uri: str
    source_dataset_id: str
    options: dict[str, Any]
    created_at: float
    total_lines: int
    canceled_at: float | None = None
    result_dataset_id: str = ""
    line_errors: dict[int, str] = field(default_factory=dict)
    batch_errors: list[tuple[int, int, int, str]] = field(default_factory=list)  # (batch, first, last, message)
    fails: bool = False
    failure: str = ""
    deleted: bool = False


@dataclass
class _TaskScript:
    line_errors: dict[int, str]
    batch_errors: list[tuple[int, int, int, str]]
    fail: bool
    message: str


class BatchEngine:
    """Datasets, validation runs and batch tasks over an object store; thread-safe."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.monotonic,
        unsupported_models: Iterable[str] = (),
        max_line_bytes: int = 1 << 20,
        response_as_struct: bool = False,
    ) -> None:
        self.store = store
        self.schedule = schedule or Schedule()
        self.clock = clock
        self.unsupported_models = set(unsupported_models)
        self.max_line_bytes = max_line_bytes
        self.response_as_struct = response_as_struct
        self._lock = threading.RLock()
        self._datasets: dict[str, EngineDataset] = {}
        self._tasks: dict[str, EngineTask] = {}
        self._ops: dict[str, EngineOperation] = {}
        self._validation_faults: dict[int, str] = {}
        self._task_scripts: list[_TaskScript] = []
        self._validations: dict[str, tuple[int, int, bool]] = {}  # op id -> (total, valid, is_valid)

    # -- records ------------------------------------------------------------------------------

    @property
    def datasets(self) -> list[EngineDataset]:
        with self._lock:
            return list(self._datasets.values())

    @property
    def tasks(self) -> list[EngineTask]:
        with self._lock:
            return list(self._tasks.values())

    # -- scripting ----------------------------------------------------------------------------

    def fail_validation(self, lines: Mapping[int, str]) -> None:
        """The next validations report these (1-based) lines invalid with these messages."""
        with self._lock:
            self._validation_faults.update(lines)

    def fail_task(
        self,
        *,
        line_errors: Mapping[int, str] | None = None,
        batch_errors: Iterable[tuple[int, int, int, str]] = (),
        fail: bool = True,
        message: str = "batch inference failed",
    ) -> None:
        """The next task started reports these line (1-based) and batch errors.

        With `fail` it ends FAILED with no result; without, it completes and its result lacks
        the lines with errors.
        """
        with self._lock:
            self._task_scripts.append(_TaskScript(dict(line_errors or {}), list(batch_errors), fail, message))

    # -- datasets -----------------------------------------------------------------------------

    def create_dataset(self, folder_id: str, name: str, task_type: str, upload_format: str) -> EngineDataset:
        if not folder_id:
            raise EngineError("INVALID_ARGUMENT", "folder_id is required")
        if not name or len(name) > 63:
            raise EngineError("INVALID_ARGUMENT", "name must be 1 to 63 characters")
        if task_type != INPUT_TASK_TYPE:
            raise EngineError("INVALID_ARGUMENT", f"unsupported task_type {task_type!r}")
        if upload_format != UPLOAD_FORMAT:
            raise EngineError("INVALID_ARGUMENT", f"unsupported upload_format {upload_format!r}")
        ds_id = _new_id("fds")
        ds = EngineDataset(ds_id, folder_id, name, task_type, upload_format, self.clock(), key=f"datasets/{ds_id}/data")
        with self._lock:
            self._datasets[ds_id] = ds
        return ds

    def dataset(self, dataset_id: str) -> EngineDataset:
        with self._lock:
            ds = self._datasets.get(dataset_id)
            if ds is None:
                raise EngineError("NOT_FOUND", f"dataset {dataset_id} not found")
            self._advance_dataset(ds)
            return ds

    def _draft(self, dataset_id: str) -> EngineDataset:
        ds = self.dataset(dataset_id)
        if ds.status != "DRAFT":
            raise EngineError("FAILED_PRECONDITION", f"dataset {dataset_id} is {ds.status}, not DRAFT")
        return ds

    def upload_url(self, dataset_id: str, size_bytes: int) -> str:
        if size_bytes <= 0:
            raise EngineError("INVALID_ARGUMENT", "size_bytes must be positive")
        with self._lock:
            ds = self._draft(dataset_id)
            ds.announced_size = size_bytes
            ds.multipart_id = None
        return self.store.presign_put(ds.key, size_bytes)

    def start_multipart(self, dataset_id: str, size_bytes: int, parts: int) -> list[str]:
        if size_bytes <= 0 or parts <= 0:
            raise EngineError("INVALID_ARGUMENT", "size_bytes and parts must be positive")
        with self._lock:
            ds = self._draft(dataset_id)
        try:
            upload_id, urls = self.store.start_multipart(ds.key, size_bytes, parts)
        except ValueError as exc:
            raise EngineError("INVALID_ARGUMENT", str(exc)) from None
        with self._lock:
            ds.announced_size = size_bytes
            ds.multipart_id = upload_id
        return urls

    def finish_multipart(self, dataset_id: str, parts: Iterable[tuple[int, str]]) -> None:
        with self._lock:
            ds = self._draft(dataset_id)
            upload_id = ds.multipart_id
        if upload_id is None:
            raise EngineError("FAILED_PRECONDITION", f"dataset {dataset_id} has no multipart upload in progress")
        try:
            self.store.complete_multipart(upload_id, list(parts))
        except ValueError as exc:
            raise EngineError("INVALID_ARGUMENT", str(exc)) from None
        with self._lock:
            ds.multipart_id = None

    def validate(self, dataset_id: str) -> EngineOperation:
        """Check the uploaded lines now; the operation reports the outcome after `schedule.validation`."""
        with self._lock:
            ds = self._draft(dataset_id)
            if not self.store.has(ds.key) or ds.multipart_id is not None:
                raise EngineError("FAILED_PRECONDITION", f"dataset {dataset_id} has no uploaded data yet")
            faults = dict(self._validation_faults)
            self._validation_faults.clear()
        total, errors = self._check_lines(ds.key, faults)
        op = EngineOperation(_new_id("fdo"), "validate", dataset_id, self.clock())
        with self._lock:
            ds.size_bytes = os.path.getsize(self.store.object_path(ds.key))
            ds.rows = total
            ds.errors = errors
            ds.status = "VALIDATING"
            bad = {n for _, _, rows in errors for n in rows}
            self._validations[op.id] = (total, total - len(bad), not errors)
            self._ops[op.id] = op
        return op

    def _check_lines(self, key: str, faults: Mapping[int, str]) -> tuple[int, list[tuple[str, str, list[int]]]]:
        grouped: dict[tuple[str, str], list[int]] = {}
        total = 0
        with open(self.store.object_path(key), "rb") as f:
            for total, raw in enumerate(f, 1):
                problem = faults.get(total) or self._line_problem(raw)
                if problem:
                    kind = "format error" if total not in faults else "validation error"
                    grouped.setdefault((kind, problem), []).append(total)
        if total == 0:
            grouped[("format error", "the dataset is empty")] = []
        return total, [(kind, desc, rows) for (kind, desc), rows in grouped.items()]

    def _line_problem(self, raw: bytes) -> str:
        if len(raw) > self.max_line_bytes:
            return f"line is longer than {self.max_line_bytes} bytes"
        try:
            obj = json.loads(raw)
        except ValueError:
            return "line is not valid JSON"
        request = obj.get("request") if isinstance(obj, dict) else None
        if not isinstance(request, list) or not request:
            return "'request' must be a non-empty list of messages"
        for msg in request:
            if not isinstance(msg, dict) or msg.get("role") not in _ROLES or not isinstance(msg.get("text"), str):
                return "each message needs a role (system, user, assistant) and a text"
        return ""

    def validation_of(self, dataset_id: str) -> str | None:
        """The id of the dataset's (last) validation operation, if it had one."""
        with self._lock:
            ops = [o.id for o in self._ops.values() if o.kind == "validate" and o.target == dataset_id]
        return ops[-1] if ops else None

    def _advance_dataset(self, ds: EngineDataset) -> None:
        if ds.status != "VALIDATING":
            return
        op = next((o for o in self._ops.values() if o.kind == "validate" and o.target == ds.id), None)
        if op is not None and self.clock() - op.created_at >= self.schedule.validation:
            ds.status = "INVALID" if ds.errors else "READY"

    def delete_dataset(self, dataset_id: str) -> None:
        with self._lock:
            ds = self._datasets.pop(dataset_id, None)
        if ds is None:
            raise EngineError("NOT_FOUND", f"dataset {dataset_id} not found")
        for key in [ds.key, *ds.files]:
            self.store.delete(key)

    def download_urls(self, dataset_id: str) -> list[tuple[str, str]]:
        """(file key, presigned GET URL) of a READY dataset's files."""
        with self._lock:
            ds = self.dataset(dataset_id)
            if ds.status != "READY":
                raise EngineError("FAILED_PRECONDITION", f"dataset {dataset_id} is {ds.status}, not READY")
            keys = list(ds.files) if ds.files else [ds.key]
        return [(key.rsplit("/", 1)[-1], self.store.presign_get(key)) for key in keys]

    # -- operations ---------------------------------------------------------------------------

    def operation(self, op_id: str) -> tuple[EngineOperation, bool, dict[str, Any]]:
        """(operation, done, details): details are the metadata/response fields by name."""
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                raise EngineError("NOT_FOUND", f"operation {op_id} not found")
            if op.kind == "validate":
                ds = self._datasets.get(op.target)
                total, valid, is_valid = self._validations[op_id]
                done = self.clock() - op.created_at >= self.schedule.validation
                if ds is not None:
                    self._advance_dataset(ds)
                details = {
                    "dataset_id": op.target,
                    "total_rows": total,
                    "processed_rows": total if done else 0,
                    "valid_rows": valid if done else 0,
                    "is_valid": is_valid,
                    "errors": ds.errors if ds is not None else [],
                }
                return op, done, details
            task = self._tasks[op.target]
            status = self._status(task)
            completed, total = self._progress(task, status)
            details = {
                "task_id": task.id,
                "task_status": status,
                "completed_batches": completed,
                "total_batches": total,
            }
            return op, status in TERMINAL, details

    # -- batch tasks --------------------------------------------------------------------------

    def start_task(
        self, folder_id: str, model_uri: str, source_dataset_id: str, options: Mapping[str, Any]
    ) -> EngineTask:
        """Completion(BatchCompletionRequest): a task over a READY dataset."""
        if not model_uri:
            raise EngineError("INVALID_ARGUMENT", "model_uri is required")
        parts = model_uri.split("/")
        model_name = parts[3] if model_uri.startswith("gpt://") and len(parts) > 3 else model_uri
        if model_name in self.unsupported_models or model_uri in self.unsupported_models:
            raise EngineError("INVALID_ARGUMENT", f"model {model_uri} does not support batch inference")
        ds = self.dataset(source_dataset_id)
        if ds.status != "READY":
            raise EngineError("FAILED_PRECONDITION", f"dataset {source_dataset_id} is {ds.status}, not READY")
        with self._lock:
            script = self._task_scripts.pop(0) if self._task_scripts else None
            task = EngineTask(
                _new_id("bit"),
                _new_id("fbo"),
                folder_id or ds.folder_id,
                model_uri,
                source_dataset_id,
                dict(options),
                self.clock(),
                ds.rows,
            )
            if script is not None:
                task.line_errors = script.line_errors
                task.batch_errors = script.batch_errors
                task.fails = script.fail
                task.failure = script.message
            self._tasks[task.id] = task
            self._ops[task.operation_id] = EngineOperation(task.operation_id, "batch", task.id, task.created_at)
        return task

    def task(self, task_id: str) -> tuple[EngineTask, str, int, int]:
        """(task, status, completed batches, total batches); writes the result when it is due."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.deleted:
                raise EngineError("NOT_FOUND", f"batch inference task {task_id} not found")
            status = self._status(task)
            completed, total = self._progress(task, status)
            if status == "COMPLETED" and not task.result_dataset_id:
                task.result_dataset_id = self._write_result(task)
            return task, status, completed, total

    def list_tasks(self, folder_id: str) -> list[tuple[EngineTask, str]]:
        with self._lock:
            ids = [t.id for t in self._tasks.values() if not t.deleted and (not folder_id or t.folder_id == folder_id)]
        return [(t, s) for t, s, _, _ in (self.task(i) for i in ids)]

    def cancel_task(self, task_id: str) -> EngineTask:
        with self._lock:
            task, status, _, _ = self.task(task_id)
            if status in TERMINAL:
                raise EngineError("FAILED_PRECONDITION", f"task {task_id} is already {status}")
            task.canceled_at = self.clock()
            return task

    def delete_task(self, task_id: str) -> None:
        with self._lock:
            task, status, _, _ = self.task(task_id)
            if status not in TERMINAL:
                raise EngineError("FAILED_PRECONDITION", f"task {task_id} is {status}: cancel it first")
            task.deleted = True

    def _total_batches(self, task: EngineTask) -> int:
        return max(1, math.ceil(task.total_lines / self.schedule.batch_size))

    def _status(self, task: EngineTask) -> str:
        if task.canceled_at is not None:
            return "CANCELED"
        s = self.schedule
        elapsed = self.clock() - task.created_at
        if elapsed < s.created:
            return "CREATED"
        if elapsed < s.created + s.pending:
            return "PENDING"
        if elapsed < s.created + s.pending + s.per_batch * self._total_batches(task):
            return "IN_PROGRESS"
        return "FAILED" if task.fails else "COMPLETED"

    def _progress(self, task: EngineTask, status: str) -> tuple[int, int]:
        total = self._total_batches(task)
        if status in ("CREATED", "PENDING"):
            return 0, total
        if status == "COMPLETED":
            return total, total
        s = self.schedule
        end = task.canceled_at if task.canceled_at is not None else self.clock()
        running = end - task.created_at - s.created - s.pending
        if running <= 0:
            return 0, total
        done = total if s.per_batch <= 0 else int(running / s.per_batch)
        return min(done, total), total

    # -- results ------------------------------------------------------------------------------

    def _request_for(self, task: EngineTask, turns: list[dict[str, str]]) -> Any:
        req = tg_pb2.CompletionRequest(model_uri=task.model_uri)
        opts = task.options
        if opts.get("temperature") is not None:
            req.completion_options.temperature.value = float(opts["temperature"])
        if opts.get("max_tokens") is not None:
            req.completion_options.max_tokens.value = int(opts["max_tokens"])
        mode = opts.get("reasoning_mode")
        if mode in _REASONING:
            req.completion_options.reasoning_options.mode = _REASONING[mode]
        if opts.get("json_object"):
            req.json_object = True
        elif opts.get("json_schema") is not None:
            req.json_schema.schema.update(opts["json_schema"])
        for turn in turns:
            req.messages.add(role=turn["role"], text=turn["text"])
        return req

    def _source_lines(self, task: EngineTask) -> Iterator[tuple[int, list[dict[str, str]]]]:
        ds = self._datasets[task.source_dataset_id]
        with open(self.store.object_path(ds.key), "rb") as f:
            for n, raw in enumerate(f, 1):
                yield n, json.loads(raw)["request"]

    def _write_result(self, task: EngineTask) -> str:
        """Answer every line without an error into Parquet files in the store; a READY result dataset."""
        result = EngineDataset(
            _new_id("fds"), task.folder_id, f"result-{task.id}", RESULT_TASK_TYPE, "parquet", self.clock()
        )
        skip = set(task.line_errors)
        for _, first, last, _ in task.batch_errors:
            skip.update(range(first, last + 1))
        rows: list[tuple[list[dict[str, str]], str]] = []
        files: list[str] = []

        def flush() -> None:
            key = f"datasets/{result.id}/part-{len(files):05d}.parquet"
            fd, path = tempfile.mkstemp(suffix=".parquet")
            os.close(fd)
            try:
                write_result_file(path, rows[::-1], response_as_struct=self.response_as_struct)
                self.store.put_file(key, path)
            finally:
                os.unlink(path)
            files.append(key)
            rows.clear()

        count = 0
        for n, turns in self._source_lines(task):
            if n in skip:
                continue
            rows.append((turns, _model.default_answer(self._request_for(task, turns)).text))
            count += 1
            if len(rows) >= self.schedule.lines_per_file:
                flush()
        if rows or not files:
            flush()
        result.files = files
        result.rows = count
        result.status = "READY"
        self._datasets[result.id] = result
        return result.id


def write_result_file(
    path: str, rows: Iterable[tuple[list[dict[str, str]], str]], *, response_as_struct: bool = False
) -> None:
    """A result Parquet file as the engine documents it: ``request`` (messages) and ``response``.

    ``response`` is a string, or with `response_as_struct` a struct with ``role`` and ``text``
    (the engine's exact column types were never recorded; clients must read both). An extra
    ``line`` column checks that readers ignore columns they do not know.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            "the emulated batch engine writes Parquet with pyarrow: pip install 'yandexgpt-grpc[batch]'"
        ) from exc
    message = pa.struct([("role", pa.string()), ("text", pa.string())])
    rows = list(rows)
    requests = pa.array([turns for turns, _ in rows], type=pa.list_(message))
    if response_as_struct:
        responses = pa.array([{"role": "assistant", "text": text} for _, text in rows], type=message)
    else:
        responses = pa.array([text for _, text in rows], type=pa.string())
    table = pa.table({"request": requests, "response": responses, "line": pa.array(range(len(rows)), pa.int64())})
    pq.write_table(table, path, row_group_size=256)


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:17]
