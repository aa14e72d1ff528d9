"""Streamed transfers to presigned URLs, against the emulator's object store on loopback."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from yandexgpt_grpc import RetryPolicy
from yandexgpt_grpc._cloud_http import (
    MAX_PARTS,
    MIN_PART_SIZE,
    HttpTransfer,
    ObjectStorageError,
    Part,
    plan_parts,
    redact_url,
)
from yandexgpt_grpc.testing._object_store import ObjectStore

MiB = 1 << 20


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    with ObjectStore(min_part_size=1) as s:
        yield s


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def transfer(sleeps: Sleeps) -> HttpTransfer:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.2, max_backoff=1.0)
    return HttpTransfer(retry=policy, timeout=10, sleep=sleeps)


def make_file(tmp_path: Path, size: int, name: str = "data.bin") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def stored(store: ObjectStore, key: str) -> bytes:
    with open(store.object_path(key), "rb") as f:
        return f.read()


def test_put_file_streams_the_file_and_sends_no_credentials(
    store: ObjectStore, transfer: HttpTransfer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YC_API_KEY", "secret-key-never-sent")
    path, data = make_file(tmp_path, 3 * MiB + 17)
    etag = transfer.put_file(store.presign_put("ds/data.jsonl", len(data)), path)
    assert etag == f'"{hashlib.md5(data).hexdigest()}"'
    assert stored(store, "ds/data.jsonl") == data
    [req] = store.requests
    assert set(req.headers) == {"host", "content-length"}
    assert req.headers["content-length"] == str(len(data))


def test_put_of_a_file_range(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    path, data = make_file(tmp_path, 1000)
    transfer.put_file(store.presign_put("k", 300), path, offset=500, length=300)
    assert stored(store, "k") == data[500:800]


def test_a_500_is_retried_with_the_policy_backoff(
    store: ObjectStore, transfer: HttpTransfer, sleeps: Sleeps, tmp_path: Path
) -> None:
    path, data = make_file(tmp_path, 5000)
    store.fail(500)
    transfer.put_file(store.presign_put("k", len(data)), path)
    assert [r.status for r in store.requests] == [500, 200]
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.2  # RetryPolicy.backoff(1): full jitter up to initial_backoff
    assert stored(store, "k") == data


def test_a_dropped_connection_is_retried(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    path, data = make_file(tmp_path, 5000)
    store.fail(0)
    transfer.put_file(store.presign_put("k", len(data)), path)
    assert [r.status for r in store.requests] == [0, 200]
    assert len(store.uploads) == 1


def test_persistent_5xx_gives_up_after_max_attempts_without_leaking_the_signature(
    store: ObjectStore, transfer: HttpTransfer, sleeps: Sleeps, tmp_path: Path
) -> None:
    path, _ = make_file(tmp_path, 10)
    store.fail(503, times=10)
    url = store.presign_put("k", 10)
    with pytest.raises(ObjectStorageError) as info:
        transfer.put_file(url, path)
    err = info.value
    assert (err.status, err.code, err.retryable, err.expired) == (503, "InternalError", True, False)
    assert len(store.requests) == 3
    assert len(sleeps) == 2
    signature = url.split("X-Signature=")[1]
    assert signature not in str(err)
    assert signature not in repr(err)
    assert "X-Expires" not in str(err)
    assert err.url == redact_url(url) == f"{store.base_url}/emulator/k"
    detail = "InternalError: We encountered an internal error. Please try again."
    assert str(err) == f"PUT {store.base_url}/emulator/k: HTTP 503 ({detail})"


def test_an_expired_url_is_not_retried_and_says_so(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    path, _ = make_file(tmp_path, 10)
    with pytest.raises(ObjectStorageError) as info:
        transfer.put_file(store.presign_put("k", 10, ttl=-5), path)
    assert info.value.expired
    assert not info.value.retryable
    assert "Request has expired" in str(info.value)
    assert len(store.requests) == 1


def test_a_wrong_size_is_refused_at_once(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    path, _ = make_file(tmp_path, 10)
    with pytest.raises(ObjectStorageError, match="SignatureDoesNotMatch") as info:
        transfer.put_file(store.presign_put("k", 11), path)
    assert info.value.status == 403
    assert not info.value.expired
    assert len(store.requests) == 1


def test_connection_refused_is_retried_then_raised(transfer: HttpTransfer, sleeps: Sleeps, tmp_path: Path) -> None:
    path, _ = make_file(tmp_path, 10)
    with ObjectStore() as s:
        url = s.presign_put("k", 10)
    with pytest.raises(ObjectStorageError, match="connection failed") as info:
        transfer.put_file(url, path)
    assert info.value.status == 0
    assert len(sleeps) == 2


def test_file_shorter_than_announced_is_a_clear_error(
    store: ObjectStore, transfer: HttpTransfer, tmp_path: Path
) -> None:
    path, _ = make_file(tmp_path, 10)
    with pytest.raises(ValueError, match="ended 5 bytes early"):
        transfer.put_file(store.presign_put("k", 15), path, length=15)


def test_parallel_parts_with_one_failing_once_reassemble_the_exact_bytes(
    store: ObjectStore, sleeps: Sleeps, tmp_path: Path
) -> None:
    transfer = HttpTransfer(retry=RetryPolicy(max_attempts=3), max_workers=4, sleep=sleeps, chunk_size=64 * 1024)
    path, data = make_file(tmp_path, 6 * 100_000 + 123)
    parts = [Part(n + 1, n * 100_000, min(100_000, len(data) - n * 100_000)) for n in range(7)]
    upload_id, urls = store.start_multipart("big", len(data), len(parts))
    store.fail(500, part=3)
    store.delay(0.2, method="PUT")
    seen: list[tuple[int, str, str]] = []

    def on_part(number: int, etag: str) -> None:
        seen.append((number, etag, threading.current_thread().name))

    etags = transfer.put_parts(urls, path, parts, on_part=on_part)
    assert [n for n, _ in etags] == list(range(1, 8))
    assert sorted(n for n, _, _ in seen) == list(range(1, 8))
    assert {name for _, _, name in seen} == {threading.current_thread().name}
    assert store.peak_in_flight > 1
    assert [r.status for r in store.requests if r.part == 3] == [500, 200]
    store.complete_multipart(upload_id, etags)
    assert stored(store, "big") == data
    assert [u.parts for u in store.uploads] == [7]


def test_parts_already_done_are_not_sent_again(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    path, data = make_file(tmp_path, 300)
    parts = [Part(1, 0, 100), Part(2, 100, 100), Part(3, 200, 100)]
    upload_id, urls = store.start_multipart("k", 300, 3)
    first = transfer.put_parts(urls[:1], path, parts[:1])
    etags = transfer.put_parts(urls, path, parts, done=dict(first))
    assert sorted(r.part for r in store.requests) == [1, 2, 3]  # part 1 once
    store.complete_multipart(upload_id, etags)
    assert stored(store, "k") == data


def test_a_part_failing_for_good_stops_the_upload(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    path, _ = make_file(tmp_path, 400)
    parts = [Part(n + 1, n * 100, 100) for n in range(4)]
    _, urls = store.start_multipart("k", 400, 4)
    store.fail(500, part=2, times=10)
    done: list[int] = []
    with pytest.raises(ObjectStorageError, match="HTTP 500"):
        transfer.put_parts(urls, path, parts, on_part=lambda n, _: done.append(n))
    assert [r.status for r in store.requests if r.part == 2] == [500, 500, 500]
    assert 2 not in done


def test_put_parts_checks_its_arguments(transfer: HttpTransfer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 URLs for 1 parts"):
        transfer.put_parts(["http://a/1", "http://a/2"], tmp_path / "x", [Part(1, 0, 1)])
    with pytest.raises(ValueError, match="max_workers"):
        HttpTransfer(max_workers=0)
    with pytest.raises(ValueError, match="not an http"):
        transfer.put_file("ftp://host/x?sig=1", __file__)


def test_get_file_streams_to_disk_and_retries(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    src, data = make_file(tmp_path, 2 * MiB + 5, "src.bin")
    store.put_file("results/part-0.parquet", src)
    dest = tmp_path / "out.parquet"
    store.fail(500, method="GET")
    assert transfer.get_file(store.presign_get("results/part-0.parquet"), dest) == len(data)
    assert dest.read_bytes() == data
    assert [r.status for r in store.requests] == [500, 200]
    assert not (tmp_path / "out.parquet.part").exists()


def test_get_file_failure_leaves_no_file(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    store.put_file("r", __file__)
    url = store.presign_get("r")
    store.delete("r")
    dest = tmp_path / "out"
    with pytest.raises(ObjectStorageError, match="NoSuchKey") as info:
        transfer.get_file(url, dest)
    assert info.value.status == 404
    assert len(store.requests) == 1
    assert not dest.exists()
    assert not (tmp_path / "out.part").exists()


def test_big_transfers_use_constant_memory(store: ObjectStore, transfer: HttpTransfer, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(block)
    size = 64 * MiB
    tracemalloc.start()
    try:
        transfer.put_file(store.presign_put("big", size), path)
        transfer.get_file(store.presign_get("big"), tmp_path / "back.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, peak  # the store and the client each hold ~1 MiB chunks
    digest = hashlib.sha256()
    with open(tmp_path / "back.bin", "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(block * 64).hexdigest()


def test_plan_parts_respects_s3_limits() -> None:
    parts = plan_parts(100 * MiB + 1, 32 * MiB)
    assert [p.length for p in parts] == [32 * MiB, 32 * MiB, 32 * MiB, 4 * MiB + 1]
    assert [p.number for p in parts] == [1, 2, 3, 4]
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(parts))
    huge = plan_parts(MAX_PARTS * 6 * MiB, MIN_PART_SIZE)
    assert len(huge) <= MAX_PARTS
    assert sum(p.length for p in huge) == MAX_PARTS * 6 * MiB
    with pytest.raises(ValueError, match="between 5 MiB and 5 GiB"):
        plan_parts(100, MiB)
    with pytest.raises(ValueError, match="positive int"):
        plan_parts(0)
