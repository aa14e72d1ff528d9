"""Issue 16, items 9-13: the configuration and error seams a new user trips on, for both clients.

Each section is one item: plaintext-vs-TLS confusion (9), copy-paste endpoints and credentials (10),
errors outside the tree (11), wrong types (12), streams read twice (13). Everything refused here is
refused before any I/O: the emulator records no call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from yandexgpt_grpc import (
    AsyncClient,
    Client,
    ClientClosedError,
    ConfigurationError,
    EventLoopError,
    IamTokenProvider,
    YandexGPTError,
)
from yandexgpt_grpc.testing import Emulator

from .conftest import Harness

MODEL = "yandexgpt-lite"
CLIENTS = pytest.mark.parametrize("client_cls", [Client, AsyncClient])


async def close(client: Client | AsyncClient) -> None:
    if isinstance(client, AsyncClient):
        await client.close()
    else:
        client.close()


# --- 11: errors outside the tree -----------------------------------------------------------------


@CLIENTS
def test_11_no_credentials_is_a_configuration_error(client_cls: type) -> None:
    with pytest.raises(ConfigurationError, match="YC_API_KEY") as info:
        client_cls("127.0.0.1:1", insecure=True)
    assert isinstance(info.value, YandexGPTError) and isinstance(info.value, ValueError)


async def test_11_short_model_without_folder_is_a_configuration_error(make_harness: Any, emu: Emulator) -> None:
    h = make_harness(folder_id=None)
    with pytest.raises(ConfigurationError, match="YC_FOLDER_ID"):
        await h.complete(MODEL, "hi")
    with pytest.raises(ConfigurationError, match="YC_FOLDER_ID"):
        h.stream(MODEL, "hi")
    assert emu.calls == []


@pytest.mark.parametrize(
    "call",
    [
        lambda h: h.complete(MODEL, "hi"),
        lambda h: h.call("submit", MODEL, "hi"),
        lambda h: h.call("tokenize", MODEL, "hi"),
        lambda h: h.call("tokenize_messages", MODEL, "hi"),
        lambda h: h.call("operation", "op-1"),
        lambda h: h.collect(MODEL, "hi"),
    ],
    ids=["complete", "submit", "tokenize", "tokenize_messages", "operation", "stream"],
)
async def test_11_a_closed_client_raises_client_closed_error(
    make_harness: Callable[..., Harness], emu: Emulator, call: Callable[[Harness], Any]
) -> None:
    h = make_harness()
    await h.close()
    with pytest.raises(ClientClosedError, match="is closed") as info:
        await call(h)
    assert isinstance(info.value, YandexGPTError) and isinstance(info.value, RuntimeError)
    assert emu.calls == []


async def test_11_a_stream_made_before_close_raises_client_closed_error(
    make_harness: Callable[..., Harness], emu: Emulator
) -> None:
    h = make_harness()
    stream = h.stream(MODEL, "hi")
    await h.close()
    with pytest.raises(ClientClosedError):
        await h.next(stream)
    assert emu.calls == []


async def test_11_event_loop_misuse_is_in_the_tree(client_kwargs: dict[str, Any], emu: Emulator) -> None:
    client = AsyncClient(**client_kwargs)
    await client.complete(MODEL, "bind to this loop")
    with pytest.raises(EventLoopError, match="another loop") as info:
        await asyncio.to_thread(lambda: asyncio.run(client.complete(MODEL, "elsewhere")))
    assert isinstance(info.value, RuntimeError)
    await client.close()

    async def token() -> str:
        return "loop-bound-token"

    bound = Client(**{**client_kwargs, "api_key": None}, credentials=IamTokenProvider(token))
    with pytest.raises(EventLoopError, match="deadlock"):
        bound.complete(MODEL, "hi")
    bound.close()
