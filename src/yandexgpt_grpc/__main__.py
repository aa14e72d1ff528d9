"""`python -m yandexgpt_grpc`: the same command as the `yandexgpt-grpc` console script."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
