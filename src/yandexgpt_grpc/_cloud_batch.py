"""A cloud batch run, IN to OUT through the platform's batch engine, resumable from a state file.

The run is written once, as a generator of steps (`Rpc`, `Blocking`, `Sleep`), and driven by
`drive` (blocking client) or `adrive` (asyncio client): the step logic cannot drift between
the two clients, and each client makes the RPCs its own way (its channel, credentials and
retry driver). File and HTTP work runs inline in `drive` and in a worker thread in `adrive`.

Steps, each recorded in the state file (`_cloud_state`) the moment it is done, so a rerun
resumes at the step it reached and never repeats one:

1. convert IN to the engine's JSON Lines (`_cloud_batch_files.convert_input`);
2. ``DatasetService.Create`` -> dataset id;
3. upload: one presigned PUT, or multipart above `multipart_threshold` (part URLs and ETags
   are saved as parts finish; a rerun sends only the missing parts);
4. ``DatasetService.Validate`` -> operation, polled until done; an invalid dataset stops the
   run with each error at its IN line;
5. ``TextGenerationBatchService.Completion`` -> operation and task id. Before starting, a
   rerun that crashed between the call and saving its answer adopts the folder's task for
   the same dataset instead of starting a second one;
6. follow the batch operation (progress: completed / total batches), polls backing off;
7. download the result files one by one and write OUT lines (`map_results`); a FAILED task's
   line and batch errors become error lines for the ids they name.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from ._batch_io import BatchProblem, PathLike, _Output
from ._cloud_batch_files import ConvertedInput, MapCounts, RequestIndex, convert_input, map_results
from ._cloud_http import (
    DEFAULT_PART_SIZE,
    MULTIPART_THRESHOLD,
    HttpTransfer,
    ObjectStorageError,
    Part,
    plan_parts,
)
from ._cloud_state import CloudState, Fingerprint, StateFile
from ._convert import build_request, model_uri
from ._errors import NotFoundError, YandexGPTError
from ._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2 as bi_pb2
from ._generated.yandex.cloud.ai.batch_inference.v1 import batch_inference_task_pb2 as task_pb2
from ._generated.yandex.cloud.ai.dataset.v1 import dataset_pb2
from ._generated.yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as ds_pb2
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from ._generated.yandex.cloud.operation import operation_service_pb2 as op_pb2
from ._public import public

__all__ = [
    "Blocking",
    "CloudBatchError",
    "CloudBatchSummary",
    "Poll",
    "Rpc",
    "Sleep",
    "adrive",
    "cloud_run",
    "drive",
]

INPUT_TASK_TYPE = "TextToTextGenerationRequest"
UPLOAD_FORMAT = "jsonlines"
_TASK_STATUS = task_pb2.BatchInferenceTask.Status


@dataclass(frozen=True)
class Rpc:
    """One unary call: `service` is "datasets", "batch", "tasks" or "operations"."""

    service: str
    method: str
    request: Any


@dataclass(frozen=True)
class Blocking:
    """File or HTTP work: run inline by `drive`, in a worker thread by `adrive`."""

    fn: Callable[[], Any]


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Rpc | Blocking | Sleep
Run = Generator[Step, Any, Any]


@dataclass(frozen=True)
class Poll:
    """How often to ask: the first wait, growing by `growth` up to `max_interval`.

    A real task spends minutes in PENDING and IN_PROGRESS even for three lines: polls start
    at 1 s and settle at one every 30 s.
    """

    initial: float = 1.0
    growth: float = 1.5
    max_interval: float = 30.0

    def waits(self) -> Generator[float, None, None]:
        wait = self.initial
        while True:
            yield wait
            wait = min(wait * self.growth, self.max_interval)


class CloudBatchError(YandexGPTError):
    """The run cannot go on: the dataset failed validation, or the state belongs elsewhere.

    `problems` lists what was found, with IN line numbers where known.
    """

    def __init__(self, message: str, problems: list[BatchProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass
class CloudBatchSummary:
    """What a cloud run did. `missing`: valid inputs with no line in OUT (neither answer nor error)."""

    task_id: str | None = None
    operation_id: str | None = None
    status: str = ""
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    missing: int = 0
    problems: list[BatchProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETED" and not self.failed and not self.missing and not self.problems


def _status_name(value: int) -> str:
    return str(_TASK_STATUS.Name(value))  # type: ignore[arg-type]


def _unpack(any_msg: Any, cls: Any) -> Any:
    msg = cls()
    if not any_msg.Unpack(msg):
        raise YandexGPTError(f"the service answered with {any_msg.TypeName()}, expected {cls.DESCRIPTOR.full_name}")
    return msg


def batch_request(uri: str, dataset_id: str, options: Mapping[str, Any]) -> Any:
    """BatchCompletionRequest from the same options complete() takes (checked the same way)."""
    probe = build_request(uri, "x", options, False)
    req = tg_pb2.BatchCompletionRequest(model_uri=uri, source_dataset_id=dataset_id)
    req.completion_options.CopyFrom(probe.completion_options)
    req.completion_options.ClearField("stream")
    which = probe.WhichOneof("ResponseFormat")
    if which == "json_object":
        req.json_object = probe.json_object
    elif which == "json_schema":
        req.json_schema.CopyFrom(probe.json_schema)
    return req


def cloud_run(
    in_path: PathLike,
    out_path: PathLike,
    *,
    model: str,
    folder_id: str | None = None,
    options: Mapping[str, Any] | None = None,
    transfer: HttpTransfer | None = None,
    poll: Poll | None = None,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = DEFAULT_PART_SIZE,
    on_progress: Callable[[str, int, int], None] | None = None,
    dataset_name: str | None = None,
    follow: bool = True,
) -> Run:
    """The whole run as steps; returns a CloudBatchSummary. See the module docstring.

    With `follow=False` the run ends once the task has started (`summary.task_id` and
    `summary.operation_id` name it): `batch_jobs.submit` hands the task to a job handle.
    """
    opts = dict(options or {})
    uri = model_uri(model, folder_id)
    folder = folder_id or (uri.split("/")[2] if uri.startswith("gpt://") else "")
    if not folder:
        raise ValueError("a cloud batch run needs a folder: pass folder_id= (YC_FOLDER_ID) or a gpt:// model URI")
    batch_request(uri, "probe", opts)  # bad options fail here, before any I/O
    http = transfer or HttpTransfer()
    polls = poll or Poll()
    out = os.fspath(out_path)
    work_dir = os.path.dirname(os.path.abspath(out))
    state_file = StateFile(out)
    fingerprint = yield Blocking(lambda: Fingerprint.of(in_path, uri, opts))
    state: CloudState = yield Blocking(lambda: state_file.load(fingerprint, in_path))
    summary = CloudBatchSummary(task_id=state.task_id)

    def save() -> Blocking:
        return Blocking(lambda: state_file.save(state))

    converted: ConvertedInput | None = None
    if not state.upload_done or state.batch_request is None:
        converted = yield Blocking(lambda: convert_input(in_path, model=model, options=opts, dest_dir=work_dir))
        # One fixed name next to OUT: a run killed mid-upload leaves one file, which the rerun replaces.
        upload_path = out + ".cloud-upload.jsonl"
        os.replace(converted.path, upload_path)
        converted.path = upload_path
        # The task takes IN's model and options (the call's, unless the lines name their own).
        summary.problems.extend(converted.problems)
        task_uri = model_uri(converted.model or model, folder_id)
        state.batch_request = json_format.MessageToJson(batch_request(task_uri, "", converted.options))
    try:
        if not state.dataset_id:
            name = dataset_name or _dataset_name(in_path)
            resp = yield Rpc(
                "datasets",
                "Create",
                ds_pb2.CreateDatasetRequest(
                    folder_id=folder, name=name, task_type=INPUT_TASK_TYPE, upload_format=UPLOAD_FORMAT
                ),
            )
            state.dataset_id = resp.dataset_id
            yield save()
        if not state.upload_done:
            assert converted is not None
            yield from _upload(state, converted, http, save=save, threshold=multipart_threshold, part_size=part_size)
    finally:
        if converted is not None:
            os.unlink(converted.path)

    if not state.dataset_ready:
        dataset_id = state.dataset_id or ""
        errors: Any = None
        if not state.validation_operation_id:
            # Validate once: a rerun that lost the operation id finds it (or the outcome) instead.
            info = (yield Rpc("datasets", "Describe", ds_pb2.DescribeDatasetRequest(dataset_id=dataset_id))).dataset
            status = dataset_pb2.DatasetInfo.Status.Name(info.status)
            if status == "DRAFT":
                op = yield Rpc("datasets", "Validate", ds_pb2.ValidateDatasetRequest(dataset_id=dataset_id))
                state.validation_operation_id = op.id
            elif status == "VALIDATING":
                ids = yield Rpc(
                    "datasets", "ListOperationsIds", ds_pb2.ListOperationsIdsRequest(dataset_id=[dataset_id])
                )
                state.validation_operation_id = ids.dataset_id_to_operation_id[dataset_id]
            elif status == "INVALID":
                errors = info.validation_error
            elif status != "READY":
                raise CloudBatchError(f"dataset {dataset_id} is {status}; it cannot be used for a task")
            yield save()
        if state.validation_operation_id:
            op = yield from _wait_operation(state.validation_operation_id, polls)
            result = _unpack(op.response, ds_pb2.ValidateDatasetResponse)
            if not result.is_valid:
                errors = result.errors
        if errors is not None:
            problems = yield Blocking(lambda: _validation_problems(in_path, errors, work_dir))
            shown = "; ".join(str(p) for p in problems[:10])
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise CloudBatchError(f"the batch engine refused the dataset: {shown}{more}", problems)
        state.dataset_ready = True
        yield save()

    if not state.task_id and state.batch_operation_id:  # started, but the task id was not known yet
        op = yield Rpc("operations", "Get", op_pb2.GetOperationRequest(operation_id=state.batch_operation_id))
        state.task_id = yield from _task_of(op, polls)
        yield save()
    if not state.task_id:
        adopted = yield from _find_task(folder, state.dataset_id)
        if adopted is not None:
            state.task_id, state.batch_operation_id = adopted
        else:
            request = json_format.Parse(state.batch_request, tg_pb2.BatchCompletionRequest())
            request.source_dataset_id = state.dataset_id
            op = yield Rpc("batch", "Completion", request)
            state.batch_operation_id = op.id
            yield save()  # the operation id first: a crash now is resumed from it, not by a second task
            state.task_id = yield from _task_of(op, polls)
        yield save()
    summary.task_id = state.task_id
    summary.operation_id = state.batch_operation_id
    if not follow:
        return summary

    task = yield from _follow(state, polls, on_progress)
    summary.status = _status_name(task.status)
    if task.result_dataset_id and not state.result_dataset_id:
        state.result_dataset_id = task.result_dataset_id
        yield save()
    yield from _write_out(in_path, out, state, task, summary=summary, http=http, save=save, work_dir=work_dir)
    state.finished = True
    yield save()
    return summary


def _dataset_name(in_path: PathLike) -> str:
    base = os.path.basename(os.fspath(in_path)) or "input"
    return ("yandexgpt-grpc " + base)[:63]


def _upload(
    state: CloudState,
    converted: ConvertedInput,
    http: HttpTransfer,
    *,
    save: Callable[[], Blocking],
    threshold: int,
    part_size: int,
) -> Run:
    dataset_id = state.dataset_id or ""
    size = converted.size
    if state.upload_size is not None and state.upload_size != size:
        state.upload_parts.clear()
        state.upload_urls.clear()
    state.upload_size = size
    if size <= threshold:
        resp = yield Rpc(
            "datasets",
            "GetUploadDraftUrl",
            ds_pb2.GetUploadDraftUrlRequest(dataset_id=dataset_id, size_bytes=size),
        )
        yield Blocking(lambda: http.put_file(resp.upload_url, converted.path))
    else:
        parts = plan_parts(size, part_size)
        for attempt in range(2):
            if not state.upload_urls or len(state.upload_urls) != len(parts):
                resp = yield Rpc(
                    "datasets",
                    "StartMultipartUploadDraft",
                    ds_pb2.StartMultipartUploadDraftRequest(dataset_id=dataset_id, size_bytes=size, parts=len(parts)),
                )
                state.upload_part_size = parts[0].length
                state.upload_urls = list(resp.multipart_upload_urls)
                state.upload_parts.clear()
                yield save()

            def record(number: int, etag: str) -> None:
                state.upload_parts[number] = etag
                save().fn()

            try:
                put = _put_parts(http, list(state.upload_urls), converted.path, parts, state=state, record=record)
                etags = yield Blocking(put)
            except ObjectStorageError as exc:
                if exc.expired and attempt == 0:  # the saved URLs ran out: start the upload over
                    state.upload_urls.clear()
                    continue
                raise
            yield Rpc(
                "datasets",
                "FinishMultipartUploadDraft",
                ds_pb2.FinishMultipartUploadDraftRequest(
                    dataset_id=dataset_id,
                    uploaded_parts=[ds_pb2.UploadedPartInfo(part_num=n, etag=e) for n, e in etags],
                ),
            )
            break
    state.upload_done = True
    state.upload_urls.clear()
    yield save()


def _wait_operation(op_id: str, polls: Poll) -> Run:
    waits = polls.waits()
    while True:
        op = yield Rpc("operations", "Get", op_pb2.GetOperationRequest(operation_id=op_id))
        if op.done:
            if op.HasField("error"):
                raise CloudBatchError(f"operation {op_id} failed: {op.error.message} (code {op.error.code})")
            return op
        yield Sleep(next(waits))


def _task_of(op: Any, polls: Poll) -> Run:
    """The task id in a batch operation's metadata, polling while the engine has not filled it in yet."""
    waits = polls.waits()
    while True:
        task_id = _unpack(op.metadata, tg_pb2.BatchCompletionMetadata).task_id if op.HasField("metadata") else ""
        if task_id:
            return task_id
        if op.done and op.HasField("response"):
            task_id = _unpack(op.response, tg_pb2.BatchCompletionResponse).task_id
            if task_id:
                return task_id
        if op.done:
            detail = f": {op.error.message}" if op.HasField("error") else ""
            raise CloudBatchError(f"batch operation {op.id} ended without naming a task{detail}")
        yield Sleep(next(waits))
        op = yield Rpc("operations", "Get", op_pb2.GetOperationRequest(operation_id=op.id))


