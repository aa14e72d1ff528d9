"""The state file of a cloud batch run, next to OUT: which step it reached and the ids each step made.

A rerun after Ctrl-C, a crash or a lost connection reads it and resumes where the last run
stopped, so a finished upload is never sent again and no second task is started for the same
IN. It is rewritten atomically (a temporary file, fsync, ``os.replace``) after every step, so
a crash leaves the old or the new state, never a torn one. It holds a fingerprint of IN
(size and SHA-256, read in chunks) and of the model and options: a rerun with another IN or
other options refuses, naming the task it would otherwise lose track of.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ._batch_io import PathLike

__all__ = ["STATE_SUFFIX", "CloudState", "Fingerprint", "StateFile", "StateMismatchError", "state_path"]

STATE_SUFFIX = ".cloud-state.json"
VERSION = 1
_CHUNK = 1 << 20


def state_path(out_path: PathLike) -> str:
    return os.fspath(out_path) + STATE_SUFFIX


class StateMismatchError(ValueError):
    """The state file next to OUT belongs to a run with another IN or other options."""


@dataclass(frozen=True)
class Fingerprint:
    """What makes two runs the same run: IN's bytes, the model and the options."""

    in_size: int
    in_sha256: str
    settings: str  # canonical JSON of {"model": ..., "options": {...}}

    @classmethod
    def of(cls, in_path: PathLike, model: str | None, options: Mapping[str, Any]) -> Fingerprint:
        digest = hashlib.sha256()
        size = 0
        with open(in_path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        settings = json.dumps(
            {"model": model, "options": dict(options)},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
            default=repr,
        )
        return cls(size, digest.hexdigest(), settings)


@dataclass
class CloudState:
    """Each step's ids, in the order the steps happen; None (or empty) until the step is reached."""

    fingerprint: Fingerprint
    in_path: str = ""
    # The BatchCompletionRequest (JSON, without the dataset) made from IN's model and options.
    batch_request: str | None = None
    dataset_id: str | None = None
    upload_size: int | None = None  # bytes of the converted file
    upload_part_size: int | None = None  # None: a single PUT
    upload_parts: dict[int, str] = field(default_factory=dict)  # part number -> ETag
    # Presigned part URLs, kept so a rerun can finish the same multipart upload: they are
    # bearer tokens until they expire, hence the state file's 0600 mode.
    upload_urls: list[str] = field(default_factory=list)
    upload_done: bool = False
    validation_operation_id: str | None = None
    dataset_ready: bool = False
    batch_operation_id: str | None = None
    task_id: str | None = None
    result_dataset_id: str | None = None
    downloaded: dict[str, str] = field(default_factory=dict)  # result file name -> local path
    mapped: list[str] = field(default_factory=list)  # result files whose rows are in OUT
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["upload_parts"] = {str(n): etag for n, etag in sorted(self.upload_parts.items())}
        return {"version": VERSION, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CloudState:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["fingerprint"] = Fingerprint(**data["fingerprint"])
        values["upload_parts"] = {int(n): str(etag) for n, etag in data.get("upload_parts", {}).items()}
        return cls(**values)


class StateFile:
    """Load, check and atomically save the state of the run writing `out_path`."""

    def __init__(self, out_path: PathLike) -> None:
        self.path = state_path(out_path)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def load(self, fingerprint: Fingerprint, in_path: PathLike = "") -> CloudState:
        """The saved state of this run, or a fresh one; refuses a state made for another IN or options."""
        try:
            with open(self.path, encoding="utf-8") as f:
                raw = f.read()
        except FileNotFoundError:
            return CloudState(fingerprint, in_path=os.fspath(in_path))
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            version = data.get("version")
            if version != VERSION:
                raise StateMismatchError(
                    f"{self.path} was written by another version of yandexgpt-grpc (state version {version!r}, "
                    f"this one reads {VERSION}); finish that run with the version that started it"
                )
            state = CloudState.from_json(data)
        except StateMismatchError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"{self.path} is unreadable ({exc}); it records which cloud task writes this OUT, "
                "so it is not replaced silently: repair it, or delete it to start over"
            ) from None
        self._check(state, fingerprint)
        return state

    def _check(self, state: CloudState, fingerprint: Fingerprint) -> None:
        saved = state.fingerprint
        if saved == fingerprint:
            return
        if (saved.in_size, saved.in_sha256) != (fingerprint.in_size, fingerprint.in_sha256):
            what = (
                f"IN has changed since that run ({saved.in_size} bytes then, {fingerprint.in_size} now)"
                if saved.in_size != fingerprint.in_size
                else "IN's content has changed since that run (same size, other bytes)"
            )
        else:
            what = f"the model or options differ (then {saved.settings}, now {fingerprint.settings})"
        task = f" Its task {state.task_id} may still be running." if state.task_id else ""
        raise StateMismatchError(
            f"{self.path} belongs to another run: {what}.{task} Rerun with the same IN and options to "
            "resume it, write to another OUT, or delete the state file to start over"
        )

    def save(self, state: CloudState) -> None:
        """Replace the state file atomically: a crash leaves the old state or the new one."""
        tmp = self.path + ".tmp"
        data = json.dumps(state.to_json(), ensure_ascii=False, indent=1, sort_keys=False) + "\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def remove(self) -> None:
        for path in (self.path, self.path + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX; Windows has no directory handles to sync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
