"""`make regenerate-stubs` end to end, in a temporary copy of the project.

A temporary git repository laid out like cloudapi is built from proto/; the copy's
Makefile runs with VENV pointing at the running interpreter's venv (used as it is:
the Makefile installs nothing into a venv named on the command line). The output must
equal the vendored tree byte for byte; failures must explain themselves, exit
non-zero and leave src/ and proto/ untouched.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENDORED = ROOT / "src" / "yandexgpt_grpc" / "_generated"
GENERATED_REL = Path("src/yandexgpt_grpc/_generated")
PROVENANCE = {"source", "url", "ref", "commit"}
VENV = Path(sys.prefix)


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "regenerate_stubs_under_test", ROOT / "scripts" / "regenerate_stubs.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _load_script()


def _skip_reason() -> str:
    for tool in ("git", "make"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if sys.prefix == sys.base_prefix or not (VENV / "bin" / "python").exists():
        return "not running inside a venv that make could reuse"
    try:
        tools = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return "grpcio-tools (the [regen] extra) is not installed"
    if tools != SCRIPT.GRPCIO_TOOLS_VERSION:
        return f"grpcio-tools {tools} installed, stubs pinned to {SCRIPT.GRPCIO_TOOLS_VERSION}"
    try:
        stubs_tool = importlib.metadata.version("mypy-protobuf")
    except importlib.metadata.PackageNotFoundError:
        return "mypy-protobuf (the [regen] extra) is not installed"
    if stubs_tool != SCRIPT.MYPY_PROTOBUF_VERSION:
        return f"mypy-protobuf {stubs_tool} installed, stubs pinned to {SCRIPT.MYPY_PROTOBUF_VERSION}"
    return ""


needs_toolchain = pytest.mark.skipif(bool(_skip_reason()), reason=_skip_reason())
pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------------- helpers


def _env(**extra: str) -> dict[str, str]:
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("CLOUDAPI_", "GIT_"))}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    env.update(extra)
    return env


def _git(repo: Path, *args: str) -> str:
    env = _env(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
        GIT_AUTHOR_DATE="2025-01-01T00:00:00Z",
        GIT_COMMITTER_DATE="2025-01-01T00:00:00Z",
    )
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def _files(root: Path) -> dict[str, bytes]:
    return SCRIPT.tree_files(root)  # type: ignore[no-any-return]


def _make(project: Path, target: str, **variables: str) -> subprocess.CompletedProcess[str]:
    args = [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(project), target, f"VENV={VENV}", *args],
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _assert_equals_vendored(project: Path) -> dict[str, str]:
    """The copy's generated tree equals ours byte for byte; return its provenance."""
    fresh_dir = project / GENERATED_REL
    fresh, vendored = _files(fresh_dir), _files(VENDORED)
    fresh_source = json.loads(fresh.pop("SOURCE.json"))
    vendored_source = json.loads(vendored.pop("SOURCE.json"))
    assert sorted(fresh) == sorted(vendored)
    differing = [name for name in fresh if fresh[name] != vendored[name]]
    assert not differing, differing
    for key in fresh_source.keys() | vendored_source.keys():
        if key not in PROVENANCE:
            assert fresh_source.get(key) == vendored_source.get(key), key
    assert _files(project / "proto") == _files(ROOT / "proto")
    return {k: fresh_source[k] for k in PROVENANCE}


@pytest.fixture(scope="module")
def cloudapi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A git repo laid out like cloudapi: our protos at the root, then one more commit.

    The protos' commit is not the branch tip, so fetching it by sha exercises the
    "sha in want" path of the server (refused by protocol v0 by default).
    """
    repo = tmp_path_factory.mktemp("cloudapi")
    shutil.copytree(ROOT / "proto", repo, dirs_exist_ok=True)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "protos")
    sha = _git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("a later commit\n", encoding="utf-8")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "later")
    return repo, sha


def _project(tmp_path: Path, *, generated: bool = True) -> Path:
    """A copy of what `make regenerate-stubs` needs."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, project / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=ignore)
    shutil.copytree(ROOT / "proto", project / "proto")
    (project / GENERATED_REL.parent).mkdir(parents=True)
    if generated:
        shutil.copytree(VENDORED, project / GENERATED_REL, ignore=ignore)
    return project


