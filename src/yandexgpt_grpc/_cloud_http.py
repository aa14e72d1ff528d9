"""HTTP to the batch engine's presigned object-storage URLs: streamed uploads and downloads, retried.

Why the standard library's ``http.client`` and not an HTTP client package: the library keeps
its three runtime dependencies, and presigned URLs need none of what such packages add — the
authorization is in the URL's query, so there are no credentials, sessions, cookies or
redirects to handle. What is needed (a PUT of a file range with a known Content-Length, sent in
chunks; a GET read in chunks) is a few lines of ``putrequest``/``send``/``readinto``.

Nothing here ever sends a credential: requests carry only ``Host`` and ``Content-Length``
(``Accept-Encoding: identity`` on GET). Error messages name the URL without its query, since
the query's signature is a bearer token until it expires.

Memory is constant: files are read and written in ``chunk_size`` pieces (1 MiB) through one
reused buffer per transfer.
"""

from __future__ import annotations

import http.client
import math
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from io import BufferedReader
from typing import TypeVar
from urllib.parse import urlsplit

from ._errors import YandexGPTError
from ._public import public
from ._retry import RetryPolicy

__all__ = [
    "HttpTransfer",
    "ObjectStorageError",
    "Part",
    "plan_parts",
    "redact_url",
]

CHUNK = 1 << 20
MiB = 1 << 20
# S3 multipart limits: every part but the last at least 5 MiB, at most 5 GiB, at most 10 000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 32 * MiB
# Above this size an upload goes in parallel parts (multipart); below, one PUT.
MULTIPART_THRESHOLD = 64 * MiB

# Object storage answers these when a retry may succeed (S3's SlowDown is 503; 429 for good measure).
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_S3_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")
_T = TypeVar("_T")
_DEFAULT_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.5, max_backoff=10.0)


def redact_url(url: str) -> str:
    """The URL without its query and fragment: a presigned URL's signature must not reach logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class ObjectStorageError(YandexGPTError):
    """An upload or download to a presigned URL failed (after retries, when retrying made sense).

    `status` is the HTTP status (0 when no answer arrived), `code` the S3 error code from the
    XML body when there was one. `expired` tells the caller to ask the service for fresh URLs.
    """

    def __init__(self, message: str, *, status: int = 0, code: str = "", url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.url = redact_url(url) if url else ""

    @property
    def expired(self) -> bool:
        return self.status == 403 and "expired" in str(self).lower()

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in _RETRY_STATUSES


class _Stopped(Exception):
    """Another part failed (or the caller was interrupted): stop sending this one."""


@dataclass(frozen=True)
class Part:
    """One multipart part: S3 numbers parts from 1."""

    number: int
    offset: int
    length: int


def plan_parts(size: int, part_size: int = DEFAULT_PART_SIZE) -> list[Part]:
    """Cut `size` bytes into parts of `part_size`, grown when needed to stay within 10 000 parts."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if size > MAX_PART_SIZE * MAX_PARTS:
        raise ValueError(f"{size} bytes exceed the multipart limit of {MAX_PARTS} parts of 5 GiB")
    if part_size < MIN_PART_SIZE or part_size > MAX_PART_SIZE:
        raise ValueError(f"part_size must be between 5 MiB and 5 GiB, got {part_size}")
    part_size = max(part_size, math.ceil(size / MAX_PARTS))
    count = math.ceil(size / part_size)
    return [Part(n + 1, n * part_size, min(part_size, size - n * part_size)) for n in range(count)]


