"""The `yandexgpt-grpc` command (also `python -m yandexgpt_grpc`).

One-shot commands run on the blocking `Client`: Ctrl-C raises KeyboardInterrupt in the call,
which cancels the RPC on the wire, and the process exits 130. `batch` runs on AsyncClient in an
event loop whose SIGINT handler cancels the work. Heavy modules load only when a command needs them:
start-up time is most of a one-shot call's cost.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from yandexgpt_grpc._errors import APIError, MessageTooLargeError, YandexGPTError
from yandexgpt_grpc._types import NOT_GIVEN, AlternativeStatus, CompletionResult, Message

from ._args import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_RUNNING,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    Fail,
    NoText,
    UsageError,
    parse,
)
from ._term import Printer
from ._wording import cli_wording, too_large

if TYPE_CHECKING:
    from yandexgpt_grpc._client import Client
    from yandexgpt_grpc._streaming import CompletionStream

__all__ = ["main"]

EMULATOR_FOLDER = "b1g-emulator"
_grpc_quieted = False

# grpc.StatusCode names (not members: comparing names needs no grpc import here) -> exit status.
_BY_CODE = {
    "UNAUTHENTICATED": EXIT_AUTH,
    "PERMISSION_DENIED": EXIT_AUTH,
    "INVALID_ARGUMENT": EXIT_INVALID,
    "NOT_FOUND": EXIT_INVALID,
    "FAILED_PRECONDITION": EXIT_INVALID,
    "OUT_OF_RANGE": EXIT_INVALID,
    "UNAVAILABLE": EXIT_UNAVAILABLE,
    "DEADLINE_EXCEEDED": EXIT_UNAVAILABLE,
    "RESOURCE_EXHAUSTED": EXIT_UNAVAILABLE,
}


# -- input -----------------------------------------------------------------------------------


def _not_utf8(raw: bytes, what: str) -> UsageError:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return UsageError(f"{what} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
    return UsageError(f"{what} is not valid UTF-8")  # pragma: no cover - only called for bad bytes


def _read_stdin(stdin: TextIO) -> str:
    buffer = getattr(stdin, "buffer", None)
    if buffer is None:  # a text stream handed in by a caller
        return stdin.read()
    raw: bytes = buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(raw, "stdin") from None
    return text.removeprefix("\ufeff")


def _user_text(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.text is not None and args.user_text is not None:
        raise UsageError("give the text either as an argument or with --user-text, not both")
    text = args.user_text if args.user_text is not None else args.text
    if text is None or text == "-":
        if text is None and stdin.isatty():
            raise NoText("no text: pass it as an argument, with --user-text, or on stdin (- reads stdin)")
        text = _read_stdin(stdin)
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
            raise _not_utf8(os.fsencode(text), "the text argument") from None
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


# -- the client ------------------------------------------------------------------------------


def _credentials(args: argparse.Namespace) -> Any:
    from yandexgpt_grpc._auth import CredentialsError, resolve_credentials

    try:
        return resolve_credentials(api_key=args.api_key, iam_token=args.iam_token)
    except (ValueError, CredentialsError) as exc:
        if str(exc).startswith("no credentials"):
            raise Fail(
                "no credentials: pass --api-key or --iam-token, set YC_API_KEY, YC_IAM_TOKEN or "
                "YC_SERVICE_ACCOUNT_KEY_FILE, or try --emulator",
                EXIT_AUTH,
            ) from exc
        # A credential that cannot work (an unreadable key file) is 3; flags that contradict, 2.
        raise Fail(cli_wording(str(exc)), EXIT_AUTH if isinstance(exc, CredentialsError) else EXIT_USAGE) from exc


@contextlib.contextmanager
def _client_args(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Client arguments from the flags; with --emulator, an emulator runs meanwhile."""
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
    from yandexgpt_grpc.testing import Emulator

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
    return message


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, APIError):
        return _BY_CODE.get(exc.code.name, EXIT_ERROR)
    from yandexgpt_grpc._auth import CredentialsError

    if isinstance(exc, CredentialsError):
        return EXIT_AUTH
    return EXIT_ERROR


# -- commands --------------------------------------------------------------------------------


def _rest_json(result: CompletionResult) -> dict[str, Any]:
    return {"result": result.to_dict()}


