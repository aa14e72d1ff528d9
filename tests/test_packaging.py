"""The sdist and the wheel, built offline with hatchling (dev extra, no build isolation), hold the right files.

The sdist must be enough to run this suite (tests, examples, bench, proto, scripts) and carry the licence
and changelog; the wheel holds the package (generated stubs and py.typed included) and no tests.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import yandexgpt_grpc

pytest.importorskip("hatchling", reason="hatchling comes with the dev extra")

ROOT = Path(__file__).resolve().parents[1]
VERSION = yandexgpt_grpc.__version__


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-t", "wheel", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def _sdist_names(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        names = tar.getnames()
    prefix = f"yandexgpt_grpc-{VERSION}/"
    assert all(n.startswith(prefix) for n in names)
    return {n[len(prefix) :] for n in names}


def test_version_is_0_2_0() -> None:
    assert VERSION == "0.2.0"


def test_sdist_has_what_the_suite_and_users_need(built: dict[str, Path]) -> None:
    assert built["sdist"].name == f"yandexgpt_grpc-{VERSION}.tar.gz"
    names = _sdist_names(built["sdist"])
    for top in ("LICENSE", "README.md", "CHANGELOG.md", "Makefile", "pyproject.toml", "PKG-INFO"):
        assert top in names, top
    for directory in ("src/yandexgpt_grpc", "tests", "examples", "bench", "proto", "scripts"):
        assert any(n.startswith(directory + "/") for n in names), directory
    for path in (
        "src/yandexgpt_grpc/py.typed",
        "src/yandexgpt_grpc/_generated/SOURCE.json",
        "tests/conftest.py",
        "tests/test_packaging.py",
        "bench/__main__.py",
    ):
        assert path in names, path
    assert not [n for n in names if "__pycache__" in n or n.startswith((".venv", ".git/")) or n.endswith(".pyc")]


def test_sdist_has_every_tracked_file_of_the_shipped_directories(built: dict[str, Path]) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. the unpacked sdist itself)")
    shipped = ("src", "tests", "examples", "bench", "proto", "scripts")
    tracked = subprocess.run(
        ["git", "ls-files", "--", *shipped], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    tracked = [p for p in tracked if (ROOT / p).exists()]  # deleted but not yet committed
    assert tracked
    assert sorted(set(tracked) - _sdist_names(built["sdist"])) == []


def test_wheel_has_the_package_and_no_tests(built: dict[str, Path]) -> None:
    assert built["wheel"].name == f"yandexgpt_grpc-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = set(whl.namelist())
        metadata = email.message_from_bytes(whl.read(f"yandexgpt_grpc-{VERSION}.dist-info/METADATA"))
        entry_points = whl.read(f"yandexgpt_grpc-{VERSION}.dist-info/entry_points.txt").decode()
    for path in (
        "yandexgpt_grpc/__init__.py",
        "yandexgpt_grpc/py.typed",
        "yandexgpt_grpc/cli.py",
        "yandexgpt_grpc/testing/__main__.py",
        "yandexgpt_grpc/testing/pytest_plugin.py",
        "yandexgpt_grpc/_generated/yandex/cloud/ai/foundation_models/v1/text_generation/text_generation_service_pb2.py",
        f"yandexgpt_grpc-{VERSION}.dist-info/licenses/LICENSE",
    ):
        assert path in names, path
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"yandexgpt_grpc", f"yandexgpt_grpc-{VERSION}.dist-info"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
    assert "yandexgpt-grpc = yandexgpt_grpc.cli:main" in entry_points
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    urls = metadata.get_all("Project-URL") or []
    assert any(u.startswith("Documentation, https://") for u in urls), urls
    assert not any("github.com" in u for u in urls), urls  # no invented repository


def test_licence_and_changelog() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    assert "Copyright (c) 2026 yandexgpt-grpc developers" in licence
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {VERSION}" in changelog


def test_readme_links_work_on_a_package_index_page() -> None:
    """The README is the index page's description: links are absolute or anchors, never relative paths."""
    import re

    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r'(?:href|src)="([^"]+)"', readme)
    assert targets
    relative = [t for t in targets if not t.startswith(("https://", "http://", "#", "mailto:"))]
    assert relative == []
    headings = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", readme, re.M)
    }
    anchors = {t[1:] for t in targets if t.startswith("#")}
    assert anchors <= headings, anchors - headings
