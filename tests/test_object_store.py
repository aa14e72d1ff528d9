"""The emulator's object store: presigned URLs it checks, single and multipart PUT, streamed GET, faults."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests._clock import ManualClock as FakeClock
from yandexgpt_grpc.testing._object_store import ObjectStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def store(clock: FakeClock) -> Iterator[ObjectStore]:
    with ObjectStore(min_part_size=4, clock=clock) as s:
        yield s


def request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


def test_single_put_then_get_round_trips_and_is_recorded(store: ObjectStore) -> None:
    data = os.urandom(100_000)
    status, headers, body = request("PUT", store.presign_put("ds/1/data.jsonl", len(data)), data)
    assert status == 200, body
    assert headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    [upload] = store.uploads
    assert (upload.key, upload.size, upload.parts) == ("ds/1/data.jsonl", len(data), 0)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    status, _, got = request("GET", store.presign_get("ds/1/data.jsonl"))
    assert status == 200
    assert got == data
    assert [(r.method, r.key, r.status) for r in store.requests] == [
        ("PUT", "ds/1/data.jsonl", 200),
        ("GET", "ds/1/data.jsonl", 200),
    ]


def test_tampered_signature_or_path_is_403_with_an_s3_xml_body(store: ObjectStore) -> None:
    url = store.presign_put("k", 3)
    sig = dict(parse_qsl(urlsplit(url).query))["X-Signature"]
    bad = with_query(url, **{"X-Signature": ("0" if sig[0] != "0" else "1") + sig[1:]})
    status, headers, body = request("PUT", bad, b"abc")
    assert status == 403
    assert headers["Content-Type"] == "application/xml"
    assert b"<Code>SignatureDoesNotMatch</Code>" in body
    # the signature covers the path and the other parameters, the expiry too
    assert request("PUT", url.replace("/k?", "/other?"), b"abc")[0] == 403
    expires = dict(parse_qsl(urlsplit(url).query))["X-Expires"]
    assert request("PUT", with_query(url, **{"X-Expires": str(int(expires) + 3600)}), b"abc")[0] == 403
    # and the method: a PUT URL does not read the object
    store.put_file("k", __file__)
    assert request("GET", url)[0] == 403
    assert store.uploads == []


def test_expired_url_is_403_request_has_expired(store: ObjectStore, clock: FakeClock) -> None:
    url = store.presign_put("k", 3, ttl=60)
    clock.now += 61
    status, _, body = request("PUT", url, b"abc")
    assert status == 403
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in body
    clock.now -= 2
    assert request("PUT", url, b"abc")[0] == 200


def test_single_put_must_carry_exactly_the_announced_size(store: ObjectStore) -> None:
    url = store.presign_put("k", 10)
    status, _, body = request("PUT", url, b"123456789")
    assert status == 403
    assert b"Content-Length 9 differs from the signed size 10" in body
    assert request("PUT", url, b"12345678901")[0] == 403
    assert store.uploads == []
    # the connection survives the refusal: the store read the body it refused
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("PUT", f"{parts.path}?{parts.query}", body=b"short")
    first = conn.getresponse()
    first.read()
    conn.request("PUT", f"{parts.path}?{parts.query}", body=b"0123456789")
    assert (first.status, conn.getresponse().status) == (403, 200)
    conn.close()


def test_multipart_reassembles_the_exact_bytes_and_checks_etags(store: ObjectStore) -> None:
    chunks = [os.urandom(7), os.urandom(7), os.urandom(3)]
    upload_id, urls = store.start_multipart("big", 17, 3)
    etags = []
    for url, chunk in zip(urls, chunks, strict=True):
        status, headers, _ = request("PUT", url, chunk)
        assert status == 200
        assert headers["ETag"] == f'"{hashlib.md5(chunk).hexdigest()}"'
        etags.append(headers["ETag"])
    assert store.uploads == []  # not an upload until completed
    with pytest.raises(ValueError, match="etag"):
        store.complete_multipart(upload_id, [(1, etags[1]), (2, etags[1]), (3, etags[2])])
    with pytest.raises(ValueError, match="ascending"):
        store.complete_multipart(upload_id, [(2, etags[1]), (1, etags[0]), (3, etags[2])])
    with pytest.raises(ValueError, match=r"expected parts 1\.\.3"):
        store.complete_multipart(upload_id, [(1, etags[0]), (2, etags[1])])
    record = store.complete_multipart(upload_id, list(enumerate(etags, 1)))
    assert (record.key, record.size, record.parts) == ("big", 17, 3)
    with open(store.object_path("big"), "rb") as f:
        assert f.read() == b"".join(chunks)
    assert store.uploads == [record]
    with pytest.raises(ValueError, match="no multipart upload"):
        store.complete_multipart(upload_id, list(enumerate(etags, 1)))


def test_multipart_refuses_small_parts_missing_parts_and_a_wrong_total(clock: FakeClock) -> None:
    with ObjectStore(min_part_size=5, clock=clock) as store:
        upload_id, urls = store.start_multipart("k", 8, 2)
        assert request("PUT", urls[0], b"abcd")[0] == 200
        etag1 = f'"{hashlib.md5(b"abcd").hexdigest()}"'
        with pytest.raises(ValueError, match="part 2 was not uploaded"):
            store.complete_multipart(upload_id, [(1, etag1), (2, "y")])
        etag2 = request("PUT", urls[1], b"efgh")[1]["ETag"]
        with pytest.raises(ValueError, match=r"parts \[1\] are smaller than the minimum part size 5"):
            store.complete_multipart(upload_id, [(1, etag1), (2, etag2)])
        upload_id, urls = store.start_multipart("k", 9, 2)
        etags = [request("PUT", u, b"abcde")[1]["ETag"] for u in urls]
        with pytest.raises(ValueError, match="hold 10 bytes, the upload announced 9"):
            store.complete_multipart(upload_id, list(enumerate(etags, 1)))
        upload_id, urls = store.start_multipart("k", 10, 2)
        etags = [request("PUT", u, b"abcde")[1]["ETag"] for u in urls]
        store.complete_multipart(upload_id, list(enumerate(etags, 1)))
        # a part URL of a completed upload is refused although its signature is valid
        assert b"<Code>NoSuchUpload</Code>" in request("PUT", urls[0], b"abcde")[2]


def test_fault_answers_one_part_with_500_once_then_recovers(store: ObjectStore) -> None:
    _, urls = store.start_multipart("k", 8, 2)
    store.fail(500, part=2)
    assert request("PUT", urls[0], b"abcd")[0] == 200
    status, _, body = request("PUT", urls[1], b"efgh")
    assert status == 500
    assert b"<Code>InternalError</Code>" in body
    assert request("PUT", urls[1], b"efgh")[0] == 200
    assert [(r.part, r.status) for r in store.requests] == [(1, 200), (2, 500), (2, 200)]


def test_fault_can_drop_the_connection_and_match_by_method(store: ObjectStore) -> None:
    store.put_file("r", __file__)
    store.fail(0, method="GET")
    with pytest.raises(http.client.RemoteDisconnected):
        request("GET", store.presign_get("r"))
    assert request("GET", store.presign_get("r"))[0] == 200
    assert [r.status for r in store.requests] == [0, 200]


def test_delay_holds_answers_back(store: ObjectStore) -> None:
    store.put_file("r", __file__)
    store.delay(0.3, method="GET")
    started = time.monotonic()
    assert request("GET", store.presign_get("r"))[0] == 200
    assert time.monotonic() - started >= 0.3
    store.reset()
    started = time.monotonic()
    assert request("GET", store.presign_get("r"))[0] == 200
    assert time.monotonic() - started < 0.3


def test_unknown_key_bucket_and_missing_length(store: ObjectStore) -> None:
    store.put_file("r", __file__)
    url = store.presign_get("r")
    store.delete("r")
    assert b"<Code>NoSuchKey</Code>" in request("GET", url)[2]
    with pytest.raises(KeyError):
        store.presign_get("r")
    parts = urlsplit(url)
    assert request("GET", f"{parts.scheme}://{parts.netloc}/other/r?{parts.query}")[0] == 404
    # chunked (no Content-Length) uploads are refused, as S3 does for presigned PUTs
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    put = store.presign_put("k", 3)
    conn.request("PUT", put[len(store.base_url) :], body=iter([b"abc"]), encode_chunked=True)
    resp = conn.getresponse()
    assert (resp.status, b"MissingContentLength" in resp.read()) == (411, True)
    conn.close()


def test_records_the_headers_sent(store: ObjectStore) -> None:
    request("PUT", store.presign_put("k", 1), b"x", {"X-Probe": "1"})
    assert store.requests[0].headers["x-probe"] == "1"


def test_big_objects_stream_through_in_constant_memory(store: ObjectStore) -> None:
    size = 48 * 1024 * 1024
    block = os.urandom(1 << 20)
    url = store.presign_put("big", size)
    parts = urlsplit(url)
    tracemalloc.start()
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.putrequest("PUT", f"{parts.path}?{parts.query}")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        for _ in range(48):
            conn.send(block)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        conn.request("GET", store.presign_get("big")[len(store.base_url) :])
        resp = conn.getresponse()
        got = hashlib.sha256()
        while chunk := resp.read(1 << 20):
            got.update(chunk)
        conn.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.hexdigest() == hashlib.sha256(block * 48).hexdigest()
    assert peak < 12 * 1024 * 1024, peak


def test_parallel_part_uploads(store: ObjectStore) -> None:
    chunks = [os.urandom(50_000) for _ in range(8)]
    upload_id, urls = store.start_multipart("k", sum(map(len, chunks)), 8)
    etags: dict[int, str] = {}

    def put(n: int) -> None:
        etags[n] = request("PUT", urls[n - 1], chunks[n - 1])[1]["ETag"]

    threads = [threading.Thread(target=put, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.complete_multipart(upload_id, sorted(etags.items()))
    with open(store.object_path("k"), "rb") as f:
        assert f.read() == b"".join(chunks)


def test_stop_removes_the_files_and_is_idempotent() -> None:
    store = ObjectStore().start()
    store.put_file("k", __file__)
    path = store.object_path("k")
    assert os.path.exists(path)
    store.stop()
    store.stop()
    assert not os.path.exists(path)
    with pytest.raises(RuntimeError):
        _ = store.base_url