class HttpTransfer:
    """Streams files to and from presigned URLs, retrying 5xx answers and connection errors.

    Waits between attempts follow `retry`'s backoff (full jitter); its `max_attempts` bounds
    the attempts of each request (each part on its own). `timeout` bounds every socket
    operation, not the whole transfer, so big files are fine.
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        chunk_size: int = CHUNK,
        max_workers: int = 4,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.retry = retry if retry is not None else _DEFAULT_RETRY
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.max_workers = max_workers
        self._ssl_context = ssl_context
        self._sleep = sleep

    # -- public operations ------------------------------------------------------------------

    def put_file(self, url: str, path: str | os.PathLike[str], offset: int = 0, length: int | None = None) -> str:
        """PUT `length` bytes of `path` from `offset` (default: the whole file); returns the ETag header."""
        if length is None:
            length = os.path.getsize(path) - offset
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        return self._retrying(lambda: self._put_once(url, os.fspath(path), offset, length, None))

    def put_parts(
        self,
        urls: Sequence[str],
        path: str | os.PathLike[str],
        parts: Sequence[Part],
        *,
        done: Mapping[int, str] | None = None,
        on_part: Callable[[int, str], None] | None = None,
    ) -> list[tuple[int, str]]:
        """Upload every part not in `done` (part number -> ETag), up to `max_workers` at once.

        `on_part(number, etag)` runs in the calling thread as each part finishes, so a caller can
        save its progress. When a part fails for good no further part starts, the parts in
        flight finish (and are reported), then the first failure is raised.
        Returns every (part number, ETag), in part order, for the multipart completion.
        """
        if len(urls) != len(parts):
            raise ValueError(f"{len(urls)} URLs for {len(parts)} parts")
        etags: dict[int, str] = dict(done or {})
        todo = [(url, part) for url, part in zip(urls, parts, strict=True) if part.number not in etags]
        source = os.fspath(path)
        stop = threading.Event()

        def send(url: str, part: Part) -> str:
            return self._retrying(lambda: self._put_once(url, source, part.offset, part.length, stop), stop)

        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, max(len(todo), 1)), thread_name_prefix="upload")
        failure: BaseException | None = None
        try:
            pending: dict[Future[str], Part] = {pool.submit(send, url, part): part for url, part in todo}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    part = pending.pop(future)
                    error = future.exception()
                    if error is not None:
                        if failure is None:  # start no more parts; let those in flight finish and count
                            failure = error
                            for queued in [f for f in pending if f.cancel()]:
                                pending.pop(queued)
                        continue
                    etag = future.result()
                    etags[part.number] = etag
                    if on_part is not None:
                        on_part(part.number, etag)
        finally:
            stop.set()  # only still set when we leave early (an interrupt, or on_part raised)
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure
        return sorted(etags.items())

    def get_file(self, url: str, dest: str | os.PathLike[str]) -> int:
        """Download to `dest` (through `dest.part`, renamed when complete); returns the byte count."""
        target = os.fspath(dest)
        return self._retrying(lambda: self._get_once(url, target))

    # -- one attempt ------------------------------------------------------------------------

    def _retrying(self, attempt_once: Callable[[], _T], stop: threading.Event | None = None) -> _T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return attempt_once()
            except ObjectStorageError as exc:
                if not exc.retryable or attempt >= self.retry.max_attempts or (stop is not None and stop.is_set()):
                    raise
                self._sleep(self.retry.backoff(attempt))

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {redact_url(url)!r}")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if parts.scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.timeout, context=context
            ), target
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout), target

    def _put_once(self, url: str, path: str, offset: int, length: int, stop: threading.Event | None) -> str:
        conn, target = self._connect(url)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                send_error: BaseException | None = None
                try:
                    conn.putrequest("PUT", target, skip_host=False, skip_accept_encoding=True)
                    conn.putheader("Content-Length", str(length))
                    conn.endheaders()
                    self._send_range(conn, f, length, stop)
                except (OSError, http.client.HTTPException) as exc:
                    if conn.sock is None:  # never connected
                        raise _connection_error("PUT", url, exc) from exc
                    send_error = exc  # the server may have answered early (a 403) and closed: read it
                try:
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    raise _connection_error("PUT", url, send_error or exc) from (send_error or exc)
                body = resp.read(64 * 1024)
                if 200 <= resp.status < 300:
                    if send_error is not None:
                        raise _connection_error("PUT", url, send_error) from send_error
                    return resp.getheader("ETag") or ""
                raise _status_error("PUT", url, resp.status, body)
        finally:
            conn.close()

    def _send_range(
        self, conn: http.client.HTTPConnection, f: BufferedReader, length: int, stop: threading.Event | None
    ) -> None:
        buf = bytearray(min(self.chunk_size, max(length, 1)))
        view = memoryview(buf)
        left = length
        readinto = f.readinto
        while left:
            if stop is not None and stop.is_set():
                raise _Stopped
            n = readinto(view[: min(len(buf), left)])
            if not n:
                raise ValueError(f"the file ended {left} bytes early: was it changed during the upload?")
            conn.send(view[:n])
            left -= n

    def _get_once(self, url: str, dest: str) -> int:
        conn, target = self._connect(url)
        tmp = dest + ".part"
        try:
            try:
                conn.request("GET", target)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise _connection_error("GET", url, exc) from exc
            if not 200 <= resp.status < 300:
                raise _status_error("GET", url, resp.status, resp.read(64 * 1024))
            expected = resp.getheader("Content-Length")
            received = 0
            buf = bytearray(self.chunk_size)
            view = memoryview(buf)
            try:
                with open(tmp, "wb") as out:
                    while True:
                        n = resp.readinto(view)
                        if not n:
                            break
                        out.write(view[:n])
                        received += n
                    out.flush()
                    os.fsync(out.fileno())
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, OSError) and not _is_network_error(exc):
                    raise  # a local disk problem: not something a retry fixes
                raise _connection_error("GET", url, exc) from exc
            if expected is not None and received != int(expected):
                raise ObjectStorageError(
                    f"GET {redact_url(url)}: the connection ended after {received} of {expected} bytes",
                    url=url,
                )
            os.replace(tmp, dest)
            return received
        finally:
            conn.close()
            if os.path.exists(tmp):
                os.unlink(tmp)


def _is_network_error(exc: OSError) -> bool:
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__module__ == "socket"


def _connection_error(method: str, url: str, exc: BaseException) -> ObjectStorageError:
    reason = str(exc) or type(exc).__name__
    return ObjectStorageError(f"{method} {redact_url(url)}: connection failed ({reason})", url=url)


def _status_error(method: str, url: str, status: int, body: bytes) -> ObjectStorageError:
    fields = dict(_S3_FIELD.findall(body.decode("utf-8", "replace")))
    code = fields.get("Code", "")
    detail = fields.get("Message", "") or body[:200].decode("utf-8", "replace").strip()
    label = f"{code}: {detail}" if code else detail
    return ObjectStorageError(
        f"{method} {redact_url(url)}: HTTP {status}" + (f" ({label})" if label else ""),
        status=status,
        code=code,
        url=url,
    )


public(ObjectStorageError)
