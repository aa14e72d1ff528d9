"""The vendored stubs: import with the runtime deps only, floors, SOURCE.json integrity."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "src" / "yandexgpt_grpc" / "_generated"
PROTO = ROOT / "proto"
PACKAGE = "yandexgpt_grpc._generated"
RUNTIME = ("grpcio", "protobuf", "googleapis-common-protos")


def _source() -> dict[str, object]:
    data = json.loads((GENERATED / "SOURCE.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _generated_files() -> list[Path]:
    return sorted(
        p for p in GENERATED.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.name != "SOURCE.json"
    )


def _modules() -> list[str]:
    mods = []
    for path in _generated_files():
        if path.suffix != ".py":
            continue
        rel = path.relative_to(GENERATED).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        mods.append(".".join([PACKAGE, *parts]))
    return mods


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _declared_floors() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    tomllib: Any = None
    for candidate in ("tomllib", "tomli"):  # tomli only matters on Python 3.10
        with contextlib.suppress(ImportError):
            tomllib = importlib.import_module(candidate)
            break
    if tomllib is not None:
        deps = [str(d) for d in tomllib.loads(text)["project"]["dependencies"]]
    else:  # the requirement strings are simple enough to find without a TOML parser
        deps = re.findall(r'"((?:grpcio|protobuf|googleapis-common-protos)\s*>=[^"]*)"', text)
    floors = {}
    for dep in deps:
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*(.*)", dep)
        assert match, dep
        name = match.group(1).lower().replace("_", "-")
        floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", match.group(2))
        if name in RUNTIME:
            assert floor, f"{dep!r} in pyproject.toml has no '>=' floor"
            floors[name] = floor.group(1)
    assert set(floors) == set(RUNTIME), floors
    return floors


# ------------------------------------------------------------------------------- imports

_BLOCKED_IMPORT = textwrap.dedent(
    """
    import importlib, importlib.abc, sys

    BLOCKED = ("grpc_tools", "yandex", "yandexcloud")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the stubs must not need it")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in sys.argv[1:]:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("imported", len(sys.argv) - 1)
    """
)


def test_every_generated_module_imports_with_runtime_deps_only() -> None:
    mods = _modules()
    assert len(mods) > 20, mods
    proc = subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", _BLOCKED_IMPORT, *mods],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"imported {len(mods)}"


def test_the_blocker_really_blocks() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _BLOCKED_IMPORT, "grpc_tools.protoc"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "grpc_tools.protoc is blocked" in proc.stderr or "grpc_tools is blocked" in proc.stderr


def test_generated_classes_live_under_our_package() -> None:
    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tgs,
    )

    assert tgs.CompletionRequest.__module__ == tgs.__name__
    assert tgs.DESCRIPTOR.pool is not __import__("google.protobuf.descriptor_pool", fromlist=["Default"]).Default()


# -------------------------------------------------------------------------------- floors


def _gencode_demands() -> dict[str, tuple[int, ...]]:
    protobuf: list[tuple[int, ...]] = []
    grpc: list[tuple[int, ...]] = []
    pb2 = [p for p in _generated_files() if p.name.endswith("_pb2.py")]
    pb2_grpc = [p for p in _generated_files() if p.name.endswith("_pb2_grpc.py")]
    assert pb2
    assert len(pb2) == len(pb2_grpc)
    for path in pb2:
        text = path.read_text(encoding="utf-8")
        match = re.search(
            r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
            r"\s*(\d+),\s*(\d+),\s*(\d+),\s*'([^']*)'",
            text,
        )
        assert match, f"{path.name}: no ValidateProtobufRuntimeVersion call"
        assert match.group(4) == "", f"{path.name}: pre-release gencode {match.group(4)!r}"
        protobuf.append(tuple(int(match.group(i)) for i in (1, 2, 3)))
    for path in pb2_grpc:
        match = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", path.read_text("utf-8"), re.M)
        assert match, f"{path.name}: no GRPC_GENERATED_VERSION"
        grpc.append(_version(match.group(1)))
    return {"protobuf": max(protobuf), "grpcio": max(grpc)}


def test_declared_floors_equal_what_the_gencode_demands() -> None:
    floors = _declared_floors()
    demands = _gencode_demands()
    assert _version(floors["protobuf"]) == demands["protobuf"], (floors, demands)
    assert _version(floors["grpcio"]) == demands["grpcio"], (floors, demands)


def test_googleapis_floor_allows_the_protobuf_floor() -> None:
    # googleapis-common-protos releases before 1.69.2 cap protobuf below 6.
    floors = _declared_floors()
    assert _version(floors["googleapis-common-protos"]) >= (1, 69, 2)


def test_installed_runtime_meets_the_floors() -> None:
    import importlib.metadata

    for name, floor in _declared_floors().items():
        assert _version(importlib.metadata.version(name)) >= _version(floor), name


@pytest.mark.parametrize(
    ("package", "constant", "key"),
    [
        ("grpcio-tools", "GRPCIO_TOOLS_VERSION", "grpcio_tools"),
        ("mypy-protobuf", "MYPY_PROTOBUF_VERSION", "mypy_protobuf"),
    ],
)
def test_source_json_records_the_pinned_toolchain(package: str, constant: str, key: str) -> None:
    script = (ROOT / "scripts" / "regenerate_stubs.py").read_text(encoding="utf-8")
    pin = re.search(rf'^{constant} = "([^"]+)"$', script, re.M)
    assert pin
    assert _source()[key] == pin.group(1)
    regen = re.search(rf'^regen = \[[^\]]*"{package}==([^"]+)"', (ROOT / "pyproject.toml").read_text("utf-8"), re.M)
    assert regen, f"the regen extra must pin {package} exactly"
    assert regen.group(1) == pin.group(1)


# ---------------------------------------------------------------------------- SOURCE.json


def test_source_json_hashes_match_every_generated_file() -> None:
    listed = _source()["generated"]
    assert isinstance(listed, dict)
    on_disk = {p.relative_to(GENERATED).as_posix(): p for p in _generated_files()}
    assert sorted(on_disk) == sorted(listed), "SOURCE.json and _generated/ list different files"
    bad = [name for name, path in on_disk.items() if hashlib.sha256(path.read_bytes()).hexdigest() != listed[name]]
    assert not bad, f"hash mismatch (edited by hand?): {bad}"


def test_source_json_hashes_match_proto_dir() -> None:
    listed = _source()["protos"]
    assert isinstance(listed, dict)
    on_disk = {p.relative_to(PROTO).as_posix(): p for p in PROTO.rglob("*.proto")}
    assert sorted(on_disk) == sorted(listed)
    for name, path in on_disk.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[name], name


def test_every_proto_has_its_four_outputs() -> None:
    listed = _source()["generated"]
    assert isinstance(listed, dict)
    for proto in _source()["protos"]:  # type: ignore[union-attr]
        stem = str(proto)[: -len(".proto")]
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert stem + suffix in listed, stem + suffix


def test_every_stub_imports_our_package_not_the_upstream_one() -> None:
    stubs = [p for p in _generated_files() if p.suffix == ".pyi"]
    assert len(stubs) == 2 * len(_source()["protos"])  # type: ignore[arg-type]
    for path in stubs:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# Generated by scripts/regenerate_stubs.py. DO NOT EDIT.\n"), path.name
        for line in text.splitlines():
            if line.startswith(("import ", "from ")):
                module = line.split()[1]
                assert not module.startswith("yandex."), f"{path.name}: {line}"
    service_stub = GENERATED / "yandex" / "cloud" / "operation" / "operation_service_pb2_grpc.pyi"
    text = service_stub.read_text(encoding="utf-8")
    assert f"from {PACKAGE}.yandex.cloud.operation import operation_pb2 as" in text
    assert "class OperationServiceStub:" in text
    assert "class OperationServiceAsyncStub(OperationServiceStub):" in text
    assert "def add_OperationServiceServicer_to_server(" in text


@pytest.mark.parametrize("key", ["source", "url", "ref", "commit", "protoc", "entry_protos"])
def test_source_json_has_provenance_keys(key: str) -> None:
    assert key in _source()


# ---------------------------------------------------------------------------- type stubs

_PROBE = """
import grpc
from yandexgpt_grpc._generated.yandex.cloud.operation import operation_service_pb2 as ops_pb2
from yandexgpt_grpc._generated.yandex.cloud.operation import operation_service_pb2_grpc as ops_grpc


