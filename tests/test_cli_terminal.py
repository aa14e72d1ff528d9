"""The command on a pseudo-terminal, its screen read back through a terminal emulator (pyte).

What a person sees is what these tests check: the final screen after the process exits, with
the terminal's own wrapping of wide characters and its cursor movements applied.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pyte
import pytest

from tests.conftest import API_KEY, FOLDER
from tests.test_cli import clean_env, conn
from yandexgpt_grpc.testing import Emulator, Fault, Reply


@dataclass
class Screen:
    code: int
    rows: list[str]  # as the emulator holds them: padded with spaces to the width
    raw: bytes

    @property
    def lines(self) -> list[str]:
        return [row.rstrip() for row in self.rows]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def joined(self) -> str:
        """The rows run together: a message the terminal wrapped reads whole again."""
        return "".join(self.rows)


def on_terminal(
    args: list[str],
    *,
    columns: int = 40,
    rows: int = 12,
    env: dict[str, str] | None = None,
    interrupt_when: Callable[[], bool] | None = None,
    timeout: float = 30,
) -> Screen:
    """Run the command with stdin, stdout and stderr on one pty of the given size; return the final screen."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = dict(env if env is not None else clean_env())
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "yandexgpt_grpc", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    raw = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if interrupt_when is not None and interrupt_when():
                time.sleep(0.05)
                proc.send_signal(signal.SIGINT)
                interrupt_when = None
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave side has closed it
                break
            if not chunk:
                break
            raw += chunk
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(bytes(raw))
    return Screen(code, list(screen.display), bytes(raw))


def filtered(emu: Emulator, chunks: list[str]) -> None:
    emu.enqueue("Completion", Reply(chunks=chunks, status="CONTENT_FILTER", final_text="[filtered]"))


CJK = "这是一段会被内容过滤器替换的中文文本，"  # 19 wide characters: 38 columns
EMOJI = "ok 😀🙂🚀 "


@pytest.mark.parametrize(
    ("chunks", "columns"),
    [
        ([CJK, CJK, CJK], 40),
        ([CJK, CJK], 23),  # odd width: a wide character does not fit in the last column
        ([EMOJI * 4, EMOJI * 4], 21),
        (["plain ", "and " + CJK, "\n", EMOJI * 2 + "\tand a tab\n", CJK], 30),
    ],
    ids=["cjk", "cjk-odd-width", "emoji", "mixed-lines"],
)
def test_replaced_text_leaves_nothing_on_screen(emu: Emulator, chunks: list[str], columns: int) -> None:
    filtered(emu, chunks)
    screen = on_terminal([*conn(emu), "--stream", "x"], columns=columns)
    assert screen.code == 0
    for ch in set("".join(chunks)) - set(" \t\n"):
        if not ch.isascii():
            assert ch not in screen.text, f"{ch!r} of the replaced text is still on the screen:\n{screen.text}"
    # The whole screen: the replacement, then the status note (wrapped by the terminal), nothing else.
    assert screen.lines[0] == "[filtered]"
    note = "yandexgpt-grpc: note: the answer was replaced by the content filter (status CONTENT_FILTER)"
    assert "".join(screen.rows[1:]).strip() == note, screen.text
    assert b"\x1b[J" in screen.raw


def test_replaced_text_taller_than_the_screen(emu: Emulator) -> None:
    filtered(emu, [f"bad line {i}\n" for i in range(30)] + ["last bad words"])
    screen = on_terminal([*conn(emu), "--stream", "x"], columns=30, rows=10)
    assert screen.code == 0
    assert "bad" not in screen.text, screen.text
    assert "[filtered]" in screen.text
    assert "its start may remain in the scrollback" in screen.joined


