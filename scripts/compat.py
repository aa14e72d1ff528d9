#!/usr/bin/env python3
"""Run the test suite against the floor and the newest runtime dependencies.

Two venvs beside the project, each created fresh (or reused with --reuse):

  .venv-compat-floor    grpcio, protobuf and googleapis-common-protos pinned to the
                        floors declared in pyproject.toml, with the full test extra
                        (yandexcloud included: it is the wire oracle)
  .venv-compat-newest   the newest grpcio / protobuf (7.x) / googleapis-common-protos
                        on the registry; the test extra WITHOUT yandexcloud (it pins
                        protobuf<7), so the wire and coexistence tests skip there

Usage: scripts/compat.py [--only floor|newest] [--reuse] [-- PYTEST ARGS...]
Exit status is non-zero when any venv fails to build or its suite fails.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("grpcio", "protobuf", "googleapis-common-protos")
ORACLE = "yandexcloud"


class CompatError(Exception):
    pass


def _load_pyproject() -> dict[str, object]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for name in ("tomllib", "tomli"):  # tomli only matters on Python 3.10
        try:
            parser = importlib.import_module(name)
        except ImportError:
            continue
        data = parser.loads(text)
        assert isinstance(data, dict)
        return data
    return {}


def _requirement_name(req: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return match.group(1).lower().replace("_", "-") if match else ""


def runtime_floors() -> dict[str, str]:
    """{'grpcio': '1.76.0', ...} from [project].dependencies."""
    data = _load_pyproject()
    if data:
        project = data["project"]
        assert isinstance(project, dict)
        deps = [str(d) for d in project["dependencies"]]
    else:  # no TOML parser: the requirement strings are simple enough to find
        text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
        deps = re.findall(r'"((?:grpcio|protobuf|googleapis-common-protos)\s*>=[^"]*)"', text)
    floors: dict[str, str] = {}
    for dep in deps:
        name = _requirement_name(dep)
        match = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", dep)
        if name in RUNTIME and match:
            floors[name] = match.group(1)
    missing = set(RUNTIME) - floors.keys()
    if missing:
        raise CompatError(f"pyproject.toml declares no '>=' floor for {sorted(missing)}")
    return floors


def test_requirements() -> list[str]:
    data = _load_pyproject()
    if not data:
        text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
        block = re.search(r"^test\s*=\s*\[(.*?)\]", text, re.MULTILINE | re.DOTALL)
        if not block:
            raise CompatError("no [project.optional-dependencies] test extra in pyproject.toml")
        return re.findall(r'"([^"]+)"', block.group(1))
    project = data["project"]
    assert isinstance(project, dict)
    return [str(r) for r in project["optional-dependencies"]["test"]]


@dataclass
class Result:
    name: str
    ok: bool
    versions: str
    summary: str
    seconds: float
    failures: tuple[str, ...] = ()


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-15:])
        raise CompatError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n{tail}")


def build(name: str, python: str, reuse: bool) -> Path:
    venv = ROOT / f".venv-compat-{name}"
    log = venv / "compat.log"
    py = venv / "bin" / "python"
    if reuse and py.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.mkdir()
    log.write_text("", encoding="utf-8")
    _run([python, "-m", "venv", str(venv)], log)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip"], log)
    floors = runtime_floors()
    if name == "floor":
        pins = [f"{pkg}=={ver}" for pkg, ver in floors.items()]
        _run([*pip, "-e", ".[test]", *pins], log)
    else:
        tests = [r for r in test_requirements() if _requirement_name(r) != ORACLE]
        _run([*pip, "-e", ".", *tests], log)
        _run([*pip, "--upgrade", "grpcio", "protobuf>=7", "googleapis-common-protos"], log)
    return venv


def installed_versions(venv: Path) -> str:
    code = (
        "import importlib.metadata as m\n"
        "for n in ('grpcio', 'protobuf', 'googleapis-common-protos', 'yandexcloud', "
        "'grpcio-tools'):\n"
        "    try: print(f'{n}=={m.version(n)}', end=' ')\n"
        "    except m.PackageNotFoundError: print(f'{n}: absent', end=' ')\n"
    )
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or proc.stderr.strip()


def run_suite(venv: Path, pytest_args: list[str]) -> tuple[bool, str, tuple[str, ...]]:
    log = venv / "pytest.log"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    cmd = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    with log.open("w", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd + pytest_args)}\n")
        fh.flush()
        proc = subprocess.run(
            cmd + pytest_args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        fh.write(proc.stdout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    failures = tuple(sorted({ln.split(" - ")[0] for ln in lines if ln.startswith(("FAILED ", "ERROR "))}))
    return proc.returncode == 0, summary, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("floor", "newest"))
    parser.add_argument("--reuse", action="store_true", help="reuse existing compat venvs")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    results: list[Result] = []
    for name in ("floor", "newest"):
        if args.only and args.only != name:
            continue
        start = time.monotonic()
        print(f"== {name}: building .venv-compat-{name} ...", flush=True)
        try:
            venv = build(name, args.python, args.reuse)
        except CompatError as exc:
            results.append(Result(name, False, "", f"venv build failed: {exc}", 0.0))
            continue
        versions = installed_versions(venv)
        print(f"== {name}: {versions}; running the suite ...", flush=True)
        ok, summary, failures = run_suite(venv, args.pytest_args)
        results.append(Result(name, ok, versions, summary, time.monotonic() - start, failures))

    print("\ncompatibility summary")
    for r in results:
        print(f"  {r.name:7} {'PASS' if r.ok else 'FAIL'}  {r.versions}")
        print(f"          {r.summary}  ({r.seconds:.0f} s; log .venv-compat-{r.name}/pytest.log)")
        for failure in r.failures:
            print(f"          {failure}")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        sys.exit(2)
