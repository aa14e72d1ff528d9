"""The `yandexgpt-grpc` command (also `python -m yandexgpt_grpc`).

Everything runs on AsyncClient inside one event loop whose SIGINT handler cancels the
work: the RPC in flight is cancelled on the wire, and the process exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TextIO

import grpc
from google.protobuf import json_format

from ._async_client import AsyncClient
from ._auth import resolve_credentials
from ._auth_base import Credentials, CredentialsError
from ._batch import BatchProblem, arun_batch
from ._errors import APIError, IncompleteStreamError, YandexGPTError
from ._streaming import AsyncCompletionStream
from ._types import NOT_GIVEN, AlternativeStatus, CompletionResult, Message
from ._version import __version__

PROG = "yandexgpt-grpc"
DEFAULT_MODEL = "yandexgpt-lite"
EMULATOR_FOLDER = "b1g-emulator"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INVALID = 4
EXIT_UNAVAILABLE = 5
EXIT_RUNNING = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    any other API error; for batch: some requests failed or input lines were skipped
  2    usage error (bad flags or option values, no input text)
  3    authentication or permission error (no, wrong or expired credentials)
  4    invalid argument (the server rejected the request), unknown model or folder
  5    unavailable, deadline exceeded or rate-limited after retries: try again later
  6    `operation ID` without --wait: the operation is still running
  130  interrupted (Ctrl-C); the request in flight was cancelled

credentials and endpoint fall back to YC_API_KEY, YC_IAM_TOKEN, YC_SERVICE_ACCOUNT_KEY_FILE,
YC_FOLDER_ID and YANDEXGPT_ENDPOINT; prefer the environment to flags for secrets (flags show in ps).
"""

_BY_CODE = {
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_INVALID,
    grpc.StatusCode.NOT_FOUND: EXIT_INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_INVALID,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_INVALID,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_UNAVAILABLE,
}

_COMMANDS = ("complete", "tokenize", "submit", "operation", "batch")


class UsageError(Exception):
    """Bad input from the command line: exit 2 with the message."""