def test_without_the_cli_extra_the_replacement_starts_on_a_fresh_line(emu: Emulator, tmp_path: Path) -> None:
    blocker = tmp_path / "wcwidth"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('wcwidth is not installed (simulated)')\n")
    filtered(emu, ["Some", " bad"])
    env = clean_env(PYTHONPATH=str(tmp_path))
    screen = on_terminal([*conn(emu), "--stream", "x"], env=env, columns=200)
    assert screen.code == 0
    assert screen.lines[0] == "Some bad"
    assert screen.lines[1].startswith("yandexgpt-grpc: the server replaced the text (CONTENT_FILTER)")
    assert "install yandexgpt-grpc[cli] to have it erased" in screen.joined
    assert "[filtered]" in screen.lines


def test_error_after_streamed_text_starts_on_a_new_line(emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(grpc.StatusCode.INTERNAL, "boom", after=2, chunks=["One", " two"]))
    screen = on_terminal([*conn(emu), "--stream", "x"], columns=80)
    assert screen.code == 1
    assert screen.lines[0] == "One two"
    assert screen.lines[1].startswith("yandexgpt-grpc: error: INTERNAL: boom")


def test_ctrl_c_after_streamed_text_starts_on_a_new_line(emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(stall=True, after=1, chunks=["Thinking"]))
    screen = on_terminal(
        [*conn(emu), "--stream", "x"],
        interrupt_when=lambda: bool(emu.calls_for("Completion")) and emu.calls_for("Completion")[0].responses_sent == 1,
    )
    assert screen.code == 130
    assert screen.lines[:2] == ["Thinking", "yandexgpt-grpc: interrupted"]
    call = emu.calls_for("Completion")[0]
    assert emu.wait_for(lambda: call.cancelled, timeout=5)


def test_bare_command_on_a_terminal_prints_usage() -> None:
    screen = on_terminal([], columns=100, rows=20)
    assert screen.code == 2
    assert screen.lines[0].startswith("usage: yandexgpt-grpc [complete]")
    assert "error: no text: pass it as an argument" in screen.text
    assert "credentials" not in screen.text


def test_bare_text_needs_no_terminal_for_the_answer(emu: Emulator) -> None:
    screen = on_terminal([*conn(emu), "Hello"], columns=100)
    assert screen.code == 0
    assert screen.lines[0] == 'You said: "Hello". This is the emulator answering.'


def test_api_key_not_on_screen(emu: Emulator) -> None:
    screen = on_terminal(["--endpoint", emu.address, "--insecure", "--api-key", API_KEY, "--folder-id", FOLDER, "x"])
    assert API_KEY.encode() not in screen.raw


@pytest.mark.parametrize(
    ("text", "columns", "rows"),
    [
        ("", 10, 0),
        ("abc", 10, 0),
        ("a" * 10, 10, 0),  # a full row: the cursor waits in the last column (pending wrap)
        ("a" * 11, 10, 1),
        ("漢" * 4, 9, 0),  # 8 columns
        ("漢" * 5, 9, 1),  # the fifth does not fit in the 9th column: it starts the next row
        ("😀" * 5, 10, 0),
        ("e\u0301" * 9, 10, 0),  # combining accents take no column
        ("e\u0301" * 10, 10, 1),  # one after a full row: counted as a wrap, as pyte does (erase more, not less)
        ("one\ntwo\n", 80, 2),
        ("\tx", 8, 0),
        ("a" * 7 + "\tb", 8, 0),  # a tab never wraps: it stops in the last column, where b goes
        ("a" * 8 + "\tb", 8, 0),  # nor after a full row
    ],
)
def test_rows_above_follows_terminal_wrapping(text: str, columns: int, rows: int) -> None:
    from wcwidth import wcwidth

    from yandexgpt_grpc._cli._term import rows_above

    assert rows_above(text, columns, wcwidth) == rows
    screen = pyte.Screen(columns, 10)
    pyte.Stream(screen).feed(text.replace("\n", "\r\n"))
    if "漢" not in text:  # pyte draws a wide character into the last column where real terminals wrap it
        assert screen.cursor.y == rows
