"""yandexgpt_grpc.otel: GenAI spans and metrics, asserted attribute by attribute with the SDK's in-memory exporters.

Every client test runs for Client and AsyncClient (the `harness` fixture); the emulator is real grpc on loopback.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from yandexgpt_grpc import (
    AsyncClient,
    Message,
    RetryPolicy,
    StreamInterruptedError,
    ToolCall,
    ToolResult,
    _retry,
    arun_batch,
    otel,
    run_batch,
)
from yandexgpt_grpc.testing import Emulator, Fault, OperationScript, Reply

from .conftest import API_KEY, FOLDER, Harness

MODEL = f"gpt://{FOLDER}/yandexgpt-lite/latest"
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.001)


class Telemetry:
    """The SDK wired to in-memory exporters, with helpers to read what was recorded."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    yield t
    otel.uninstrument()


def server(emu: Emulator) -> dict[str, Any]:
    host, port = emu.address.rsplit(":", 1)
    return {"server.address": host, "server.port": int(port)}


def chat_attrs(emu: Emulator, **extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "yandex",
        "gen_ai.request.model": MODEL,
        **server(emu),
        **extra,
    }


def metric_attrs(emu: Emulator, operation: str = "chat", **extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "yandex",
        "gen_ai.request.model": MODEL,
        **server(emu),
        **extra,
    }


def every_string(t: Telemetry) -> list[str]:
    """Every span name, attribute, event, status and metric attribute, as text."""
    out: list[str] = []
    for span in t.spans():
        out += [span.name, json.dumps(dict(span.attributes or {}), default=str), str(span.status.description)]
        for event in span.events:
            out += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        out += [json.dumps(dict(p.attributes), default=str) for p in t.points(name)]
    return out


# -- a unary call -------------------------------------------------------------------------------


