"""Acceptance item 19: a thousand concurrent streams and ten thousand sequential calls on one client.

Everything must come back correct, and memory (live Python objects and RSS) and the thread count
must not grow. Replies are small to keep the whole soak within seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from yandexgpt_grpc import AlternativeStatus, AsyncClient, Client
from yandexgpt_grpc.testing import Emulator

from .conftest import Harness

MODEL = "yandexgpt-lite"
STREAMS = 1000
CALLS = 10_000
WARM_UP = 1000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def footprint() -> tuple[int, int, int]:
    gc.collect()
    threads = sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))
    return len(gc.get_objects()), rss_bytes(), threads


def sync_streams(client: Client) -> list[str]:
    """All streams open at once from one thread, then read round-robin: concurrent on the wire."""
    streams = [client.stream(MODEL, f"s{i}") for i in range(STREAMS)]
    firsts = [next(s) for s in streams]
    assert all(a.status is AlternativeStatus.PARTIAL for a in firsts)
    return [s.get_final().text for s in streams]


async def async_streams(client: AsyncClient) -> list[str]:
    async def one(i: int) -> str:
        async with client.stream(MODEL, f"s{i}") as stream:
            return (await stream.get_final()).text

    return await asyncio.gather(*(one(i) for i in range(STREAMS)))


def sync_calls(client: Client, emu: Emulator, start: int, stop: int, expected: str) -> int:
    ok = 0
    for i in range(start, stop):
        ok += client.complete(MODEL, "hi").text == expected
        if i % 1000 == 999:
            emu.reset()  # the emulator keeps every call it saw; it shares this process
    return ok


async def async_calls(client: AsyncClient, emu: Emulator, start: int, stop: int, expected: str) -> int:
    ok = 0
    for i in range(start, stop):
        ok += (await client.complete(MODEL, "hi")).text == expected
        if i % 1000 == 999:
            emu.reset()
    return ok


class DropSpuriousPollerErrors(logging.Filter):
    """grpc.aio before 1.78 logs a harmless BlockingIOError when two event loops share its poller
    (grpc/grpc#25364), as here: the emulator serves from its own loop. Kept out of the test's
    log capture, which would otherwise hold thousands of records and look like a leak."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, BlockingIOError) and "PollerCompletionQueue" in record.getMessage())


@pytest.fixture
def _quiet_poller() -> Iterator[None]:
    log = logging.getLogger("asyncio")
    spurious = DropSpuriousPollerErrors()
    log.addFilter(spurious)
    yield
    log.removeFilter(spurious)


@pytest.mark.usefixtures("_quiet_poller")
async def test_19_soak_streams_and_calls_stay_correct_and_flat(harness: Harness, emu: Emulator) -> None:
    client: Any = harness.client
    expected = (await harness.complete(MODEL, "hi")).text
    assert '"hi"' in expected  # the emulator echoes the prompt

    if isinstance(client, AsyncClient):
        texts = await async_streams(client)
    else:
        texts = await asyncio.to_thread(sync_streams, client)
    assert all(f'"s{i}"' in text for i, text in enumerate(texts))
    assert len(set(texts)) == STREAMS
    calls = emu.calls_for("Completion")
    assert len(calls) == STREAMS + 1 and max(c.responses_sent for c in calls) > 1
    emu.reset()

    async def run(start: int, stop: int) -> int:
        if isinstance(client, AsyncClient):
            return await async_calls(client, emu, start, stop, expected)
        return await asyncio.to_thread(sync_calls, client, emu, start, stop, expected)

    ok = await run(0, WARM_UP)
    objects, rss, threads = footprint()
    ok += await run(WARM_UP, CALLS)
    objects_after, rss_after, threads_after = footprint()
    assert ok == CALLS
    assert threads_after == threads
    assert objects_after - objects < 1000, objects_after - objects  # a leak of one object per call fails
    assert rss_after - rss < 16 * 1024 * 1024, rss_after - rss
