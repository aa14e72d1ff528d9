"""close() with calls in flight in other tasks (issue 17 item 3): the asyncio client matches the blocking one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from yandexgpt_grpc import AsyncClient, CancelledError, Client, StreamInterruptedError, YandexGPTError
from yandexgpt_grpc.testing import Emulator, Fault, Reply

from .conftest import API_KEY, FOLDER

MODEL = "yandexgpt-lite"


async def test_async_close_under_load_raises_our_error_and_keeps_partials(emu: Emulator) -> None:
    """Match the blocking client: our error, "the client was closed", partial kept, no task cancelled."""
    for i in range(10):
        emu.enqueue("Completion", Fault(after=1, chunks=[f"part {i}"], stall=True))
    client = AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER)
    got_text = asyncio.Event()
    seen = 0

    async def streamer() -> Any:
        nonlocal seen
        stream = client.stream(MODEL, "hi")
        async for _ in stream:
            seen += 1
            if seen == 10:
                got_text.set()
        return stream

    async def completer() -> Any:
        return await client.complete(MODEL, "hi", timeout=30)

    streams = [asyncio.ensure_future(streamer()) for _ in range(10)]
    await asyncio.wait_for(got_text.wait(), 10)  # every stream holds text
    emu.enqueue("Completion", *[Reply(delay=30) for _ in range(20)])
    completes = [asyncio.ensure_future(completer()) for _ in range(20)]
    assert await asyncio.to_thread(emu.wait_for, lambda: len(emu.calls) == 30, 5.0)
    started = time.monotonic()
    await client.close()
    await asyncio.wait(streams + completes, timeout=5)
    assert time.monotonic() - started < 1.0
    for task in streams + completes:
        assert task.done() and not task.cancelled(), "close() must not look like someone cancelled the task"
        exc = task.exception()
        assert isinstance(exc, CancelledError) and isinstance(exc, YandexGPTError), repr(exc)
        assert "the client was closed" in str(exc)
    for task in streams:
        exc = task.exception()
        assert isinstance(exc, StreamInterruptedError)
        assert exc.partial is not None and exc.partial.text.startswith("part ")


async def test_sync_close_under_load_is_the_reference(emu: Emulator) -> None:
    """The blocking client in the same situation (what the async one must match)."""
    for i in range(5):
        emu.enqueue("Completion", Fault(after=1, chunks=[f"part {i}"], stall=True))
    client = Client(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER)
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    count = 0

    def streamer() -> Any:
        nonlocal count
        for _ in client.stream(MODEL, "hi"):
            count += 1
            if count == 5:
                loop.call_soon_threadsafe(ready.set)

    tasks = [asyncio.ensure_future(asyncio.to_thread(streamer)) for _ in range(5)]
    await asyncio.wait_for(ready.wait(), 10)
    client.close()
    await asyncio.wait(tasks, timeout=5)
    for task in tasks:
        exc = task.exception()
        assert isinstance(exc, CancelledError) and isinstance(exc, StreamInterruptedError), repr(exc)
        assert "the client was closed" in str(exc)
        assert exc.partial is not None and exc.partial.text.startswith("part ")
