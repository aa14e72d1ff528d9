"""The cloud batch engine's files: the local runner's IN -> the engine's JSON Lines; result Parquet -> OUT.

IN is read with the local runner's own reader (`_batch_io._iter_input`: same checks, same problem
reports) and streamed line by line into the engine's format,
``{"request": [{"role": ..., "text": ...}, ...]}``, in a temporary file whose size the upload
needs first. One engine task has one model and one set of options, so lines whose options
(or model) differ are refused, naming the lines.

Result rows carry no id of ours and come in no promised order, so each row is matched to an
input by its request (the list of role/text turns). Identical requests are interchangeable:
the rows answering them go to their ids in the order the rows are read, the first such row to
the first such id in IN, and so on. The index from request to ids lives in a SQLite file
(standard library), so matching a million rows needs no more memory than matching ten.

Result Parquet is read by column name (``request``, ``response``; other columns are ignored),
one record batch at a time. ``response`` may be a string or a struct with a ``text`` field;
``request`` a list of structs with ``role`` and ``text`` (or that list as a JSON string).
OUT lines have the local runner's keys; the engine reports no status, usage or model version
per row, so ``status``, ``usage`` and ``model_version`` are null.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from array import array
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ._batch_io import BatchProblem, PathLike, _id_key, _iter_input, _Output
from ._convert import normalize_messages

__all__ = [
    "CLOUD_OPTIONS",
    "ConvertedInput",
    "MapCounts",
    "RequestIndex",
    "convert_input",
    "iter_result_rows",
    "map_results",
    "request_key",
]

# What BatchCompletionRequest can carry: completion_options and json_object / json_schema.
CLOUD_OPTIONS = frozenset({"temperature", "max_tokens", "reasoning_mode", "response_format"})
PYARROW_MISSING = "reading the batch engine's results needs pyarrow: pip install 'yandexgpt-grpc[batch]'"
_SHOWN = 5  # lines named per group in an error message


class _DiskIds(MutableMapping[str, int]):
    """The input reader's id -> first line map, in SQLite: a million ids cost disk, not memory."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute("CREATE TABLE IF NOT EXISTS seen (id_key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
        db.execute("DELETE FROM seen")

    def __getitem__(self, key: str) -> int:
        row = self._db.execute("SELECT line FROM seen WHERE id_key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return int(row[0])

    def __setitem__(self, key: str, line: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO seen (id_key, line) VALUES (?, ?)", (key, line))

    def __delitem__(self, key: str) -> None:
        if not self._db.execute("DELETE FROM seen WHERE id_key = ?", (key,)).rowcount:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self._db.execute("SELECT id_key FROM seen"))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0])


def _scratch_db(path: str) -> sqlite3.Connection:
    # One user at a time, but the asyncio driver runs each step in whichever worker thread is free.
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    return db


def request_key(turns: list[tuple[str, str]]) -> bytes:
    """A 16-byte digest of a request's turns: how a result row finds its input."""
    canonical = json.dumps(turns, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).digest()


def _turns(messages: Any) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in normalize_messages(messages)]


def _canonical(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr)


def _lines(numbers: list[int], total: int) -> str:
    shown = ", ".join(map(str, numbers[:_SHOWN]))
    more = total - min(total, _SHOWN)
    word = "line" if total == 1 else "lines"
    return f"{word} {shown}" + (f" (and {more} more)" if more else "")


@dataclass
class ConvertedInput:
    """The engine's JSON Lines file made from IN, and what the task needs to know about it.

    `in_lines[i]` is the IN line number of converted line ``i + 1``: validation errors name the
    converted file's lines, users know IN's.
    """

    path: str
    size: int
    count: int
    model: str | None
    options: dict[str, Any]
    problems: list[BatchProblem] = field(default_factory=list)
    in_lines: array[int] = field(default_factory=lambda: array("I"))

    def in_line(self, converted_line: int) -> int | None:
        """IN's line number for a 1-based line of the converted file (None when out of range)."""
        if 1 <= converted_line <= len(self.in_lines):
            return self.in_lines[converted_line - 1]
        return None


