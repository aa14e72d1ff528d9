"""A first end-to-end check of both clients against the emulator."""

from __future__ import annotations

from yandexgpt_grpc import AlternativeStatus, Message

from .conftest import Harness


async def test_complete_and_stream(harness: Harness) -> None:
    messages = [Message.system("Translate the text"), Message.user("To be, or not to be: that is the question.")]
    result = await harness.complete("yandexgpt-lite", messages)
    assert result.status is AlternativeStatus.FINAL
    alts, stream = await harness.collect("yandexgpt-lite", messages)
    assert alts[-1].is_final
    assert "".join(a.delta for a in alts) == alts[-1].text == stream.final.text == result.text
