"""Logging: one DEBUG record per RPC, one INFO record per retry, nothing at all when the level is off."""

from __future__ import annotations

import logging
import re
from typing import Any

import grpc
import pytest

from yandexgpt_grpc import UnavailableError, _retry
from yandexgpt_grpc.testing import Emulator, Fault, Reply

from .conftest import Harness

RPC = re.compile(
    r"rpc (?P<method>\S+) code=(?P<code>\w+) duration=(?P<ms>[\d.]+)ms attempt=(?P<attempt>\d+) "
    r"client_request_id=(?P<crid>\S+) request_id=(?P<rid>\S+) trace_id=(?P<tid>\S+)"
)


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def asleep(seconds: float) -> None:
        pass

    monkeypatch.setattr(_retry, "sleep", lambda seconds: None)
    monkeypatch.setattr(_retry, "asleep", asleep)


def package_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "yandexgpt_grpc" and r.levelno == level]


@pytest.mark.parametrize("how", ["unary", "stream"])
async def test_one_debug_record_per_rpc_and_one_info_per_retry(
    harness: Harness, emu: Emulator, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="yandexgpt_grpc")
    emu.fail_next(2)
    emu.enqueue("Completion", Reply(chunks=["a", "b"]))
    if how == "unary":
        await harness.complete("yandexgpt-lite", "hi")
    else:
        await harness.collect("yandexgpt-lite", "hi")
    rpcs = [RPC.fullmatch(r.getMessage()) for r in package_records(caplog, logging.DEBUG)]
    assert all(rpcs) and len(rpcs) == 3 == len(emu.calls)
    assert [m["code"] for m in rpcs if m] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]
    assert [m["attempt"] for m in rpcs if m] == ["1", "2", "3"]
    assert {m["crid"] for m in rpcs if m} == {emu.calls[0].client_request_id}
    assert [(m["rid"], m["tid"]) for m in rpcs if m] == [(c.request_id, c.trace_id) for c in emu.calls]
    assert {m["method"] for m in rpcs if m} == {"Completion" if how == "unary" else "Completion(stream)"}
    retries = package_records(caplog, logging.INFO)
    assert len(retries) == 2
    assert all(
        "UNAVAILABLE" in r.getMessage() and re.search(r"retrying in \d+\.\d{3}s", r.getMessage()) for r in retries
    )


async def test_a_stream_cut_short_or_closed_is_logged_once(
    harness: Harness, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="yandexgpt_grpc")
    emu.enqueue("Completion", Fault(after=1, code=grpc.StatusCode.UNAVAILABLE), Fault(after=1, stall=True))
    with pytest.raises(UnavailableError):
        await harness.collect("yandexgpt-lite", "hi")
    stream = harness.stream("yandexgpt-lite", "hi")
    await harness.next(stream)
    await harness.close_stream(stream)
    await harness.close_stream(stream)
    codes = [RPC.fullmatch(r.getMessage()) for r in package_records(caplog, logging.DEBUG)]
    assert [m["code"] for m in codes if m] == ["UNAVAILABLE", "CANCELLED"]


async def test_nothing_is_logged_or_timed_when_the_level_is_off(
    harness: Harness, emu: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="yandexgpt_grpc")
    calls: list[Any] = []
    monkeypatch.setattr(_retry, "log_rpc", lambda *a, **k: calls.append(a))
    emu.fail_next(1)
    await harness.complete("yandexgpt-lite", "hi")
    await harness.collect("yandexgpt-lite", "hi")
    assert calls == []
    assert [r for r in caplog.records if r.name.startswith("yandexgpt_grpc.")] == []
    assert package_records(caplog, logging.INFO) == package_records(caplog, logging.DEBUG) == []