def _dumps(doc: Any, indent: int | None = None) -> str:
    import json

    return json.dumps(doc, ensure_ascii=False, indent=indent)


def _note_status(status: AlternativeStatus, printer: Printer) -> None:
    if status is AlternativeStatus.TRUNCATED_FINAL:
        printer.note("note: the answer was cut at --max-tokens (status TRUNCATED_FINAL)")
    elif status is AlternativeStatus.CONTENT_FILTER:
        printer.note("note: the answer was replaced by the content filter (status CONTENT_FILTER)")


def _print_result(args: argparse.Namespace, result: CompletionResult, printer: Printer) -> None:
    if args.json:
        printer.write(_dumps(_rest_json(result), indent=2) + "\n")
    else:
        printer.write(result.text + "\n")
        _note_status(result.status, printer)


def _complete(args: argparse.Namespace, client: Client, messages: list[Message], printer: Printer) -> int:
    options = _options(args)
    if not args.stream:
        _print_result(args, client.complete(args.model, messages, **options), printer)
        return EXIT_OK
    stream: CompletionStream
    with client.stream(args.model, messages, **options) as stream:
        if args.json:
            for alt in stream:
                if not alt.is_final:
                    printer.write(_dumps(_partial_json(alt.text, stream)) + "\n")
        else:
            for alt in stream:
                if alt.index != 0:
                    continue
                if alt.replaced:
                    printer.replace(alt.delta, alt.status)
                elif alt.delta:
                    printer.extend(alt.delta)
        final = stream.get_final()
    if args.json:
        printer.write(_dumps(_rest_json(final)) + "\n")
    else:
        printer.write("\n")
        _note_status(final.status, printer)
    return EXIT_OK


def _partial_json(text: str, stream: CompletionStream) -> dict[str, Any]:
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


def _tokenize(args: argparse.Namespace, client: Client, messages: list[Message], printer: Printer) -> int:
    if args.system:
        result = client.tokenize_messages(args.model, messages, **_options(args))
    else:
        result = client.tokenize(args.model, messages[-1].text)
    if args.json:
        from google.protobuf import json_format

        doc = json_format.MessageToDict(result.raw) if result.raw is not None else {}
        printer.write(_dumps(doc, indent=2) + "\n")
        return EXIT_OK
    lines = []
    for token in result:
        special = "\tspecial" if token.special else ""
        lines.append(f"{token.id}\t{_dumps(token.text)}{special}\n")
    printer.write("".join(lines) + f"{result.count} tokens\n")
    return EXIT_OK


def _submit(args: argparse.Namespace, client: Client, messages: list[Message], printer: Printer) -> int:
    op = client.submit(args.model, messages, **_options(args))
    if not args.wait:
        printer.write(op.id + "\n")
        return EXIT_OK
    printer.note(f"operation {op.id} started; waiting (Ctrl-C stops waiting, not the operation)")
    _print_result(args, op.wait(poll_interval=args.poll_interval), printer)
    return EXIT_OK


def _operation(args: argparse.Namespace, client: Client, printer: Printer) -> int:
    op = client.operation(args.operation_id)
    if args.wait:
        result = op.wait(poll_interval=args.poll_interval)
    elif op.poll():
        result = op.result()
    else:
        printer.note(f"operation {op.id} is still running; add --wait to wait for it")
        return EXIT_RUNNING
    _print_result(args, result, printer)
    return EXIT_OK


def _run(args: argparse.Namespace, stdin: TextIO, printer: Printer) -> int:
    messages: list[Message] = []
    if args.command in ("complete", "tokenize", "submit"):  # the text first: no text, no need for credentials
        messages = _messages(args, stdin)
    with _client_args(args) as kwargs:
        if args.command == "batch-jobs" or (args.command == "batch" and args.cloud):
            from ._batch import run_cloud_command

            return run_cloud_command(args, kwargs, printer)
        if args.command == "batch":
            from ._batch import run_batch_command

            return run_batch_command(args, kwargs, printer)
        from yandexgpt_grpc._client import Client

        try:
            with Client(**kwargs) as client:
                if args.command == "tokenize":
                    return _tokenize(args, client, messages, printer)
                if args.command == "submit":
                    return _submit(args, client, messages, printer)
                if args.command == "operation":
                    return _operation(args, client, printer)
                return _complete(args, client, messages, printer)
        except MessageTooLargeError as exc:  # no retry can help: say which message and by how much
            sentence = too_large(exc.details, sum(len(m.text.encode("utf-8")) for m in messages))
            if sentence is None:
                raise
            raise Fail(sentence, EXIT_INVALID) from exc