def _snapshot(project: Path) -> dict[str, dict[str, bytes]]:
    return {"src": _files(project / "src"), "proto": _files(project / "proto")}


def _proto_tree(tmp_path: Path, name: str = "tree") -> Path:
    tree = tmp_path / name
    shutil.copytree(ROOT / "proto", tree)
    return tree


# ------------------------------------------------------------------------------ success


@needs_toolchain
def test_make_regenerate_stubs_from_a_git_url_equals_the_vendored_tree(
    tmp_path: Path, cloudapi: tuple[Path, str]
) -> None:
    repo, sha = cloudapi
    project = _project(tmp_path, generated=False)
    proc = _make(project, "regenerate-stubs", CLOUDAPI_URL=f"file://{repo}", CLOUDAPI_REF=sha)
    assert proc.returncode == 0, proc.stderr
    assert "pip install" not in proc.stdout + proc.stderr, "make reinstalled into the venv"
    assert "shallow fetch" not in proc.stderr, "protocol v2 should serve the sha directly"
    provenance = _assert_equals_vendored(project)
    assert provenance == {"source": "cloudapi", "url": f"file://{repo}", "ref": sha, "commit": sha}


@needs_toolchain
def test_full_fetch_fallback_when_the_server_refuses_a_sha(tmp_path: Path, cloudapi: tuple[Path, str]) -> None:
    repo, sha = cloudapi
    # Precondition: under protocol v0 the shallow fetch of a non-tip sha is refused.
    probe = tmp_path / "probe"
    _git(tmp_path, "init", "-q", str(probe))
    refused = subprocess.run(
        ["git", "-c", "protocol.version=0", "fetch", "-q", "--depth", "1", f"file://{repo}", sha],
        cwd=probe,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0, "the server accepted the sha; the fallback is not exercised"

    project = _project(tmp_path, generated=False)
    env = _env(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="protocol.version", GIT_CONFIG_VALUE_0="0")
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "scripts/regenerate_stubs.py"],
        cwd=project,
        env={**env, "CLOUDAPI_URL": f"file://{repo}", "CLOUDAPI_REF": sha},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "shallow fetch of" in proc.stderr
    assert _assert_equals_vendored(project)["commit"] == sha


@needs_toolchain
def test_a_branch_name_works_as_ref(tmp_path: Path, cloudapi: tuple[Path, str]) -> None:
    repo, _ = cloudapi
    project = _project(tmp_path, generated=False)
    proc = _make(project, "regenerate-stubs", CLOUDAPI_URL=f"file://{repo}", CLOUDAPI_REF="main")
    assert proc.returncode == 0, proc.stderr
    provenance = _assert_equals_vendored(project)
    assert provenance["ref"] == "main"
    assert provenance["commit"] == _git(repo, "rev-parse", "main")


@needs_toolchain
def test_cloudapi_dir(tmp_path: Path, cloudapi: tuple[Path, str]) -> None:
    repo, _ = cloudapi
    project = _project(tmp_path, generated=False)
    proc = _make(project, "regenerate-stubs", CLOUDAPI_DIR=str(repo))
    assert proc.returncode == 0, proc.stderr
    provenance = _assert_equals_vendored(project)
    assert provenance["source"] == "cloudapi-dir"
    assert provenance["commit"] == _git(repo, "rev-parse", "HEAD")


