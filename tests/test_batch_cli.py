"""`yandexgpt-grpc batch` as users run it (issue 14): exit codes, one line per failure, one writer, progress.

Every run is a real process against the emulator on loopback; the progress tests run it on a
pseudo-terminal and read the screen through pyte.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyte
import pytest

from tests.conftest import API_KEY, FOLDER
from yandexgpt_grpc.testing import Emulator, Reply

N = 50
PROG = "yandexgpt-grpc"


def write_input(path: Path, n: int = N) -> None:
    path.write_text("".join(json.dumps({"id": f"q{i}", "messages": f"prompt {i}"}) + "\n" for i in range(n)), "utf-8")


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_all_answered(path: Path, n: int = N) -> None:
    got = records(path)
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)), "an id has two lines"
    assert sorted(ids) == sorted(f"q{i}" for i in range(n))
    assert all("error" not in r for r in got)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_"))}
    env.update(extra)
    return env


def batch(inp: Path, out: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env or clean_env())


def good(emu: Emulator) -> dict[str, str]:
    return clean_env(YC_API_KEY=API_KEY, YC_FOLDER_ID=FOLDER, YANDEXGPT_ENDPOINT=emu.address, YANDEXGPT_INSECURE="1")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{PROG}: error: "), stderr
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp)
    return inp, out


def test_the_readme_command_works_as_written_with_the_default_model(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    proc = batch(inp, out, "--concurrency", "8", "--rps", "50", env=good(emu))
    assert proc.returncode == 0, proc.stderr
    assert f"all {N} ids answered" in proc.stderr
    assert_all_answered(out)
    assert {c.request.model_uri for c in emu.calls_for("Completion")} == {f"gpt://{FOLDER}/yandexgpt-lite/latest"}


def test_no_folder_exits_2_before_out_is_touched(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    env = good(emu)
    del env["YC_FOLDER_ID"]
    proc = batch(inp, out, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "folder" in one_error_line(proc.stderr)
    assert not out.exists() and emu.calls_for("Completion") == []
    assert batch(inp, out, env=good(emu)).returncode == 0
    assert_all_answered(out)


def test_no_credentials_exit_3_before_out_is_touched(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    env = good(emu)
    del env["YC_API_KEY"]
    proc = batch(inp, out, env=env)
    assert proc.returncode == 3, proc.stderr
    assert "no credentials" in one_error_line(proc.stderr)
    assert not out.exists()
    assert batch(inp, out, env=good(emu)).returncode == 0
    assert_all_answered(out)


def test_wrong_key_exits_3_with_one_line_and_the_right_key_finishes(files: tuple[Path, Path]) -> None:
    inp, out = files
    with Emulator(api_keys=[API_KEY]) as emu:
        env = good(emu)
        env["YC_API_KEY"] = "a-wrong-key-0123456789"
        proc = batch(inp, out, env=env)
        assert proc.returncode == 3, proc.stderr
        line = one_error_line(proc.stderr)
        assert "refused the credentials" in line and "a-wrong-key-0123456789" not in line
        assert records(out) == []
        assert len(emu.calls_for("Completion")) <= 8
        proc = batch(inp, out, env=good(emu))
    assert proc.returncode == 0, proc.stderr
    assert f"{N} succeeded, 0 failed, 0 already done" in proc.stderr
    assert_all_answered(out)


def test_permission_denied_exits_3(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.fail_next(8, grpc.StatusCode.PERMISSION_DENIED, details="emulator: no role")
    proc = batch(inp, out, env=good(emu))
    assert proc.returncode == 3, proc.stderr
    assert "PERMISSION_DENIED" in one_error_line(proc.stderr)
    assert records(out) == []
    emu.reset()
    assert batch(inp, out, env=good(emu)).returncode == 0
    assert_all_answered(out)


def test_plaintext_endpoint_without_insecure_exits_5_at_once(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    env = good(emu)
    del env["YANDEXGPT_INSECURE"]
    started = time.monotonic()
    proc = batch(inp, out, env=env)
    assert time.monotonic() - started < 20
    assert proc.returncode == 5, proc.stderr
    assert "--insecure" in one_error_line(proc.stderr)
    assert records(out) == []
    assert batch(inp, out, env=good(emu)).returncode == 0
    assert_all_answered(out)


def test_unknown_model_exits_4(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    proc = batch(inp, out, "--model", "yandexgpt-nonesuch", env=good(emu))
    assert proc.returncode == 4, proc.stderr
    assert "does not know model" in one_error_line(proc.stderr)
    assert records(out) == []
    assert batch(inp, out, env=good(emu)).returncode == 0
    assert_all_answered(out)


def test_transient_error_lines_rerun_without_a_flag_and_exit_0(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 100)
    busy = [{"id": f"q{i}", "error": {"code": "INTERNAL", "message": "busy"}} for i in range(10)]
    done = [{"id": f"q{i}", "text": f'You said: "prompt {i}". This is the emulator answering.'} for i in range(10, 100)]
    out.write_text("".join(json.dumps(r) + "\n" for r in busy + done), "utf-8")
    proc = batch(inp, out, env=good(emu))
    assert proc.returncode == 0, proc.stderr
    assert "10 succeeded, 0 failed, 90 already done" in proc.stderr and "all 100 ids answered" in proc.stderr
    assert_all_answered(out, 100)


def test_prompt_errors_exit_1_and_say_how_to_run_them_again(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.fail_next(3, grpc.StatusCode.INVALID_ARGUMENT, details="emulator: bad prompt")
    proc = batch(inp, out, "--concurrency", "1", env=good(emu))
    assert proc.returncode == 1, proc.stderr
    assert (
        "3 of 50 ids have no answer yet: 3 INVALID_ARGUMENT (the prompt's own error; --retry-failed runs them again)"
        in proc.stderr
    )
    assert batch(inp, out, env=good(emu)).returncode == 1  # still there: they belong to their prompts
    proc = batch(inp, out, "--retry-failed", env=good(emu))
    assert proc.returncode == 0, proc.stderr
    assert_all_answered(out)


def test_a_second_run_on_the_same_out_exits_6_at_once(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.enqueue("Completion", *[Reply(delay=0.1)] * N)
    cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), "--concurrency", "2"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=good(emu))
    try:
        deadline = time.monotonic() + 30
        while not records(out) and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        second = batch(inp, out, env=good(emu))
        assert time.monotonic() - started < 10
        assert second.returncode == 6, second.stderr
        assert f"another batch run is writing {out} (pid {first.pid} on " in one_error_line(second.stderr)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert_all_answered(out)


def test_ctrl_c_prints_one_line(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    emu.enqueue("Completion", *[Reply(delay=0.2)] * N)
    cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), "--concurrency", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=good(emu))
    try:
        deadline = time.monotonic() + 30
        while len(records(out)) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    saved = len(records(out))
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"{PROG}: interrupted: {saved} results saved in {out}; run the same command again to continue"]


# -- progress on a terminal -------------------------------------------------------------------


class Terminal:
    """A process on a pseudo-terminal of `cols` x `rows`, every chunk it writes timestamped."""

    def __init__(self, cmd: list[str], env: dict[str, str], cols: int = 40, rows: int = 12) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"})
        os.close(slave)
        self.chunks: list[tuple[float, bytes]] = []
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)

    def read_until_exit(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: the other side closed
                    data = b""
                if not data:
                    break
                self.chunks.append((time.monotonic(), data))
                self.stream.feed(data)
        return self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def slow_emu() -> Iterator[Emulator]:
    with Emulator(latency=2.0) as emu:
        yield emu


def _frames(chunks: list[tuple[float, bytes]]) -> list[tuple[float, str]]:
    frames = []
    for t, data in chunks:
        for part in data.decode("utf-8", "replace").split("\r"):
            if "/8" in part:
                frames.append((t, part))
    return frames


def test_progress_on_a_40_column_terminal(slow_emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 8)
    cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), "--concurrency", "4"]
    term = Terminal(cmd, good(slow_emu))
    try:
        assert term.read_until_exit() == 0
    finally:
        term.close()
    frames = _frames(term.chunks)
    first_call = min(c.started_at for c in slow_emu.calls_for("Completion"))
    first_answer = first_call + 2.0
    assert frames and "0/8" in frames[0][1]
    assert frames[0][0] < first_call + 1.0  # drawn before (or as) the first request goes out
    in_flight = [t for t, _ in frames if first_call < t < first_answer - 0.1]
    assert len(in_flight) >= 2, frames  # redrawn while nothing finishes: elapsed, rate and ETA move
    rows = [row.rstrip() for row in term.screen.display]
    bars = [row for row in rows if re.search(r"\d+/8\b", row)]
    assert len(bars) == 1, rows  # one progress row, redrawn in place, not one per update
    assert re.match(r"100%\|.*\| 8/8 \[", bars[0]), bars
    assert "all 8 ids answered" in b"".join(data for _, data in term.chunks).decode()


def test_a_resumed_run_counts_the_whole_file(slow_emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 8)
    out.write_text("".join(json.dumps({"id": f"q{i}", "text": "x"}) + "\n" for i in range(3)), "utf-8")
    cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), "--concurrency", "5"]
    term = Terminal(cmd, good(slow_emu), cols=100)
    try:
        assert term.read_until_exit() == 0
    finally:
        term.close()
    frames = _frames(term.chunks)
    assert " 3/8 " in frames[0][1] and frames[0][1].lstrip().startswith("38%|"), frames[0]
    assert " 8/8 " in frames[-1][1]


def test_no_progress_into_a_pipe_and_a_summary_line(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    proc = batch(inp, out, env=good(emu))
    assert proc.returncode == 0
    assert "\r" not in proc.stderr and "%|" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_progress_flag_draws_into_a_pipe(emu: Emulator, files: tuple[Path, Path]) -> None:
    inp, out = files
    proc = batch(inp, out, "--progress", env=good(emu))
    assert proc.returncode == 0
    assert "100%|" in proc.stderr and f" {N}/{N} [" in proc.stderr and "0 failed]" in proc.stderr


def test_without_the_cli_extra_progress_is_a_note_and_the_run_goes_on(
    emu: Emulator, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from yandexgpt_grpc import _progress
    from yandexgpt_grpc.cli import main

    monkeypatch.setattr(_progress, "available", lambda: False)
    for key, value in good(emu).items():
        if key.startswith(("YC_", "YANDEXGPT_")):
            monkeypatch.setenv(key, value)
    inp, out = files
    err = io.StringIO()
    assert main(["batch", str(inp), str(out), "--progress"], stdout=io.StringIO(), stderr=err) == 0
    note, summary = err.getvalue().splitlines()
    assert note == f"{PROG}: --progress draws with tqdm, which is not installed: pip install 'yandexgpt-grpc[cli]'"
    assert re.fullmatch(
        rf"{PROG}: {N} succeeded, 0 failed, 0 already done, 0 input problems \(\d+\.\ds\); all {N} ids answered",
        summary,
    )
    assert_all_answered(out)
