"""A local object store behind presigned-style URLs: the emulator's stand-in for Object Storage.

The cloud batch engine hands out presigned S3 URLs for dataset uploads and result downloads;
the client must use them without credentials, cope with expiry, retry failed parts and
stream large files. This store reproduces exactly those traits on loopback, with the
standard library only:

* every URL carries ``X-Expires`` (unix seconds) and ``X-Signature``, an HMAC-SHA256 over the
  method, the path and every other query parameter; a bad signature or an expired URL gets
  403 with an S3-style XML error body;
* a single ``PUT`` must carry exactly the announced size (any other ``Content-Length`` is 403
  ``SignatureDoesNotMatch``, as when S3 signs the length);
* multipart: one URL per part, each ``PUT`` answered with ``ETag: "<md5 of the part>"``;
  :meth:`ObjectStore.complete_multipart` checks the ``(part_num, etag)`` list and concatenates
  the parts into the object;
* ``GET`` streams a stored object in chunks;
* scripted faults (:meth:`ObjectStore.fail`: a status such as 500, or a dropped connection, for
  the next matching request(s)) and slow answers (:meth:`ObjectStore.delay`);
* records: :attr:`ObjectStore.requests` and :attr:`ObjectStore.uploads` (completed uploads only).

Request bodies go straight to files in a temporary directory in 1 MiB chunks, so memory use
does not depend on object sizes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit
from xml.sax.saxutils import escape

__all__ = ["ObjectStore", "StoreRequest", "StoredUpload"]

CHUNK = 1 << 20
BUCKET = "emulator"
S3_MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class StoreRequest:
    """One HTTP request the store answered (or dropped: status 0)."""

    method: str
    key: str
    part: int | None
    status: int
    headers: dict[str, str]
    bytes_received: int


@dataclass(frozen=True)
class StoredUpload:
    """A completed upload: a single PUT, or a multipart upload after its completion."""

    key: str
    size: int
    sha256: str
    parts: int  # 0 for a single PUT


@dataclass
class _Fault:
    method: str | None
    key: str | None
    part: int | None
    status: int  # 0: drop the connection without an answer
    times: int

    def matches(self, method: str, key: str, part: int | None) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.key is None or self.key == key)
            and (self.part is None or self.part == part)
        )


@dataclass
class _Delay:
    method: str | None
    part: int | None
    seconds: float


@dataclass
class _Multipart:
    key: str
    size: int
    parts: int
    dir: str
    etags: dict[int, str] = field(default_factory=dict)


class _StoreError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ObjectStore:
    """An HTTP object store on loopback, with presigned-style URLs; start()/stop() like the Emulator.

    ``clock`` (unix seconds) decides expiry, so tests can expire URLs without waiting.
    ``min_part_size`` is S3's 5 MiB floor for every part but the last; tests may lower it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        url_ttl: float = 3600.0,
        min_part_size: int = S3_MIN_PART_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.url_ttl = url_ttl
        self.min_part_size = min_part_size
        self.clock = clock
        self._requested_port = port
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._objects: dict[str, str] = {}  # key -> file path
        self._expected: dict[str, int] = {}  # key -> announced size of a single PUT
        self._multipart: dict[str, _Multipart] = {}
        self._faults: list[_Fault] = []
        self._delays: list[_Delay] = []
        self._requests: list[StoreRequest] = []
        self._uploads: list[StoredUpload] = []
        self._seq = 0
        self._in_flight = 0
        self._peak_in_flight = 0

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> ObjectStore:
        if self._thread is not None:
            raise RuntimeError("object store already started")
        self._dir = tempfile.mkdtemp(prefix="yandexgpt-object-store-")
        server = http.server.ThreadingHTTPServer((self.host, self._requested_port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="yandexgpt-object-store", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and delete every stored file; idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> ObjectStore:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("object store not started")
        return f"http://{self.host}:{self._server.server_port}"

    # -- presigning (what the emulated services hand out) --------------------------------------

    def _sign(self, method: str, path: str, params: dict[str, str]) -> str:
        canonical = "\n".join([method, path, urlencode(sorted(params.items()))])
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def _url(self, method: str, key: str, params: dict[str, str], ttl: float | None) -> str:
        path = f"/{BUCKET}/{quote(key)}"
        params = dict(params)
        params["X-Expires"] = str(int(self.clock() + (self.url_ttl if ttl is None else ttl)))
        params["X-Signature"] = self._sign(method, path, params)
        return f"{self.base_url}{path}?{urlencode(params)}"

    def presign_put(self, key: str, size: int, *, ttl: float | None = None) -> str:
        """A URL for one PUT of exactly `size` bytes to `key`."""
        if size < 0:
            raise ValueError("size must be >= 0")
        with self._lock:
            self._expected[key] = size
        return self._url("PUT", key, {}, ttl)

    def start_multipart(self, key: str, size: int, parts: int, *, ttl: float | None = None) -> tuple[str, list[str]]:
        """Begin a multipart upload of `size` bytes in `parts` parts: (upload id, one PUT URL per part)."""
        if parts < 1 or parts > 10_000:
            raise ValueError("parts must be in [1, 10000]")
        upload_id = uuid.uuid4().hex
        part_dir = os.path.join(self._root(), "multipart", upload_id)
        os.makedirs(part_dir)
        with self._lock:
            self._multipart[upload_id] = _Multipart(key, size, parts, part_dir)
        urls = [self._url("PUT", key, {"partNumber": str(n), "uploadId": upload_id}, ttl) for n in range(1, parts + 1)]
        return upload_id, urls

    def complete_multipart(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> StoredUpload:
        """Join the uploaded parts in order into the object; ValueError names what is wrong."""
        with self._lock:
            mp = self._multipart.get(upload_id)
        if mp is None:
            raise ValueError(f"no multipart upload {upload_id!r} (unknown, or already completed)")
        numbers = [n for n, _ in parts]
        if numbers != sorted(set(numbers)):
            raise ValueError("parts must be listed in ascending part_num order, each once")
        if numbers != list(range(1, mp.parts + 1)):
            raise ValueError(f"expected parts 1..{mp.parts}, got {numbers}")
        for num, etag in parts:
            got = mp.etags.get(num)
            if got is None:
                raise ValueError(f"part {num} was not uploaded")
            if etag.strip('"') != got:
                raise ValueError(f"part {num}: etag {etag!r} does not match the uploaded part")
        sizes = [os.path.getsize(self._part_path(mp, n)) for n in numbers]
        small = [n for n, s in zip(numbers[:-1], sizes[:-1], strict=True) if s < self.min_part_size]
        if small:
            raise ValueError(f"parts {small} are smaller than the minimum part size {self.min_part_size}")
        if sum(sizes) != mp.size:
            raise ValueError(f"the parts hold {sum(sizes)} bytes, the upload announced {mp.size}")
        target = self._new_file()
        digest = hashlib.sha256()
        with open(target, "wb") as out:
            for n in numbers:
                with open(self._part_path(mp, n), "rb") as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        record = StoredUpload(mp.key, mp.size, digest.hexdigest(), mp.parts)
        with self._lock:
            self._multipart.pop(upload_id, None)
            self._replace(mp.key, target)
            self._uploads.append(record)
        shutil.rmtree(mp.dir, ignore_errors=True)
        return record

    def presign_get(self, key: str, *, ttl: float | None = None) -> str:
        if key not in self._objects:
            raise KeyError(key)
        return self._url("GET", key, {}, ttl)

    # -- direct access (for the emulated services and tests) -----------------------------------

    def put_file(self, key: str, source: str | os.PathLike[str]) -> None:
        """Store a copy of a local file under `key` (e.g. results the emulator wrote)."""
        target = self._new_file()
        shutil.copyfile(source, target)
        with self._lock:
            self._replace(key, target)

    def object_path(self, key: str) -> str:
        """The file holding `key`'s bytes (read it; do not keep it past stop())."""
        with self._lock:
            return self._objects[key]

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> None:
        with self._lock:
            path = self._objects.pop(key, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # -- scripting ----------------------------------------------------------------------------

    def fail(
        self,
        status: int = 500,
        *,
        method: str | None = None,
        key: str | None = None,
        part: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with `status` (0: drop the connection).

        The request body is read first, as a real server failing after the upload would.
        """
        with self._lock:
            self._faults.append(_Fault(method, key, part, status, times))

    def delay(self, seconds: float, *, method: str | None = None, part: int | None = None) -> None:
        """Hold every matching answer back by `seconds` (until :meth:`reset`)."""
        with self._lock:
            self._delays.append(_Delay(method, part, seconds))

    def reset(self, *, records: bool = True) -> None:
        """Forget faults and delays, and the records unless `records=False` (stored objects stay)."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            if records:
                self._requests.clear()
                self._uploads.clear()
                self._peak_in_flight = self._in_flight

    @property
    def requests(self) -> list[StoreRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def peak_in_flight(self) -> int:
        """The most requests served at once (since start or :meth:`reset`): shows parallel uploads."""
        with self._lock:
            return self._peak_in_flight

    def _enter(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    @property
    def uploads(self) -> list[StoredUpload]:
        with self._lock:
            return list(self._uploads)

    # -- internals ----------------------------------------------------------------------------

    def _root(self) -> str:
        if self._dir is None:
            raise RuntimeError("object store not started")
        return self._dir

    def _new_file(self) -> str:
        with self._lock:
            self._seq += 1
            seq = self._seq
        return os.path.join(self._root(), f"object-{seq}")

    def _replace(self, key: str, path: str) -> None:
        old = self._objects.get(key)
        self._objects[key] = path
        if old is not None and old != path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)

    @staticmethod
    def _part_path(mp: _Multipart, num: int) -> str:
        return os.path.join(mp.dir, f"part-{num}")

    def _record(self, request: StoreRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _take_fault(self, method: str, key: str, part: int | None) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, key, part):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _delay_for(self, method: str, part: int | None) -> float:
        with self._lock:
            return sum(
                d.seconds
                for d in self._delays
                if (d.method is None or d.method == method) and (d.part is None or d.part == part)
            )

    def _check(self, method: str, path: str, query: str) -> tuple[str, dict[str, str]]:
        """Verify signature and expiry; returns (key, the other query parameters)."""
        params = dict(parse_qsl(query, keep_blank_values=True))
        signature = params.pop("X-Signature", "")
        expires = params.get("X-Expires", "")
        if not path.startswith(f"/{BUCKET}/") or len(path) == len(BUCKET) + 2:
            raise _StoreError(404, "NoSuchBucket", "The specified bucket does not exist")
        if not hmac.compare_digest(signature, self._sign(method, path, params)):
            raise _StoreError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided",
            )
        try:
            expiry = int(expires)
        except ValueError:
            raise _StoreError(403, "AccessDenied", "Request is missing a valid expiry") from None
        if self.clock() > expiry:
            raise _StoreError(403, "AccessDenied", "Request has expired")
        return unquote(path[len(BUCKET) + 2 :]), params


def _error_body(code: str, message: str, key: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Key>{escape(key)}</Key><RequestId>{uuid.uuid4().hex}</RequestId></Error>"
    ).encode()


def _handler_for(store: ObjectStore) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.store = store
    return Handler


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: ObjectStore

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
        pass

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        store = self.store
        split = urlsplit(self.path)
        self._body_read = False
        self._logged = False
        self._entry: dict[str, Any] = {
            "method": method,
            "key": "",
            "part": None,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "bytes_received": 0,
        }
        store._enter(1)
        try:
            key, params = store._check(method, split.path, split.query)
            self._entry["key"] = key
            part = int(params["partNumber"]) if "partNumber" in params else None
            self._entry["part"] = part
            fault = store._take_fault(method, key, part)
            if method == "PUT":
                self._put(key, params, part, fault)
            elif method == "GET":
                self._get(key, fault)
            else:
                raise _StoreError(405, "MethodNotAllowed", "The specified method is not allowed")
        except _StoreError as exc:
            self._drain()
            self._send(exc.status, _error_body(exc.code, exc.message, self._entry["key"]))
        except (_Dropped, OSError):  # scripted, or the client went away mid-request
            self.close_connection = True
            self._log(0)
        finally:
            store._enter(-1)

    def _log(self, status: int) -> None:
        """Record the request before answering it, so a client that saw the answer sees the record."""
        if not self._logged:
            self._logged = True
            self.store._record(StoreRequest(status=status, **self._entry))

    def _content_length(self) -> int:
        value = self.headers.get("Content-Length")
        if value is None:
            raise _StoreError(411, "MissingContentLength", "You must provide the Content-Length HTTP header")
        try:
            length = int(value)
        except ValueError:
            raise _StoreError(400, "InvalidArgument", "Content-Length is not a number") from None
        if length < 0:
            raise _StoreError(400, "InvalidArgument", "Content-Length is negative")
        return length

    def _drain(self) -> None:
        """Read an unread body so the connection stays usable; drop it if the body is huge."""
        if getattr(self, "_body_read", False) or self.command != "PUT":
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > 64 * CHUNK:
            self.close_connection = True
            return
        self._receive(os.devnull, length, None)

    def _receive(self, path: str, length: int, digest: Any) -> int:
        self._body_read = True
        received = 0
        with open(path, "wb") as out:
            while received < length:
                chunk = self.rfile.read(min(CHUNK, length - received))
                if not chunk:
                    break
                received += len(chunk)
                self._entry["bytes_received"] = received
                if digest is not None:
                    digest.update(chunk)
                out.write(chunk)
        return received

    def _pause(self, method: str, part: int | None) -> None:
        seconds = self.store._delay_for(method, part)
        if seconds > 0:
            time.sleep(seconds)

    def _put(self, key: str, params: dict[str, str], part: int | None, fault: _Fault | None) -> None:
        store = self.store
        length = self._content_length()
        upload_id = params.get("uploadId")
        mp: _Multipart | None = None
        if upload_id is not None:
            with store._lock:
                mp = store._multipart.get(upload_id)
            if mp is None or part is None or not 1 <= part <= mp.parts:
                raise _StoreError(404, "NoSuchUpload", "The specified multipart upload does not exist")
            target = store._part_path(mp, part)
        else:
            with store._lock:
                expected = store._expected.get(key)
            if expected is None:
                raise _StoreError(403, "AccessDenied", "No upload was announced for this key")
            if length != expected:
                raise _StoreError(
                    403,
                    "SignatureDoesNotMatch",
                    f"Content-Length {length} differs from the signed size {expected}",
                )
            target = store._new_file()
        md5 = hashlib.md5(usedforsecurity=False)
        sha = hashlib.sha256()
        received = self._receive(target + ".partial", length, _Both(md5, sha))
        if received < length:
            os.unlink(target + ".partial")
            raise _Dropped  # the client went away before sending the whole body
        self._pause("PUT", part)
        if fault is not None:
            os.unlink(target + ".partial")
            if fault.status == 0:
                raise _Dropped
            raise _StoreError(fault.status, "InternalError", "We encountered an internal error. Please try again.")
        os.replace(target + ".partial", target)
        etag = md5.hexdigest()
        if mp is not None and part is not None:
            with store._lock:
                mp.etags[part] = etag
        else:
            with store._lock:  # the URL stays usable until it expires, as on S3: a PUT again overwrites
                store._replace(key, target)
                store._uploads.append(StoredUpload(key, length, sha.hexdigest(), 0))
        self._send(200, b"", {"ETag": f'"{etag}"'})

    def _get(self, key: str, fault: _Fault | None) -> None:
        store = self.store
        self._pause("GET", None)
        if fault is not None:
            if fault.status == 0:
                raise _Dropped
            raise _StoreError(fault.status, "InternalError", "We encountered an internal error. Please try again.")
        with store._lock:
            path = store._objects.get(key)
        if path is None:
            raise _StoreError(404, "NoSuchKey", "The specified key does not exist.")
        with open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            self._log(200)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            while chunk := src.read(CHUNK):
                self.wfile.write(chunk)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._log(status)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)


class _Dropped(Exception):
    """Close the connection without an answer."""


class _Both:
    def __init__(self, *digests: Any) -> None:
        self._digests: Iterable[Any] = digests

    def update(self, data: bytes) -> None:
        for d in self._digests:
            d.update(data)
