"""Client and AsyncClient against the emulator: results, streams, messages, URIs, headers, validation."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import grpc
import pytest

import yandexgpt_grpc
from yandexgpt_grpc import (
    Alternative,
    AlternativeStatus,
    AsyncClient,
    AsyncCompletionStream,
    Client,
    CompletionStream,
    Message,
    StreamConsumedError,
    TextReset,
    ToolCall,
)
from yandexgpt_grpc.testing import Emulator, Reply

from .conftest import API_KEY, FOLDER, Harness

TRANSLATE = [Message.system("Translate the text"), Message.user("To be, or not to be: that is the question.")]


# --- results ---------------------------------------------------------------------------------


async def test_complete_returns_typed_result(harness: Harness, emu: Emulator) -> None:
    result = await harness.complete("yandexgpt-lite", TRANSLATE, temperature=0.1, max_tokens=1000)
    assert result.status is AlternativeStatus.FINAL
    assert "To be, or not to be" in result.text
    assert "Translate the text" in result.text  # the emulator shows the system prompt
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.completion_tokens > 0
    assert result.model_version == "emulator-1.0"
    (call,) = emu.calls
    assert result.request_id == call.request_id
    assert result.trace_id == call.trace_id
    assert call.request.completion_options.stream is False
    assert call.request.completion_options.temperature.value == pytest.approx(0.1)
    assert call.request.completion_options.max_tokens.value == 1000
    assert result.raw is not None and result.raw.model_version == "emulator-1.0"


async def test_to_dict_has_the_rest_shape(harness: Harness) -> None:
    result = await harness.complete("yandexgpt-lite", "Hello")
    data = result.to_dict()
    assert data["alternatives"] == [
        {"message": {"role": "assistant", "text": result.text}, "status": "ALTERNATIVE_STATUS_FINAL"}
    ]
    assert data["usage"]["inputTextTokens"] == str(result.usage.input_tokens)
    assert data["usage"]["totalTokens"] == str(result.usage.total_tokens)
    assert data["modelVersion"] == "emulator-1.0"


async def test_truncated_final_when_max_tokens_hit(harness: Harness) -> None:
    result = await harness.complete("yandexgpt-lite", "Tell me a long story about the sea", max_tokens=3)
    assert result.status is AlternativeStatus.TRUNCATED_FINAL
    assert result.usage.completion_tokens == 3


# --- streams ---------------------------------------------------------------------------------


async def test_stream_yields_partials_then_final(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["Hel", "lo, ", "wor", "ld 😈\r\n"]))
    alts, stream = await harness.collect("yandexgpt-lite", "hi")
    assert [a.status for a in alts] == [AlternativeStatus.PARTIAL] * 4 + [AlternativeStatus.FINAL]
    assert [a.text for a in alts[:4]] == ["Hel", "Hello, ", "Hello, wor", "Hello, world 😈\r\n"]
    assert [a.delta for a in alts] == ["Hel", "lo, ", "wor", "ld 😈\r\n", ""]
    assert "".join(a.delta for a in alts) == alts[-1].text == "Hello, world 😈\r\n"
    assert not any(a.replaced for a in alts)
    assert alts[-1].is_final and not alts[0].is_final
    final = stream.final
    assert final is not None and final.text == "Hello, world 😈\r\n" and final.status is AlternativeStatus.FINAL
    assert stream.request_id == emu.calls[0].request_id
    assert stream.model_version == "emulator-1.0"
    assert stream.usage == final.usage
    assert emu.calls[0].request.completion_options.stream is True


async def test_stream_replacement_is_flagged_not_garbled(harness: Harness, emu: Emulator) -> None:
    emu.enqueue(
        "Completion",
        Reply(chunks=["Some risky", " text"], status="CONTENT_FILTER", final_text="[filtered]"),
    )
    alts, stream = await harness.collect("yandexgpt-lite", "hi")
    last = alts[-1]
    assert last.status is AlternativeStatus.CONTENT_FILTER and last.is_final
    assert last.replaced is True
    assert last.delta == last.text == "[filtered]"
    assert stream.final.text == "[filtered]"


async def test_text_stream_marks_replacement(kind: str, harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["ab", "c"], status="CONTENT_FILTER", final_text="xyz"))
    stream = harness.stream("yandexgpt-lite", "hi")
    if isinstance(stream, AsyncCompletionStream):
        items = [item async for item in stream.text_stream]
    else:
        items = await asyncio.to_thread(lambda: list(stream.text_stream))
    assert items == ["ab", "c", "xyz"]
    assert isinstance(items[-1], TextReset) and not isinstance(items[0], TextReset)


async def test_stream_tool_calls_status(harness: Harness, emu: Emulator) -> None:
    emu.enqueue(
        "Completion",
        Reply(
            chunks=[], status="TOOL_CALLS", tool_calls=[{"name": "weather", "arguments": {"city": "Moscow", "days": 2}}]
        ),
    )
    alts, stream = await harness.collect("yandexgpt-lite", "weather?")
    assert alts[-1].status is AlternativeStatus.TOOL_CALLS
    assert alts[-1].tool_calls == (ToolCall("weather", {"city": "Moscow", "days": 2}),)
    assert stream.final.tool_calls == alts[-1].tool_calls


async def test_get_final_drains(kind: str, harness: Harness) -> None:
    stream = harness.stream("yandexgpt-lite", "hello")
    if isinstance(stream, AsyncCompletionStream):
        final = await stream.get_final()
    else:
        final = await asyncio.to_thread(stream.get_final)
    assert final.status is AlternativeStatus.FINAL and "hello" in final.text


async def test_breaking_out_cancels_the_rpc(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=[f"w{i} " for i in range(50)], between=0.05))
    stream = harness.stream("yandexgpt-lite", "hi")
    first = await asyncio.wait_for(harness.next(stream), 5)
    assert first.text == "w0 "
    await harness.close_stream(stream)
    assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 1.0)
    assert emu.calls[0].responses_sent < 50


async def test_stream_context_manager_cancels(kind: str, harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["a"] * 40, between=0.05))
    stream = harness.stream("yandexgpt-lite", "hi")
    if isinstance(stream, AsyncCompletionStream):
        async with stream:
            await stream.__anext__()
    else:

        def run() -> None:
            assert isinstance(stream, CompletionStream)
            with stream:
                next(stream)

        await asyncio.to_thread(run)
    assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 1.0)


# --- messages and model URIs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [
        [Message.system("Be brief"), Message.user("Hi"), Message.assistant("Hello"), Message.user("How are you?")],
        [
            {"role": "system", "text": "Be brief"},
            {"role": "user", "text": "Hi"},
            {"role": "assistant", "text": "Hello"},
            {"role": "user", "text": "How are you?"},
        ],
    ],
    ids=["Message", "dict"],
)
async def test_message_forms(harness: Harness, emu: Emulator, messages: Any) -> None:
    await harness.complete("yandexgpt-lite", messages)
    sent = [(m.role, m.text) for m in emu.calls[0].request.messages]
    assert sent == [("system", "Be brief"), ("user", "Hi"), ("assistant", "Hello"), ("user", "How are you?")]


async def test_plain_string_is_one_user_message(harness: Harness, emu: Emulator) -> None:
    await harness.complete("yandexgpt-lite", "Just a question")
    assert [(m.role, m.text) for m in emu.calls[0].request.messages] == [("user", "Just a question")]


@pytest.mark.parametrize(
    ("model", "uri"),
    [
        ("yandexgpt-lite", f"gpt://{FOLDER}/yandexgpt-lite/latest"),
        ("yandexgpt/rc", f"gpt://{FOLDER}/yandexgpt/rc"),
        ("yandexgpt-lite/latest", f"gpt://{FOLDER}/yandexgpt-lite/latest"),
        (f"gpt://{FOLDER}/llama/latest", f"gpt://{FOLDER}/llama/latest"),
        (f"ds://{FOLDER}-tuned-model", f"ds://{FOLDER}-tuned-model"),
    ],
)
async def test_model_uri_expansion(harness: Harness, emu: Emulator, model: str, uri: str) -> None:
    await harness.complete(model, "hi")
    assert emu.calls[0].request.model_uri == uri


# --- headers ----------------------------------------------------------------------------------


async def test_headers_with_api_key(make_harness: Any, emu: Emulator) -> None:
    h = make_harness(metadata={"x-custom": "yes"}, data_logging=False)
    await h.complete("yandexgpt-lite", "hi")
    alts, _ = await h.collect("yandexgpt-lite", "hi")
    assert alts
    unary, streamed = emu.calls
    for call in (unary, streamed):
        assert call.header("authorization") == f"Api-Key {API_KEY}"
        assert call.header("x-folder-id") is None  # an API key's own folder applies
        assert call.header("x-data-logging-enabled") == "false"
        assert call.header("x-custom") == "yes"
        assert (call.header("user-agent") or "").startswith(f"yandexgpt-grpc/{yandexgpt_grpc.__version__} ")
        assert uuid.UUID(call.header("x-client-request-id") or "").version == 4
    assert unary.header("x-client-request-id") != streamed.header("x-client-request-id")


async def test_headers_with_iam_token(make_harness: Any, emu: Emulator) -> None:
    h = make_harness(api_key=None, iam_token="  t1.iam-token-value\n", data_logging=True)
    await h.complete("yandexgpt-lite", "hi", metadata=[("x-per-call", "1")])
    (call,) = emu.calls
    assert call.header("authorization") == "Bearer t1.iam-token-value"
    assert call.header("x-folder-id") == FOLDER
    assert call.header("x-data-logging-enabled") == "true"
    assert call.header("x-per-call") == "1"


async def test_environment_fallbacks(kind: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "env-key")
    monkeypatch.setenv("YC_FOLDER_ID", "b1genvfolder")
    monkeypatch.setenv("YANDEXGPT_ENDPOINT", emu.address)
    client: Client | AsyncClient = AsyncClient(insecure=True) if kind == "async" else Client(insecure=True)
    h = Harness(kind, client)
    try:
        await h.complete("yandexgpt-lite", "hi")
    finally:
        await h.close()
    (call,) = emu.calls
    assert call.header("authorization") == "Api-Key env-key"
    assert call.request.model_uri == "gpt://b1genvfolder/yandexgpt-lite/latest"
    assert client.endpoint == emu.address and client.folder_id == "b1genvfolder"


# --- validation before any I/O ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "messages", "options", "error", "match"),
    [
        ("yandexgpt-lite", [], {}, ValueError, "messages is empty"),
        ("yandexgpt-lite", [{"role": "robot", "text": "x"}], {}, ValueError, "unknown role 'robot'"),
        ("yandexgpt-lite", [{"role": "user", "text": {"image": 1}}], {}, TypeError, "only text content"),
        ("yandexgpt-lite", [42], {}, TypeError, r"messages\[0\]"),
        ("yandexgpt-lite", "hi", {"temperature": 1.5}, ValueError, r"temperature must be in \[0, 1\]"),
        ("yandexgpt-lite", "hi", {"temperature": -0.1}, ValueError, r"temperature must be in \[0, 1\]"),
        ("yandexgpt-lite", "hi", {"max_tokens": 0}, ValueError, "max_tokens must be a positive int"),
        ("yandexgpt-lite", "hi", {"max_tokens": 2.5}, TypeError, "max_tokens must be a positive int"),
        ("yandexgpt-lite", "hi", {"temprature": 0.5}, TypeError, "unexpected option"),
        ("", "hi", {}, ValueError, "model is empty"),
        ("http://x/y", "hi", {}, ValueError, "unknown scheme"),
        ("yandexgpt-lite", "hi", {"timeout": -1}, ValueError, "timeout must be a positive"),
    ],
)
async def test_bad_input_rejected_before_io(
    harness: Harness, emu: Emulator, model: str, messages: Any, options: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        await harness.complete(model, messages, **options)
    with pytest.raises(error, match=match):
        harness.stream(model, messages, **options)
    assert emu.calls == []


async def test_short_model_needs_a_folder(make_harness: Any, emu: Emulator) -> None:
    h = make_harness(folder_id=None)
    with pytest.raises(ValueError, match="YC_FOLDER_ID"):
        await h.complete("yandexgpt-lite", "hi")
    await h.complete(f"gpt://{FOLDER}/yandexgpt-lite/latest", "hi")  # a full URI needs none
    assert len(emu.calls) == 1


@pytest.mark.parametrize("client_cls", [Client, AsyncClient])
def test_no_credentials_names_the_env_vars(client_cls: type) -> None:
    with pytest.raises(ValueError, match="YC_API_KEY") as info:
        client_cls("127.0.0.1:1", insecure=True)
    assert "YC_IAM_TOKEN" in str(info.value)


@pytest.mark.parametrize("client_cls", [Client, AsyncClient])
@pytest.mark.parametrize(
    "endpoint", ["llm.api.cloud.yandex.net:443", "10.0.0.5:50051", "example.com:80", "[2001:db8::1]:443"]
)
def test_insecure_refused_for_remote_hosts_without_connecting(
    client_cls: type, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connect(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_connect)
    monkeypatch.setattr(grpc, "insecure_channel", no_connect)
    monkeypatch.setattr(grpc.aio, "insecure_channel", no_connect)
    with pytest.raises(ValueError, match="loopback"):
        client_cls(endpoint, insecure=True, api_key="k")


@pytest.mark.parametrize("client_cls", [Client, AsyncClient])
@pytest.mark.parametrize("endpoint", ["localhost:1", "127.0.0.2:1", "[::1]:1", "unix:/tmp/yandexgpt.sock"])
def test_insecure_allowed_for_loopback(client_cls: type, endpoint: str) -> None:
    client = client_cls(endpoint, insecure=True, api_key="k")
    assert client.endpoint == endpoint


# --- lifecycle ----------------------------------------------------------------------------------


async def test_close_releases_the_channel(kind: str, make_harness: Any) -> None:
    h = make_harness()
    await h.complete("yandexgpt-lite", "hi")
    await h.close()
    await h.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await h.complete("yandexgpt-lite", "hi")


def test_sync_context_manager(client_kwargs: dict[str, Any], emu: Emulator) -> None:
    with Client(**client_kwargs) as client:
        assert client.complete("yandexgpt-lite", "hi").text
        assert [a.delta for a in client.stream("yandexgpt-lite", "hi")]
    with pytest.raises(RuntimeError, match="closed"):
        client.complete("yandexgpt-lite", "hi")


async def test_async_context_manager(client_kwargs: dict[str, Any], emu: Emulator) -> None:
    async with AsyncClient(**client_kwargs) as client:
        assert (await client.complete("yandexgpt-lite", "hi")).text
        assert [a.delta async for a in client.stream("yandexgpt-lite", "hi")]
    with pytest.raises(RuntimeError, match="closed"):
        await client.complete("yandexgpt-lite", "hi")


def test_repr_shows_no_secret() -> None:
    for cls in (Client, AsyncClient):
        client = cls("127.0.0.1:1", insecure=True, api_key="super-secret-key", folder_id="b1g")
        assert "super-secret-key" not in repr(client) and "super-secret-key" not in str(client)
        assert "127.0.0.1:1" in repr(client)


# --- the two clients mirror each other: tests/test_mirror.py ------------------------------------


async def test_iterating_again_after_break_continues(kind: str, harness: Harness, emu: Emulator) -> None:
    """A second loop over a held stream picks up after the last alternative given out, none twice."""
    emu.enqueue("Completion", Reply(chunks=["a", "b", "c", "d"]))
    stream = harness.stream("yandexgpt-lite", "hi")
    if isinstance(stream, AsyncCompletionStream):
        first = []
        async for alt in stream:
            first.append(alt)
            if len(first) == 2:
                break
        rest = [alt async for alt in stream]
    else:

        def run() -> tuple[list[Alternative], list[Alternative]]:
            assert isinstance(stream, CompletionStream)
            got = []
            for alt in stream:
                got.append(alt)
                if len(got) == 2:
                    break
            return got, list(stream)

        first, rest = await asyncio.to_thread(run)
    assert [a.delta for a in first] == ["a", "b"]
    assert [a.delta for a in rest] == ["c", "d", ""] and rest[-1].is_final
    assert stream.final is not None and stream.final.text == "abcd"
    # A loop after the end is a mistake (issue 16 item 13), not an empty loop.
    with pytest.raises(StreamConsumedError, match="read to its end"):
        if isinstance(stream, AsyncCompletionStream):
            [alt async for alt in stream]
        else:
            list(stream)
    assert not emu.calls[0].cancelled


async def test_next_inside_a_loop_keeps_the_deltas(kind: str, harness: Harness, emu: Emulator) -> None:
    """next()/anext() on the stream inside a loop over it: the loop's next delta follows what next() took."""
    emu.enqueue("Completion", Reply(chunks=["a", "b", "c", "d", "e"]))
    stream = harness.stream("yandexgpt-lite", "hi")
    if isinstance(stream, AsyncCompletionStream):
        seen = []
        async for alt in stream:
            seen.append(alt)
            if len(seen) == 2:  # the loop's generator is past its first response
                seen.append(await anext(stream))
    else:

        def run() -> list[Alternative]:
            assert isinstance(stream, CompletionStream)
            got = []
            for alt in stream:
                got.append(alt)
                if len(got) == 2:
                    got.append(next(stream))
            return got

        seen = await asyncio.to_thread(run)
    assert [a.delta for a in seen] == ["a", "b", "c", "d", "e", ""]
    assert [a.text for a in seen][-1] == "abcde" and not any(a.replaced for a in seen)
