"""Answers that are not what they seem (issue 17 items 4, 5, 10): a non-final answer counted as a
success, an unknown status number, a unary complete() that waits for a status that never comes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from yandexgpt_grpc import (
    AlternativeStatus,
    APIError,
    AsyncClient,
    Client,
    IncompleteStreamError,
    StreamInterruptedError,
    UnavailableError,
    arun_batch,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc.testing import Emulator, Reply

from ._faultnet import RawH2Server, Step, goaway, headers, hold, message, trailers
from .conftest import API_KEY, FOLDER, Harness

MODEL = "yandexgpt-lite"


def answer(text: str, status: int) -> bytes:
    resp = tg_pb2.CompletionResponse(model_version="raw-1")
    alt = resp.alternatives.add()
    alt.message.role = "assistant"
    alt.message.text = text
    alt.status = status  # type: ignore[assignment]  # any number: the wire allows it
    return resp.SerializeToString()


@pytest.fixture
def raw() -> Iterator[Callable[[Sequence[Step]], str]]:
    """A raw-bytes server answering every request with the same steps."""
    servers: list[RawH2Server] = []

    def start(steps: Sequence[Step]) -> str:
        server = RawH2Server(lambda n: steps)
        servers.append(server)
        return server.address

    yield start
    for server in servers:
        server.close()


# --- item 5: a missing final alternative is incomplete everywhere -----------------------------------


async def test_complete_treats_a_missing_final_like_the_stream(harness: Harness, emu: Emulator) -> None:
    cut = Reply(chunks=["cut ", "sho"], status="PARTIAL", final_text="cut sho")
    emu.enqueue("Completion", cut)
    with pytest.raises(IncompleteStreamError) as unary:
        await harness.complete(MODEL, "hi")
    emu.enqueue("Completion", cut)
    with pytest.raises(IncompleteStreamError) as streamed:
        await harness.collect(MODEL, "hi")
    for info in (unary, streamed):
        assert info.value.partial is not None
        assert info.value.partial.text == "cut sho" and info.value.partial.status is AlternativeStatus.PARTIAL


async def test_batch_writes_a_missing_final_as_incomplete_and_retries_it_on_a_rerun(
    emu: Emulator, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": "cut", "messages": "hi"}) + "\n", encoding="utf-8")
    emu.enqueue("Completion", Reply(status="PARTIAL", final_text="cut sho"))
    async with AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER) as client:
        first = await arun_batch(client, inp, out, model=MODEL)
        (line,) = out.read_text(encoding="utf-8").splitlines()
        assert json.loads(line) == {
            "id": "cut",
            "error": {
                "code": "INCOMPLETE",
                "message": "the answer has no final alternative; the text may be cut short",
                "partial": "cut sho",
            },
        }
        assert first.failed == 1 and first.succeeded == 0
        second = await arun_batch(client, inp, out, model=MODEL)  # no --retry-failed needed
    (line,) = out.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["status"] == "FINAL" and record["text"].startswith("You said")
    assert second.succeeded == 1 and second.skipped == 0


# --- item 5: an unknown status number stays distinct and ends an alternative ----------------------


async def test_an_unknown_status_is_kept_with_its_number(
    make_harness: Callable[..., Harness], raw: Callable[[Sequence[Step]], str]
) -> None:
    address = raw([headers(), message(answer("a", 1)), message(answer("ab", 9)), trailers(0)])
    h = make_harness(endpoint=address, retry=None)
    alts, stream = await h.collect(MODEL, "hi")
    assert [a.status for a in alts] == [AlternativeStatus.PARTIAL, 9]
    final = stream.final
    assert final is not None and final.text == "ab"
    assert final.status.is_unknown and final.status.name == "UNKNOWN" and int(final.status) == 9
    assert final.status is not AlternativeStatus.UNSPECIFIED and final.alternative.is_final
    assert repr(final.status) == "<AlternativeStatus.UNKNOWN: 9>"
    # complete() reads the last answer the same way
    h2 = make_harness(endpoint=raw([headers(), message(answer("ab", 9)), trailers(0)]), retry=None)
    result = await h2.complete(MODEL, "hi")
    assert result.text == "ab" and result.status.is_unknown and int(result.status) == 9


async def test_unspecified_still_does_not_end_an_alternative(
    make_harness: Callable[..., Harness], raw: Callable[[Sequence[Step]], str]
) -> None:
    h = make_harness(endpoint=raw([headers(), message(answer("ab", 0)), trailers(0)]), retry=None)
    with pytest.raises(IncompleteStreamError):
        await h.complete(MODEL, "hi")
    with pytest.raises(IncompleteStreamError):
        await h.collect(MODEL, "hi")


# --- item 10: FINAL text, then the status is lost -------------------------------------------------


@pytest.mark.parametrize("last", ["final", "partial"])
async def test_a_lost_status_after_final_text_exposes_the_result(
    make_harness: Callable[..., Harness], raw: Callable[[Sequence[Step]], str], last: str
) -> None:
    status = AlternativeStatus.FINAL if last == "final" else AlternativeStatus.PARTIAL
    steps = [headers(), message(answer("do", 1)), message(answer("done", status)), Step("sleep", seconds=0.3)]
    steps.append(Step("close"))  # the connection dies before the closing status
    h = make_harness(endpoint=raw(steps), retry=None)
    stream = h.stream(MODEL, "hi")
    with pytest.raises(StreamInterruptedError) as info:
        async for _ in h.iterate(stream):
            pass
    err = info.value
    assert isinstance(err, UnavailableError)
    assert err.partial is not None and err.partial.text == "done" and err.partial.status is status
    if last == "final":
        assert err.final is not None
        assert err.final.text == "done" and err.final.status is AlternativeStatus.FINAL
        assert err.final.model_version == "raw-1"
    else:
        assert err.final is None  # the text may be cut short: no result to offer
    assert stream.final is None  # the stream itself did not end


# --- item 4: AsyncClient.complete() reads the answer as the stream it is, like Client.complete() -------

ODD_ANSWERS = {
    "two messages": [headers(), message(answer("a", 3)), message(answer("ab", 3)), trailers(0)],
    "abort after a message": [headers(), message(answer("a", 3)), trailers(13, "boom")],
    "GOAWAY after a message": [headers(), message(answer("a", 3)), goaway(0), Step("close")],
    "no status": [headers(), message(answer("a", 3)), hold()],
}


async def _outcome(h: Harness) -> tuple[str, float]:
    started = time.monotonic()
    try:
        result = await h.complete(MODEL, "hi", timeout=2.0, retry=None)
        what = f"ok {result.text!r}"
    except APIError as exc:
        what = f"{type(exc).__name__} {exc.code.name}"
    return what, time.monotonic() - started


@pytest.mark.parametrize("case", list(ODD_ANSWERS))
async def test_async_complete_behaves_like_the_blocking_client(raw: Callable[[Sequence[Step]], str], case: str) -> None:
    address = raw(ODD_ANSWERS[case])
    sync = Harness("sync", Client(address, insecure=True, api_key=API_KEY, folder_id=FOLDER))
    aio = Harness("async", AsyncClient(address, insecure=True, api_key=API_KEY, folder_id=FOLDER))
    try:
        (blocking, b_time), (asyncio_, a_time) = await asyncio.gather(_outcome(sync), _outcome(aio))
    finally:
        await sync.close()
        await aio.close()
    assert asyncio_ == blocking
    if case != "no status":  # the one case where both must wait for the deadline
        assert a_time < 1.0 and b_time < 1.0
    else:
        assert blocking == "DeadlineExceededError DEADLINE_EXCEEDED"
