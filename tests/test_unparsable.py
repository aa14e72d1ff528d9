"""A response that does not parse fails the call the same way for both clients.

grpc's blocking API fails such a call with INTERNAL; grpc.aio hands over None instead, which
the asyncio client turns into the same error. The server here sends raw bytes (a generic
handler), since the emulator only sends well-formed messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from yandexgpt_grpc import AsyncClient, Client, InternalServerError, RetryPolicy, StreamInterruptedError
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)

_SERVICE = "yandex.cloud.ai.foundation_models.v1.TextGenerationService"
_GARBAGE = b"\xff\xff\xff\xff"


def _hello() -> bytes:
    resp = tg_pb2.CompletionResponse(model_version="raw")
    alt = resp.alternatives.add(status=1)  # type: ignore[arg-type]  # ALTERNATIVE_STATUS_PARTIAL
    alt.message.role = "assistant"
    alt.message.text = "hello"
    return resp.SerializeToString()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[list[bytes]], str]]:
    """start(replies) -> address of a server whose Completion sends `replies` as they are."""
    servers: list[Any] = []

    async def start(replies: list[bytes]) -> str:
        async def completion(request: bytes, context: Any) -> AsyncIterator[bytes]:
            for reply in replies:
                yield reply

        handler = grpc.unary_stream_rpc_method_handler(completion)  # no (de)serializers: bytes both ways
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {"Completion": handler}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start  # type: ignore[misc]
    for server in servers:
        await server.stop(None)


@pytest.fixture(autouse=True)
def _quiet_grpc(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="grpc")  # grpc logs each parse failure with a traceback


async def _complete(kind: str, address: str, retry: RetryPolicy | None) -> None:
    """complete() with either client (the failure propagates)."""
    kwargs: dict[str, Any] = {"insecure": True, "api_key": "k", "folder_id": "b1g", "retry": retry}
    if kind == "async":
        async with AsyncClient(address, **kwargs) as aclient:
            await aclient.complete("yandexgpt-lite", "hi")
    else:
        with Client(address, **kwargs) as client:
            await asyncio.to_thread(client.complete, "yandexgpt-lite", "hi")


async def _stream(kind: str, address: str) -> list[str]:
    """Iterate a stream, returning the texts seen before it failed (the failure propagates)."""
    kwargs: dict[str, Any] = {"insecure": True, "api_key": "k", "folder_id": "b1g", "retry": None}
    seen: list[str] = []
    if kind == "async":
        async with AsyncClient(address, **kwargs) as aclient:
            async for alt in aclient.stream("yandexgpt-lite", "hi"):
                seen.append(alt.text)
        return seen

    def run() -> None:
        with Client(address, **kwargs) as client:
            seen.extend(alt.text for alt in client.stream("yandexgpt-lite", "hi"))

    await asyncio.to_thread(run)
    return seen


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_unparsable_response_mid_stream_keeps_the_partial(kind: str, raw_server: Any) -> None:
    address = await raw_server([_hello(), _GARBAGE])
    with pytest.raises(StreamInterruptedError) as info:
        await _stream(kind, address)
    err = info.value
    assert isinstance(err, InternalServerError) and err.code is grpc.StatusCode.INTERNAL
    assert "deserializing" in err.details
    assert err.partial is not None and err.partial.text == "hello"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_unparsable_first_response_is_internal(kind: str, raw_server: Any) -> None:
    address = await raw_server([_GARBAGE])
    with pytest.raises(InternalServerError) as info:
        await _stream(kind, address)
    assert not isinstance(info.value, StreamInterruptedError) and "deserializing" in info.value.details


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_unparsable_unary_answer_is_internal(kind: str, raw_server: Any) -> None:
    address = await raw_server([_GARBAGE])
    with pytest.raises(InternalServerError) as info:
        await _complete(kind, address, None)
    assert "deserializing" in info.value.details


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_unparsable_tokenizer_answer_is_internal(kind: str) -> None:
    """The other unary calls (tokenize, submit, operations) share one helper per client; tokenize stands for them."""

    async def tokenize(request: bytes, context: Any) -> bytes:
        return _GARBAGE

    handler = grpc.unary_unary_rpc_method_handler(tokenize)
    server = grpc.aio.server()
    service = "yandex.cloud.ai.foundation_models.v1.TokenizerService"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Tokenize": handler}),))
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    kwargs: dict[str, Any] = {"insecure": True, "api_key": "k", "folder_id": "b1g", "retry": None}
    try:
        with pytest.raises(InternalServerError) as info:
            if kind == "async":
                async with AsyncClient(address, **kwargs) as aclient:
                    await aclient.tokenize("yandexgpt-lite", "hi")
            else:
                with Client(address, **kwargs) as client:
                    await asyncio.to_thread(client.tokenize, "yandexgpt-lite", "hi")
        assert "deserializing" in info.value.details
    finally:
        await server.stop(None)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_unparsable_unary_answer_is_retried_alike(kind: str, raw_server: Any) -> None:
    """INTERNAL before any response is retried by both clients (the asyncio one used to give up at once)."""
    address = await raw_server([_GARBAGE])
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002)
    with pytest.raises(InternalServerError) as info:
        await _complete(kind, address, policy)
    assert info.value.attempts == 3 and "deserializing" in info.value.details
