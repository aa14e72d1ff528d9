"""Asynchronous mode: submit, poll, wait (fake clock), cancel, re-attach, failures; both clients."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import grpc
import pytest

from yandexgpt_grpc import (
    AsyncClient,
    AsyncOperation,
    CancelledError,
    Client,
    InvalidArgumentError,
    Message,
    NotFoundError,
    Operation,
    OperationTimeoutError,
    RateLimitError,
    UnavailableError,
    YandexGPTError,
    _retry,
)
from yandexgpt_grpc.testing import Emulator, OperationScript, Reply

from .conftest import API_KEY, FOLDER, Harness

MODEL = "yandexgpt-lite"


class FakeClock:
    """Replaces the retry module's clock and sleeps: time moves only when the code sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_retry, "monotonic", fake.monotonic)
    monkeypatch.setattr(_retry, "sleep", fake.sleep)
    monkeypatch.setattr(_retry, "asleep", fake.asleep)
    return fake


async def op_call(op: Operation | AsyncOperation, name: str, *args: Any, **kwargs: Any) -> Any:
    """An operation method, awaited on AsyncOperation, in a worker thread on Operation."""
    method = getattr(op, name)
    if isinstance(op, AsyncOperation):
        return await method(*args, **kwargs)
    return await asyncio.to_thread(method, *args, **kwargs)


async def submit(h: Harness, *args: Any, **kwargs: Any) -> Operation | AsyncOperation:
    op = await h.call("submit", *args, **kwargs)
    assert isinstance(op, AsyncOperation if h.is_async else Operation)
    return op


async def test_submit_poll_result(harness: Harness, emu: Emulator) -> None:
    op = await submit(harness, MODEL, [Message.system("Be brief"), Message.user("hi")], temperature=0.2)
    assert op.id.startswith("emu") and not op.done
    assert repr(op) == f"{type(op).__name__}(id={op.id!r}, done=False)"
    assert await op_call(op, "poll") is False  # the default script finishes on the second Get
    assert await op_call(op, "poll") is True
    assert op.done and op.raw.done
    result = await op_call(op, "result")
    assert result.text == '[Be brief] You said: "hi". This is the emulator answering.'
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.completion_tokens > 0
    assert result.model_version == "emulator-1.0" and result.request_id
    [create] = emu.calls_for("AsyncCompletion")
    assert create.request.completion_options.temperature.value == 0.2
    assert not create.request.completion_options.stream
    assert create.header("authorization") == f"Api-Key {API_KEY}" and create.client_request_id
    gets = emu.calls_for("OperationGet")
    assert [g.request.operation_id for g in gets] == [op.id, op.id]
    assert all(g.header("authorization") == f"Api-Key {API_KEY}" for g in gets)
    assert len({g.client_request_id for g in gets}) == 2  # each poll is its own logical call


async def test_wait_grows_the_interval_gently(harness: Harness, emu: Emulator, clock: FakeClock) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=5))
    op = await submit(harness, MODEL, "hi")
    result = await op_call(op, "wait", poll_interval=1.0)
    assert result.text == 'You said: "hi". This is the emulator answering.'
    assert clock.sleeps == [1.0, 1.5, 2.25, 3.375]  # four pauses between five polls
    assert len(emu.calls_for("OperationGet")) == 5


async def test_wait_interval_is_capped(harness: Harness, emu: Emulator, clock: FakeClock) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=12))
    op = await submit(harness, MODEL, "hi")
    await op_call(op, "wait", poll_interval=0.5)
    assert len(clock.sleeps) == 11
    assert clock.sleeps == sorted(clock.sleeps) and clock.sleeps[0] == 0.5
    assert max(clock.sleeps) == 5.0  # ten times the first pause
    assert clock.sleeps[-3:] == [5.0, 5.0, 5.0]