@needs_toolchain
def test_offline_target_and_check_stubs(tmp_path: Path) -> None:
    project = _project(tmp_path, generated=False)
    proc = _make(project, "regenerate-stubs-offline")
    assert proc.returncode == 0, proc.stderr
    assert _assert_equals_vendored(project)["source"] == "proto/"
    assert _make(project, "check-stubs").returncode == 0

    # Drift: a hand edit and a stray file are both reported, with a short diff.
    edited = project / GENERATED_REL / "yandex" / "cloud" / "operation" / "operation_pb2.py"
    edited.write_text(edited.read_text(encoding="utf-8") + "# hand edit\n", encoding="utf-8")
    (project / GENERATED_REL / "stray.py").write_text("", encoding="utf-8")
    proc = _make(project, "check-stubs")
    assert proc.returncode != 0
    assert "differs: yandex/cloud/operation/operation_pb2.py" in proc.stderr
    assert "+# hand edit" not in proc.stderr
    assert "-# hand edit" in proc.stderr
    assert "only in vendored tree: stray.py" in proc.stderr

    # The type stubs are held to the same standard: a hand edit of a service stub is drift.
    shutil.copytree(VENDORED, project / GENERATED_REL, dirs_exist_ok=True)
    (project / GENERATED_REL / "stray.py").unlink()
    assert _make(project, "check-stubs").returncode == 0
    stub = project / GENERATED_REL / "yandex" / "cloud" / "operation" / "operation_service_pb2_grpc.pyi"
    stub.write_text(stub.read_text(encoding="utf-8").replace("Get:", "Gett:", 1), encoding="utf-8")
    proc = _make(project, "check-stubs")
    assert proc.returncode != 0
    assert "differs: yandex/cloud/operation/operation_service_pb2_grpc.pyi" in proc.stderr
    assert "+    Get:" in proc.stderr


