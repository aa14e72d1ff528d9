"""The `yandexgpt-grpc` command; the console script's entry point is `main` (the code is in `_cli/`)."""

from __future__ import annotations

from ._cli import main

__all__ = ["main"]
