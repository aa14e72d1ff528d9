"""Flags of each command, underscore aliases and "did you mean" hints.

Only the parser of the command being run is built: start-up time is part of every one-shot call.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from yandexgpt_grpc._version import __version__

PROG = "yandexgpt-grpc"
DEFAULT_MODEL = "yandexgpt-lite"
COMMANDS = ("complete", "tokenize", "submit", "operation", "batch", "batch-jobs")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INVALID = 4
EXIT_UNAVAILABLE = 5
EXIT_RUNNING = 6
EXIT_DISK_FULL = 7
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE: what the shell reports for `yes | head -1`'s yes

EXIT_CODES_HELP = """\
commands (`complete` runs when none is given; `yandexgpt-grpc COMMAND --help` for each):
  complete   generate a completion
  tokenize   show how the model's tokenizer cuts a text
  submit     start a generation in asynchronous mode and print the operation id
  operation  print the result of an asynchronous operation
  batch      answer every prompt of a JSONL file, resumably (--cloud: on the platform's batch engine)
  batch-jobs list, follow, cancel, fetch or delete tasks of the platform's batch engine

exit codes:
  0    success
  1    any other API error; for batch: some input ids have no answer yet, or input lines were skipped
  2    usage error (bad flags or option values, no input text)
  3    authentication or permission error (no, wrong or expired credentials)
  4    invalid argument (the server rejected the request, the prompt is too large), unknown model or folder
  5    unavailable, deadline exceeded or rate-limited after retries: try again later
  6    `operation ID` (or `batch-jobs status|results ID`) without --wait: still running; batch: another run
       is writing OUT
  7    batch: disk full while writing OUT; the results saved so far are whole lines, run again to continue
  130  interrupted (Ctrl-C); the request in flight was cancelled
  141  stdout was closed early (`| head`): the request was cancelled, nothing printed on stderr

flags also take underscores (--folder_id, --user_text, as in the Yandex Cloud docs' samples).
credentials and endpoint fall back to YC_API_KEY, YC_IAM_TOKEN, YC_SERVICE_ACCOUNT_KEY_FILE,
YC_FOLDER_ID and YANDEXGPT_ENDPOINT; prefer the environment to flags for secrets (flags show in ps).
"""


class UsageError(Exception):
    """Bad input from the command line: exit 2 with the message."""


class NoText(UsageError):
    """No text and a terminal on stdin: the usage goes with the message."""


class Fail(Exception):
    """A handled failure: message for stderr plus the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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


def _temperature(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value!r}")
    return number


def _columns() -> int:
    """The terminal width as shutil.get_terminal_size() finds it ($COLUMNS, then stdout's terminal, then 80).

    argparse's formatter asks shutil for it, and argparse makes a formatter for every flag it adds to
    a parser: importing shutil (and its bz2, lzma and fnmatch) was ~7 M instructions of each start-up.
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's RawDescriptionHelpFormatter, with the width found without shutil (see _columns)."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None, **kw: Any
    ) -> None:
        width = _columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width, **kw)


def _connection_flags(p: argparse.ArgumentParser) -> None:
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
    g.add_argument("--debug", action="store_true", help="log calls, show grpc's own logs and tracebacks on errors")


def _generation_flags(p: argparse.ArgumentParser, model_default: str | None = DEFAULT_MODEL) -> None:
    g = p.add_argument_group("generation")
    g.add_argument(
        "--model",
        default=model_default,
        help="short name (yandexgpt-lite, yandexgpt/rc) or full gpt:// URI"
        + (f" (default: {model_default})" if model_default else ""),
    )
    g.add_argument("--temperature", type=_temperature, metavar="T", help="sampling temperature in [0, 1]")
    g.add_argument("--max-tokens", type=_positive_int, metavar="N", help="cap on generated tokens")


def _text_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input")
    g.add_argument("text", nargs="?", help="the user message (or --user-text); - or no text reads it from stdin")
    g.add_argument("--user-text", metavar="TEXT", help="the user message")
    g.add_argument("--system", metavar="TEXT", help="a system message (instructions) sent first")


def _result_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="wait for the result and print it")
    p.add_argument("--json", action="store_true", help="print the result as the REST API's JSON")
    p.add_argument("--poll-interval", type=_positive_float, default=1.0, metavar="SECONDS", help="(1.0)")


def build_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one command (`complete` is also what bare `yandexgpt-grpc` runs)."""
    fmt = _Formatter
    prog = f"{PROG} [complete]" if command == "complete" else f"{PROG} {command}"
    p = argparse.ArgumentParser(prog=prog, epilog=EXIT_CODES_HELP, formatter_class=fmt)
    if command == "complete":
        p.description = "Generate a completion and print its text. YandexGPT over gRPC from the command line."
        _text_flags(p)
        _generation_flags(p)
        p.add_argument("--stream", action="store_true", help="print the text as it arrives")
        p.add_argument("--json", action="store_true", help="print the result as the REST API's JSON")
        p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    elif command == "tokenize":
        p.description = (
            "Print the tokens of the text (id, then the token text as JSON) and their count. With --system the "
            "whole request is tokenized: what its input costs."
        )
        _text_flags(p)
        _generation_flags(p)
        p.add_argument("--json", action="store_true", help="print the REST API's JSON")
    elif command == "submit":
        p.description = "Start a generation in asynchronous mode; print its operation id (or, with --wait, its result)."
        _text_flags(p)
        _generation_flags(p)
        _result_flags(p)
    elif command == "operation":
        p.description = "Print the result of an operation started with `submit`, if it is done (exit 6 if not)."
        p.add_argument("operation_id", metavar="ID")
        _result_flags(p)
    elif command == "batch-jobs":
        from ._cloud import batch_jobs_flags

        batch_jobs_flags(p)
    else:
        p.description = (
            'Answer each line {"id": ..., "messages": ..., <options>} of IN, appending one result line per id '
            "to OUT as it finishes. A rerun skips ids already in OUT, so an interrupted run is resumed by "
            "running it again; transient errors run again by themselves. A failure of the whole run (credentials, "
            "permission, TLS, unknown model, endpoint down) stops it with one line and writes nothing for it. "
            "--model is the default for lines without a 'model'."
        )
        _generation_flags(p)
        p.add_argument("input", metavar="IN", help="input JSONL file")
        p.add_argument("output", metavar="OUT", help="output JSONL file (appended to)")
        p.add_argument("--concurrency", type=_positive_int, default=8, metavar="N", help="requests in flight (8)")
        p.add_argument("--rps", type=_positive_float, metavar="R", help="requests started per second (no limit)")
        p.add_argument(
            "--retry-failed",
            action="store_true",
            help="also run again ids whose error belongs to the prompt (INVALID_ARGUMENT, ...)",
        )
        p.add_argument(
            "--outage-wait",
            type=_positive_float,
            metavar="S",
            # The default lives in _batch (DEFAULT_OUTAGE_WAIT), not imported here: parsing stays light.
            help="while the endpoint is unreachable, pause up to S seconds, then stop: exit 5 (60)",
        )
        bar = p.add_mutually_exclusive_group()
        bar.add_argument(
            "--progress", action="store_true", default=None, help="draw the progress bar even off a terminal"
        )
        bar.add_argument("--no-progress", dest="progress", action="store_false", help="never draw it")
        from ._cloud import add_cloud_flags

        add_cloud_flags(p)
    _connection_flags(p)
    return p


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]


def _normalize(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """`--folder_id` → `--folder-id` (also `--folder_id=b1g`), for every flag the parser knows."""
    known = set(flags)
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":  # the rest is text, whatever it looks like
            return out + list(args[i:])
        if arg.startswith("--") and "_" in arg:
            name, eq, value = arg.partition("=")
            dashed = "--" + name[2:].replace("_", "-")
            out.append(dashed + eq + value if dashed in known else arg)
            continue
        out.append(arg)
    return out


def _hint(unknown: Sequence[str], flags: Sequence[str], text_given: bool) -> str:
    """The error for arguments the parser did not take, with the nearest flag when one is close."""
    for arg in unknown:
        if arg.startswith("-") and arg != "-":
            import difflib

            name = arg.partition("=")[0]
            guess = name if name.startswith("--") else "-" + name
            close = difflib.get_close_matches(guess.replace("_", "-"), flags, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            return f"unrecognized flag {name}{hint}"
    extra = " ".join(unknown)
    hint = " (quote a text of several words)" if text_given else ""
    return f"unrecognized arguments: {extra}{hint}"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command's namespace (`args.command` set); argparse exits 0 for --help, 2 for bad flags."""
    args = list(argv)
    command = "complete"
    if args and args[0] in COMMANDS:
        command = args.pop(0)
    parser = build_parser(command)
    flags = _flags(parser)
    ns, unknown = parser.parse_known_args(_normalize(args, flags))
    if unknown:
        parser.error(_hint(unknown, flags, getattr(ns, "text", None) is not None))
    ns.command = command
    ns.parser = parser
    return ns
