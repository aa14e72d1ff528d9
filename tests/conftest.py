"""Shared fixtures: every client behaviour is tested for Client and AsyncClient alike.

Tests are written once, as coroutines, against `Harness`, which drives either
client: the blocking one from a worker thread (so the event loop never blocks),
the asyncio one directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from yandexgpt_grpc import (
    Alternative,
    AsyncClient,
    AsyncCompletionStream,
    Client,
    CompletionResult,
    CompletionStream,
)
from yandexgpt_grpc.testing import Emulator

FOLDER = "b1gtestfolder"
API_KEY = "test-api-key-0123456789"


class Harness:
    """One async face for both clients."""

    def __init__(self, kind: str, client: Client | AsyncClient) -> None:
        self.kind = kind
        self.client = client

    @property
    def is_async(self) -> bool:
        return self.kind == "async"

    async def complete(self, *args: Any, **kwargs: Any) -> CompletionResult:
        if isinstance(self.client, AsyncClient):
            return await self.client.complete(*args, **kwargs)
        return await asyncio.to_thread(self.client.complete, *args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> CompletionStream | AsyncCompletionStream:
        return self.client.stream(*args, **kwargs)

    async def next(self, stream: CompletionStream | AsyncCompletionStream) -> Alternative:
        """The next alternative; raises StopAsyncIteration at the end for both kinds."""
        if isinstance(stream, AsyncCompletionStream):
            return await stream.__anext__()
        sentinel = object()
        item = await asyncio.to_thread(next, stream, sentinel)
        if item is sentinel:
            raise StopAsyncIteration
        assert isinstance(item, Alternative)
        return item

    async def iterate(self, stream: CompletionStream | AsyncCompletionStream) -> AsyncIterator[Alternative]:
        while True:
            try:
                yield await self.next(stream)
            except StopAsyncIteration:
                return

    async def collect(self, *args: Any, **kwargs: Any) -> tuple[list[Alternative], Any]:
        """Every alternative; `async for` on AsyncCompletionStream (how users iterate; next() covers anext)."""
        stream = self.stream(*args, **kwargs)
        if isinstance(stream, AsyncCompletionStream):
            return [alt async for alt in stream], stream
        return [alt async for alt in self.iterate(stream)], stream

    async def close_stream(self, stream: CompletionStream | AsyncCompletionStream) -> None:
        if isinstance(stream, AsyncCompletionStream):
            await stream.aclose()
        else:
            stream.close()

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Any other client method, awaited on AsyncClient, in a thread on Client."""
        method = getattr(self.client, name)
        if isinstance(self.client, AsyncClient):
            result = method(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result
        return await asyncio.to_thread(method, *args, **kwargs)

    async def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            await self.client.close()
        else:
            self.client.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emu(yandexgpt_emulator: Emulator) -> Emulator:
    return yandexgpt_emulator


@pytest.fixture
def client_kwargs(emu: Emulator) -> dict[str, Any]:
    return {"endpoint": emu.address, "insecure": True, "api_key": API_KEY, "folder_id": FOLDER}


@pytest.fixture
async def make_harness(kind: str, client_kwargs: dict[str, Any]) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**overrides: Any) -> Harness:
        kwargs = {**client_kwargs, **overrides}
        client: Client | AsyncClient = AsyncClient(**kwargs) if kind == "async" else Client(**kwargs)
        harness = Harness(kind, client)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.close()


@pytest.fixture
async def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real credentials from the environment."""
    for name in (
        "YC_API_KEY",
        "YC_IAM_TOKEN",
        "YC_FOLDER_ID",
        "YANDEXGPT_ENDPOINT",
        "YANDEXGPT_INSECURE",
        "YC_SERVICE_ACCOUNT_KEY_FILE",
        "YC_METADATA_CREDENTIALS",
        "YC_METADATA_ADDR",
    ):
        monkeypatch.delenv(name, raising=False)