async def test_wait_times_out_within_its_timeout(harness: Harness, emu: Emulator, clock: FakeClock) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=100))
    op = await submit(harness, MODEL, "hi")
    with pytest.raises(OperationTimeoutError) as info:
        await op_call(op, "wait", timeout=4, poll_interval=1.0)
    assert clock.sleeps == [1.0, 1.5, 1.5]  # the last pause is cut to what is left of the timeout
    assert sum(clock.sleeps) == 4.0
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, YandexGPTError)
    assert info.value.operation_id == op.id and op.id in str(info.value)
    assert len(emu.calls_for("OperationGet")) == 4 and not op.done
    # Each Get's deadline fits in what was left of wait()'s timeout.
    assert all(g.deadline is not None and g.deadline <= 4.5 for g in emu.calls_for("OperationGet"))
    # ...but the poll at the very end still gets time to reach the server (not a doomed 1 ms deadline).
    last = emu.calls_for("OperationGet")[-1].deadline
    assert last is not None and last > 0.2
    # The operation goes on: a later wait picks it up.
    emu.reset()


async def test_done_at_creation_needs_no_poll(harness: Harness, emu: Emulator, clock: FakeClock) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=0, response=Reply(chunks=["Ready."])))
    op = await submit(harness, MODEL, "hi")
    assert op.done
    assert (await op_call(op, "wait")).text == "Ready."
    assert (await op_call(op, "result")).text == "Ready."
    assert emu.calls_for("OperationGet") == [] and clock.sleeps == []


async def test_result_does_not_wait(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=3))
    op = await submit(harness, MODEL, "hi")
    with pytest.raises(RuntimeError, match="still running"):
        await op_call(op, "result")
    assert len(emu.calls_for("OperationGet")) == 1


async def test_cancel(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=100))
    op = await submit(harness, MODEL, "hi")
    assert await op_call(op, "cancel") is None
    assert op.done
    with pytest.raises(CancelledError) as info:
        await op_call(op, "result")
    assert info.value.operation_id == op.id and info.value.code is grpc.StatusCode.CANCELLED
    with pytest.raises(CancelledError):
        await op_call(op, "wait")
    [cancel] = emu.calls_for("OperationCancel")
    assert cancel.request.operation_id == op.id and cancel.header("authorization") == f"Api-Key {API_KEY}"
    assert emu.operations[op.id].error.code == grpc.StatusCode.CANCELLED.value[0]


async def test_reattach_from_a_second_client(make_harness: Any, emu: Emulator, clock: FakeClock) -> None:
    first = make_harness()
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=3, response=Reply(chunks=["Later", "."])))
    op = await submit(first, MODEL, "hi")
    await first.close()  # e.g. the submitting process has gone

    second = make_harness()
    before = len(emu.calls)
    again = second.client.operation(op.id)  # not awaited on either client: no I/O
    assert isinstance(again, AsyncOperation if second.is_async else Operation)
    assert again.id == op.id and not again.done and again.raw is None
    assert len(emu.calls) == before
    result = await op_call(again, "wait", poll_interval=2.0)
    assert result.text == "Later."
    assert clock.sleeps == [2.0, 3.0]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimitError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (3, InvalidArgumentError),  # a bare code number, as the wire carries it
    ],
)
async def test_failed_operation_raises_the_mapped_error(
    harness: Harness, emu: Emulator, clock: FakeClock, code: Any, error: type
) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=1, error=(code, "the model gave up: quota")))
    op = await submit(harness, MODEL, "hi")
    with pytest.raises(error) as info:
        await op_call(op, "wait")
    err = info.value
    assert err.operation_id == op.id and err.details == "the model gave up: quota"
    assert f"operation_id={op.id}" in str(err)
    assert op.done
    with pytest.raises(error):  # the outcome is kept: no further I/O needed
        await op_call(op, "result")
    assert len(emu.calls_for("OperationGet")) == 1


async def test_unknown_operation_is_not_found(harness: Harness, emu: Emulator) -> None:
    op = harness.client.operation("emu-no-such-operation")
    with pytest.raises(NotFoundError) as info:
        await op_call(op, "poll")
    assert info.value.operation_id == "emu-no-such-operation" and info.value.request_id
    with pytest.raises(ValueError, match="operation_id"):
        harness.client.operation("  ")


async def test_polls_are_retried_on_transient_errors(harness: Harness, emu: Emulator, clock: FakeClock) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=1))
    op = await submit(harness, MODEL, "hi")
    emu.fail_next(2, grpc.StatusCode.UNAVAILABLE, method="OperationGet")
    assert await op_call(op, "poll") is True
    gets = emu.calls_for("OperationGet")
    assert len(gets) == 3 and len({g.client_request_id for g in gets}) == 1  # one logical call
    assert [g.header("x-retry-attempt") for g in gets] == [None, "2", "3"]


