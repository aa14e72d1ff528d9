"""Tokenizer: Tokenize and TokenizeCompletion through both clients."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from yandexgpt_grpc import InvalidArgumentError, Message, Token, TokenizeResult, ToolCall, UnavailableError, _retry
from yandexgpt_grpc.testing import Emulator, tokenize

from .conftest import FOLDER, Harness

TEXT = "To be, or not to be: that is the question."


async def test_tokenize_text(harness: Harness, emu: Emulator) -> None:
    result = await harness.call("tokenize", "yandexgpt-lite", TEXT)
    assert isinstance(result, TokenizeResult)
    assert [(t.id, t.text) for t in result.tokens] == tokenize(TEXT)
    assert "".join(t.text for t in result) == TEXT
    assert len(result) == result.count == len(tokenize(TEXT)) > 0
    assert all(isinstance(t, Token) and not t.special for t in result.tokens)
    assert result.model_version == "emulator-1.0" and result.request_id and result.trace_id
    assert result.raw is not None
    [call] = emu.calls_for("Tokenize")
    assert call.request.model_uri == f"gpt://{FOLDER}/yandexgpt-lite/latest" and call.request.text == TEXT
    assert call.client_request_id


async def test_tokenize_messages_counts_what_a_completion_bills(harness: Harness, emu: Emulator) -> None:
    messages = [Message.system("Translate the text"), Message.user(TEXT)]
    tokens = await harness.call("tokenize_messages", "yandexgpt/rc", messages)
    result = await harness.complete("yandexgpt/rc", messages)
    assert tokens.count == result.usage.input_tokens > 0
    assert [t.text for t in tokens] == [t for _, t in tokenize("Translate the text") + tokenize(TEXT)]
    [call] = emu.calls_for("TokenizeCompletion")
    assert call.request.model_uri == f"gpt://{FOLDER}/yandexgpt/rc"
    assert [m.role for m in call.request.messages] == ["system", "user"]


async def test_tokenize_messages_sends_the_options(harness: Harness, emu: Emulator) -> None:
    def search(query: str) -> str:
        """Search the web."""
        return query

    await harness.call(
        "tokenize_messages", "yandexgpt-lite", "hi", tools=[search], response_format={"type": "object"}, max_tokens=5
    )
    req = emu.calls_for("TokenizeCompletion")[0].request
    assert [t.function.name for t in req.tools] == ["search"] and req.HasField("json_schema")
    assert req.completion_options.max_tokens.value == 5


async def test_tool_turns_are_tokenized(harness: Harness) -> None:
    messages = [
        Message.user("weather?"),
        Message.assistant(tool_calls=[ToolCall("weather", {"city": "Oslo"})]),
        Message.tool_result("weather", "rain"),
    ]
    tokens = await harness.call("tokenize_messages", "yandexgpt-lite", messages)
    joined = "".join(t.text for t in tokens)
    assert joined.startswith("weather?") and "Oslo" in joined and joined.endswith("rain")


async def test_errors_and_retries(harness: Harness, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(_retry, "sleep", slept.append)

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(_retry, "asleep", asleep)
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, method="Tokenize")
    assert (await harness.call("tokenize", "yandexgpt-lite", "hi")).count == 1
    assert len(slept) == 1 and len(emu.calls_for("Tokenize")) == 2
    emu.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT, "emulator: bad text", method="TokenizeCompletion")
    with pytest.raises(InvalidArgumentError, match="bad text"):
        await harness.call("tokenize_messages", "yandexgpt-lite", "hi")
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, method="Tokenize")
    with pytest.raises(UnavailableError):
        await harness.call("tokenize", "yandexgpt-lite", "hi", retry=None)


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error", "match"),
    [
        ("tokenize", ("yandexgpt-lite", b"bytes"), {}, TypeError, "text must be a str"),
        ("tokenize", ("", "hi"), {}, ValueError, "model is empty"),
        ("tokenize", ("yandexgpt-lite", "hi"), {"timeout": 0}, ValueError, "timeout"),
        ("tokenize_messages", ("yandexgpt-lite", []), {}, ValueError, "messages is empty"),
        ("tokenize_messages", ("yandexgpt-lite", "hi"), {"tool_choice": "nope"}, ValueError, "tool_choice"),
        ("tokenize_messages", ("yandexgpt-lite", "hi"), {"reasoning_mode": "loud"}, ValueError, "reasoning_mode"),
    ],
)
async def test_bad_input_rejected_before_io(
    harness: Harness, emu: Emulator, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        await harness.call(method, *args, **kwargs)
    assert emu.calls == []


async def test_short_name_needs_a_folder(make_harness: Any, emu: Emulator) -> None:
    h = make_harness(folder_id=None)
    with pytest.raises(ValueError, match="YC_FOLDER_ID"):
        await h.call("tokenize", "yandexgpt-lite", "hi")
    assert emu.calls == []
