"""IN -> the batch engine's JSON Lines, and result Parquet -> OUT lines matched back to input ids."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yandexgpt_grpc._batch import BatchProblem, _Output
from yandexgpt_grpc._cloud_batch_files import (
    PYARROW_MISSING,
    RequestIndex,
    convert_input,
    map_results,
    request_key,
)

MESSAGE = pa.struct([("role", pa.string()), ("text", pa.string())])


def write_in(tmp_path: Path, lines: list[Any], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "text": text}]


def write_results(
    path: Path,
    rows: list[tuple[Any, Any]],
    *,
    request_type: Any = None,
    response_type: Any = None,
    extra: bool = False,
    row_group_size: int | None = None,
) -> Path:
    columns: dict[str, Any] = {
        "request": pa.array([r for r, _ in rows], type=request_type or pa.list_(MESSAGE)),
        "response": pa.array([t for _, t in rows], type=response_type or pa.string()),
    }
    if extra:
        columns = {"row_no": pa.array(range(len(rows))), **columns, "meta": pa.array(["x"] * len(rows))}
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


# -- conversion ----------------------------------------------------------------------------


def test_convert_streams_in_into_the_engine_format(tmp_path: Path) -> None:
    src = write_in(
        tmp_path,
        [
            {"id": 1, "messages": "Hello", "temperature": 0.3},
            {
                "id": "b",
                "messages": [{"role": "system", "text": "Be brief"}, {"role": "user", "content": "Hi"}],
                "temperature": 0.3,
            },
            {"id": 3, "messages": {"role": "user", "text": "Привет"}, "temperature": 0.3, "model": "yandexgpt"},
        ],
    )
    conv = convert_input(src, model="yandexgpt", dest_dir=tmp_path)
    try:
        data = Path(conv.path).read_bytes()
        assert data.decode("utf-8").splitlines() == [
            '{"request":[{"role":"user","text":"Hello"}]}',
            '{"request":[{"role":"system","text":"Be brief"},{"role":"user","text":"Hi"}]}',
            '{"request":[{"role":"user","text":"Привет"}]}',
        ]
        assert conv.size == len(data) == os.path.getsize(conv.path)
        assert (conv.count, conv.model, conv.options, conv.problems) == (3, "yandexgpt", {"temperature": 0.3}, [])
        assert list(conv.in_lines) == [1, 2, 3]
    finally:
        os.unlink(conv.path)


def test_bad_lines_are_left_out_and_reported_with_in_line_numbers(tmp_path: Path) -> None:
    src = write_in(
        tmp_path,
        [
            {"id": 1, "messages": "a"},
            "{not json",
            {"id": 1, "messages": "dup"},
            "",
            {"id": 2, "messages": []},
            {"id": 3, "messages": "c"},
        ],
    )
    conv = convert_input(src, dest_dir=tmp_path)
    os.unlink(conv.path)
    assert conv.count == 2
    assert [(p.line, p.file) for p in conv.problems] == [(2, "input"), (3, "input"), (5, "input")]
    assert "duplicate id 1 (first on line 1)" in str(conv.problems[1])
    # the converted file's line 2 is IN's line 6: validation errors are shown with IN's numbers
    assert (conv.in_line(1), conv.in_line(2), conv.in_line(3), conv.in_line(0)) == (1, 6, None, None)


def test_options_that_differ_per_line_are_refused_naming_the_lines(tmp_path: Path) -> None:
    lines: list[Any] = [{"id": i, "messages": "q", "temperature": 0.2} for i in range(1, 8)]
    lines[2]["temperature"] = 0.7
    lines[5]["temperature"] = 0.7
    lines[6] = {"id": 7, "messages": "q", "temperature": 0.2, "max_tokens": 5}
    src = write_in(tmp_path, lines)
    before = set(os.listdir(tmp_path))
    with pytest.raises(ValueError, match="one cloud batch task has one model and one set of options") as info:
        convert_input(src, dest_dir=tmp_path)
    message = str(info.value)
    assert 'lines 1, 2, 4, 5: {"temperature": 0.2}' in message
    assert 'lines 3, 6: {"temperature": 0.7}' in message
    assert 'line 7: {"max_tokens": 5, "temperature": 0.2}' in message
    assert set(os.listdir(tmp_path)) == before  # no temporary file left behind


def test_call_options_are_the_defaults_and_lines_may_repeat_them(tmp_path: Path) -> None:
    src = write_in(tmp_path, [{"id": 1, "messages": "a"}, {"id": 2, "messages": "b", "max_tokens": 50}])
    conv = convert_input(src, options={"max_tokens": 50}, dest_dir=tmp_path)
    os.unlink(conv.path)
    assert conv.options == {"max_tokens": 50}
    with pytest.raises(ValueError, match=r'line 1: \{"max_tokens": 10\}; line 2: \{"max_tokens": 50\}'):
        convert_input(src, options={"max_tokens": 10}, dest_dir=tmp_path)


def test_lines_naming_different_models_are_refused(tmp_path: Path) -> None:
    src = write_in(
        tmp_path,
        [{"id": 1, "messages": "a"}, {"id": 2, "messages": "b", "model": "yandexgpt"}, {"id": 3, "messages": "c"}],
    )
    with pytest.raises(
        ValueError, match=r'lines 1, 3: \{"model": "yandexgpt-lite"\}; line 2: \{"model": "yandexgpt"\}'
    ):
        convert_input(src, model="yandexgpt-lite", dest_dir=tmp_path)
    conv = convert_input(src, model="yandexgpt", dest_dir=tmp_path)
    os.unlink(conv.path)
    assert conv.model == "yandexgpt"


def test_options_the_engine_cannot_take_are_refused(tmp_path: Path) -> None:
    tool = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}
    src = write_in(tmp_path, [{"id": 1, "messages": "a"}, {"id": 2, "messages": "b", "tools": [tool]}])
    with pytest.raises(ValueError, match=r"cannot take option\(s\) tools \(line 2\); it takes max_tokens"):
        convert_input(src, dest_dir=tmp_path)
    with pytest.raises(ValueError, match=r"cannot take option\(s\) tool_choice"):
        convert_input(src, options={"tool_choice": "auto"}, dest_dir=tmp_path)


def test_an_input_with_nothing_to_send_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has no request to send$"):
        convert_input(write_in(tmp_path, []), dest_dir=tmp_path)
    with pytest.raises(ValueError, match=r"has no request to send \(2 line\(s\) refused: input line 1: not valid JSON"):
        convert_input(write_in(tmp_path, ["{", "[]"]), dest_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]


def test_conversion_never_holds_the_whole_input(tmp_path: Path) -> None:
    text = "x" * 20_000
    src = tmp_path / "in.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i in range(1000):  # 20 MB
            f.write(json.dumps({"id": i, "messages": text}) + "\n")
    tracemalloc.start()
    try:
        conv = convert_input(src, dest_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    os.unlink(conv.path)
    assert conv.count == 1000
    assert peak < 5 * 1024 * 1024, peak


def test_request_key_tells_roles_and_texts_apart() -> None:
    assert request_key([("user", "a")]) == request_key([("user", "a")])
    assert request_key([("user", "a")]) != request_key([("system", "a")])
    assert request_key([("user", "a"), ("user", "b")]) != request_key([("user", "ab")])
    assert len(request_key([("user", "a")])) == 16


# -- results -> OUT ------------------------------------------------------------------------


def run_mapping(tmp_path: Path, src: Path, results: list[Path], out: Path) -> tuple[list[BatchProblem], Any]:
    problems: list[BatchProblem] = []
    with RequestIndex.build(src, tmp_path / "index.sqlite") as index:
        index.mark_done(out, problems)
        output = _Output(out)
        try:
            counts = [map_results(r, index, output, problems) for r in results]
        finally:
            output.close()
        missing = list(index.unanswered())
    return problems, (counts, missing)


def test_rows_map_back_to_ids_by_request_in_any_order(tmp_path: Path) -> None:
    n = 50
    src = write_in(tmp_path, [{"id": f"id-{i}", "messages": f"question {i}"} for i in range(n)])
    rows = [(user(f"question {i}"), f"answer {i}") for i in range(n)]
    random.Random(7).shuffle(rows)
    res = write_results(tmp_path / "r.parquet", rows, extra=True, row_group_size=7)
    out = tmp_path / "out.jsonl"
    problems, (counts, missing) = run_mapping(tmp_path, src, [res], out)
    lines = read_jsonl(out)
    assert problems == []
    assert missing == []
    assert counts[0].written == n
    assert {line["id"]: line["text"] for line in lines} == {f"id-{i}": f"answer {i}" for i in range(n)}
    assert all(list(line) == ["id", "text", "status", "usage", "model_version"] for line in lines)
    assert all(line["status"] is line["usage"] is line["model_version"] is None for line in lines)


def test_response_as_struct_and_request_as_json_string(tmp_path: Path) -> None:
    src = write_in(
        tmp_path,
        [
            {"id": 1, "messages": [{"role": "system", "text": "S"}, {"role": "user", "text": "U"}]},
            {"id": 2, "messages": "V"},
        ],
    )
    response_type = pa.struct([("role", pa.string()), ("text", pa.string())])
    rows = [
        (json.dumps([{"role": "user", "text": "V"}]), {"role": "assistant", "text": "for V"}),
        (
            json.dumps([{"role": "system", "text": "S"}, {"role": "user", "text": "U"}]),
            {"role": "assistant", "text": "for U"},
        ),
    ]
    res = write_results(tmp_path / "r.parquet", rows, request_type=pa.string(), response_type=response_type)
    out = tmp_path / "out.jsonl"
    problems, _ = run_mapping(tmp_path, src, [res], out)
    assert problems == []
    assert [(x["id"], x["text"]) for x in read_jsonl(out)] == [(2, "for V"), (1, "for U")]


def test_identical_requests_take_the_rows_in_order_and_extras_are_reported(tmp_path: Path) -> None:
    src = write_in(
        tmp_path,
        [
            {"id": "a", "messages": "same"},
            {"id": "b", "messages": "other"},
            {"id": "c", "messages": "same"},
            {"id": "d", "messages": "same"},
        ],
    )
    rows = [
        (user("same"), "first"),
        (user("other"), "o"),
        (user("same"), "second"),
        (user("same"), "third"),
        (user("same"), "fourth"),
    ]
    res = write_results(tmp_path / "r.parquet", rows)
    out = tmp_path / "out.jsonl"
    problems, (counts, missing) = run_mapping(tmp_path, src, [res], out)
    assert [(x["id"], x["text"]) for x in read_jsonl(out)] == [
        ("a", "first"),
        ("b", "o"),
        ("c", "second"),
        ("d", "third"),
    ]
    assert [str(p) for p in problems] == [
        "r.parquet line 5: result row matches no input request (or one already answered)"
    ]
    assert counts[0].unmatched == 1
    assert missing == []


def test_inputs_without_a_row_are_listed_with_their_in_lines(tmp_path: Path) -> None:
    src = write_in(
        tmp_path, [{"id": 1, "messages": "a"}, "{bad", {"id": 2, "messages": "b"}, {"id": 3, "messages": "c"}]
    )
    res = write_results(tmp_path / "r.parquet", [(user("b"), "B")])
    _, (_, missing) = run_mapping(tmp_path, src, [res], tmp_path / "out.jsonl")
    assert missing == [(1, 1), (3, 4)]


def test_unreadable_rows_are_problems_and_the_rest_is_written(tmp_path: Path) -> None:
    src = write_in(tmp_path, [{"id": 1, "messages": "a"}, {"id": 2, "messages": "b"}])
    rows = [("not json", "x"), (json.dumps([{"role": "user", "text": "b"}]), None), (json.dumps(user("a")), "A")]
    res = write_results(tmp_path / "r.parquet", rows, request_type=pa.string())
    out = tmp_path / "out.jsonl"
    problems, _ = run_mapping(tmp_path, src, [res], out)
    assert [(p.file, p.line) for p in problems] == [("r.parquet", 1), ("r.parquet", 2)]
    assert "unreadable result row" in problems[0].message
    assert "'response' is neither a string nor a struct" in problems[1].message
    assert read_jsonl(out) == [{"id": 1, "text": "A", "status": None, "usage": None, "model_version": None}]


def test_missing_columns_are_named(tmp_path: Path) -> None:
    src = write_in(tmp_path, [{"id": 1, "messages": "a"}])
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"request": pa.array([user("a")]), "answer": pa.array(["x"])}), bad)
    with pytest.raises(ValueError, match=r"result file has no column 'response' \(columns: answer, request\)"):
        run_mapping(tmp_path, src, [bad], tmp_path / "out.jsonl")


def test_a_rerun_after_a_crash_replays_the_same_matching(tmp_path: Path) -> None:
    src = write_in(tmp_path, [{"id": i, "messages": "same" if i % 2 else f"q{i}"} for i in range(10)])
    rows = [(user("same" if i % 2 else f"q{i}"), f"answer {i}") for i in range(10)]
    random.Random(3).shuffle(rows)
    files = [write_results(tmp_path / "r1.parquet", rows[:6]), write_results(tmp_path / "r2.parquet", rows[6:])]
    whole = tmp_path / "whole.jsonl"
    run_mapping(tmp_path, src, files, whole)
    expected = read_jsonl(whole)
    # a crash after 4 lines, the 5th torn mid-write
    data = whole.read_bytes().split(b"\n")
    crashed = tmp_path / "crashed.jsonl"
    crashed.write_bytes(b"\n".join(data[:4]) + b"\n" + data[4][:9])
    problems, (counts, missing) = run_mapping(tmp_path, src, files, crashed)
    assert [str(p) for p in problems] == ["output line 5: incomplete last line (an interrupted write) removed"]
    assert read_jsonl(crashed) == expected
    assert sum(c.already for c in counts) == 4
    assert sum(c.written for c in counts) == 6
    assert missing == []


def test_results_are_read_a_batch_at_a_time(tmp_path: Path) -> None:
    """24 MB of answers in 24 row groups map with a few MB of Arrow memory (a fresh process measures it)."""
    script = textwrap.dedent(
        f"""
        import json, pyarrow as pa, pyarrow.parquet as pq
        from yandexgpt_grpc._batch import _Output
        from yandexgpt_grpc._cloud_batch_files import RequestIndex, map_results
        tmp = {str(tmp_path)!r}
        msg = pa.struct([("role", pa.string()), ("text", pa.string())])
        schema = pa.schema([("request", pa.list_(msg)), ("response", pa.string())])
        with open(tmp + "/in.jsonl", "w") as f, pq.ParquetWriter(tmp + "/r.parquet", schema) as w:
            for g in range(24):
                ids = range(g * 500, g * 500 + 500)
                for i in ids:
                    f.write(json.dumps({{"id": i, "messages": f"q{{i}}"}}) + "\\n")
                w.write_table(pa.table({{
                    "request": pa.array([[{{"role": "user", "text": f"q{{i}}"}}] for i in ids], type=pa.list_(msg)),
                    "response": pa.array([str(i) * (2000 // len(str(i))) for i in ids]),
                }}, schema=schema))
        base = pa.default_memory_pool().max_memory()
        index = RequestIndex.build(tmp + "/in.jsonl", tmp + "/index.sqlite")
        out = _Output(tmp + "/out.jsonl")
        counts = map_results(tmp + "/r.parquet", index, out, [])
        out.close()
        print(json.dumps([counts.written, pa.default_memory_pool().max_memory(), base]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    written, peak, base = json.loads(result.stdout)
    assert written == 12_000
    assert os.path.getsize(tmp_path / "out.jsonl") > 24_000_000
    assert peak < max(base, 0) + 12 * 1024 * 1024, (peak, base)


def test_without_pyarrow_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_in(tmp_path, [{"id": 1, "messages": "a"}])
    res = write_results(tmp_path / "r.parquet", [(user("a"), "A")])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"pip install 'yandexgpt-grpc\[batch\]'") as info:
        run_mapping(tmp_path, src, [res], tmp_path / "out.jsonl")
    assert str(info.value) == PYARROW_MISSING
    # converting IN needs no pyarrow
    os.unlink(convert_input(src, dest_dir=tmp_path).path)


def test_ids_cost_disk_not_memory(tmp_path: Path) -> None:
    """The duplicate-id check and the index keep ids in SQLite: memory stays flat as lines grow."""

    def peaks(lines: int) -> tuple[int, int]:
        src = tmp_path / f"in{lines}.jsonl"
        with open(src, "w", encoding="utf-8") as f:
            for i in range(lines):
                f.write(json.dumps({"id": f"request-{i:08d}-{'x' * 40}", "messages": "q"}) + "\n")
        tracemalloc.start()
        try:
            conv = convert_input(src, dest_dir=tmp_path)
            _, convert_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            with RequestIndex.build(src, tmp_path / f"index{lines}.sqlite"):
                _, index_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        os.unlink(conv.path)
        assert conv.count == lines
        return convert_peak, index_peak

    small, large = peaks(300), peaks(3000)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".ids")]  # the scratch id store is gone
    # 2 700 more such ids in a dict would take ~350 kB; the line-number array takes 4 bytes a line
    assert large[0] - small[0] < 150_000, (small, large)
    assert large[1] - small[1] < 150_000, (small, large)
