"""The emulator under stress: faults, capture, cancellation, shutdown, TLS, CLI, foreign stubs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tests._certs import make_ca_and_server_cert
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.iam.v1 import (
    iam_token_service_pb2,
    iam_token_service_pb2_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.operation import (
    operation_service_pb2,
    operation_service_pb2_grpc,
)
from yandexgpt_grpc.testing import Emulator, Fault, Reply

AUTH = (("authorization", "Api-Key test-key"),)
URI = "gpt://b1gfolder/yandexgpt-lite/latest"
PARTIAL = 1


def make_request(text: str = "Hello, emulator!", *, stream: bool = True):
    req = tg_pb2.CompletionRequest(model_uri=URI)
    req.completion_options.stream = stream
    req.messages.add(role="user", text=text)
    return req


@pytest.fixture
def emu(yandexgpt_emulator: Emulator) -> Emulator:
    return yandexgpt_emulator


@pytest.fixture
def channel(emu: Emulator) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(emu.address) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel):
    return tg_grpc.TextGenerationServiceStub(channel)


def collect(call) -> tuple[list, grpc.RpcError | None]:
    """Responses received before the stream ended, and the error that ended it (if any)."""
    received = []
    try:
        for response in call:
            received.append(response)
    except grpc.RpcError as exc:
        return received, exc
    return received, None


# -- faults -------------------------------------------------------------------------------------


def test_fault_before_first_response(stub, emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(grpc.StatusCode.INTERNAL, "boom", delay=0.1))
    started = time.monotonic()
    received, err = collect(stub.Completion(make_request(), metadata=AUTH, timeout=5))
    assert time.monotonic() - started >= 0.1
    assert received == []
    assert err is not None
    assert (err.code(), err.details()) == (grpc.StatusCode.INTERNAL, "boom")
    assert dict(err.trailing_metadata())["x-request-id"] == emu.calls[-1].request_id


def test_fault_after_n_responses_with_between(stub, emu: Emulator) -> None:
    emu.enqueue(
        "Completion",
        Fault(grpc.StatusCode.UNAVAILABLE, "lost", after=3, chunks=["a", "b"], between=0.03),
    )
    started = time.monotonic()
    received, err = collect(stub.Completion(make_request(), metadata=AUTH, timeout=5))
    assert time.monotonic() - started >= 0.09
    assert [r.alternatives[0].message.text for r in received] == ["a", "ab", "aba"]
    assert {r.alternatives[0].status for r in received} == {PARTIAL}
    assert err is not None
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert emu.calls[-1].responses_sent == 3
    assert emu.calls[-1].code == grpc.StatusCode.UNAVAILABLE


def test_fault_default_chunks_follow_the_model(stub, emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(after=1))
    received, err = collect(stub.Completion(make_request("zebra"), metadata=AUTH, timeout=5))
    assert err is not None
    assert len(received) == 1
    assert received[0].alternatives[0].message.text.startswith("You said")


@pytest.mark.parametrize("pushback", [250, -1])
def test_fault_pushback_and_trailing_metadata(stub, emu: Emulator, pushback: int) -> None:
    emu.enqueue(
        "Completion",
        Fault(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "slow down",
            pushback_ms=pushback,
            trailing_metadata=(("x-extra", "yes"),),
        ),
    )
    _, err = collect(stub.Completion(make_request(), metadata=AUTH, timeout=5))
    assert err is not None
    trailing = dict(err.trailing_metadata())
    assert trailing["grpc-retry-pushback-ms"] == str(pushback)
    assert trailing["x-extra"] == "yes"


def test_fault_status_details(stub, emu: Emulator) -> None:
    detail = status_pb2.Status()
    detail.details.add().Pack(error_details_pb2.ErrorInfo(reason="QUOTA", domain="emulator"))
    emu.enqueue("Completion", Fault(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", status_details=detail))
    _, err = collect(stub.Completion(make_request(), metadata=AUTH, timeout=5))
    assert err is not None
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())["grpc-status-details-bin"])
    assert (status.code, status.message) == (grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], "quota")
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "QUOTA"


def test_fail_next_then_succeed(stub, channel, emu: Emulator) -> None:
    emu.fail_next(2, details="try later", pushback_ms=10)
    for _ in range(2):
        _, err = collect(stub.Completion(make_request(), metadata=AUTH, timeout=5))
        assert err is not None
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "try later")
    received, err = collect(stub.Completion(make_request(), metadata=AUTH, timeout=5))
    assert err is None
    assert received

    emu.fail_next(1, code=grpc.StatusCode.INTERNAL, method="Tokenize")
    tok = tg_grpc.TokenizerServiceStub(channel)
    req = tg_pb2.TokenizeRequest(model_uri=URI, text="hi")
    with pytest.raises(grpc.RpcError) as info:
        tok.Tokenize(req, metadata=AUTH, timeout=5)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert tok.Tokenize(req, metadata=AUTH, timeout=5).tokens


def test_faults_and_delays_on_unary_methods(channel, emu: Emulator) -> None:
    async_stub = tg_grpc.TextGenerationAsyncServiceStub(channel)
    ops = operation_service_pb2_grpc.OperationServiceStub(channel)
    emu.enqueue("AsyncCompletion", Fault(grpc.StatusCode.ABORTED, "again"))
    with pytest.raises(grpc.RpcError) as info:
        async_stub.Completion(make_request(stream=False), metadata=AUTH, timeout=5)
    assert info.value.code() == grpc.StatusCode.ABORTED

    op = async_stub.Completion(make_request(stream=False), metadata=AUTH, timeout=5)
    emu.enqueue("OperationGet", Fault(grpc.StatusCode.UNAVAILABLE), Reply(delay=0.05))
    get = operation_service_pb2.GetOperationRequest(operation_id=op.id)
    with pytest.raises(grpc.RpcError):
        ops.Get(get, metadata=AUTH, timeout=5)
    started = time.monotonic()
    assert not ops.Get(get, metadata=AUTH, timeout=5).done  # a failed poll does not count
    assert time.monotonic() - started >= 0.05
    assert ops.Get(get, metadata=AUTH, timeout=5).done


def test_stall_until_deadline(stub, emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(stall=True, after=1))
    received, err = collect(stub.Completion(make_request(), metadata=AUTH, timeout=0.3))
    assert len(received) == 1
    assert err is not None
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    call = emu.calls[-1]
    assert emu.wait_for(lambda: call.cancelled, 0.5)
    assert call.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert call.deadline is not None
    assert 0.1 < call.deadline <= 0.35  # clocks differ slightly


# -- capture ------------------------------------------------------------------------------------


def test_capture_metadata_deadline_and_ids(stub, emu: Emulator, caplog) -> None:
    caplog.set_level(logging.INFO, logger="yandexgpt_grpc.testing")
    metadata = (*AUTH, ("x-client-request-id", "client-123"), ("x-data-logging-enabled", "false"))
    call = stub.Completion(make_request(stream=False), metadata=metadata, timeout=3)
    list(call)
    captured = emu.calls_for("Completion")[-1]
    assert captured.method == "Completion"
    assert captured.request.messages[0].text == "Hello, emulator!"
    assert captured.header("X-Client-Request-Id") == "client-123"
    assert captured.client_request_id == "client-123"
    assert captured.header("x-data-logging-enabled") == "false"
    assert captured.header("missing") is None
    assert ("authorization", "Api-Key test-key") in captured.metadata
    assert captured.deadline is not None
    assert 2 < captured.deadline <= 3.05
    assert captured.responses_sent == 1
    assert captured.code == grpc.StatusCode.OK
    assert not captured.cancelled
    assert captured.request_id == dict(call.initial_metadata())["x-request-id"]
    assert "test-key" not in repr(captured)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "client-123" in logged
    assert "test-key" not in logged


def test_capture_without_deadline(stub, emu: Emulator) -> None:
    list(stub.Completion(make_request(), metadata=AUTH))
    assert emu.calls[-1].deadline is None


def test_cancellation_observed_within_200ms(stub, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["x"] * 100, between=0.02))
    call = stub.Completion(make_request(), metadata=AUTH, timeout=10)
    next(call)
    call.cancel()
    started = time.monotonic()
    assert emu.wait_for(lambda: emu.calls[-1].cancelled, 0.2)
    assert time.monotonic() - started < 0.2
    captured = emu.calls[-1]
    assert captured.code == grpc.StatusCode.CANCELLED
    sent = captured.responses_sent
    time.sleep(0.06)
    assert captured.responses_sent == sent < 100  # the handler stopped producing


async def test_aio_task_cancellation_observed(emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(stall=True))
    async with grpc.aio.insecure_channel(emu.address) as ch:
        stub = tg_grpc.TextGenerationServiceStub(ch)

        async def consume() -> None:
            async for _ in stub.Completion(make_request(), metadata=AUTH):
                pass

        task = asyncio.ensure_future(consume())
        while not emu.calls:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 0.2
        while not emu.calls[-1].cancelled and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert emu.calls[-1].cancelled


# -- robustness ---------------------------------------------------------------------------------


async def test_200_concurrent_streams(emu: Emulator) -> None:
    async with grpc.aio.insecure_channel(emu.address) as ch:
        stub = tg_grpc.TextGenerationServiceStub(ch)

        async def one(i: int) -> str:
            texts = [
                r.alternatives[0].message.text
                async for r in stub.Completion(make_request(f"n{i}"), metadata=AUTH, timeout=10)
            ]
            return texts[-1]

        finals = await asyncio.gather(*(one(i) for i in range(200)))
    assert all(f'"n{i}"' in text for i, text in enumerate(finals))
    assert len(emu.calls) == 200
    assert all(c.code == grpc.StatusCode.OK for c in emu.calls)


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "yandexgpt-emulator"]


def test_stop_is_fast_with_streams_in_flight_and_leaves_no_threads() -> None:
    assert _emulator_threads() == []
    emu = Emulator().start()
    assert len(_emulator_threads()) == 1
    emu.enqueue("Completion", *[Fault(stall=True, after=1)] * 10)
    with grpc.insecure_channel(emu.address) as ch:
        stub = tg_grpc.TextGenerationServiceStub(ch)
        calls = [stub.Completion(make_request(), metadata=AUTH, timeout=10) for _ in range(10)]
        for call in calls:
            next(call)
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 1.0
        for call in calls:
            _, err = collect(call)
            assert err is not None
    assert _emulator_threads() == []
    assert not emu.running
    assert all(c.code is not None for c in emu.calls)
    emu.stop()  # idempotent


def test_start_fails_cleanly_on_busy_port(emu: Emulator) -> None:
    with pytest.raises(RuntimeError):
        Emulator(port=emu.port).start()
    assert len(_emulator_threads()) == 1  # only the fixture's


def test_extra_services_share_the_server() -> None:
    seen = []

    class Iam(iam_token_service_pb2_grpc.IamTokenServiceServicer):
        async def Create(self, request, context):
            return iam_token_service_pb2.CreateIamTokenResponse(iam_token="t1.issued")

    def add_iam(server, emulator: Emulator) -> None:
        seen.append(emulator)
        iam_token_service_pb2_grpc.add_IamTokenServiceServicer_to_server(Iam(), server)

    with Emulator(extra_services=[add_iam]) as emu, grpc.insecure_channel(emu.address) as ch:
        iam = iam_token_service_pb2_grpc.IamTokenServiceStub(ch)
        resp = iam.Create(iam_token_service_pb2.CreateIamTokenRequest(jwt="x"), timeout=5)
        assert resp.iam_token == "t1.issued"
    assert seen == [emu]


# -- transports ---------------------------------------------------------------------------------


def test_tls_with_throwaway_ca() -> None:
    ca, cert, key = make_ca_and_server_cert()
    with Emulator(tls=(cert, key, ca)) as emu:
        assert emu.root_certificates == ca
        creds = grpc.ssl_channel_credentials(root_certificates=emu.root_certificates)
        with grpc.secure_channel(emu.address, creds) as ch:
            stub = tg_grpc.TextGenerationServiceStub(ch)
            assert list(stub.Completion(make_request(), metadata=AUTH, timeout=5))
        with grpc.insecure_channel(emu.address) as ch:
            stub = tg_grpc.TextGenerationServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Completion(make_request(), metadata=AUTH, timeout=1))
            assert info.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )


def test_unix_socket() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = os.path.join(tmp, "emu.sock")
        with Emulator(unix_socket=path) as emu:
            assert emu.address == f"unix:{path}"
            assert emu.port == 0
            with grpc.insecure_channel(emu.address) as ch:
                stub = tg_grpc.TextGenerationServiceStub(ch)
                assert list(stub.Completion(make_request(), metadata=AUTH, timeout=5))


def test_cli_prints_address_and_exits_cleanly_on_sigterm() -> None:
    cmd = [sys.executable, "-m", "yandexgpt_grpc.testing", "--api-key", "cli-key"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            address = proc.stdout.readline().strip()
            assert address.startswith("127.0.0.1:")
            with grpc.insecure_channel(address) as ch:
                stub = tg_grpc.TextGenerationServiceStub(ch)
                ok = (("authorization", "Api-Key cli-key"),)
                assert list(stub.Completion(make_request(), metadata=ok, timeout=5))
                with pytest.raises(grpc.RpcError) as info:
                    list(stub.Completion(make_request(), metadata=AUTH, timeout=5))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


# -- the yandexcloud package's own stubs ------------------------------------------------------


def _yandexcloud_grpc_usable() -> str | None:
    """Why yandexcloud's own gRPC modules cannot load here, or None when they can."""
    try:
        import yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2_grpc  # noqa: F401
    except ImportError:
        return "the yandexcloud package (test extra) is not installed"
    except RuntimeError as exc:  # its gencode demands a newer grpcio than ours allows
        return f"yandexcloud's gRPC modules refuse this grpcio: {str(exc).splitlines()[0]}"
    return None


