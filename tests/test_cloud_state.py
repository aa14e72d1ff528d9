"""The cloud run's state file: resumable, atomic, and bound to one IN and one set of options."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from yandexgpt_grpc._cloud_state import (
    CloudState,
    Fingerprint,
    StateFile,
    StateMismatchError,
    state_path,
)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "messages": "q"}\n', encoding="utf-8")
    return path


def fp(src: Path, **options: object) -> Fingerprint:
    return Fingerprint.of(src, "yandexgpt-lite", options)


def test_a_missing_state_file_gives_a_fresh_state(tmp_path: Path, src: Path) -> None:
    state = StateFile(tmp_path / "out.jsonl").load(fp(src), src)
    assert state == CloudState(fp(src), in_path=str(src))
    assert state.task_id is None
    assert not state.upload_done
    assert state_path(tmp_path / "out.jsonl") == str(tmp_path / "out.jsonl.cloud-state.json")


def test_every_step_round_trips(tmp_path: Path, src: Path) -> None:
    file = StateFile(tmp_path / "out.jsonl")
    state = file.load(fp(src, temperature=0.2), src)
    state.dataset_id = "ds-1"
    state.upload_size = 123_456_789
    state.upload_part_size = 32 << 20
    state.upload_parts = {2: '"etag2"', 1: '"etag1"'}
    state.upload_urls = ["http://store/1?sig=a", "http://store/2?sig=b"]
    state.upload_done = True
    state.validation_operation_id = "op-val"
    state.dataset_ready = True
    state.batch_operation_id = "op-batch"
    state.task_id = "task-1"
    state.result_dataset_id = "ds-out"
    state.downloaded = {"part-0.parquet": "/tmp/x"}
    state.mapped = ["part-0.parquet"]
    file.save(state)
    assert file.load(fp(src, temperature=0.2), src) == state
    on_disk = json.loads(Path(file.path).read_text(encoding="utf-8"))
    assert on_disk["version"] == 1
    assert on_disk["upload_parts"] == {"1": '"etag1"', "2": '"etag2"'}
    assert on_disk["fingerprint"]["in_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl.cloud-state.json"]
    assert os.stat(file.path).st_mode & 0o777 == 0o600  # it may hold presigned URLs


def test_a_crash_while_saving_leaves_the_previous_state(
    tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = StateFile(tmp_path / "out.jsonl")
    state = file.load(fp(src), src)
    state.dataset_id = "ds-1"
    file.save(state)
    state.task_id = "task-1"

    def crash(a: object, b: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        file.save(state)
    monkeypatch.undo()
    loaded = file.load(fp(src), src)
    assert (loaded.dataset_id, loaded.task_id) == ("ds-1", None)


def test_another_in_is_refused_naming_the_task(tmp_path: Path, src: Path) -> None:
    file = StateFile(tmp_path / "out.jsonl")
    state = file.load(fp(src), src)
    state.task_id = "task-42"
    file.save(state)
    src.write_text('{"id": 1, "messages": "Q"}\n', encoding="utf-8")  # same size, other bytes
    with pytest.raises(StateMismatchError, match="IN's content has changed") as info:
        file.load(fp(src), src)
    assert "Its task task-42 may still be running" in str(info.value)
    src.write_text('{"id": 1, "messages": "longer"}\n', encoding="utf-8")
    with pytest.raises(StateMismatchError, match=r"IN has changed since that run \(27 bytes then, 32 now\)"):
        file.load(fp(src), src)


def test_other_options_or_model_are_refused(tmp_path: Path, src: Path) -> None:
    file = StateFile(tmp_path / "out.jsonl")
    file.save(file.load(fp(src, temperature=0.2), src))
    with pytest.raises(
        StateMismatchError, match=r"the model or options differ .*\"temperature\":0.2.*\"temperature\":0.3"
    ):
        file.load(fp(src, temperature=0.3), src)
    with pytest.raises(StateMismatchError, match="the model or options differ"):
        file.load(Fingerprint.of(src, "yandexgpt", {"temperature": 0.2}), src)
    # the same settings in another key order are the same run
    assert file.load(fp(src, temperature=0.2), src).fingerprint == fp(src, temperature=0.2)


def test_an_unreadable_state_is_never_replaced_silently(tmp_path: Path, src: Path) -> None:
    file = StateFile(tmp_path / "out.jsonl")
    Path(file.path).write_text('{"version": 1, "fingerprint": ', encoding="utf-8")
    with pytest.raises(ValueError, match=r"is unreadable .* delete it to start over"):
        file.load(fp(src), src)
    Path(file.path).write_text('{"version": 99}', encoding="utf-8")
    with pytest.raises(StateMismatchError, match="another version of yandexgpt-grpc"):
        file.load(fp(src), src)
    Path(file.path).write_text('{"version": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="is unreadable"):
        file.load(fp(src), src)
    file.remove()
    file.remove()
    assert not file.exists()


def test_the_fingerprint_reads_in_in_chunks(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    block = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for _ in range(32):
            f.write(block)
    tracemalloc.start()
    try:
        print_ = Fingerprint.of(big, None, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert print_.in_size == 32 << 20
    assert print_.in_sha256 == hashlib.sha256(block * 32).hexdigest()
    assert peak < 4 << 20, peak