class _Fail(Exception):
    """A handled failure: message for stderr plus the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- arguments -------------------------------------------------------------------------------


def _connection_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection and credentials")
    g.add_argument("--api-key", metavar="KEY", help="API key (default: $YC_API_KEY)")
    g.add_argument("--iam-token", metavar="TOKEN", help="IAM token (default: $YC_IAM_TOKEN)")
    g.add_argument("--folder-id", metavar="ID", help="folder for short model names (default: $YC_FOLDER_ID)")
    g.add_argument("--endpoint", metavar="HOST:PORT", help="gRPC target (default: $YANDEXGPT_ENDPOINT or the cloud)")
    g.add_argument("--insecure", action="store_true", help="plaintext gRPC; loopback addresses and Unix sockets only")
    g.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="deadline of each call")
    g.add_argument(
        "--emulator", action="store_true", help="run against an embedded emulator (no credentials, no network)"
    )
    g.add_argument("--debug", action="store_true", help="log calls and show tracebacks on errors")
    return p


def _generation_flags(model_default: str | None = DEFAULT_MODEL) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("generation")
    g.add_argument(
        "--model",
        default=model_default,
        help="short name (yandexgpt-lite, yandexgpt/rc) or full gpt:// URI"
        + (f" (default: {model_default})" if model_default else ""),
    )
    g.add_argument("--temperature", type=float, help="sampling temperature in [0, 1]")
    g.add_argument("--max-tokens", type=int, metavar="N", help="cap on generated tokens")
    return p


def _text_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("input")
    g.add_argument("text", nargs="?", help="the user message (or --user-text, or stdin when neither is given)")
    g.add_argument("--user-text", metavar="TEXT", help="the user message")
    g.add_argument("--system", metavar="TEXT", help="a system message (instructions) sent first")
    return p


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value!r}")
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    conn, gen, text = _connection_flags(), _generation_flags(), _text_flags()
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="YandexGPT over gRPC from the command line. Without a command, `complete` runs.",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "complete",
        parents=[text, gen, conn],
        help="generate a completion (the default command)",
        description="Generate a completion and print its text.",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    p.add_argument("--stream", action="store_true", help="print the text as it arrives")
    p.add_argument("--json", action="store_true", help="print the result as the REST API's JSON")

    p = sub.add_parser(
        "tokenize",
        parents=[text, _generation_flags(), conn],
        help="show how the model's tokenizer cuts a text",
        description=(
            "Print the tokens of the text (id, then the token text as JSON) and their count. With --system the "
            "whole request is tokenized: what its input costs."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    p.add_argument("--json", action="store_true", help="print the REST API's JSON")

    p = sub.add_parser(
        "submit",
        parents=[text, gen, conn],
        help="start a generation in asynchronous mode and print the operation id",
        description="Start a generation in asynchronous mode; print its operation id (or, with --wait, its result).",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    p.add_argument("--wait", action="store_true", help="wait for the result and print it")
    p.add_argument("--json", action="store_true", help="print the result as the REST API's JSON")
    p.add_argument("--poll-interval", type=_positive_float, default=1.0, metavar="SECONDS", help="(1.0)")

    p = sub.add_parser(
        "operation",
        parents=[conn],
        help="print the result of an asynchronous operation",
        description="Print the result of an operation started with `submit`, if it is done (exit 6 if not).",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    p.add_argument("operation_id", metavar="ID")
    p.add_argument("--wait", action="store_true", help="poll until it is done")
    p.add_argument("--json", action="store_true", help="print the result as the REST API's JSON")
    p.add_argument("--poll-interval", type=_positive_float, default=1.0, metavar="SECONDS", help="(1.0)")

    p = sub.add_parser(
        "batch",
        parents=[_generation_flags(None), conn],
        help="answer every prompt of a JSONL file, resumably",
        description=(
            'Answer each line {"id": ..., "messages": ..., <options>} of IN, appending one result line per id '
            "to OUT as it finishes. A rerun skips ids already in OUT, so an interrupted run is resumed by "
            "running it again. --model is the default for lines without a 'model'."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    p.add_argument("input", metavar="IN", help="input JSONL file")
    p.add_argument("output", metavar="OUT", help="output JSONL file (appended to)")
    p.add_argument("--concurrency", type=_positive_int, default=8, metavar="N", help="requests in flight (8)")
    p.add_argument("--rps", type=_positive_float, metavar="R", help="requests started per second (no limit)")
    p.add_argument("--retry-failed", action="store_true", help="drop error lines from OUT and run those ids again")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None, help="always draw the progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never draw it")
    return parser


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    args = list(argv)
    first = args[0] if args else None
    if first not in (*_COMMANDS, "-h", "--help", "--version"):
        args.insert(0, "complete")
    return build_parser().parse_args(args)


# -- helpers ---------------------------------------------------------------------------------


def _user_text(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.text is not None and args.user_text is not None:
        raise UsageError("give the text either as an argument or with --user-text, not both")
    text = args.user_text if args.user_text is not None else args.text
    if text is None:
        if stdin.isatty():
            raise UsageError("no text: pass it as an argument, with --user-text, or on stdin")
        text = stdin.read()
    if not text.strip():
        raise UsageError("the text is empty")
    return str(text)


def _messages(args: argparse.Namespace, stdin: TextIO) -> list[Message]:
    messages = [Message.system(args.system)] if args.system else []
    messages.append(Message.user(_user_text(args, stdin)))
    return messages


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    return options


def _credentials(args: argparse.Namespace) -> Credentials:
    try:
        return resolve_credentials(api_key=args.api_key, iam_token=args.iam_token)
    except (ValueError, CredentialsError) as exc:
        if str(exc).startswith("no credentials"):
            raise _Fail(
                "no credentials: pass --api-key or --iam-token, set YC_API_KEY, YC_IAM_TOKEN or "
                "YC_SERVICE_ACCOUNT_KEY_FILE, or try --emulator",
                EXIT_AUTH,
            ) from exc
        raise _Fail(str(exc), EXIT_AUTH) from exc


@contextlib.contextmanager
def _client_args(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """AsyncClient arguments from the flags; with --emulator, an emulator runs meanwhile."""
    kwargs: dict[str, Any] = {"timeout": args.timeout if args.timeout is not None else NOT_GIVEN}
    if not args.emulator:
        kwargs.update(
            endpoint=args.endpoint,
            insecure=args.insecure or None,  # not given: YANDEXGPT_INSECURE decides
            folder_id=args.folder_id,
            credentials=_credentials(args),
        )
        yield kwargs
        return
    if args.endpoint:
        raise UsageError("--emulator and --endpoint contradict each other: pick one")
    from .testing import Emulator

    with Emulator() as emu:
        kwargs.update(
            endpoint=emu.address,
            insecure=True,
            folder_id=args.folder_id or EMULATOR_FOLDER,
            api_key="emulator",
        )
        yield kwargs


def _secrets(args: argparse.Namespace) -> list[str]:
    values = [args.api_key, args.iam_token, os.environ.get("YC_API_KEY"), os.environ.get("YC_IAM_TOKEN")]
    return [v.strip() for v in values if v and len(v.strip()) >= 4]


def _redact(message: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return " ".join(message.split())  # one line, whatever the server sent


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, APIError):
        return _BY_CODE.get(exc.code, EXIT_ERROR)
    if isinstance(exc, CredentialsError):
        return EXIT_AUTH
    return EXIT_ERROR


# -- commands --------------------------------------------------------------------------------


class _Printer:
    """Streams text to `out`; when the server replaces the text, redraws it (terminal) or restarts it."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.tty = out.isatty()
        self.shown = ""

    def extend(self, delta: str) -> None:
        self.out.write(delta)
        self.out.flush()
        self.shown += delta

    def replace(self, text: str, status: AlternativeStatus) -> None:
        if self.tty:
            self.out.write(_erase(self.shown) + text)
        else:
            self.err.write(
                f"{PROG}: the server replaced the text ({status.name}); the text after this point replaces it\n"
            )
            self.out.write("\n" + text)
        self.out.flush()
        self.shown = text