async def test_unary_call_span_and_metrics(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    result = await harness.complete("yandexgpt-lite", "hello there", temperature=0.25, max_tokens=64)
    span = telemetry.span()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == chat_attrs(
        emu,
        **{
            "gen_ai.request.temperature": 0.25,
            "gen_ai.request.max_tokens": 64,
            "gen_ai.response.model": result.model_version,
            "gen_ai.response.finish_reasons": ("final",),
            "gen_ai.usage.input_tokens": result.usage.input_tokens,
            "gen_ai.usage.output_tokens": result.usage.completion_tokens,
        },
    )
    assert result.model_version and result.usage.completion_tokens > 0
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()

    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == metric_attrs(emu, **{"gen_ai.response.model": result.model_version})
    assert duration.count == 1
    assert 0 < duration.sum < 10
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    assert span.end_time is not None and span.start_time is not None
    assert duration.sum <= (span.end_time - span.start_time) / 1e9 + 0.01

    tokens = {p.attributes["gen_ai.token.type"]: p for p in telemetry.points("gen_ai.client.token.usage")}
    assert set(tokens) == {"input", "output"}
    for kind, value in (("input", result.usage.input_tokens), ("output", result.usage.completion_tokens)):
        point = tokens[kind]
        assert dict(point.attributes) == metric_attrs(
            emu, **{"gen_ai.response.model": result.model_version, "gen_ai.token.type": kind}
        )
        assert (point.count, point.sum) == (1, value)
        assert tuple(point.explicit_bounds) == TOKEN_BUCKETS


async def test_unary_failure_records_error_type(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    emu.fail_next(1, grpc.StatusCode.NOT_FOUND, "no such thing")
    with pytest.raises(Exception) as info:
        await harness.complete("yandexgpt-lite", "hi")
    kind = type(info.value).__name__
    assert kind == "NotFoundError"
    span = telemetry.span()
    assert dict(span.attributes or {}) == chat_attrs(emu, **{"error.type": kind})
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None and span.status.description.startswith("NotFoundError: ")
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == metric_attrs(emu, **{"error.type": kind})
    assert telemetry.points("gen_ai.client.token.usage") == []


async def test_retries_are_span_events(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    # The server's pushback fixes each wait, so the events' delays are exact.
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, pushback_ms=7)
    emu.fail_next(1, grpc.StatusCode.RESOURCE_EXHAUSTED, pushback_ms=3)
    result = await harness.complete("yandexgpt-lite", "hi")
    span = telemetry.span()
    assert [e.name for e in span.events] == ["retry", "retry"]
    assert [dict(e.attributes or {}) for e in span.events] == [
        {
            "yandexgpt.retry.attempt": 1,
            "yandexgpt.retry.code": "UNAVAILABLE",
            "rpc.grpc.status_code": 14,
            "yandexgpt.retry.delay": 0.007,
        },
        {
            "yandexgpt.retry.attempt": 2,
            "yandexgpt.retry.code": "RESOURCE_EXHAUSTED",
            "rpc.grpc.status_code": 8,
            "yandexgpt.retry.delay": 0.003,
        },
    ]
    assert span.attributes is not None
    assert span.attributes["gen_ai.response.finish_reasons"] == ("final",)
    assert span.attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert "error.type" not in span.attributes
    assert len(emu.calls_for("Completion")) == 3


async def test_a_call_inside_a_user_span_is_its_child(harness: Harness, telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handle request") as parent:
        if harness.is_async:
            await harness.complete("yandexgpt-lite", "hi")
        else:
            # The blocking client on this thread: the current span is this thread's context.
            harness.client.complete("yandexgpt-lite", "hi")  # type: ignore[union-attr]
    ours = next(s for s in telemetry.spans() if s.name.startswith("chat "))
    assert ours.parent is not None
    assert ours.parent.span_id == parent.get_span_context().span_id


# -- streams ------------------------------------------------------------------------------------


async def test_stream_ended_normally(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    alts, stream = await harness.collect("yandexgpt-lite", "stream me", temperature=0.5)
    assert alts[-1].is_final
    final = stream.final
    assert final is not None
    span = telemetry.span()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == chat_attrs(
        emu,
        **{
            "gen_ai.request.temperature": 0.5,
            "gen_ai.response.model": final.model_version,
            "gen_ai.response.finish_reasons": ("final",),
            "gen_ai.usage.input_tokens": final.usage.input_tokens,
            "gen_ai.usage.output_tokens": final.usage.completion_tokens,
        },
    )
    assert span.status.status_code is StatusCode.UNSET
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == metric_attrs(emu, **{"gen_ai.response.model": final.model_version})
    sums = {p.attributes["gen_ai.token.type"]: p.sum for p in telemetry.points("gen_ai.client.token.usage")}
    assert sums == {"input": final.usage.input_tokens, "output": final.usage.completion_tokens}


def _slow_reply() -> Reply:
    return Reply(chunks=["one ", "two ", "three ", "four"], between=0.3, usage=(5, 4, 9))


async def test_stream_closed_early(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    emu.enqueue("Completion", _slow_reply())
    stream = harness.stream("yandexgpt-lite", "hi")
    first = await harness.next(stream)
    assert first.text == "one "
    assert telemetry.spans() == []  # open while the stream is
    await harness.close_stream(stream)
    span = telemetry.span()
    usage = stream.usage  # the running totals of the last response that arrived
    assert usage is not None and usage.completion_tokens > 0
    assert dict(span.attributes or {}) == chat_attrs(
        emu,
        **{
            "gen_ai.response.model": stream.model_version,
            "gen_ai.response.finish_reasons": ("partial",),
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "yandexgpt.stream.stopped": "closed",
        },
    )
    assert span.status.status_code is StatusCode.UNSET  # closing early is not an error
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert "error.type" not in duration.attributes


async def test_stream_abandoned_ends_its_span(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    emu.enqueue("Completion", _slow_reply())
    stream = harness.stream("yandexgpt-lite", "hi")
    await harness.next(stream)
    del stream
    gc.collect()
    span = telemetry.span()
    assert span.attributes is not None
    assert span.attributes["yandexgpt.stream.stopped"] == "abandoned"
    assert span.attributes["gen_ai.response.finish_reasons"] == ("partial",)
    assert span.status.status_code is StatusCode.UNSET


async def test_stream_failing_midway_keeps_the_partial(
    harness: Harness, emu: Emulator, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.INTERNAL, details="boom", after=2, chunks=["ab", "cd"]))
    stream = harness.stream("yandexgpt-lite", "hi")
    seen = []
    with pytest.raises(StreamInterruptedError) as info:
        async for alt in harness.iterate(stream):
            seen.append(alt.text)
    # The caller's exception is unchanged: it keeps the partial, and telemetry kept it too.
    assert seen == ["ab", "abcd"]
    assert info.value.partial is not None and info.value.partial.text == "abcd"
    span = telemetry.span()
    attrs = dict(span.attributes or {})
    assert attrs.pop("gen_ai.input.messages") == json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}], separators=(",", ":")
    )
    assert json.loads(attrs.pop("gen_ai.output.messages")) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "abcd"}], "finish_reason": "partial"}
    ]
    usage = stream.usage
    assert usage is not None
    assert attrs == chat_attrs(
        emu,
        **{
            "gen_ai.response.model": stream.model_version,
            "gen_ai.response.finish_reasons": ("partial",),
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "error.type": type(info.value).__name__,
        },
    )
    assert span.status.status_code is StatusCode.ERROR
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == type(info.value).__name__


