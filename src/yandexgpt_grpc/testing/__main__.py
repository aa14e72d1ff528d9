"""Run the emulator as a standalone server: ``python -m yandexgpt_grpc.testing``.

The address goes alone on the first stdout line so scripts can read it; SIGINT/SIGTERM stop the
server cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._server import Emulator


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m yandexgpt_grpc.testing",
        description="Serve a local emulator of the YandexGPT text-generation gRPC API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: chosen by the OS)")
    parser.add_argument("--unix-socket", help="listen on this Unix socket path instead")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="accept only this key (repeatable)")
    parser.add_argument("--iam-token", action="append", dest="iam_tokens", help="accept only this token")
    parser.add_argument("--folder-id", help="reject model URIs of other folders")
    parser.add_argument("--model-version", default="emulator-1.0")
    parser.add_argument("--log-level", default="WARNING", help="logging level (WARNING)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
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
    )
    emu.start()
    try:
        print(emu.address, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