def _find_task(folder: str, dataset_id: str) -> Run:
    """A task already started for this dataset (a crash came between starting it and saving)."""
    page_token = ""
    while True:
        resp = yield Rpc(
            "tasks", "List", bi_pb2.ListBatchInferencesRequest(folder_id=folder, page_size=100, page_token=page_token)
        )
        for task in resp.tasks:
            if task.source_dataset_id == dataset_id:
                return task.task_id, task.operation_id
        page_token = resp.next_page_token
        if not page_token:
            return None


def _follow(state: CloudState, polls: Poll, on_progress: Callable[[str, int, int], None] | None) -> Run:
    """Poll until the task ends: the batch operation carries progress, Describe the task itself."""
    waits = polls.waits()
    while True:
        completed = total = 0
        if state.batch_operation_id:
            try:
                op = yield Rpc("operations", "Get", op_pb2.GetOperationRequest(operation_id=state.batch_operation_id))
                meta = _unpack(op.metadata, tg_pb2.BatchCompletionMetadata)
                completed, total = meta.completed_batches, meta.total_batches
            except NotFoundError:  # operations are not kept forever; the task is
                state.batch_operation_id = None
        resp = yield Rpc("tasks", "Describe", bi_pb2.DescribeBatchInferenceRequest(task_id=state.task_id or ""))
        task = resp.task
        status = _status_name(task.status)
        if on_progress is not None:
            on_progress(status, completed, total)
        if status in ("COMPLETED", "FAILED", "CANCELED"):
            return task
        yield Sleep(next(waits))


