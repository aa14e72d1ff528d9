"""Dead network paths (issue 17 item 1), through a TCP proxy that stalls or black-holes connections.

A path that stops passing bytes with the socket open must be found dead within seconds, and the
next call (on the same client or on a new one) must reconnect instead of riding it for grpc's
default 60 s ping timeout / 20 s connect timeout. The pings that find it must be ones a grpc
server with default settings accepts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from yandexgpt_grpc import (
    AlternativeStatus,
    AsyncClient,
    Client,
    DeadlineExceededError,
    RetryPolicy,
    StreamInterruptedError,
    YandexGPTError,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc.testing import Emulator, Reply

from ._faultnet import FaultProxy
from .conftest import API_KEY, FOLDER, Harness

MODEL = "yandexgpt-lite"
RECOVERY = 10.0  # the bound: a call succeeds within this many seconds of the fault


@pytest.fixture
def proxy(emu: Emulator) -> Iterator[FaultProxy]:
    with FaultProxy(emu.address) as p:
        yield p


async def _first_success(h: Harness, since: float, *, until: float = RECOVERY) -> float:
    """Seconds from `since` until a short complete() succeeds through the (recovering) path."""
    while True:
        try:
            result = await h.complete(MODEL, "after the fault", timeout=1.0, retry=None)
        except YandexGPTError:
            assert time.monotonic() - since < until, f"no successful call within {until:g}s of the fault"
            await asyncio.sleep(0.05)
            continue
        assert result.status is AlternativeStatus.FINAL
        return time.monotonic() - since


async def test_a_stalled_stream_does_not_poison_the_endpoint(
    make_harness: Callable[..., Harness], emu: Emulator, proxy: FaultProxy
) -> None:
    h = make_harness(endpoint=proxy.address)
    emu.enqueue("Completion", Reply(chunks=["ab", "cd", "ef", "gh"], between=0.3))
    stream = h.stream(MODEL, "hi", timeout=1.5)
    seen = [await h.next(stream), await h.next(stream)]
    proxy.stall()
    fault = time.monotonic()
    with pytest.raises(DeadlineExceededError) as info:
        while True:
            await h.next(stream)
    assert isinstance(info.value, StreamInterruptedError)
    assert info.value.partial is not None and info.value.partial.text.startswith(seen[-1].text)
    same = await _first_success(h, fault)
    # A new client must not inherit the dead connection either (no shared subchannel pool).
    fresh = await _first_success(make_harness(endpoint=proxy.address), fault)
    assert max(same, fresh) < RECOVERY


async def test_a_new_client_gets_its_own_connection(
    make_harness: Callable[..., Harness], emu: Emulator, proxy: FaultProxy
) -> None:
    first = make_harness(endpoint=proxy.address)
    await first.complete(MODEL, "one")
    proxy.stall()  # the first client's connection is dead and nothing has noticed yet
    fault = time.monotonic()
    second = make_harness(endpoint=proxy.address)
    result = await second.complete(MODEL, "two", timeout=3.0, retry=None)
    assert result.status is AlternativeStatus.FINAL
    assert time.monotonic() - fault < 3.0


async def test_attempt_timeout_retries_leave_a_dead_connection(
    make_harness: Callable[..., Harness], emu: Emulator, proxy: FaultProxy
) -> None:
    h = make_harness(endpoint=proxy.address)
    await h.complete(MODEL, "warm up")  # one healthy connection, then its path dies silently
    proxy.stall()
    fault = time.monotonic()
    policy = RetryPolicy(max_attempts=12, attempt_timeout=1.0, initial_backoff=0.1, max_backoff=0.2)
    result = await h.complete(MODEL, "retried", timeout=RECOVERY, retry=policy)
    assert result.status is AlternativeStatus.FINAL
    assert time.monotonic() - fault < RECOVERY


async def test_a_server_that_never_finishes_the_handshake(
    make_harness: Callable[..., Harness], emu: Emulator, proxy: FaultProxy
) -> None:
    proxy.blackhole = True  # TCP is accepted, HTTP/2 never answered
    h = make_harness(endpoint=proxy.address)
    with pytest.raises(YandexGPTError):
        await h.complete(MODEL, "into the void", timeout=0.5, retry=None)
    fault = time.monotonic()
    proxy.blackhole = False  # the next connection attempt would work
    await _first_success(h, fault)


# --- the pings are ones a default grpc server accepts ---------------------------------------------

_COMPLETION = "/yandex.cloud.ai.foundation_models.v1.TextGenerationService/Completion"
SILENCE = 30.0  # a long reasoning answer: the server sends nothing for this long


def _answer(text: str) -> tg_pb2.CompletionResponse:
    resp = tg_pb2.CompletionResponse(model_version="plain-1")
    alt = resp.alternatives.add()
    alt.message.role = "assistant"
    alt.message.text = text
    alt.status = AlternativeStatus.FINAL
    return resp


@pytest.fixture
def plain_server() -> Iterator[FaultProxy]:
    """A grpc.server with grpc's DEFAULT options (ping policy included): a silent answer, or none."""
    stop = threading.Event()

    def completion(request: tg_pb2.CompletionRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        text = request.messages[-1].text
        if text == "quick":
            yield _answer("at once")
            return
        if text == "silent":
            if not stop.wait(SILENCE):
                yield _answer("worth the wait")
            return
        stop.wait(SILENCE)  # "ignored": the client gives up and cancels

    handler = grpc.method_handlers_generic_handler(
        "yandex.cloud.ai.foundation_models.v1.TextGenerationService",
        {
            "Completion": grpc.unary_stream_rpc_method_handler(
                completion,
                request_deserializer=tg_pb2.CompletionRequest.FromString,
                response_serializer=tg_pb2.CompletionResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with FaultProxy(f"127.0.0.1:{port}") as counter:  # counts the connections clients open
        yield counter
    stop.set()
    server.stop(0)


async def _silent_call(h: Harness) -> None:
    # Nothing but this call on the connection for 30 s: a keepalive faster than the server's
    # 5 min minimum would be punished with a too_many_pings GOAWAY that fails it.
    result = await h.complete(MODEL, "silent", timeout=SILENCE + 30)
    assert result.text == "worth the wait"
    assert (await h.complete(MODEL, "quick", timeout=5)).text == "at once"


@pytest.mark.timeout(90)
# 30 s by design (the one slow test here): the silence must outlast several ping intervals.
# Both clients run side by side, so the suite pays the 30 s once.
async def test_a_30s_silent_answer_survives_our_pings_on_a_default_server(plain_server: FaultProxy) -> None:
    """No too_many_pings GOAWAY from a server with grpc's default ping policy."""
    kwargs: dict[str, Any] = {"insecure": True, "api_key": API_KEY, "folder_id": FOLDER}
    kwargs["endpoint"] = plain_server.address
    sync, aio = Harness("sync", Client(**kwargs)), Harness("async", AsyncClient(**kwargs))
    try:
        await asyncio.gather(_silent_call(sync), _silent_call(aio))
        # One connection per client throughout: a GOAWAY would have made the second call reconnect.
        assert plain_server.accepted == 2
    finally:
        await sync.close()
        await aio.close()