async def test_submit_errors_map_and_retry_policy_applies(harness: Harness, emu: Emulator) -> None:
    emu.fail_next(1, grpc.StatusCode.UNAVAILABLE, method="AsyncCompletion")
    with pytest.raises(UnavailableError) as info:
        await harness.call("submit", MODEL, "hi", retry=None)
    assert info.value.operation_id is None
    assert emu.operations == {}


async def test_submit_sends_every_option(harness: Harness, emu: Emulator) -> None:
    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    op = await submit(
        harness,
        MODEL,
        "hi",
        max_tokens=50,
        reasoning_mode="enabled_hidden",
        tools=[lookup],
        tool_choice="auto",
        response_format="json",
    )
    req = emu.calls_for("AsyncCompletion")[0].request
    assert req.completion_options.max_tokens.value == 50 and req.json_object
    assert [t.function.name for t in req.tools] == ["lookup"]
    result = await op_call(op, "wait", poll_interval=0.01)
    assert result.usage.reasoning_tokens > 0
    assert set(result.json()) == {"answer"}


async def test_bad_input_rejected_before_io(harness: Harness, emu: Emulator) -> None:
    with pytest.raises(ValueError, match="temperature"):
        await harness.call("submit", MODEL, "hi", temperature=3)
    with pytest.raises(TypeError, match="unexpected option"):
        await harness.call("submit", MODEL, "hi", stream=True)
    op = harness.client.operation("emu123")
    with pytest.raises(ValueError, match="poll_interval"):
        await op_call(op, "wait", poll_interval=0)
    with pytest.raises(ValueError, match="timeout"):
        await op_call(op, "wait", timeout=-1)
    assert emu.calls == []


async def test_separate_operation_endpoint(
    make_harness: Any, emu: Emulator, yandexgpt_emulator_factory: Any, clock: FakeClock
) -> None:
    """Polls go to operation_endpoint with the same credentials; the completion to the endpoint."""
    ops_emu = yandexgpt_emulator_factory()
    h = make_harness(operation_endpoint=ops_emu.address)
    op = await submit(h, MODEL, "hi")
    with pytest.raises(NotFoundError):  # this emulator never saw the operation
        await op_call(op, "poll")
    [get] = ops_emu.calls_for("OperationGet")
    assert get.request.operation_id == op.id and get.header("authorization") == f"Api-Key {API_KEY}"
    assert get.header("x-folder-id") is None  # API keys need no folder header
    assert emu.calls_for("OperationGet") == [] and len(emu.calls_for("AsyncCompletion")) == 1
    await h.close()
    with pytest.raises(RuntimeError, match="closed"):
        await op_call(op, "poll")


async def test_default_operation_endpoint_follows_an_explicit_endpoint(make_harness: Any, emu: Emulator) -> None:
    h = make_harness()
    assert h.client._config.operation_endpoint == emu.address
    op = await submit(h, MODEL, "hi")
    await op_call(op, "poll")
    # One channel serves both services when the endpoints are equal.
    assert h.client._stubs and getattr(h.client, "_op_channel", None) is None


@pytest.mark.parametrize("client_cls", [Client, AsyncClient])
def test_operation_endpoint_channel_rules(client_cls: type) -> None:
    with pytest.raises(ValueError, match="plaintext"):
        client_cls("127.0.0.1:1", insecure=True, api_key="k", operation_endpoint="operation.example.com:443")
    default = client_cls(api_key="k", folder_id=FOLDER)
    assert default._config.operation_endpoint == "operation.api.cloud.yandex.net:443"


def test_async_members_are_awaited_where_they_do_io() -> None:
    assert inspect.iscoroutinefunction(AsyncClient.submit)
    assert not inspect.iscoroutinefunction(AsyncClient.operation)
    for name in ("poll", "wait", "result", "cancel"):
        assert inspect.iscoroutinefunction(getattr(AsyncOperation, name)), name
        assert not inspect.iscoroutinefunction(getattr(Operation, name)), name
        sync_sig, async_sig = (
            inspect.signature(getattr(Operation, name)),
            inspect.signature(getattr(AsyncOperation, name)),
        )
        assert sync_sig.parameters == async_sig.parameters, name
