"""The command line's cloud batch parts: `batch IN OUT --cloud` and `batch-jobs ...`.

Run on AsyncClient inside `_batch._run_cancellable`'s loop, like the local runner: Ctrl-C cancels
the wait (the task itself keeps running unless --cancel).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from yandexgpt_grpc._async_client import AsyncClient

from ._args import EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_RUNNING, PROG

__all__ = ["add_cloud_flags", "batch_jobs", "batch_jobs_flags", "cloud_batch"]


def add_cloud_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the platform's batch engine")
    g.add_argument(
        "--cloud",
        action="store_true",
        help="run IN on Yandex Cloud's batch engine (upload, validate, task, download); resumable from "
        "OUT.cloud-state.json; needs pip install 'yandexgpt-grpc[batch]'",
    )
    g.add_argument(
        "--cancel", action="store_true", help="with --cloud: on Ctrl-C cancel the task (default: it keeps running)"
    )


def batch_jobs_flags(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Tasks of the platform's batch engine (started by `batch --cloud` or batch_jobs.submit): list the "
        "folder's tasks; status / cancel / delete one; results writes its answers as OUT lines (--input: the "
        "IN file it was made from). status and results exit 6 while the task runs, unless --wait."
    )
    p.add_argument("action", choices=("list", "status", "cancel", "results", "delete"))
    p.add_argument("task_id", nargs="?", metavar="TASK_ID", help="the task (all but list)")
    p.add_argument("--input", metavar="IN", help="results: the IN file the task was made from")
    p.add_argument("--output", metavar="OUT", help="results: append the lines here instead of stdout")
    p.add_argument("--wait", action="store_true", help="status / results: wait until the task has ended")


class _Display:
    """Task status changes as lines; progress over completed / total batches as a bar on a terminal.

    The bar is tqdm's (the `cli` extra, as for the local runner) when it is installed; without it a
    line per change of the batch count.
    """

    def __init__(self, err: TextIO, enabled: bool | None) -> None:
        self._err = err
        self._enabled = err.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._status = ""
        self._shown = (-1, -1)

    def __call__(self, status: str, completed: int, total: int) -> None:
        if status != self._status:
            self.close()
            self._status = status
            self._err.write(f"{PROG}: task {status}\n")
        if not self._enabled or not total or (completed, total) == self._shown:
            return
        self._shown = (completed, total)
        if importlib.util.find_spec("tqdm") is None:
            self._err.write(f"{PROG}: {completed}/{total} batches\n")
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="batch", file=self._err, dynamic_ncols=True, leave=True)
        self._bar.total = total
        self._bar.n = completed
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


async def cloud_batch(
    args: argparse.Namespace, client: AsyncClient, model: str, options: dict[str, Any], err: TextIO
) -> int:
    """`batch IN OUT --cloud`: the resumable run; Ctrl-C leaves the task running unless --cancel."""
    from yandexgpt_grpc._cloud_batch import CloudBatchError  # the cloud modules load only when used
    from yandexgpt_grpc._cloud_state import StateFile
    from yandexgpt_grpc._errors import BatchLockedError

    jobs = client.batch_jobs
    display = _Display(err, getattr(args, "progress", None))
    try:
        summary = await jobs.run(args.input, args.output, model=model, on_progress=display, **options)
    except BatchLockedError as exc:  # another run (local or cloud) is writing this OUT
        display.close()
        err.write(f"{PROG}: error: {exc}\n")
        return EXIT_RUNNING
    except CloudBatchError as exc:  # the dataset failed validation: every error at its IN line
        display.close()
        for problem in exc.problems:
            err.write(f"{PROG}: {problem}\n")
        err.write(f"{PROG}: error: {exc.args[0].split(': ', 1)[0]}; fix IN and run again with another OUT\n")
        return EXIT_INVALID
    except asyncio.CancelledError:
        display.close()
        state = StateFile(args.output)
        task_id = _saved_task(state.path)
        if task_id and getattr(args, "cancel", False):
            await asyncio.shield(jobs.get(task_id).cancel())
            err.write(f"{PROG}: task {task_id} cancelled\n")
        elif task_id:
            err.write(
                f"{PROG}: task {task_id} keeps running. Run the same command again to re-attach "
                f"(or: {PROG} batch-jobs cancel {task_id})\n"
            )
        else:
            err.write(f"{PROG}: the task has not started; run the same command again to continue\n")
        raise
    finally:
        display.close()
    for problem in summary.problems:
        err.write(f"{PROG}: {problem}\n")
    err.write(
        f"{PROG}: task {summary.task_id} {summary.status}: {summary.succeeded} succeeded, {summary.failed} failed, "
        f"{summary.missing} without an answer, {len(summary.problems)} problems\n"
    )
    return EXIT_OK if summary.ok else EXIT_ERROR


def _saved_task(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            task = json.load(f).get("task_id")
    except (OSError, ValueError):
        return None
    return str(task) if task else None


async def batch_jobs(args: argparse.Namespace, client: AsyncClient, out: TextIO, err: TextIO) -> int:
    """`batch-jobs list|status|cancel|results|delete`."""
    jobs = client.batch_jobs
    if args.action == "list":
        for job in await jobs.list():
            assert job.last is not None
            out.write(f"{job.id}\t{job.last.status}\t{job.last.source_dataset_id}\t{job.last.model_uri}\n")
        return EXIT_OK
    if not args.task_id:
        raise ValueError(f"batch-jobs {args.action} needs a TASK_ID (see: {PROG} batch-jobs list)")
    job = jobs.get(args.task_id)
    if args.action == "cancel":
        await job.cancel()
        err.write(f"{PROG}: task {job.id} cancelled\n")
        return EXIT_OK
    if args.action == "delete":
        await job.delete()
        err.write(f"{PROG}: task {job.id} deleted\n")
        return EXIT_OK
    state = await job.wait() if args.wait else await job.refresh()
    if args.action == "status":
        progress = f"\t{state.completed_batches}/{state.total_batches} batches" if state.total_batches else ""
        out.write(f"{job.id}\t{state.status}{progress}\n")
        for e in state.task.errors.line_errors:
            out.write(f"line {e.line_number}: {e.message}\n")
        for b in state.task.errors.batch_errors:
            out.write(f"batch {b.batch_number} (lines {b.first_line}-{b.last_line}): {b.message}\n")
        return EXIT_OK if state.done else EXIT_RUNNING
    if not args.input:
        raise ValueError("batch-jobs results needs --input IN: the file the task was made from")
    if not state.done:
        err.write(f"{PROG}: task {job.id} is still {state.status}; add --wait to wait for it\n")
        return EXIT_RUNNING
    count = 0
    target = open(args.output, "a", encoding="utf-8") if args.output else out  # noqa: SIM115
    try:
        for record in await job.results(args.input):
            target.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    finally:
        if target is not out:
            target.close()
    err.write(f"{PROG}: {count} results of task {job.id}\n")
    return EXIT_OK
