"""`yandexgpt-grpc batch`: AsyncClient in one event loop whose SIGINT handler cancels the work."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

from yandexgpt_grpc._async_client import AsyncClient
from yandexgpt_grpc._batch import DEFAULT_OUTAGE_WAIT, BatchDiskFullError, BatchOutageError, BatchProblem, arun_batch

from ._args import DEFAULT_MODEL, EXIT_DISK_FULL, EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, Fail
from ._term import Printer


async def _batch(args: argparse.Namespace, kwargs: dict[str, Any], printer: Printer) -> int:
    done = [0]

    def on_problem(problem: BatchProblem) -> None:
        printer.note(str(problem))

    def on_result(record: dict[str, Any]) -> None:
        done[0] += 1

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
                progress=args.progress,
                on_problem=on_problem,
                on_result=on_result,
            )
        except asyncio.CancelledError:
            printer.note(f"interrupted: {done[0]} new results saved in {args.output}; run again to continue")
            raise
        except BatchOutageError as exc:
            raise Fail(str(exc), EXIT_UNAVAILABLE) from exc
        except BatchDiskFullError as exc:
            raise Fail(f"{exc}; free some space and run again to continue", EXIT_DISK_FULL) from exc
        except OSError as exc:
            raise Fail(f"{exc.strerror}: {exc.filename}", EXIT_USAGE) from exc
    printer.note(
        f"{summary.succeeded} succeeded, {summary.failed} failed, {summary.skipped} already done, "
        f"{sum(p.file == 'input' for p in summary.problems)} input problems ({summary.elapsed:.1f}s)"
    )
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
    """Run the batch; Ctrl-C cancels it (and its RPCs) and surfaces as KeyboardInterrupt."""
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
        if interrupted:
            raise KeyboardInterrupt from None
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