# -- the process -----------------------------------------------------------------------------


def _quiet_grpc(args: argparse.Namespace) -> None:
    """Keep grpc's C-core log lines (ssl_transport_security.cc ...) off the screen unless --debug.

    grpc reads GRPC_VERBOSITY when it is imported, and `import yandexgpt_grpc` has imported it
    before any of this runs; so file descriptor 2 goes to /dev/null for the C-core while Python's
    sys.stderr writes to a duplicate of the original. Not undone on return: grpc's threads still
    log while the process shuts down. A user's own GRPC_VERBOSITY or GRPC_TRACE is left alone.
    """
    global _grpc_quieted
    if _grpc_quieted or args.debug or "GRPC_VERBOSITY" in os.environ or "GRPC_TRACE" in os.environ:
        return
    _grpc_quieted = True  # once per process: a second dup(2) would duplicate /dev/null
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real file descriptor 2
        return
    original = sys.stderr
    sys.stderr = open(saved, "w", encoding=original.encoding, errors="backslashreplace", buffering=1)  # noqa: SIM115
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _run_without_gc_passes(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """Run a one-shot command with the cyclic GC paused, and turn it back on when the command returns.

    The command imports the client and the stubs, makes one call and ends: the passes its imports
    trigger walk grpc's and protobuf's objects again and again (~11 M of the ~460 M instructions of a
    one-shot call) to free a few hundred import-time objects, and the call itself leaves no cycles.
    Only for the process's own run, like _quiet_grpc; `batch` and `batch-jobs` run long and keep the
    collector; a program that calls main() itself gets its collector back as it was.
    """
    import gc

    if not gc.isenabled():
        return _main(args, stdin, out, err)
    gc.disable()
    try:
        return _main(args, stdin, out, err)
    finally:
        gc.enable()


def _close_stdout(out: TextIO) -> None:
    """After EPIPE: point stdout at /dev/null so Python's flush at exit does not fail again."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Entry point of the console script; returns the exit status.

    Without `stderr`, the process's own stderr is used and grpc's C-core logging is silenced
    for the rest of the process (see _quiet_grpc).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if stderr is None:  # the process's own stderr: the console script or python -m
        _quiet_grpc(args)
        if args.command not in ("batch", "batch-jobs"):
            return _run_without_gc_passes(args, stdin or sys.stdin, stdout or sys.stdout, sys.stderr)
    return _main(args, stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)


def _main(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=err, format="%(asctime)s %(name)s %(message)s")
    else:  # retries and such are for --debug; errors get their one line below
        logging.getLogger("yandexgpt_grpc").addHandler(logging.NullHandler())
    secrets = _secrets(args)
    printer = Printer(out, err)

    def fail(message: str, code: int, usage: bool = False) -> int:
        printer.before_message()
        if usage:
            err.write(args.parser.format_usage())
        err.write(f"{PROG}: error: {' '.join(_redact(message, secrets).split())}\n")
        err.flush()
        return code

    try:
        return _run(args, stdin, printer)
    except BrokenPipeError:  # `| head`: the reader has all it wants; the RPC was cancelled on the way out
        _close_stdout(out)
        return EXIT_PIPE
    except KeyboardInterrupt:
        printer.before_message()
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE, usage=isinstance(exc, NoText))
    except Fail as exc:
        return fail(str(exc), exc.code)
    except (ValueError, TypeError) as exc:  # argument checks in the client, before any I/O
        _debug_traceback(args, err, secrets)
        return fail(cli_wording(str(exc)), EXIT_USAGE)
    except (YandexGPTError, OSError) as exc:
        _debug_traceback(args, err, secrets)
        return fail(str(exc), _exit_code(exc))


def _debug_traceback(args: argparse.Namespace, err: TextIO, secrets: Sequence[str]) -> None:
    if args.debug:
        import traceback

        err.write(_redact(traceback.format_exc(), secrets))
