"""A full disk during a batch run (issue 17 item 9), on a real 64 KiB tmpfs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from yandexgpt_grpc.testing import Emulator

from .conftest import API_KEY, FOLDER

EXIT_DISK_FULL = 7


def write_input(path: Path, n: int) -> None:
    lines = [json.dumps({"id": f"q{i}", "messages": f"prompt number {i} " + "x" * 100}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def batch(emu: Emulator, inp: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "yandexgpt_grpc", "batch", str(inp), str(out), "--model", "yandexgpt-lite"]
    cmd += ["--endpoint", emu.address, "--insecure", "--folder-id", FOLDER, "--concurrency", "8"]
    env = {**os.environ, "YC_API_KEY": API_KEY}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_stops_the_run_with_its_own_message_and_exit_code(
    emu: Emulator, tmp_path: Path, small_disk: Path
) -> None:
    inp, out = tmp_path / "in.jsonl", small_disk / "out.jsonl"
    write_input(inp, 400)  # about 100 KiB of results: more than fits
    proc = batch(emu, inp, out)
    assert proc.returncode == EXIT_DISK_FULL, proc.stderr
    data = out.read_bytes()
    assert data.endswith(b"\n"), "OUT must hold whole lines only"
    saved = len(data.splitlines())
    assert 0 < saved < 400
    assert f"disk full while writing {out} ({saved} results saved)" in proc.stderr
    assert "No space left on device: None" not in proc.stderr

    # Space freed (the file moved to a roomy disk): the rerun finishes the rest, exit 0.
    roomy = tmp_path / "out.jsonl"
    roomy.write_bytes(data)
    rerun = batch(emu, inp, roomy)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{400 - saved} succeeded, 0 failed, {saved} already done" in rerun.stderr
    ids = [json.loads(line)["id"] for line in roomy.read_text(encoding="utf-8").splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(400))


def test_a_torn_tail_repaired_on_the_next_run_is_not_a_failure(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, 3)
    assert batch(emu, inp, out).returncode == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20], encoding="utf-8")  # a torn last write
    rerun = batch(emu, inp, out)
    assert rerun.returncode == 0, rerun.stderr
    assert "incomplete last line (an interrupted write) removed" in rerun.stderr
    assert "1 succeeded, 0 failed, 2 already done, 0 input problems" in rerun.stderr
