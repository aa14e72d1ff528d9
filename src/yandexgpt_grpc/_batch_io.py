"""The files of a batch run: IN read line by line, OUT read back and appended to, one writer per OUT.

Nothing here talks to the network; the runner in `_batch.py` and the cloud runner share it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from ._convert import _OPTION_NAMES, build_request, model_uri, normalize_messages
from ._errors import REDACTED, BatchDiskFullError, BatchLockedError, is_too_large
from ._public import public

PathLike = str | os.PathLike[str]

_RESERVED = frozenset({"id", "messages", "model"})
_PROBE_MODEL = "gpt://folder/model/latest"
_BOM = b"\xef\xbb\xbf"

# The error code of an answer that ended without a final alternative (it may be cut short).
INCOMPLETE = "INCOMPLETE"
# Error lines a rerun runs again without being asked: the failure said nothing about the prompt.
TRANSIENT_CODES = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "CANCELLED", INCOMPLETE}
)
# Run-level codes: a version before 0.2.0 wrote them (and Python class names) as results; rerun those too.
_RUN_LEVEL_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
_STATUS_NAMES = frozenset(c.name for c in grpc.StatusCode)


@dataclass(frozen=True)
class BatchProblem:
    """An input line that was not sent (malformed, a duplicate id, not UTF-8), or a repaired output line."""

    line: int
    message: str
    file: str = "input"

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.message}"


@dataclass(frozen=True)
class _Item:
    line: int
    id: Any
    messages: Any
    model: str | None
    options: Mapping[str, Any]


def _id_key(value: Any) -> str:
    """Ids compare as JSON, so "1" and 1 stay different requests."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _read_input(path: PathLike, problems: list[BatchProblem]) -> list[_Item]:
    return list(_iter_input(path, problems))


def _iter_input(
    path: PathLike, problems: list[BatchProblem], seen: MutableMapping[str, int] | None = None
) -> Iterator[_Item]:
    """The valid input lines one by one; problems (with line numbers) are appended, the rest still runs.

    IN is read as bytes and decoded per line, so one line that is not UTF-8 is that line's problem;
    a byte order mark on line 1 and CRLF line ends are accepted. `seen` (id -> first line) may be
    given to share or keep the id index.
    """
    if seen is None:
        seen = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            raw_bytes = line[len(_BOM) :] if lineno == 1 and line.startswith(_BOM) else line
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(
                    BatchProblem(lineno, f"not valid UTF-8 (byte 0x{raw_bytes[exc.start]:02x} at byte {exc.start + 1})")
                )
                continue
            if not raw.strip():
                continue
            item = _parse_line(lineno, raw, problems, seen)
            if item is not None:
                yield item