def probe(channel: grpc.Channel) -> None:
    stub = ops_grpc.OperationServiceStub(channel)
    reveal_type(stub)
    stub.Gett
    ops_pb2.GetOperationRequest(operation_idd="x")
    ops_pb2.GetOperationRequest().HasField("operation_id")
    ops_grpc.add_OperationServiceServicer_to_server(object(), None)
"""


def test_mypy_reads_the_generated_stubs_with_the_project_config(tmp_path: Path) -> None:
    """The hand-written modules see real stub types, not Any (make lint relies on it)."""
    pytest.importorskip("mypy", reason="mypy (the [dev] extra) is not installed")
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE, encoding="utf-8")
    config = ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", *config, "--no-error-summary", "--hide-error-context", str(probe)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    found = {
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"^probe\.py:(\d+): (?:error|note): .*?(?:\[([a-z-]+)\]|Revealed type)", proc.stdout, re.M)
    }
    out = proc.stdout
    assert f'Revealed type is "{PACKAGE}.yandex.cloud.operation.operation_service_pb2_grpc.OperationServiceStub"' in out
    assert (10, "attr-defined") in found, out  # a misspelled method of a service stub
    assert (11, "call-arg") in found, out  # a misspelled field of a message
    assert (12, "arg-type") in found, out  # HasField takes Literal names: a scalar without presence is none
    assert (13, "arg-type") in found, out  # the servicer's type is checked
    # ... and, with grpc's own types (types-grpcio), the server argument too: two errors on line 13.
    assert len([line for line in out.splitlines() if ": error:" in line]) == 5, out