def _write_out(
    in_path: PathLike,
    out: str,
    state: CloudState,
    task: Any,
    *,
    summary: CloudBatchSummary,
    http: HttpTransfer,
    save: Callable[[], Blocking],
    work_dir: str,
) -> Run:
    urls: list[tuple[str, str]] = []
    if state.result_dataset_id:
        resp = yield Rpc(
            "datasets", "GetDownloadUrls", ds_pb2.GetDownloadUrlsRequest(dataset_id=state.result_dataset_id)
        )
        urls = [(u.key, u.url) for u in resp.download_urls]
    index_path = out + ".cloud-index.sqlite"
    index: RequestIndex = yield Blocking(lambda: RequestIndex.build(in_path, index_path))
    try:
        problems = summary.problems
        yield Blocking(lambda: index.mark_done(out, problems))
        output = _Output(out)
        try:
            for key, url in urls:
                local = os.path.join(work_dir, f".{os.path.basename(out)}.{os.path.basename(key)}")
                yield Blocking(_download(http, url, local))
                counts = yield Blocking(_mapping(local, index, output, problems, key))
                summary.succeeded += counts.written + counts.already
                os.unlink(local)
                if key not in state.mapped:
                    state.mapped.append(key)
                    yield save()
            yield Blocking(lambda: _write_errors(index, output, task, summary))
        finally:
            output.close()
    finally:
        index.close()
        os.unlink(index_path)