def _parse_line(lineno: int, raw: str, problems: list[BatchProblem], seen: MutableMapping[str, int]) -> _Item | None:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(BatchProblem(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        return None
    if not isinstance(obj, dict):
        problems.append(BatchProblem(lineno, "expected a JSON object with 'id' and 'messages'"))
        return None
    item_id = obj.get("id")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or item_id == "":
        problems.append(BatchProblem(lineno, "'id' must be a non-empty string or an integer"))
        return None
    key = _id_key(item_id)
    if key in seen:
        problems.append(BatchProblem(lineno, f"duplicate id {item_id!r} (first on line {seen[key]})"))
        return None
    seen[key] = lineno
    unknown = sorted(set(obj) - _RESERVED - _OPTION_NAMES)
    if unknown:
        allowed = ", ".join(sorted(_OPTION_NAMES))
        problems.append(BatchProblem(lineno, f"unknown keys {unknown}; allowed: id, messages, model, {allowed}"))
        return None
    model = obj.get("model")
    if model is not None and not isinstance(model, str):
        problems.append(BatchProblem(lineno, "'model' must be a string"))
        return None
    options = {k: v for k, v in obj.items() if k not in _RESERVED}
    try:  # the checks the client would make, now, so the report can name the line
        build_request(_PROBE_MODEL, normalize_messages(obj.get("messages", [])), options, False)
    except (TypeError, ValueError) as exc:
        problems.append(BatchProblem(lineno, str(exc)))
        return None
    return _Item(lineno, item_id, obj["messages"], model, options)


def check_model(item: _Item, folder_id: str | None, problems: list[BatchProblem]) -> bool:
    """A line's own model must resolve (a short name needs a folder): else it is that line's problem."""
    if item.model is None:
        return True
    try:
        model_uri(item.model, folder_id)
    except (TypeError, ValueError) as exc:
        problems.append(BatchProblem(item.line, str(exc)))
        return False
    return True


def is_final_error(error: Any) -> bool:
    """An error line that belongs to its prompt: a rerun keeps it unless asked (`retry_failed`).

    Transient codes, INCOMPLETE, and anything that is not a prompt's error (a Python class name or a
    credentials code written by an older version) run again.
    """
    if not isinstance(error, dict):
        return False
    code = error.get("code")
    if not isinstance(code, str) or code not in _STATUS_NAMES or code in _RUN_LEVEL_CODES:
        return False
    if code == "RESOURCE_EXHAUSTED":  # over the size limit: the prompt's own error
        return is_too_large(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error.get("message", "")))
    return code not in TRANSIENT_CODES


@dataclass
class OutState:
    """What OUT already holds: ids with a success line, and kept error lines (id -> code)."""

    succeeded: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    lines: int = 0

    def done(self, key: str) -> bool:
        return key in self.succeeded or key in self.errors


def _read_done(path: PathLike, problems: list[BatchProblem], retry_failed: bool) -> OutState:
    """Read OUT back: repair a torn last line, drop the error lines this run will retry.

    Dropping is one atomic rewrite (a temporary file renamed over OUT), so OUT never holds two
    lines for one id, whatever happens to this run.
    """
    state = OutState()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return state
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" unless the last write was torn
    keep_len = len(data) - len(tail)
    if tail:
        problems.append(BatchProblem(len(lines) + 1, "incomplete last line (an interrupted write) removed", "output"))
    kept: list[bytes] = []
    dropped = False
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            key = _id_key(obj["id"])
        except (ValueError, KeyError, TypeError):
            if lineno == len(lines):  # a last line cut short but ending in a newline
                problems.append(BatchProblem(lineno, "unreadable last line removed", "output"))
                keep_len -= len(raw) + 1
                break
            raise ValueError(
                f"{os.fspath(path)} line {lineno} is not a result line; refusing to append to it"
            ) from None
        if "error" in obj:
            if retry_failed or not is_final_error(obj["error"]) or key in state.succeeded:
                dropped = True
                continue
            state.errors[key] = str(obj["error"].get("code"))
        else:
            state.succeeded.add(key)
            state.errors.pop(key, None)
        kept.append(raw)
    state.lines = len(kept)
    if dropped:
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(line + b"\n" for line in kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    elif keep_len < len(data):
        os.truncate(path, keep_len)
    return state


# Windows opens file descriptors in text mode unless told: "\n" would become "\r\n" in OUT.
_BINARY = getattr(os, "O_BINARY", 0)
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class _Output:
    """Append-only result file: each line goes out in one write(2), so no line is ever torn by us.

    The client's own secrets never reach it, whatever a line would quote.
    """

    def __init__(self, path: PathLike, secrets: tuple[str, ...] = (), saved: int = 0) -> None:
        self._path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _BINARY, 0o644)
        self._secrets = secrets
        self.saved = saved  # whole result lines in the file

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        for secret in self._secrets:  # only the exact secret: answers keep their text otherwise
            if len(secret) >= 8 and secret in line:
                line = line.replace(secret, REDACTED)
        data = (line + "\n").encode("utf-8")
        view = memoryview(data)
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            with contextlib.suppress(OSError):  # take back our own torn part; a rerun repairs it otherwise
                os.ftruncate(self._fd, start)
            raise BatchDiskFullError(os.fspath(self._path), self.saved) from exc
        self.saved += 1

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
        finally:
            os.close(self._fd)


# Windows locks a byte range and keeps others from reading it: lock one byte far past the
# holder's note, which stays readable at the start of the file.
_WINDOWS_LOCK_OFFSET = 1 << 30


class OutputLock:
    """One writer per OUT: an OS lock on ``OUT.lock``, held for the run's lifetime.

    The kernel drops the lock when its holder exits however it exits (SIGKILL too), so a stale
    file never blocks a run; the file stays (deleting it would let two runs lock two different
    files). It holds a note naming the holder (pid, host, start time) for the refusal message.
    """

    def __init__(self, output_path: PathLike) -> None:
        self.output_path = output_path
        self.path = f"{os.fspath(output_path)}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _BINARY, 0o644)
        try:
            if not _try_lock(fd):
                raise BatchLockedError(os.fspath(self.output_path), _holder(fd))
            note = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(note) + "\n").encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        note = json.loads(os.read(fd, 4096) or b"{}")
        return f"pid {note['pid']} on {note['host']}, started {note['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its lock file is held"


if sys.platform == "win32":  # pragma: no cover - tested on Linux only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        # flock, not lockf: its lock belongs to the open file, so a second run in the same process is refused too.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


public(BatchProblem)
