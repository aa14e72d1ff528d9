"""Run the emulator as a standalone server: ``python -m yandexgpt_grpc.testing``.

The address goes alone on the first stdout line so scripts can read it; SIGINT/SIGTERM stop the
server cleanly with exit status 0. A bad flag, a busy port or an unreadable script is one line on
stderr and exit status 2.

Flags beyond the address and credentials:

- ``--tls CERT KEY`` serves TLS with a PEM certificate chain and key; ``--tls`` alone generates a
  throwaway self-signed certificate for localhost/127.0.0.1/::1 (needs ``cryptography``: the ``sa``
  extra) and prints on stderr where its PEM is, to pass as ``root_certificates`` (or
  ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``); the file is removed when the server stops.
- ``--latency S`` waits S seconds before the first response of every call, ``--chunk-delay S``
  between streamed responses; ``--fail-rate P --fail-code CODE`` fails each call with probability P
  (``--seed N`` makes the same calls fail on every run). They apply to calls no script item answers.
- ``--models a,b,c`` sets the model names accepted in ``gpt://<folder>/<name>[/<branch>]`` (default:
  the public model list, ``DEFAULT_MODELS``); ``--any-model`` accepts any name.
- ``--script FILE`` replays a JSON list of items in order, each answering one call::

      [
        {"reply": {"chunks": ["Hel", "lo"]}},
        {"fault": {"code": "UNAVAILABLE", "details": "try again", "after": 1}},
        {"reply": {"status": "CONTENT_FILTER", "final_text": "[filtered]", "delay": 0.2}},
        {"method": "Tokenize", "fault": {"code": "RESOURCE_EXHAUSTED", "pushback_ms": 500}}
      ]

  ``reply`` takes the fields of :class:`~yandexgpt_grpc.testing.Reply` (``chunks``, ``status``,
  ``final_text``, ``tool_calls``, ``usage``, ``delay``, ``between``, ``terminal``,
  ``initial_metadata``, ``trailing_metadata``), ``fault`` those of
  :class:`~yandexgpt_grpc.testing.Fault` (``code`` as a name or number, ``details``, ``after``,
  ``delay``, ``between``, ``chunks``, ``stall``, ``pushback_ms``, ``trailing_metadata``);
  ``method`` is one of ``METHODS`` (default ``Completion``). Items queue per method in file order;
  once a method's items are used up, its calls get the default model.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import FrameType

import grpc

from ._model import DEFAULT_MODELS
from ._script import ScriptError, load_script, status_code
from ._server import METHODS, Emulator
from ._tls import CRYPTOGRAPHY_MISSING, self_signed_pair

PROG = "python -m yandexgpt_grpc.testing"


class _Refusal(Exception):
    """A start-up problem told to the user in one line (exit status 2)."""


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value!r}")
    return seconds


def _probability(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {value!r}") from None
    if not 0 <= p <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability within [0, 1], got {value!r}")
    return p


def _code(value: str) -> grpc.StatusCode:
    try:
        code = status_code(int(value) if value.strip().isdigit() else value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if code is grpc.StatusCode.OK:
        raise argparse.ArgumentTypeError("OK is not a failure")
    return code


def _models(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated model names, e.g. yandexgpt-lite,yandexgpt")
    return names


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a local emulator of the YandexGPT text-generation gRPC API.",
        epilog="The --script format: python -m pydoc yandexgpt_grpc.testing.__main__",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: chosen by the OS)")
    parser.add_argument("--unix-socket", help="listen on this Unix socket path instead")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="accept only this key (repeatable)")
    parser.add_argument("--iam-token", action="append", dest="iam_tokens", help="accept only this token")
    parser.add_argument("--folder-id", help="reject model URIs of other folders")
    parser.add_argument("--model-version", default="emulator-1.0")
    parser.add_argument("--log-level", default="WARNING", help="logging level (WARNING)")
    parser.add_argument(
        "--tls",
        nargs="*",
        metavar="CERT KEY",
        help="serve TLS with these PEM files; alone: a throwaway self-signed certificate (its path goes to stderr)",
    )
    parser.add_argument("--latency", type=_seconds, default=0.0, metavar="SECONDS", help="delay before answering")
    parser.add_argument(
        "--chunk-delay", type=_seconds, default=0.0, metavar="SECONDS", help="delay between streamed responses"
    )
    parser.add_argument("--fail-rate", type=_probability, default=0.0, metavar="P", help="fail calls at this rate")
    parser.add_argument(
        "--fail-code", type=_code, default=grpc.StatusCode.UNAVAILABLE, metavar="CODE", help="(UNAVAILABLE)"
    )
    parser.add_argument("--seed", type=int, help="seed of --fail-rate: the same calls fail on every run")
    parser.add_argument("--script", metavar="FILE", help="JSON list of reply/fault items replayed in order")
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--models", type=_models, metavar="A,B,C", help="accepted model names (the public list)")
    models.add_argument("--any-model", action="store_true", help="accept any model name")
    args = parser.parse_args(argv)
    if args.tls is not None and len(args.tls) not in (0, 2):
        parser.error("--tls takes no value (a generated certificate) or two: CERT KEY")
    return args


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return 2


def _cannot_bind(host: str, port: int) -> str | None:
    """The one-line refusal when ``host:port`` cannot be bound, else None.

    Checked before grpc binds, because grpc's own failure comes with C-core log lines. Binding one
    of the host's addresses is enough (grpc does the same: ``localhost`` without IPv6 is fine).
    """
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {where} ({exc.strerror or exc})"
    errors: list[OSError] = []
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc does
            try:
                probe.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"port {port} is in use ({where}: pick another --port, or 0 for a free one)"
                errors.append(exc)
    if errors and len(errors) == len(infos):
        return f"cannot listen on {where} ({errors[0].strerror or errors[0]})"
    return None


def _tls(args: argparse.Namespace, workdir: list[str]) -> tuple[bytes, ...] | None:
    """The emulator's ``tls`` tuple; raises _Refusal (one line for the user) on failure."""
    if args.tls is None:
        return None
    if args.tls:
        try:
            with open(args.tls[0], "rb") as f:
                cert = f.read()
            with open(args.tls[1], "rb") as f:
                key = f.read()
        except OSError as exc:
            raise _Refusal(f"--tls: cannot read {exc.filename}: {exc.strerror}") from None
        return (cert, key)
    try:
        cert, key = self_signed_pair()
    except ImportError:
        raise _Refusal(CRYPTOGRAPHY_MISSING) from None
    tmp = tempfile.mkdtemp(prefix="yandexgpt-emulator-")
    workdir.append(tmp)
    path = os.path.join(tmp, "ca.pem")
    with open(path, "wb") as f:
        f.write(cert)
    print(
        f"{PROG}: TLS with a throwaway self-signed certificate for localhost/127.0.0.1; "
        f"its CA PEM (for root_certificates): {path}",
        file=sys.stderr,
        flush=True,
    )
    return (cert, key, cert)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    workdir: list[str] = []
    try:
        return _serve(args, workdir)
    finally:
        for path in workdir:
            shutil.rmtree(path, ignore_errors=True)


def _serve(args: argparse.Namespace, workdir: list[str]) -> int:
    try:
        script = load_script(args.script, METHODS) if args.script else []
        tls = _tls(args, workdir)
    except (ScriptError, _Refusal) as exc:
        return _fail(str(exc))
    if not args.unix_socket:
        refusal = _cannot_bind(args.host, args.port)
        if refusal:
            return _fail(refusal)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    emu = Emulator(
        args.host,
        args.port,
        api_keys=args.api_keys,
        iam_tokens=args.iam_tokens,
        folder_id=args.folder_id,
        unix_socket=args.unix_socket,
        model_version=args.model_version,
        tls=tls,
        models=None if args.any_model else (args.models or DEFAULT_MODELS),
        latency=args.latency,
        chunk_delay=args.chunk_delay,
        fail_rate=args.fail_rate,
        fail_code=args.fail_code,
        seed=args.seed,
    )
    for method, entry in script:
        emu.enqueue(method, entry)
    try:
        emu.start()
    except (RuntimeError, OSError) as exc:  # e.g. a port taken between the check and the bind
        return _fail(f"cannot listen on {emu.address if args.unix_socket else f'{args.host}:{args.port}'} ({exc})")
    try:
        print(emu.address, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
