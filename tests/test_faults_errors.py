"""What errors say when the server misbehaves (issue 17 items 6, 7, 10): oversized metadata,
credentials quoted back, a grpc-message that is not valid UTF-8."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from yandexgpt_grpc import (
    APIError,
    AsyncClient,
    InternalServerError,
    MessageTooLargeError,
    MetadataTooLargeError,
    RateLimitError,
    arun_batch,
)
from yandexgpt_grpc._batch import RateLimiter
from yandexgpt_grpc.testing import Emulator, Fault, Reply

from ._faultnet import RawH2Server, Step, headers, trailers
from .conftest import API_KEY, FOLDER, Harness

MODEL = "yandexgpt-lite"
BIG = [("x-big", "a" * 100_000)]


# --- item 6: metadata over the size limit is a size error, not rate limiting ----------------------


@pytest.mark.parametrize("where", ["initial_metadata", "trailing_metadata"])
@pytest.mark.parametrize("how", ["complete", "stream"])
async def test_oversized_metadata_is_a_size_error_not_retried(
    harness: Harness, emu: Emulator, where: str, how: str
) -> None:
    emu.enqueue("Completion", Reply(**{where: BIG}))
    with pytest.raises(MetadataTooLargeError) as info:
        if how == "complete":
            await harness.complete(MODEL, "hi")
        else:
            await harness.collect(MODEL, "hi")
    err = info.value
    assert isinstance(err, MessageTooLargeError) and not isinstance(err, RateLimitError)
    assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED and err.attempts == 1
    assert "grpc.absolute_max_metadata_size" in str(err)  # what to do about it
    assert len(emu.calls) == 1  # not retried


async def test_the_hint_is_true_raising_the_limits_lets_the_answer_through(
    make_harness: Callable[..., Harness], emu: Emulator
) -> None:
    limits = [("grpc.max_metadata_size", 200_000), ("grpc.absolute_max_metadata_size", 200_000)]
    h = make_harness(channel_options=limits)
    emu.enqueue("Completion", Reply(initial_metadata=BIG))
    result = await h.complete(MODEL, "hi")
    assert dict(result.initial_metadata)["x-big"] == BIG[0][1]


async def test_batch_records_oversized_metadata_once_and_keeps_its_rate(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts: list[float] = []
    monkeypatch.setattr(RateLimiter, "slow_down", lambda self, started: cuts.append(started))
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": "big", "messages": "hi"}) + "\n", encoding="utf-8")
    emu.enqueue("Completion", Reply(initial_metadata=BIG))
    async with AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER) as client:
        summary = await arun_batch(client, inp, out, model=MODEL, rps=50)
    (line,) = out.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["error"]["code"] == "RESOURCE_EXHAUSTED" and "metadata size" in record["error"]["message"]
    assert summary.failed == 1 and len(emu.calls) == 1
    assert cuts == []  # a size error says nothing about the rate


# --- item 10: grpc-message is percent-decoded, then UTF-8 with replacement ------------------------


@pytest.fixture
def raw_status() -> Iterator[Callable[[str | bytes], str]]:
    servers: list[RawH2Server] = []

    def start(message: str | bytes) -> str:
        def script(n: int) -> list[Step]:
            return [headers(), trailers(13, message)]

        server = RawH2Server(script)
        servers.append(server)
        return server.address

    yield start
    for server in servers:
        server.close()


# "Привет, мир" percent-encoded as the spec says, with one byte that is not UTF-8 in the middle.
RUSSIAN_WITH_A_BAD_BYTE = "%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82%FF, %D0%BC%D0%B8%D1%80"


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        (RUSSIAN_WITH_A_BAD_BYTE, "Привет\ufffd, мир"),
        ("%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82", "Привет"),  # valid: unchanged
        ("caf%C3%A9 100%25", "café 100%"),  # Latin-1 range text stays as it is
        ("plain ascii", "plain ascii"),
    ],
)
async def test_grpc_message_is_decoded_as_utf8_with_replacement(
    make_harness: Callable[..., Harness], raw_status: Callable[[str], str], sent: str, shown: str
) -> None:
    h = make_harness(endpoint=raw_status(sent), retry=None)
    with pytest.raises(InternalServerError) as info:
        await h.complete(MODEL, "hi")
    assert info.value.details == shown
    with pytest.raises(InternalServerError) as info:
        await h.collect(MODEL, "hi")
    assert info.value.details == shown


# --- item 7: the client's own secret never comes back through an error or an OUT line -----------

SECRET = API_KEY
QUOTED = f"auth failed for 'Api-Key {SECRET}' (also Bearer t1.someone-elses-token, key={SECRET})"


def _all_text(err: BaseException) -> Iterator[str]:
    yield str(err)
    yield repr(err)
    if isinstance(err, APIError):
        yield err.details
        yield repr(err.metadata)
        yield repr(err.initial_metadata)
        yield repr(err.trailing_metadata)
    cause = err.__cause__
    if cause is not None:
        yield str(cause)
        yield repr(cause)
        debug = getattr(cause, "debug_error_string", None)
        if callable(debug):
            yield str(debug())


@pytest.mark.parametrize("how", ["complete", "stream", "stream-after-text"])
async def test_a_quoted_secret_is_redacted_from_every_error_field(harness: Harness, emu: Emulator, how: str) -> None:
    fault = Fault(
        code=grpc.StatusCode.PERMISSION_DENIED,
        details=QUOTED,
        after=1 if how == "stream-after-text" else 0,
        trailing_metadata=[("x-echo", f"Api-Key {SECRET}"), ("x-echo-bin", f"Bearer {SECRET}".encode())],
    )
    emu.enqueue("Completion", fault)
    with pytest.raises(APIError) as info:
        if how == "complete":
            await harness.complete(MODEL, "hi")
        else:
            await harness.collect(MODEL, "hi")
    texts = list(_all_text(info.value))
    assert texts and not [t for t in texts if SECRET in t or "someone-elses-token" in t]
    # The rest of the message stays byte-exact, with a marker where each secret was.
    assert info.value.details == "auth failed for 'Api-Key <redacted>' (also Bearer <redacted>, key=<redacted>)"
    assert ("x-echo", "Api-Key <redacted>") in info.value.trailing_metadata
    assert ("x-echo-bin", b"Bearer <redacted>") in info.value.trailing_metadata


async def test_batch_out_lines_never_carry_the_secret(emu: Emulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": "leak", "messages": "hi"}) + "\n", encoding="utf-8")
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.INVALID_ARGUMENT, details=QUOTED))
    async with AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER) as client:
        await arun_batch(client, inp, out, model=MODEL)
    data = out.read_text(encoding="utf-8")
    assert SECRET not in data and "someone-elses-token" not in data
    assert json.loads(data)["error"]["message"] == (
        "auth failed for 'Api-Key <redacted>' (also Bearer <redacted>, key=<redacted>)"
    )