async def test_stream_retried_before_its_first_response(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, pushback_ms=2)
    await harness.collect("yandexgpt-lite", "hi")
    span = telemetry.span()
    assert [dict(e.attributes or {}) for e in span.events] == [
        {
            "yandexgpt.retry.attempt": 1,
            "yandexgpt.retry.code": "UNAVAILABLE",
            "rpc.grpc.status_code": 14,
            "yandexgpt.retry.delay": 0.002,
        }
    ]
    assert span.attributes is not None and span.attributes["gen_ai.response.finish_reasons"] == ("final",)


async def test_a_stream_started_while_instrumented_ends_its_span_after_uninstrument(
    harness: Harness, emu: Emulator, telemetry: Telemetry
) -> None:
    emu.enqueue("Completion", Reply(chunks=["a", "b"], between=0.05))
    stream = harness.stream("yandexgpt-lite", "hi")
    await harness.next(stream)
    otel.uninstrument()
    async for _ in harness.iterate(stream):
        pass
    span = telemetry.span()
    assert span.attributes is not None and span.attributes["gen_ai.response.finish_reasons"] == ("final",)
    await harness.complete("yandexgpt-lite", "not recorded")
    assert len(telemetry.spans()) == 1


# -- tokenizer, asynchronous mode ---------------------------------------------------------------


async def test_tokenize_span(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    result = await harness.call("tokenize", "yandexgpt-lite", "one two three")
    span = telemetry.span()
    assert span.name == f"tokenize {MODEL}"
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "tokenize",
        "gen_ai.provider.name": "yandex",
        "gen_ai.request.model": MODEL,
        **server(emu),
        "gen_ai.response.model": result.model_version,
        "yandexgpt.tokenize.tokens": len(result.tokens),
    }
    assert telemetry.points("gen_ai.client.token.usage") == []  # counting tokens uses none


async def test_submit_and_wait_spans(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=3))
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, method="OperationGet", pushback_ms=1)
    op = await harness.call("submit", "yandexgpt-lite", "hi", max_tokens=10)
    if harness.is_async:
        result = await op.wait(timeout=10, poll_interval=0.01)
    else:
        result = await asyncio.to_thread(op.wait, timeout=10, poll_interval=0.01)
    submit, wait = telemetry.spans()
    assert submit.name == f"submit {MODEL}"
    assert dict(submit.attributes or {}) == {
        "gen_ai.operation.name": "submit",
        "gen_ai.provider.name": "yandex",
        "gen_ai.request.model": MODEL,
        **server(emu),
        "gen_ai.request.max_tokens": 10,
        "yandexgpt.operation.id": op.id,
    }
    # One span for the whole wait: its polls are not spans of their own, their retries are its events.
    assert wait.name == "wait"
    assert wait.kind is SpanKind.CLIENT
    assert dict(wait.attributes or {}) == {
        "gen_ai.operation.name": "wait",
        "gen_ai.provider.name": "yandex",
        **server(emu),
        "yandexgpt.operation.id": op.id,
        "gen_ai.response.model": result.model_version,
        "gen_ai.response.finish_reasons": ("truncated_final",),  # max_tokens=10 cut it short
        "gen_ai.usage.input_tokens": result.usage.input_tokens,
        "gen_ai.usage.output_tokens": result.usage.completion_tokens,
    }
    assert [dict(e.attributes or {})["yandexgpt.retry.code"] for e in wait.events] == ["UNAVAILABLE"]
    assert len(emu.calls_for("OperationGet")) >= 4
    durations = {p.attributes["gen_ai.operation.name"] for p in telemetry.points("gen_ai.client.operation.duration")}
    assert durations == {"submit", "wait"}


async def test_poll_on_its_own_is_a_span(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=5))
    op = await harness.call("submit", "yandexgpt-lite", "hi")
    if harness.is_async:
        done = await op.poll()
    else:
        done = await asyncio.to_thread(op.poll)
    assert done is False
    poll = telemetry.spans()[-1]
    assert poll.name == "poll"
    assert dict(poll.attributes or {}) == {
        "gen_ai.operation.name": "poll",
        "gen_ai.provider.name": "yandex",
        **server(emu),
        "yandexgpt.operation.id": op.id,
        "yandexgpt.operation.done": False,
    }