@needs_toolchain
def test_two_runs_give_identical_output(tmp_path: Path) -> None:
    project = _project(tmp_path)
    outs = []
    for i, seed in enumerate(("0", "12345")):
        out = tmp_path / f"out{i}"
        proc = subprocess.run(
            [str(VENV / "bin" / "python"), "scripts/regenerate_stubs.py", "--offline", "--out", str(out)],
            cwd=project,
            env=_env(PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(_files(out))
    assert outs[0] == outs[1]
    assert outs[0] == _files(VENDORED)
    # The comparison covers both kinds of type stub, one of each per proto.
    protos = json.loads(outs[0]["SOURCE.json"])["protos"]
    for suffix in ("_pb2.pyi", "_pb2_grpc.pyi"):
        stubs = [name for name in outs[0] if name.endswith(suffix)]
        assert len(stubs) == len(protos), suffix


# ------------------------------------------------------------------------------ failures


def _assert_failed_cleanly(
    proc: subprocess.CompletedProcess[str], project: Path, before: dict[str, dict[str, bytes]]
) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "regenerate-stubs: error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _snapshot(project) == before, "a failed run changed src/ or proto/"
    leftovers = [p.name for p in (project / GENERATED_REL.parent).iterdir() if p.name != "_generated"]
    assert not leftovers, leftovers


@needs_toolchain
@pytest.mark.parametrize("ref", ["0123456789abcdef0123456789abcdef01234567", "no-such-branch"])
def test_unknown_ref(tmp_path: Path, cloudapi: tuple[Path, str], ref: str) -> None:
    repo, _ = cloudapi
    project = _project(tmp_path)
    before = _snapshot(project)
    proc = _make(project, "regenerate-stubs", CLOUDAPI_URL=f"file://{repo}", CLOUDAPI_REF=ref)
    _assert_failed_cleanly(proc, project, before)
    assert f"unknown ref {ref!r}" in proc.stderr


@needs_toolchain
def test_unreachable_repository(tmp_path: Path) -> None:
    project = _project(tmp_path)
    before = _snapshot(project)
    missing = tmp_path / "no-repo-here"
    proc = _make(project, "regenerate-stubs", CLOUDAPI_URL=f"file://{missing}", CLOUDAPI_REF="main")
    _assert_failed_cleanly(proc, project, before)
    assert "cannot fetch ref 'main'" in proc.stderr


@needs_toolchain
def test_unresolvable_import(tmp_path: Path) -> None:
    tree = _proto_tree(tmp_path)
    common = tree / "yandex" / "cloud" / "ai" / "foundation_models" / "v1" / "text_common.proto"
    text = common.read_text(encoding="utf-8")
    text = text.replace('import "', 'import "yandex/cloud/nope.proto";\nimport "', 1)
    common.write_text(text, encoding="utf-8")
    project = _project(tmp_path)
    before = _snapshot(project)
    proc = _make(project, "regenerate-stubs", CLOUDAPI_DIR=str(tree))
    _assert_failed_cleanly(proc, project, before)
    assert "yandex/cloud/ai/foundation_models/v1/text_common.proto" in proc.stderr
    assert 'import "yandex/cloud/nope.proto" resolves nowhere' in proc.stderr


def test_imports_in_comments_are_ignored(tmp_path: Path) -> None:
    tree = _proto_tree(tmp_path)
    entry = tree / "yandex" / "cloud" / "operation" / "operation_service.proto"
    entry.write_text(
        entry.read_text(encoding="utf-8") + '\n// import "yandex/cloud/nope.proto";\n'
        '/*\nimport "yandex/cloud/nope2.proto";\n*/\n',
        encoding="utf-8",
    )
    protos, _ = SCRIPT.closure(tree, SCRIPT.ENTRY_PROTOS)
    assert "yandex/cloud/nope.proto" not in protos
    assert sorted(protos) == sorted(_files(ROOT / "proto"))


@needs_toolchain
def test_protoc_failure_shows_protocs_message(tmp_path: Path) -> None:
    tree = _proto_tree(tmp_path)
    common = tree / "yandex" / "cloud" / "ai" / "foundation_models" / "v1" / "text_common.proto"
    common.write_text(common.read_text(encoding="utf-8") + "\nmessage Broken { int64 x = ; }\n", encoding="utf-8")
    project = _project(tmp_path)
    before = _snapshot(project)
    proc = _make(project, "regenerate-stubs", CLOUDAPI_DIR=str(tree))
    _assert_failed_cleanly(proc, project, before)
    assert "protoc failed" in proc.stderr
    # protoc's own words, with the file and line it points at.
    assert "yandex/cloud/ai/foundation_models/v1/text_common.proto:" in proc.stderr
    assert "Expected field number" in proc.stderr


def test_wrong_toolchain_message() -> None:
    with pytest.raises(SCRIPT.RegenError) as info:
        SCRIPT.check_toolchain("1.70.0")
    message = str(info.value)
    assert "grpcio-tools 1.70.0 is installed" in message
    assert f"grpcio-tools=={SCRIPT.GRPCIO_TOOLS_VERSION}" in message
    assert SCRIPT.check_toolchain(SCRIPT.GRPCIO_TOOLS_VERSION) == SCRIPT.GRPCIO_TOOLS_VERSION


@needs_toolchain
def test_wrong_toolchain_exits_nonzero_and_writes_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    before = _snapshot(project)
    fake = (
        "import importlib.metadata as m, runpy, sys\n"
        "real = m.version\n"
        "m.version = lambda n: '1.70.0' if n == 'grpcio-tools' else real(n)\n"
        "sys.argv = ['regenerate_stubs.py', '--offline']\n"
        "runpy.run_path('scripts/regenerate_stubs.py', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", fake],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    _assert_failed_cleanly(proc, project, before)
    assert "wrong toolchain: grpcio-tools 1.70.0" in proc.stderr


def test_wrong_mypy_protobuf_message() -> None:
    with pytest.raises(SCRIPT.RegenError) as info:
        SCRIPT.check_mypy_protobuf("3.6.0")
    message = str(info.value)
    assert "mypy-protobuf 3.6.0 is installed" in message
    assert f"mypy-protobuf=={SCRIPT.MYPY_PROTOBUF_VERSION}" in message
    assert SCRIPT.check_mypy_protobuf(SCRIPT.MYPY_PROTOBUF_VERSION) == SCRIPT.MYPY_PROTOBUF_VERSION


def test_mypy_protobuf_on_too_old_a_protobuf_is_refused_before_protoc_runs() -> None:
    pin = SCRIPT.MYPY_PROTOBUF_VERSION
    with pytest.raises(SCRIPT.RegenError) as info:
        SCRIPT.check_mypy_protobuf(pin, protobuf="6.31.1")
    message = str(info.value)
    assert f"mypy-protobuf {pin} needs protobuf>={SCRIPT.MYPY_PROTOBUF_NEEDS_PROTOBUF}" in message
    assert "protobuf 6.31.1 is installed" in message
    assert SCRIPT.check_mypy_protobuf(pin, protobuf=SCRIPT.MYPY_PROTOBUF_NEEDS_PROTOBUF) == pin
    assert SCRIPT.check_mypy_protobuf(pin, protobuf="6.33.6") == pin


def test_the_regen_extra_holds_the_generators_protobuf_need() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    regen = re.search(r"^regen = \[([^\]]*)\]", text, re.M)
    assert regen
    assert f'"protobuf>={SCRIPT.MYPY_PROTOBUF_NEEDS_PROTOBUF}"' in regen.group(1)


@needs_toolchain
def test_wrong_mypy_protobuf_exits_nonzero_and_writes_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    before = _snapshot(project)
    fake = (
        "import importlib.metadata as m, runpy, sys\n"
        "real = m.version\n"
        "m.version = lambda n: '3.6.0' if n == 'mypy-protobuf' else real(n)\n"
        "sys.argv = ['regenerate_stubs.py', '--offline']\n"
        "runpy.run_path('scripts/regenerate_stubs.py', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", fake],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    _assert_failed_cleanly(proc, project, before)
    assert "wrong toolchain: mypy-protobuf 3.6.0" in proc.stderr


def test_a_stub_left_pointing_at_the_upstream_package_is_refused() -> None:
    fine = (
        '"""Mentions yandex.cloud.operation.Operation in a docstring."""\n'
        "from yandexgpt_grpc._generated.yandex.cloud.operation import operation_pb2 as _operation_pb2\n"
        "x: _operation_pb2.Operation  # a comment about yandex.cloud.x is fine too\n"
    )
    SCRIPT.check_stub_references("fine.pyi", fine)
    stray = fine + "\n\ny: yandex.cloud.operation.operation_pb2.Operation\n"
    with pytest.raises(SCRIPT.RegenError, match=r"stray\.pyi: .*yandex\.cloud\.\* reference .* \(line 6\)"):
        SCRIPT.check_stub_references("stray.pyi", stray)


@needs_toolchain
def test_git_missing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    before = _snapshot(project)
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "scripts/regenerate_stubs.py"],
        cwd=project,
        env={**_env(PATH=str(tmp_path / "empty")), "CLOUDAPI_URL": "file:///x", "CLOUDAPI_REF": "x"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    _assert_failed_cleanly(proc, project, before)
    assert "git not found" in proc.stderr


def test_missing_mypy_protobuf_plugin_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SCRIPT.sysconfig, "get_path", lambda _name: str(tmp_path))
    monkeypatch.setattr(SCRIPT.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(SCRIPT.RegenError) as info:
        SCRIPT.plugin_paths()
    assert "protoc-gen-mypy not found" in str(info.value)
    assert f"mypy-protobuf=={SCRIPT.MYPY_PROTOBUF_VERSION}" in str(info.value)
    for name in SCRIPT.PLUGINS:
        plugin = tmp_path / name
        plugin.write_text("#!/bin/sh\n", encoding="utf-8")
        plugin.chmod(0o755)
    assert SCRIPT.plugin_paths() == {name: tmp_path / name for name in SCRIPT.PLUGINS}
