"""Every ```python block in README.md runs, as its own script, against a TLS emulator, and passes mypy --strict.

The convention (also stated at the end of the README): YANDEXGPT_ENDPOINT names the emulator,
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH makes grpc trust its throwaway CA, so blocks written for the real
cloud (TLS, credentials from the environment) run unchanged. A block right after a
`<!-- no-test: reason -->` line is not run, but it is type-checked like the others: users copy it too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._certs import make_ca_and_server_cert
from yandexgpt_grpc.testing import Emulator

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API_KEY = "readme-test-key"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
_NO_TEST = re.compile(r"<!-- no-test: [^>]+-->\s*$")


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, skipped) of each python block."""
    out = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()]
        line = before.count("\n") + 1
        skipped = bool(_NO_TEST.search(before.rstrip("\n").rsplit("\n", 1)[-1] + "\n"))
        out.append((line, match.group(1), skipped))
    return out


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_blocks_and_few_exemptions() -> None:
    assert len(BLOCKS) >= 8
    assert sum(skipped for _, _, skipped in BLOCKS) <= 1


def test_first_screen_has_exactly_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first = text[: text.index("\n## ")]
    assert re.findall(r"^make \w+", first, re.M) == ["make demo", "make test"]


@pytest.fixture(scope="module")
def tls_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    ca, cert, key = make_ca_and_server_cert(hostnames=("localhost",), ips=("127.0.0.1",))
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca_file.write_bytes(ca)
    with Emulator(tls=(cert, key, ca)) as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_", "GRPC_"))}
        env.update(
            YANDEXGPT_ENDPOINT=emu.address,
            GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(ca_file),
            YC_API_KEY=API_KEY,
            YC_FOLDER_ID="b1g-readme",
        )
        yield env


@pytest.mark.parametrize(("line", "code", "skipped"), BLOCKS, ids=[f"line{line}" for line, _, _ in BLOCKS])
def test_block_runs(line: int, code: str, skipped: bool, tls_env: dict[str, str], tmp_path: Path) -> None:
    if skipped:
        pytest.skip("marked <!-- no-test --> in README.md")
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=tls_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, f"README.md block at line {line} failed:\n{proc.stderr}"
    assert API_KEY not in proc.stdout + proc.stderr


def test_every_block_passes_mypy_strict(tmp_path: Path) -> None:
    """One mypy run over all blocks, each its own module; the project's mypy cache keeps it quick."""
    files = []
    for line, code, _ in BLOCKS:
        path = tmp_path / f"readme_line{line}.py"
        path.write_text(code, encoding="utf-8")
        files.append(str(path))
    mypy = [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml")]
    proc = subprocess.run(
        [*mypy, "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"), *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Point at README.md's own lines: "readme_line63.py:10: error" is README.md line 63 + 10.
    problems = [
        f"README.md:{int(m.group(1)) + int(m.group(2))}: {m.group(3)}"
        for m in re.finditer(r"readme_line(\d+)\.py:(\d+): (.*)", proc.stdout)
    ]
    assert proc.returncode == 0 and not problems, "\n".join(problems) or proc.stdout + proc.stderr