# -- batch jobs ---------------------------------------------------------------------------------


def _batch_input(tmp_path: Path, n: int) -> tuple[Path, Path]:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [json.dumps({"id": i, "messages": f"question {i}"}) for i in range(n)]
    lines.append("not json")
    inp.write_text("\n".join(lines) + "\n")
    return inp, out


def _check_batch(t: Telemetry, emu: Emulator, n: int) -> None:
    spans = t.spans()
    (batch,) = [s for s in spans if s.name.startswith("batch")]
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert batch.name == f"batch {MODEL}"
    assert batch.kind is SpanKind.INTERNAL
    assert dict(batch.attributes or {}) == {
        "gen_ai.operation.name": "batch",
        "gen_ai.provider.name": "yandex",
        "gen_ai.request.model": MODEL,
        **server(emu),
        "yandexgpt.batch.requests": n,
        "yandexgpt.batch.total": n,
        "yandexgpt.batch.skipped": 0,
        "yandexgpt.batch.succeeded": n - 1,
        "yandexgpt.batch.failed": 1,
        "yandexgpt.batch.problems": 1,
    }
    assert batch.status.status_code is StatusCode.UNSET  # a failed line is in the output, not a failed run
    assert len(chats) == n
    assert all(c.parent is not None and c.parent.span_id == batch.context.span_id for c in chats)
    failed = [c for c in chats if c.attributes and "error.type" in c.attributes]
    assert [c.attributes["error.type"] for c in failed if c.attributes] == ["InvalidArgumentError"]
    retried = [c for c in chats if c.events]
    assert len(retried) == 1
    ops = sorted(p.attributes["gen_ai.operation.name"] for p in t.points("gen_ai.client.operation.duration"))
    assert ops.count("batch") == 1


async def test_batch_job_span(tmp_path: Path, emu: Emulator, telemetry: Telemetry) -> None:
    inp, out = _batch_input(tmp_path, 4)
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, pushback_ms=1)
    emu.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT, "bad")
    async with AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER) as client:
        summary = await arun_batch(client, inp, out, model="yandexgpt-lite", concurrency=1, retry=FAST, progress=False)
    assert (summary.succeeded, summary.failed) == (3, 1)
    _check_batch(telemetry, emu, 4)


def test_batch_job_span_blocking(tmp_path: Path, emu: Emulator, telemetry: Telemetry) -> None:
    inp, out = _batch_input(tmp_path, 3)
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, pushback_ms=1)
    emu.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT, "bad")
    summary = run_batch(
        inp,
        out,
        model="yandexgpt-lite",
        concurrency=1,
        retry=FAST,
        progress=False,
        endpoint=emu.address,
        insecure=True,
        api_key=API_KEY,
        folder_id=FOLDER,
    )
    assert (summary.succeeded, summary.failed) == (2, 1)
    _check_batch(telemetry, emu, 3)


# -- what is never recorded, and what is only on request ---------------------------------------


async def _every_kind_of_call(harness: Harness, emu: Emulator, prompt: str) -> list[str]:
    """A unary call, a retried one, a stream, a failed stream, tokenize, submit and wait; the answers."""
    answers = []
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, pushback_ms=1)
    answers.append((await harness.complete("yandexgpt-lite", prompt)).text)
    alts, _ = await harness.collect("yandexgpt-lite", [{"role": "system", "text": "be brief"}, prompt])
    answers.append(alts[-1].text)
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.INTERNAL, after=1, chunks=["secret partial"]))
    with pytest.raises(StreamInterruptedError):
        await harness.collect("yandexgpt-lite", prompt)
    answers.append("secret partial")
    await harness.call("tokenize", "yandexgpt-lite", prompt)
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=0))
    op = await harness.call("submit", "yandexgpt-lite", prompt)
    result = await op.wait(timeout=5) if harness.is_async else await asyncio.to_thread(op.wait, timeout=5)
    answers.append(result.text)
    return answers