def convert_input(
    in_path: PathLike,
    *,
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    dest_dir: PathLike | None = None,
) -> ConvertedInput:
    """Stream IN into the engine's format in a new temporary file (the caller deletes it).

    `model` and `options` are the call's defaults; a line's own ``model`` and options override
    them, and every line must end up with the same ones. Lines the local runner would refuse
    are left out and listed in `problems`. Raises ValueError when lines disagree on model or
    options, when an option is one the engine cannot take, or when no line is left to send.
    """
    defaults = dict(options or {})
    unsupported = sorted(set(defaults) - CLOUD_OPTIONS)
    if unsupported:
        raise ValueError(
            f"the batch engine cannot take option(s) {', '.join(unsupported)}; "
            f"it takes {', '.join(sorted(CLOUD_OPTIONS))}"
        )
    problems: list[BatchProblem] = []
    in_lines: array[int] = array("I")
    # canonical options (with the model) -> the lines that have them, in IN order
    groups: dict[str, list[int]] = {}
    group_sizes: dict[str, int] = {}
    group_values: dict[str, tuple[str | None, dict[str, Any]]] = {}
    refused: dict[str, list[int]] = {}
    default_key = _canonical({"model": model, "options": defaults})
    size = 0
    fd, path = tempfile.mkstemp(prefix="yandexgpt-batch-", suffix=".jsonl", dir=dest_dir)
    ids = _scratch_db(path + ".ids")
    try:
        with os.fdopen(fd, "wb") as out, ids:
            for item in _iter_input(in_path, problems, _DiskIds(ids)):
                for name in item.options:
                    if name not in CLOUD_OPTIONS:
                        refused.setdefault(name, []).append(item.line)
                if item.options or item.model is not None:
                    effective = {**defaults, **item.options}
                    line_model = item.model if item.model is not None else model
                    key = _canonical({"model": line_model, "options": effective})
                else:  # the common line: nothing of its own
                    effective, line_model, key = defaults, model, default_key
                if key not in groups:
                    groups[key] = []
                    group_sizes[key] = 0
                    group_values[key] = (line_model, effective)
                if len(groups[key]) < _SHOWN:
                    groups[key].append(item.line)
                group_sizes[key] += 1
                turns = _turns(item.messages)
                record = {"request": [{"role": role, "text": text} for role, text in turns]}
                data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
                out.write(data)
                size += len(data)
                in_lines.append(item.line)
        if refused:
            parts = [f"{name} ({_lines(lines, len(lines))})" for name, lines in sorted(refused.items())]
            raise ValueError(
                f"the batch engine cannot take option(s) {'; '.join(parts)}; "
                f"it takes {', '.join(sorted(CLOUD_OPTIONS))}"
            )
        if len(groups) > 1:
            one_model = len({m for m, _ in group_values.values()}) == 1  # then naming it is noise
            parts = []
            for key, lines in groups.items():
                group_model, group_options = group_values[key]
                shown = _describe(None if one_model else group_model, group_options)
                parts.append(f"{_lines(lines, group_sizes[key])}: {shown}")
            described = "; ".join(parts)
            raise ValueError(
                "one cloud batch task has one model and one set of options, but the lines of IN differ: "
                f"{described}. Give every line the same model and options (or none, and pass them to the call)"
            )
        if not in_lines:
            detail = f" ({len(problems)} line(s) refused: {problems[0]}...)" if problems else ""
            raise ValueError(f"{os.fspath(in_path)} has no request to send{detail}")
    except BaseException:
        os.unlink(path)
        raise
    finally:
        ids.close()
        os.unlink(path + ".ids")
    [(line_model, effective)] = group_values.values()
    return ConvertedInput(path, size, len(in_lines), line_model, effective, problems, in_lines)


def _describe(model: str | None, options: Mapping[str, Any]) -> str:
    """As the user writes them in IN: a JSON object of the line's model (when it matters) and options."""
    shown = {"model": model, **options} if model is not None else dict(options)
    return json.dumps(shown, ensure_ascii=False, sort_keys=True, default=repr) if shown else "no options"


# -- result rows ---------------------------------------------------------------------------


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(PYARROW_MISSING) from exc
    return pq


def _row_turns(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    if isinstance(value, Mapping) and "request" in value:
        value = value["request"]
    if not isinstance(value, list) or not value:
        raise ValueError("'request' is not a list of messages")
    turns = []
    for msg in value:
        if not isinstance(msg, Mapping):
            raise ValueError("'request' holds something other than messages")
        text = msg.get("text", msg.get("content"))
        role = msg.get("role")
        if not isinstance(role, str) or not isinstance(text, str):
            raise ValueError("a message in 'request' lacks a string role or text")
        turns.append((role, text))
    return turns


def _row_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("text"), str):
        return str(value["text"])
    raise ValueError("'response' is neither a string nor a struct with a string 'text'")


def iter_result_rows(path: PathLike, batch_size: int = 1024) -> Iterator[tuple[int, Any, Any]]:
    """(row number from 1, request value, response value) of one result file, a record batch at a time."""
    pq = _parquet()
    parquet = pq.ParquetFile(os.fspath(path))
    names = set(parquet.schema_arrow.names)
    missing = sorted({"request", "response"} - names)
    if missing:
        raise ValueError(
            f"{os.fspath(path)}: result file has no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(sorted(names))})"
        )
    row = 0
    for batch in parquet.iter_batches(batch_size=batch_size, columns=["request", "response"]):
        requests = batch.column(0).to_pylist()
        responses = batch.column(1).to_pylist()
        for request, response in zip(requests, responses, strict=True):
            row += 1
            yield row, request, response


