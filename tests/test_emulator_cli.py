"""The standalone emulator, ``python -m yandexgpt_grpc.testing``, run in a subprocess on a free loopback port.

Flags: --tls (given or generated), --latency / --chunk-delay, --fail-rate / --fail-code / --seed, --script,
--models / --any-model, and the one-line refusals (busy port, bad script, missing cryptography).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc.testing import Emulator
from yandexgpt_grpc.testing.__main__ import main

from ._certs import make_ca_and_server_cert
from .test_emulator import AUTH, make_request

MODULE = [sys.executable, "-m", "yandexgpt_grpc.testing"]


class Server:
    def __init__(self, proc: subprocess.Popen[str], address: str, notice: str | None) -> None:
        self.proc = proc
        self.address = address
        self.notice = notice  # the stderr line of a generated --tls certificate


@contextmanager
def serve(*flags: str, tls_notice: bool = False) -> Iterator[Server]:
    """Start the module (port 0: a free loopback port), yield it, stop it with SIGTERM (exit 0)."""
    with subprocess.Popen(
        [*MODULE, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"
    ) as proc:
        try:
            address = proc.stdout.readline().strip()
            assert address.startswith("127.0.0.1:"), (address, proc.stderr.read() if proc.poll() is not None else "")
            notice = proc.stderr.readline().strip() if tls_notice else None
            yield Server(proc, address, notice)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def run_refused(*flags: str, env: dict[str, str] | None = None) -> str:
    """Run the module expecting a start-up refusal; returns its (single-line) stderr."""
    done = subprocess.run([*MODULE, *flags], check=False, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    return done.stderr.strip()


def stub(channel: grpc.Channel) -> tg_grpc.TextGenerationServiceStub:
    return tg_grpc.TextGenerationServiceStub(channel)


def complete(channel: grpc.Channel, uri: str = "gpt://b1gfolder/yandexgpt-lite/latest") -> str:
    (resp,) = list(stub(channel).Completion(make_request(uri=uri), metadata=AUTH, timeout=10))
    return str(resp.alternatives[0].message.text)


# -- TLS --------------------------------------------------------------------------------------------


def test_tls_generated_certificate_is_trusted_through_the_printed_ca() -> None:
    with serve("--tls", tls_notice=True) as server:
        assert server.notice is not None
        assert "throwaway self-signed certificate" in server.notice
        ca_path = Path(server.notice.rsplit(": ", 1)[1])
        root = ca_path.read_bytes()
        assert root.startswith(b"-----BEGIN CERTIFICATE-----")
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        with grpc.secure_channel(server.address, creds) as channel:
            assert complete(channel).startswith('You said: "Hello, emulator!"')
        with grpc.insecure_channel(server.address) as channel:  # plaintext is not served
            with pytest.raises(grpc.RpcError):
                complete(channel)
    assert not ca_path.exists()  # the throwaway material goes with the server


def test_tls_with_given_cert_and_key(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    with serve("--tls", str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")) as server:
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
        with grpc.secure_channel(server.address, creds) as channel:
            assert complete(channel)


def test_tls_refusals_are_one_line(tmp_path: Path) -> None:
    assert "cannot read" in run_refused("--tls", str(tmp_path / "nope.pem"), str(tmp_path / "nope.key"))
    # without cryptography, a generated certificate names the extra to install
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['cryptography'] = None\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    line = run_refused("--tls", env=env)
    assert "pip install 'yandexgpt-grpc[sa]'" in line


def test_tls_takes_zero_or_two_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--tls", "only-cert.pem"])
    assert info.value.code == 2
    assert "--tls takes no value" in capsys.readouterr().err


# -- latency, chunk delay, failures -----------------------------------------------------------------


def test_latency_and_chunk_delay() -> None:
    with serve("--latency", "0.3", "--chunk-delay", "0.1") as server, grpc.insecure_channel(server.address) as ch:
        complete(ch)  # warm the connection
        started = time.monotonic()
        arrivals = [time.monotonic() - started for _ in stub(ch).Completion(make_request(stream=True), metadata=AUTH)]
        assert len(arrivals) >= 3
        assert arrivals[0] >= 0.3
        # The server waits 0.1 s before each chunk after the first, so the last cannot arrive sooner
        # than this (timer granularity aside). Gaps between arrivals are not checked one by one: a
        # busy client thread can read two chunks back to back.
        assert arrivals[-1] >= 0.3 + 0.1 * (len(arrivals) - 1) - 0.01


def _pattern(address: str, n: int = 24) -> list[str]:
    """OK or the failure code of each of n sequential calls."""
    out = []
    with grpc.insecure_channel(address) as ch:
        for _ in range(n):
            try:
                complete(ch)
                out.append("OK")
            except grpc.RpcError as exc:
                out.append(exc.code().name)
    return out


def test_fail_rate_with_seed_is_repeatable() -> None:
    with serve("--fail-rate", "0.5", "--fail-code", "resource_exhausted", "--seed", "7") as server:
        pattern = _pattern(server.address)
    assert set(pattern) == {"OK", "RESOURCE_EXHAUSTED"}
    # the same seed fails the same calls: the in-process emulator agrees call for call
    with Emulator(fail_rate=0.5, fail_code=grpc.StatusCode.RESOURCE_EXHAUSTED, seed=7) as emu:
        assert _pattern(emu.address) == pattern
    with Emulator(fail_rate=0.5, fail_code=grpc.StatusCode.RESOURCE_EXHAUSTED, seed=8) as emu:
        assert _pattern(emu.address) != pattern


def test_fail_rate_one_fails_every_call_with_a_numeric_code() -> None:
    with serve("--fail-rate", "1", "--fail-code", "14") as server:
        assert _pattern(server.address, 3) == ["UNAVAILABLE"] * 3


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--fail-rate", "1.5"], "within [0, 1]"),
        (["--fail-code", "NOPE"], "unknown status code 'NOPE'"),
        (["--fail-code", "OK"], "OK is not a failure"),
        (["--latency", "-1"], "seconds >= 0"),
        (["--models", " , "], "comma-separated model names"),
        (["--models", "a", "--any-model"], "not allowed with argument"),
    ],
)
def test_bad_flags(capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(flags)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_emulator_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="fail_rate"):
        Emulator(fail_rate=2)
    with pytest.raises(ValueError, match="latency"):
        Emulator(latency=-0.1)
    with pytest.raises(ValueError, match="fail_code"):
        Emulator(fail_code=grpc.StatusCode.OK)


# -- scripts --------------------------------------------------------------------------------------


def test_script_replays_items_in_order_then_the_default_model(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {"reply": {"chunks": ["Hel", "lo"]}},
                {"fault": {"code": "UNAVAILABLE", "details": "try again", "after": 1, "chunks": ["par"]}},
                {"reply": {"status": "CONTENT_FILTER", "final_text": "[filtered]", "trailing_metadata": {"x-k": "v"}}},
                {"method": "Tokenize", "fault": {"code": "RESOURCE_EXHAUSTED", "pushback_ms": 500}},
            ]
        )
    )
    with serve("--script", str(script)) as server, grpc.insecure_channel(server.address) as ch:
        texts = [r.alternatives[0].message.text for r in stub(ch).Completion(make_request(stream=True), metadata=AUTH)]
        assert texts == ["Hel", "Hello", "Hello"]
        received = []
        with pytest.raises(grpc.RpcError) as info:
            for r in stub(ch).Completion(make_request(stream=True), metadata=AUTH, timeout=10):
                received.append(r.alternatives[0].message.text)
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAVAILABLE, "try again")
        assert received == ["par"]
        responses = stub(ch).Completion(make_request(), metadata=AUTH, timeout=10)
        (resp,) = list(responses)
        assert (resp.alternatives[0].status, resp.alternatives[0].message.text) == (4, "[filtered]")
        assert ("x-k", "v") in tuple(responses.trailing_metadata())
        tok = tg_grpc.TokenizerServiceStub(ch)
        request = tg_pb2.TokenizeRequest(model_uri="gpt://b1gfolder/yandexgpt-lite/latest", text="Hi")
        with pytest.raises(grpc.RpcError) as info:
            tok.Tokenize(request, metadata=AUTH, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("grpc-retry-pushback-ms", "500") in tuple(info.value.trailing_metadata())
        # items used up: the default model answers
        assert complete(ch).startswith('You said: "Hello, emulator!"')
        assert tok.Tokenize(request, metadata=AUTH, timeout=10).tokens


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "is not valid JSON"),
        ('{"reply": {}}', "must be a JSON list"),
        ('[{"reply": {"chunk": ["x"]}}]', "item 0.reply: unknown field(s) chunk"),
        ('[{"reply": {}}, {"fault": {"code": "NOPE"}}]', "item 1.fault: unknown status code 'NOPE'"),
        ('[{"reply": {"status": "DONE"}}]', "item 0.reply: unknown alternative status 'DONE'"),
        ('[{"reply": {"chunks": "Hello"}}]', "item 0.reply.chunks: expected a list of strings"),
        ('[{"fault": {"code": "OK"}}]', "item 0.fault: a Fault needs a non-OK code"),
        ('[{"reply": {}, "fault": {}}]', "item 0: needs exactly one of 'reply' or 'fault'"),
        ('[{"method": "Chat", "reply": {}}]', "item 0: unknown method 'Chat'"),
        ("[1]", "item 0: expected an object"),
    ],
)
def test_bad_script_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str
) -> None:
    script = tmp_path / "script.json"
    script.write_text(content)
    assert main(["--script", str(script)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert fragment in err


def test_missing_script_file_in_a_subprocess(tmp_path: Path) -> None:
    assert "cannot read" in run_refused("--script", str(tmp_path / "absent.json"))


# -- models -----------------------------------------------------------------------------------------


def _refused(channel: grpc.Channel, uri: str) -> bool:
    """True when the server answers INVALID_ARGUMENT 'invalid model_uri', False when it answers."""
    try:
        complete(channel, uri)
    except grpc.RpcError as exc:
        refusal = (exc.code(), exc.details())
    else:
        return False
    assert refusal == (grpc.StatusCode.INVALID_ARGUMENT, "invalid model_uri")
    return True


def test_models_flag_and_default_list() -> None:
    with serve("--models", "my-model, other") as server, grpc.insecure_channel(server.address) as ch:
        assert not _refused(ch, "gpt://b1gfolder/my-model/latest")
        assert not _refused(ch, "gpt://b1gfolder/other")
        assert _refused(ch, "gpt://b1gfolder/yandexgpt-lite/latest")
    with serve() as server, grpc.insecure_channel(server.address) as ch:
        assert _refused(ch, "gpt://b1gfolder/gpt-4o/latest")
        assert not _refused(ch, "gpt://b1gfolder/yandexgpt/rc")


def test_any_model_flag() -> None:
    with serve("--any-model") as server, grpc.insecure_channel(server.address) as ch:
        assert not _refused(ch, "gpt://b1gfolder/gpt-4o/latest")


# -- a busy port ------------------------------------------------------------------------------------


def test_busy_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = run_refused("--port", str(port))
    assert line.startswith("python -m yandexgpt_grpc.testing: ")
    assert f"port {port} is in use (" in line


def test_unassignable_address_is_one_line() -> None:
    """192.0.2.1 (TEST-NET-1) is never a local address; grpc's C-core log lines must not show."""
    line = run_refused("--host", "192.0.2.1")
    assert "cannot listen on 192.0.2.1:0 (" in line