async def test_no_secret_and_no_content_by_default(harness: Harness, emu: Emulator, telemetry: Telemetry) -> None:
    prompt = "my confidential question"
    answers = await _every_kind_of_call(harness, emu, prompt)
    text = "\n".join(every_string(telemetry))
    assert len(telemetry.spans()) == 6
    assert API_KEY not in text
    assert "Api-Key" not in text
    assert "confidential" not in text
    assert "be brief" not in text
    for answer in answers:
        assert answer and answer not in text
    assert "gen_ai.input.messages" not in text and "gen_ai.output.messages" not in text


async def test_content_only_when_asked_and_never_a_secret(
    harness: Harness, emu: Emulator, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    result = await harness.complete(
        "yandexgpt-lite", [{"role": "system", "text": "be brief"}, {"role": "user", "text": "the question"}]
    )
    span = telemetry.span()
    assert span.attributes is not None
    assert json.loads(str(span.attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "the question"}]},
    ]
    assert json.loads(str(span.attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": result.text}], "finish_reason": "final"}
    ]
    await _every_kind_of_call(harness, emu, "asked")
    assert API_KEY not in "\n".join(every_string(telemetry))


async def test_tool_calls_and_results_captured(
    harness: Harness, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    messages = [
        Message("user", "weather?"),
        Message("assistant", tool_calls=(ToolCall("weather", {"city": "Oslo"}),)),
        Message("user", tool_results=(ToolResult("weather", "sunny"),)),
    ]
    await harness.complete("yandexgpt-lite", messages)
    span = telemetry.span()
    assert span.attributes is not None
    assert json.loads(str(span.attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "name": "weather", "arguments": {"city": "Oslo"}}]},
        {"role": "user", "parts": [{"type": "tool_call_response", "name": "weather", "response": "sunny"}]},
    ]


# -- the switch ---------------------------------------------------------------------------------


def test_instrument_and_uninstrument_are_idempotent() -> None:
    t = Telemetry()
    assert not otel.is_instrumented()
    try:
        otel.instrument(t.tracer_provider, t.meter_provider)
        hooks = _retry._hooks
        assert hooks is not None and otel.is_instrumented()
        otel.instrument(TracerProvider(), MeterProvider())  # no-op while instrumented
        assert _retry._hooks is hooks
    finally:
        otel.uninstrument()
    otel.uninstrument()
    assert _retry._hooks is None and not otel.is_instrumented()


async def test_not_instrumented_records_nothing(harness: Harness) -> None:
    t = Telemetry()
    otel.instrument(t.tracer_provider, t.meter_provider)
    otel.uninstrument()
    await harness.complete("yandexgpt-lite", "hi")
    await harness.collect("yandexgpt-lite", "hi")
    assert t.spans() == []
    assert t.points("gen_ai.client.operation.duration") == []


def test_nothing_of_opentelemetry_is_imported_until_instrument(emu: Emulator) -> None:
    code = f"""
import sys
import yandexgpt_grpc, yandexgpt_grpc.otel
from yandexgpt_grpc import Client
with Client({emu.address!r}, insecure=True, api_key="k", folder_id="f") as c:
    c.complete("yandexgpt-lite", "hi")
    list(c.stream("yandexgpt-lite", "hi"))
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") or m == "yandexgpt_grpc._otel")
assert not loaded, loaded
yandexgpt_grpc.otel.instrument()  # no SDK configured: the API's no-op providers, nothing recorded
with Client({emu.address!r}, insecure=True, api_key="k", folder_id="f") as c:
    assert c.complete("yandexgpt-lite", "hi").text
    assert list(c.stream("yandexgpt-lite", "hi"))
    assert c.submit("yandexgpt-lite", "hi").wait(timeout=10, poll_interval=0.01).text
    assert "opentelemetry.trace" in sys.modules and "opentelemetry.sdk" not in sys.modules
    # An SDK configured later (the global provider) is picked up by the next call.
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert not exporter.get_finished_spans()
    c.complete("yandexgpt-lite", "hi")
    assert [s.name for s in exporter.get_finished_spans()] == ["chat gpt://f/yandexgpt-lite/latest"]
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("llm.api.cloud.yandex.net:443", ("llm.api.cloud.yandex.net", 443)),
        ("127.0.0.1:5050", ("127.0.0.1", 5050)),
        ("[::1]:5050", ("::1", 5050)),
        ("dns:///example.com:8443", ("example.com", 8443)),
        ("unix:/tmp/socket", ("unix:/tmp/socket", None)),
        ("example.com", ("example.com", None)),
    ],
)
def test_server_address_and_port(endpoint: str, expected: tuple[str, int | None]) -> None:
    from yandexgpt_grpc._otel import server_address

    assert server_address(endpoint) == expected