def _erase(shown: str) -> str:
    """ANSI sequence that moves the cursor back over `shown` and clears to the end of the screen."""
    width = max(shutil.get_terminal_size().columns, 1)
    rows = sum(max(0, (len(line) - 1) // width) + 1 for line in shown.split("\n")) - 1
    return "\r" + (f"\x1b[{rows}A" if rows else "") + "\x1b[J"


def _rest_json(result: CompletionResult) -> dict[str, Any]:
    return {"result": result.to_dict()}


async def _complete(args: argparse.Namespace, client: AsyncClient, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    messages = _messages(args, stdin)
    options = _options(args)
    if not args.stream:
        result = await client.complete(args.model, messages, **options)
        _print_result(args, result, out, err)
        return EXIT_OK
    stream: AsyncCompletionStream
    async with client.stream(args.model, messages, **options) as stream:
        if args.json:
            async for alt in stream:
                if not alt.is_final:
                    out.write(json.dumps(_partial_json(alt.text, stream), ensure_ascii=False) + "\n")
                    out.flush()
        else:
            printer = _Printer(out, err)
            async for alt in stream:
                if alt.index != 0:
                    continue
                if alt.replaced:
                    printer.replace(alt.delta, alt.status)
                elif alt.delta:
                    printer.extend(alt.delta)
    final = stream.final
    if final is None:  # pragma: no cover - the stream raises IncompleteStreamError instead
        raise IncompleteStreamError("the stream ended without a result", partial=None)
    if args.json:
        out.write(json.dumps(_rest_json(final), ensure_ascii=False) + "\n")
    else:
        out.write("\n")
        _note_status(final.status, err)
    return EXIT_OK


def _partial_json(text: str, stream: AsyncCompletionStream) -> dict[str, Any]:
    """A streamed chunk in the REST API's shape (int64 counters as strings, as it sends them)."""
    usage = stream.usage
    chunk: dict[str, Any] = {
        "alternatives": [
            {"message": {"role": "assistant", "text": text}, "status": AlternativeStatus.PARTIAL.wire_name}
        ]
    }
    if usage is not None:
        chunk["usage"] = {
            "inputTextTokens": str(usage.input_tokens),
            "completionTokens": str(usage.completion_tokens),
            "totalTokens": str(usage.total_tokens),
        }
    if stream.model_version:
        chunk["modelVersion"] = stream.model_version
    return {"result": chunk}


def _note_status(status: AlternativeStatus, err: TextIO) -> None:
    if status is AlternativeStatus.TRUNCATED_FINAL:
        err.write(f"{PROG}: note: the answer was cut at --max-tokens (status TRUNCATED_FINAL)\n")
    elif status is AlternativeStatus.CONTENT_FILTER:
        err.write(f"{PROG}: note: the answer was replaced by the content filter (status CONTENT_FILTER)\n")


def _print_result(args: argparse.Namespace, result: CompletionResult, out: TextIO, err: TextIO) -> None:
    if args.json:
        out.write(json.dumps(_rest_json(result), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(result.text + "\n")
        _note_status(result.status, err)


async def _tokenize(args: argparse.Namespace, client: AsyncClient, stdin: TextIO, out: TextIO) -> int:
    if args.system:
        result = await client.tokenize_messages(args.model, _messages(args, stdin), **_options(args))
    else:
        result = await client.tokenize(args.model, _user_text(args, stdin))
    if args.json:
        doc = json_format.MessageToDict(result.raw) if result.raw is not None else {}
        out.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        return EXIT_OK
    for token in result:
        special = "\tspecial" if token.special else ""
        out.write(f"{token.id}\t{json.dumps(token.text, ensure_ascii=False)}{special}\n")
    out.write(f"{result.count} tokens\n")
    return EXIT_OK


async def _submit(args: argparse.Namespace, client: AsyncClient, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    op = await client.submit(args.model, _messages(args, stdin), **_options(args))
    if not args.wait:
        out.write(op.id + "\n")
        return EXIT_OK
    err.write(f"{PROG}: operation {op.id} started; waiting (Ctrl-C stops waiting, not the operation)\n")
    _print_result(args, await op.wait(poll_interval=args.poll_interval), out, err)
    return EXIT_OK


async def _operation(args: argparse.Namespace, client: AsyncClient, out: TextIO, err: TextIO) -> int:
    op = client.operation(args.operation_id)
    if args.wait:
        result = await op.wait(poll_interval=args.poll_interval)
    elif await op.poll():
        result = await op.result()
    else:
        err.write(f"{PROG}: operation {op.id} is still running; add --wait to wait for it\n")
        return EXIT_RUNNING
    _print_result(args, result, out, err)
    return EXIT_OK


async def _batch(args: argparse.Namespace, client: AsyncClient, err: TextIO) -> int:
    done = [0]

    def on_problem(problem: BatchProblem) -> None:
        err.write(f"{PROG}: {problem}\n")

    def on_result(record: dict[str, Any]) -> None:
        done[0] += 1

    try:
        summary = await arun_batch(
            client,
            args.input,
            args.output,
            model=args.model,
            concurrency=args.concurrency,
            rps=args.rps,
            retry_failed=args.retry_failed,
            progress=args.progress,
            on_problem=on_problem,
            on_result=on_result,
        )
    except asyncio.CancelledError:
        err.write(f"{PROG}: interrupted: {done[0]} new results saved in {args.output}; run again to continue\n")
        raise
    except OSError as exc:
        raise _Fail(f"{exc.strerror}: {exc.filename}", EXIT_USAGE) from exc
    err.write(
        f"{PROG}: {summary.succeeded} succeeded, {summary.failed} failed, {summary.skipped} already done, "
        f"{len(summary.problems)} input problems ({summary.elapsed:.1f}s)\n"
    )
    return EXIT_OK if summary.ok else EXIT_ERROR


async def _run(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    with _client_args(args) as kwargs:
        async with AsyncClient(**kwargs) as client:
            if args.command == "batch":
                return await _batch(args, client, err)
            if args.command == "tokenize":
                return await _tokenize(args, client, stdin, out)
            if args.command == "submit":
                return await _submit(args, client, stdin, out, err)
            if args.command == "operation":
                return await _operation(args, client, out, err)
            return await _complete(args, client, stdin, out, err)


def _run_cancellable(coro: Coroutine[Any, Any, int]) -> tuple[int, bool]:
    """Run `coro`; SIGINT cancels it (and so the RPC). Returns (exit code, interrupted)."""
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
        return loop.run_until_complete(task), False
    except asyncio.CancelledError:
        if interrupted:
            return EXIT_INTERRUPTED, True
        raise
    except KeyboardInterrupt:  # no signal handler (not the main thread): Ctrl-C arrived directly
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        return EXIT_INTERRUPTED, True
    finally:
        if handler_set:
            loop.remove_signal_handler(signal.SIGINT)
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Entry point of the console script; returns the exit status."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=err, format="%(asctime)s %(name)s %(message)s")
    else:  # retries and such are for --debug; errors get their one line below
        logging.getLogger("yandexgpt_grpc").addHandler(logging.NullHandler())
    secrets = _secrets(args)

    def fail(message: str, code: int) -> int:
        err.write(f"{PROG}: error: {_redact(message, secrets)}\n")
        return code

    try:
        code, interrupted = _run_cancellable(_run(args, stdin, out, err))
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except _Fail as exc:
        return fail(str(exc), exc.code)
    except (ValueError, TypeError) as exc:  # argument checks in the client, before any I/O
        _debug_traceback(args, err, secrets)
        return fail(str(exc), EXIT_USAGE)
    except (YandexGPTError, OSError) as exc:
        _debug_traceback(args, err, secrets)
        return fail(str(exc), _exit_code(exc))
    if interrupted:
        err.write(f"{PROG}: interrupted\n")
    return code


def _debug_traceback(args: argparse.Namespace, err: TextIO, secrets: Sequence[str]) -> None:
    if args.debug:
        err.write(_redact_lines("".join(traceback.format_exc()), secrets))


def _redact_lines(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