def _write_errors(index: RequestIndex, output: _Output, task: Any, summary: CloudBatchSummary) -> None:
    """Error lines for the ids the task's line and batch errors name; then count what is missing."""
    for line, code, message in _task_errors(task):
        item = index.take_line(line)
        if item is not None:
            item_id, done = item
            if not done:
                output.write({"id": item_id, "error": {"code": code, "message": message}})
            summary.failed += 1
    summary.total = index.count()
    summary.missing = sum(1 for _ in index.unanswered())


def _put_parts(
    http: HttpTransfer,
    urls: list[str],
    path: str,
    parts: list[Part],
    *,
    state: CloudState,
    record: Callable[[int, str], None],
) -> Callable[[], list[tuple[int, str]]]:
    return lambda: http.put_parts(urls, path, parts, done=state.upload_parts, on_part=record)


def _download(http: HttpTransfer, url: str, local: str) -> Callable[[], int]:
    return lambda: http.get_file(url, local)


def _mapping(
    local: str, index: RequestIndex, output: _Output, problems: list[BatchProblem], key: str
) -> Callable[[], MapCounts]:
    return lambda: map_results(local, index, output, problems, label=key)


def _task_errors(task: Any) -> list[tuple[int, str, str]]:
    """(line of the converted file, code, message) for every line the task's errors name."""
    found: dict[int, tuple[str, str]] = {}
    for err in task.errors.batch_errors:
        for line in range(err.first_line, err.last_line + 1):
            found[line] = ("INTERNAL", f"batch {err.batch_number} failed: {err.message}")
    for err in task.errors.line_errors:
        found[err.line_number] = ("INVALID_ARGUMENT", err.message)
    return [(line, code, message) for line, (code, message) in sorted(found.items())]


