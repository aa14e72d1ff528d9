"""Output: streamed text, its redraw when the server replaces it, and where a later message starts."""

from __future__ import annotations

import os
from typing import Any, TextIO

from yandexgpt_grpc._types import AlternativeStatus

from ._args import PROG

_TAB = 8


def _width_function() -> Any:
    """wcwidth.wcwidth when the `cli` extra is installed, else None (widths unknown)."""
    try:
        from wcwidth import wcwidth
    except ImportError:
        return None
    return wcwidth


def rows_above(text: str, columns: int, width: Any) -> int:
    """How many rows above the cursor `text` starts, if it was written from column 0.

    Follows a terminal's wrapping: a wide character that does not fit in the last column moves
    to the next row, and a full row wraps only when the next character comes (pending wrap).
    """
    row = col = 0
    for ch in text:
        if ch == "\n":
            row, col = row + 1, 0
            continue
        if ch == "\r":
            col = 0
            continue
        if ch == "\t":  # to the next tab stop, never past the last column (and never wrapping)
            col = min(columns - 1, (col // _TAB + 1) * _TAB)
            continue
        w = width(ch)
        if w <= 0:  # combining marks, zero-width joiners, control characters: no cell of their own,
            if col >= columns:  # but after a full row some terminals wrap: count it, erasing more not less
                row, col = row + 1, 0
            continue
        if col + w > columns:
            row, col = row + 1, 0
        col += w
    return row


def same_file(a: TextIO, b: TextIO) -> bool:
    """True if both streams write to one file (a terminal, or `2>&1` into one pipe)."""
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


class Printer:
    """Streams text to `out`; when the server replaces the text, erases it (terminal) or restarts it.

    Knows whether the last character shown ended a line, so a message on stderr after streamed text
    (an error, "interrupted") starts on a line of its own where the two meet on one screen or file.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.tty = out.isatty()
        self.shown = ""  # what was written since the text (or its last replacement) started
        self.mid_line = False

    def write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.mid_line = not text.endswith("\n")

    def extend(self, delta: str) -> None:
        self.write(delta)
        self.shown += delta

    def replace(self, text: str, status: AlternativeStatus) -> None:
        """Take back what was shown: erased on a terminal where widths are known, else a fresh line."""
        width = _width_function() if self.tty else None
        if self.tty and width is not None:
            import shutil

            size = shutil.get_terminal_size()
            columns = max(size.columns, 1)
            rows = rows_above(self.shown, columns, width)
            # Cursor up to the row where the text started (the terminal stops at the top row), then
            # clear to the end of the screen: nothing of the replaced text stays visible.
            self.out.write("\r" + (f"\x1b[{rows}A" if rows else "") + "\x1b[J")
            self.out.flush()
            if rows >= size.lines:
                self.mid_line = False
                self.note(f"the server replaced the text ({status.name}); its start may remain in the scrollback")
        else:
            self.end_line()
            why = "" if not self.tty else "; install yandexgpt-grpc[cli] to have it erased"
            self.note(f"the server replaced the text ({status.name}); the text after this point replaces it{why}")
        self.shown = ""
        self.extend(text)

    def end_line(self) -> None:
        """Finish a partial line of streamed text before anything else is printed after it."""
        if self.mid_line:
            self.write("\n")

    def note(self, message: str) -> None:
        self.err.write(f"{PROG}: {message}\n")
        self.err.flush()

    def before_message(self) -> None:
        """Called before a message goes to stderr: a partial line on the same screen or file is ended."""
        if self.mid_line and (self.tty or same_file(self.out, self.err)):
            self.end_line()
