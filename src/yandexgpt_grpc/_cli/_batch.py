"""`yandexgpt-grpc batch`: AsyncClient in one event loop whose SIGINT handler cancels the work.

A failure of the whole run (BatchAborted) is one line and its exit code; per-request results
are the summary line; Ctrl-C is one line saying what is saved and how to go on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Coroutine
from typing import Any

from yandexgpt_grpc import _progress
from yandexgpt_grpc._async_client import AsyncClient
from yandexgpt_grpc._batch import DEFAULT_OUTAGE_WAIT, BatchProblem, arun_batch
from yandexgpt_grpc._errors import BatchAborted, BatchDiskFullError, BatchLockedError

from ._args import (
    DEFAULT_MODEL,
    EXIT_AUTH,
    EXIT_DISK_FULL,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_RUNNING,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Fail,
)
from ._term import Printer

# The gRPC code behind a stopped run (a name: no grpc import needed) -> exit status.
_ABORTED_BY_CODE = {
    "UNAUTHENTICATED": EXIT_AUTH,
    "PERMISSION_DENIED": EXIT_AUTH,
    "INVALID_ARGUMENT": EXIT_INVALID,
    "NOT_FOUND": EXIT_INVALID,
    "UNAVAILABLE": EXIT_UNAVAILABLE,
}


def _aborted_exit(exc: BatchAborted) -> int:
    if isinstance(exc, BatchDiskFullError):
        return EXIT_DISK_FULL
    if isinstance(exc, BatchLockedError):
        return EXIT_RUNNING
    return _ABORTED_BY_CODE.get(exc.code.name, EXIT_ERROR) if exc.code is not None else EXIT_ERROR


def _bar_stream(args: argparse.Namespace, printer: Printer) -> Any:
    """Where tqdm draws: stderr on a terminal (or with --progress); nothing without the cli extra."""
    if args.progress is False or (args.progress is None and not printer.err.isatty()):
        return False
    if not _progress.available():
        if args.progress:
            printer.note(f"--progress draws with tqdm, which is not installed: {_progress.INSTALL_HINT}")
        return False
    return printer.err


def _saved(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


async def _batch(args: argparse.Namespace, kwargs: dict[str, Any], printer: Printer) -> int:
    def on_problem(problem: BatchProblem) -> None:
        printer.note(str(problem))

    async with AsyncClient(**kwargs) as client:
        try:
            summary = await arun_batch(
                client,
                args.input,
                args.output,
                model=args.model,
                concurrency=args.concurrency,
                rps=args.rps,
                retry_failed=args.retry_failed,
                outage_wait=DEFAULT_OUTAGE_WAIT if args.outage_wait is None else args.outage_wait,
                progress=_bar_stream(args, printer),
                on_problem=on_problem,
            )
        except asyncio.CancelledError:
            printer.note(
                f"interrupted: {_saved(args.output)} results saved in {args.output}; "
                "run the same command again to continue"
            )
            raise
        except BatchAborted as exc:
            message = str(exc)
            if isinstance(exc, BatchDiskFullError):
                message += "; free some space and run again to continue"
            raise Fail(message, _aborted_exit(exc)) from exc
        except OSError as exc:
            raise Fail(f"{exc.strerror}: {exc.filename}", EXIT_USAGE) from exc
    printer.note(summary.describe())
    return EXIT_OK if summary.ok else EXIT_ERROR


async def _cloud(args: argparse.Namespace, kwargs: dict[str, Any], printer: Printer) -> int:
    from ._cloud import batch_jobs, cloud_batch

    async with AsyncClient(**kwargs) as client:
        if args.command == "batch-jobs":
            return await batch_jobs(args, client, printer.out, printer.err)
        options = {
            k: v for k, v in (("temperature", args.temperature), ("max_tokens", args.max_tokens)) if v is not None
        }
        return await cloud_batch(args, client, args.model or DEFAULT_MODEL, options, printer.err)


def run_cloud_command(args: argparse.Namespace, kwargs: dict[str, Any], printer: Printer) -> int:
    """`batch --cloud` and `batch-jobs`; Ctrl-C cancels the wait and surfaces as KeyboardInterrupt."""
    return _run_cancellable(_cloud(args, kwargs, printer))


def run_batch_command(args: argparse.Namespace, kwargs: dict[str, Any], printer: Printer) -> int:
    """Run the batch; Ctrl-C cancels it (and its RPCs), says what is saved once, and exits 130."""
    args.output = os.fspath(args.output)
    return _run_cancellable(_batch(args, kwargs, printer))


def _run_cancellable(coro: Coroutine[Any, Any, int]) -> int:
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)
    interrupted: list[bool] = []

    def on_sigint() -> None:
        interrupted.append(True)
        task.cancel()

    handler_set = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        handler_set = True
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if interrupted:  # the batch said what is saved: that is the one line
            return EXIT_INTERRUPTED
        raise
    except KeyboardInterrupt:  # no signal handler (not the main thread): Ctrl-C arrived directly
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        raise
    finally:
        if handler_set:
            loop.remove_signal_handler(signal.SIGINT)
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