def _validation_problems(in_path: PathLike, errors: Any, work_dir: str) -> list[BatchProblem]:
    """The engine's validation errors at IN's line numbers (it counts lines of the converted file)."""
    converted = convert_input(in_path, dest_dir=work_dir)
    os.unlink(converted.path)
    problems = []
    for err in errors:
        text = f"{err.error}: {err.error_description}" if err.error_description else err.error
        if not err.row_numbers:
            problems.append(BatchProblem(0, text))
        for row in err.row_numbers:
            line = converted.in_line(row)
            problems.append(BatchProblem(line if line is not None else 0, text))
    return sorted(problems, key=lambda p: p.line)


# -- drivers -------------------------------------------------------------------------------


def drive(run: Run, unary: Callable[[Rpc], Any], sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run the steps with a blocking client's `unary`; returns the run's result."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = run.throw(error) if error is not None else run.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(step, Rpc):
                value = unary(step)
            elif isinstance(step, Blocking):
                value = step.fn()
            else:
                sleep(step.seconds)
        except Exception as exc:  # handed to the run, which decides; it re-raises what it does not expect
            error = exc
        except BaseException:  # Ctrl-C: the run's cleanup (temporary files, OUT) happens now, not at GC
            run.close()
            raise


async def adrive(
    run: Run,
    unary: Callable[[Rpc], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Any:
    """Run the steps with an asyncio client's `unary`; file and HTTP work goes to a thread."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = run.throw(error) if error is not None else run.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(step, Rpc):
                value = await unary(step)
            elif isinstance(step, Blocking):
                value = await asyncio.to_thread(step.fn)
            else:
                await sleep(step.seconds)
        except Exception as exc:
            error = exc
        except BaseException:  # cancelled, or Ctrl-C
            run.close()
            raise


public(CloudBatchError, CloudBatchSummary)