@pytest.mark.skipif(_yandexcloud_grpc_usable() is not None, reason=str(_yandexcloud_grpc_usable()))
def test_yandexcloud_stubs_against_emulator(emu: Emulator) -> None:
    from yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as yc_pb2,
    )
    from yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2_grpc as yc_grpc,
    )
    from yandex.cloud.operation import operation_service_pb2 as yc_op_pb2
    from yandex.cloud.operation import operation_service_pb2_grpc as yc_op_grpc

    req = yc_pb2.CompletionRequest(model_uri=URI)
    req.messages.add(role="user", text="from yandexcloud")
    req.completion_options.temperature.value = 0.3
    with grpc.insecure_channel(emu.address) as ch:
        gen = yc_grpc.TextGenerationServiceStub(ch)
        (unary,) = list(gen.Completion(req, metadata=AUTH, timeout=5))
        assert "from yandexcloud" in unary.alternatives[0].message.text

        req.completion_options.stream = True
        streamed = list(gen.Completion(req, metadata=AUTH, timeout=5))
        assert len(streamed) > 1
        assert streamed[-1].alternatives[0].message.text == unary.alternatives[0].message.text

        req.completion_options.stream = False
        op = yc_grpc.TextGenerationAsyncServiceStub(ch).Completion(req, metadata=AUTH, timeout=5)
        ops = yc_op_grpc.OperationServiceStub(ch)
        polls = 0
        while not op.done:
            polls += 1
            op = ops.Get(yc_op_pb2.GetOperationRequest(operation_id=op.id), metadata=AUTH)
        assert polls == 2
        result = yc_pb2.CompletionResponse()
        assert op.response.Unpack(result)
        assert result.alternatives[0].message.text == unary.alternatives[0].message.text

        tok = yc_grpc.TokenizerServiceStub(ch)
        tokens = tok.TokenizeCompletion(req, metadata=AUTH, timeout=5).tokens
        assert len(tokens) == unary.usage.input_text_tokens
        plain = tok.Tokenize(yc_pb2.TokenizeRequest(model_uri=URI, text="from yandexcloud"), metadata=AUTH)
        assert [t.text for t in plain.tokens] == [t.text for t in tokens]