class RequestIndex:
    """Request digest -> the input ids with that request, in IN order, in a SQLite file.

    Each id is handed out once (`take`); ids already in OUT (`mark_done`) are handed out too,
    but flagged, so rereading the same result files after a crash replays the same matching
    instead of giving an already answered id's row to another id.
    """

    def __init__(self, db_path: PathLike) -> None:
        self.path = os.fspath(db_path)
        self._db = _scratch_db(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS req (key BLOB NOT NULL, id_key TEXT NOT NULL UNIQUE, "
            "line INTEGER NOT NULL, pos INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, "
            "taken INTEGER NOT NULL DEFAULT 0)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS req_pos ON req (pos)")
        self._db.execute("CREATE INDEX IF NOT EXISTS req_key ON req (key, taken)")

    @classmethod
    def build(cls, in_path: PathLike, db_path: PathLike) -> RequestIndex:
        """Index every valid line of IN (problems were reported when IN was converted)."""
        index = cls(db_path)
        rows = (
            (request_key(_turns(item.messages)), _id_key(item.id), item.line, pos)
            for pos, item in enumerate(_iter_input(in_path, [], _DiskIds(index._db)), 1)
        )
        with index._db:
            index._db.execute("DELETE FROM req")
            index._db.executemany("INSERT INTO req (key, id_key, line, pos) VALUES (?, ?, ?, ?)", rows)
        return index

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RequestIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mark_done(self, out_path: PathLike, problems: list[BatchProblem]) -> int:
        """Flag the ids OUT already has a line for; a torn last line is cut off. Returns the count."""
        try:
            f = open(out_path, "r+b")  # noqa: SIM115 - closed below, after a possible truncate
        except FileNotFoundError:
            return 0
        count = 0
        with f, self._db:
            offset = 0
            lineno = 0
            for raw in f:
                lineno += 1
                if not raw.endswith(b"\n"):
                    problems.append(
                        BatchProblem(lineno, "incomplete last line (an interrupted write) removed", "output")
                    )
                    f.truncate(offset)
                    break
                offset += len(raw)
                if not raw.strip():
                    continue
                try:
                    key = _id_key(json.loads(raw)["id"])
                except (ValueError, KeyError, TypeError):
                    raise ValueError(
                        f"{os.fspath(out_path)} line {lineno} is not a result line; refusing to append to it"
                    ) from None
                count += self._db.execute("UPDATE req SET done = 1 WHERE id_key = ?", (key,)).rowcount
        return count

    def take(self, key: bytes) -> tuple[Any, bool] | None:
        """The next id in IN order whose request has this digest: (id, already in OUT), or None."""
        row = self._db.execute(
            "SELECT rowid, id_key, done FROM req WHERE key = ? AND taken = 0 ORDER BY rowid LIMIT 1", (key,)
        ).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE req SET taken = 1 WHERE rowid = ?", (row[0],))
        return json.loads(row[1]), bool(row[2])

    def take_line(self, pos: int) -> tuple[Any, bool] | None:
        """The id on line `pos` of the converted file (the engine's numbering), unless a row took it."""
        row = self._db.execute("SELECT rowid, id_key, done FROM req WHERE pos = ? AND taken = 0", (pos,)).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE req SET taken = 1 WHERE rowid = ?", (row[0],))
        return json.loads(row[1]), bool(row[2])

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM req").fetchone()[0])

    def unanswered(self) -> Iterator[tuple[Any, int]]:
        """(id, IN line) of inputs no row answered and OUT has no line for, in IN order."""
        for id_key, line in self._db.execute(
            "SELECT id_key, line FROM req WHERE taken = 0 AND done = 0 ORDER BY rowid"
        ):
            yield json.loads(id_key), line


@dataclass
class MapCounts:
    written: int = 0
    already: int = 0  # rows whose id OUT already had (a resumed download)
    unmatched: int = 0  # rows that fit no input (reported as problems)


def map_results(
    parquet_path: PathLike,
    index: RequestIndex,
    output: _Output,
    problems: list[BatchProblem],
    *,
    label: str | None = None,
) -> MapCounts:
    """Write one OUT line per result row of one Parquet file, matched to its input by request."""
    counts = MapCounts()
    file = label or os.path.basename(os.fspath(parquet_path))
    with index._db:
        for row, request, response in iter_result_rows(parquet_path):
            try:
                key = request_key(_row_turns(request))
                text = _row_text(response)
            except (ValueError, TypeError) as exc:
                problems.append(BatchProblem(row, f"unreadable result row: {exc}", file))
                counts.unmatched += 1
                continue
            taken = index.take(key)
            if taken is None:
                problems.append(
                    BatchProblem(row, "result row matches no input request (or one already answered)", file)
                )
                counts.unmatched += 1
                continue
            item_id, done = taken
            if done:
                counts.already += 1
                continue
            output.write({"id": item_id, "text": text, "status": None, "usage": None, "model_version": None})
            counts.written += 1
    return counts
