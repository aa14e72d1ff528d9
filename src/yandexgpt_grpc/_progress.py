"""The batch progress bar: tqdm's, from the `cli` extra; without it a run draws nothing.

tqdm draws what its users know (percentage, counts, elapsed, rate, ETA), fits the terminal's
width as it changes, and falls back to ASCII where the terminal cannot show its blocks.
"""

from __future__ import annotations

import importlib.util
from typing import Any, TextIO

INSTALL_HINT = "pip install 'yandexgpt-grpc[cli]'"


def available() -> bool:
    return importlib.util.find_spec("tqdm") is not None


class Progress:
    """done/total of the whole file (a resumed run starts at what OUT already holds), and failures.

    The runner calls `refresh` at least once a second while requests are in flight, so elapsed
    time, rate and ETA keep moving when nothing finishes.
    """

    def __init__(self, out: TextIO, total: int, clock: Any = None, *, initial: int = 0) -> None:
        from tqdm import tqdm  # the cli extra; callers check `available()` first

        self.done = initial
        self.failed = 0
        self._bar = tqdm(
            total=total,
            initial=initial,
            file=out,
            unit="req",
            dynamic_ncols=True,
            mininterval=0.2,
            smoothing=0.05,
            leave=True,
            postfix="0 failed",
        )

    def update(self, failed: bool, force: bool = False) -> None:
        self.done += 1
        if failed:
            self.failed += 1
            self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
        self._bar.update(1)
        if force:
            self._bar.refresh()

    def refresh(self) -> None:
        self._bar.refresh()

    def finish(self) -> None:
        self._bar.close()
