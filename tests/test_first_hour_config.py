"""Issue 16, items 9-13: the configuration and error seams a new user trips on, for both clients.

Each section is one item: plaintext-vs-TLS confusion (9), copy-paste endpoints and credentials (10),
errors outside the tree (11), wrong types (12), streams read twice (13). Everything refused here is
refused before any I/O: the emulator records no call.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from yandexgpt_grpc import (
    Alternative,
    AsyncClient,
    AsyncCompletionStream,
    AsyncOperation,
    Client,
    ClientClosedError,
    CompletionResult,
    CompletionStream,
    ConfigurationError,
    EventLoopError,
    IamTokenProvider,
    Message,
    OperationNotDoneError,
    StreamConsumedError,
    StreamInterruptedError,
    UnavailableError,
    YandexGPTError,
    _errors,
    _retry,
)
from yandexgpt_grpc.testing import Emulator, Fault, OperationScript, Reply

from ._certs import make_ca_and_server_cert
from .conftest import API_KEY, Harness
from .test_readme import README, python_blocks

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


async def test_11_result_of_a_running_operation_is_in_the_tree(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=3))
    op = await harness.call("submit", MODEL, "hi")
    with pytest.raises(OperationNotDoneError, match="still running") as info:
        await _result(op)
    assert isinstance(info.value, YandexGPTError) and isinstance(info.value, RuntimeError)


async def _result(op: Any) -> Any:
    if isinstance(op, AsyncOperation):
        return await op.result()
    return await asyncio.to_thread(op.result)


@CLIENTS
@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "is not JSON"), ("[]", "must hold a JSON object"), ("{}", "missing the field 'id'")],
)
def test_11_a_bad_service_account_key_file_is_a_configuration_error(
    client_cls: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "key.json"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("YC_SERVICE_ACCOUNT_KEY_FILE", str(path))
    with pytest.raises(ConfigurationError, match=match):
        client_cls("127.0.0.1:1", insecure=True)


@CLIENTS
def test_11_a_bad_metadata_address_is_a_configuration_error(client_cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_METADATA_CREDENTIALS", "1")
    monkeypatch.setenv("YC_METADATA_ADDR", "http://169.254.169.254/")
    with pytest.raises(ConfigurationError, match="metadata service address"):
        client_cls("127.0.0.1:1", insecure=True, folder_id="b1g")


# --- 10: copy-paste endpoints and credentials ----------------------------------------------------


@CLIENTS
@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("https://llm.api.cloud.yandex.net", "llm.api.cloud.yandex.net:443"),
        ("https://llm.api.cloud.yandex.net/", "llm.api.cloud.yandex.net:443"),
        ("https://llm.api.cloud.yandex.net/foundationModels/v1/completion", "llm.api.cloud.yandex.net:443"),
        ("HTTPS://llm.api.cloud.yandex.net:8443/x?y=1", "llm.api.cloud.yandex.net:8443"),
        ("  https://[2001:db8::1]/  ", "[2001:db8::1]:443"),
        ("llm.api.cloud.yandex.net:443", "llm.api.cloud.yandex.net:443"),
        ("dns:///llm.api.cloud.yandex.net:443", "dns:///llm.api.cloud.yandex.net:443"),
        ("xds:///llm-service", "xds:///llm-service"),  # grpc's own schemes pass through
    ],
)
async def test_10_https_urls_become_host_port(client_cls: type, given: str, target: str) -> None:
    client = client_cls(given, api_key="k")
    assert client.endpoint == target
    assert client._config.operation_endpoint == target  # the operations of a custom endpoint go there too
    await close(client)


@CLIENTS
@pytest.mark.parametrize(
    ("given", "insecure", "match"),
    [
        ("ftp://llm.api.cloud.yandex.net", None, "unknown scheme 'ftp'"),
        ("grpcs://llm.api.cloud.yandex.net", None, "unknown scheme 'grpcs'"),
        ("llm.api.cloud.yandex.net:https", None, "no valid port"),
        ("llm.api.cloud.yandex.net:99999", None, "no valid port"),
        ("llm.api.cloud.yandex.net:443/foundationModels/v1/completion", None, "is not host:port"),
        ("llm.api.cloud.yandex.net 443", None, "is not host:port"),
        ("https://", None, "not a server address"),
        ("https://user@llm.api.cloud.yandex.net", None, "not a server address"),
        ("https://user:secret@llm.api.cloud.yandex.net", None, r"'https://<redacted>@llm"),
        ("ftp://user:secret@llm.api.cloud.yandex.net", None, r"'ftp://<redacted>@llm"),
        ("http://127.0.0.1:50051", None, "pass insecure=True"),
        ("https://127.0.0.1:50051", True, "says https"),
        ("http://example.com", True, "loopback"),
    ],
)
def test_10_endpoint_mistakes_are_refused_at_construction(
    client_cls: type, given: str, insecure: bool | None, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        client_cls(given, api_key="k", insecure=insecure)
    assert "secret" not in str(info.value)
    assert "e.g. 'llm.api.cloud.yandex.net:443'" in str(info.value) or "insecure" in str(info.value)


@CLIENTS
def test_10_endpoint_from_the_environment_is_named_in_its_error(
    client_cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YANDEXGPT_ENDPOINT", "llm.api.cloud.yandex.net:port")
    with pytest.raises(ConfigurationError, match=r"YANDEXGPT_ENDPOINT 'llm\.api\.cloud\.yandex\.net:port'"):
        client_cls(api_key="k")
    monkeypatch.setenv("YANDEXGPT_ENDPOINT", "https://llm.api.cloud.yandex.net/")
    assert client_cls(api_key="k").endpoint == "llm.api.cloud.yandex.net:443"


async def test_10_https_url_reaches_a_tls_server(
    kind: str, make_harness: Callable[..., Harness], yandexgpt_emulator_factory: Any
) -> None:
    ca, cert, key = make_ca_and_server_cert()
    emu = yandexgpt_emulator_factory(tls=(cert, key, ca))
    h = make_harness(
        endpoint=f"https://{emu.address}/foundationModels/v1/completion", insecure=None, root_certificates=ca
    )
    assert (await h.complete(MODEL, "hi")).text
    assert len(emu.calls) == 1


async def test_10_http_url_with_insecure_reaches_a_local_plaintext_server(
    make_harness: Callable[..., Harness], emu: Emulator
) -> None:
    h = make_harness(endpoint=f"http://{emu.address}")
    assert h.client.endpoint == emu.address
    assert (await h.complete(MODEL, "hi")).text
    assert len(emu.calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "env", "header"),
    [
        ({"api_key": f"Api-Key {API_KEY}"}, {}, f"Api-Key {API_KEY}"),
        ({"api_key": f"  api-key\t{API_KEY}\n"}, {}, f"Api-Key {API_KEY}"),
        ({"api_key": f"Authorization: Api-Key {API_KEY}"}, {}, f"Api-Key {API_KEY}"),
        ({"api_key": None, "iam_token": "Bearer t1.token"}, {}, "Bearer t1.token"),
        ({"api_key": None, "iam_token": "BEARER   t1.token "}, {}, "Bearer t1.token"),
        ({"api_key": None}, {"YC_API_KEY": f" API-KEY {API_KEY}\n"}, f"Api-Key {API_KEY}"),
        ({"api_key": None}, {"YC_IAM_TOKEN": "bearer t1.token"}, "Bearer t1.token"),
    ],
)
async def test_10_a_pasted_header_scheme_is_stripped(
    make_harness: Callable[..., Harness],
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
    env: dict[str, str],
    header: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    h = make_harness(**kwargs)
    await h.complete(MODEL, "hi")
    assert emu.calls[0].header("authorization") == header


@CLIENTS
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api_key": "Bearer t1.secret-token"}, "pass it as iam_token="),
        ({"iam_token": "Api-Key secret-key"}, "pass it as api_key="),
        ({"api_key": "Api-Key "}, "API key is empty"),
    ],
)
def test_10_the_wrong_scheme_is_named_without_the_secret(client_cls: type, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        client_cls("127.0.0.1:1", insecure=True, **kwargs)
    assert "secret" not in str(info.value)


# --- 9: plaintext vs TLS -------------------------------------------------------------------------


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits, recorded instead of slept."""
    delays: list[float] = []

    async def fake_asleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(_retry, "sleep", delays.append)
    monkeypatch.setattr(_retry, "asleep", fake_asleep)
    return delays


@pytest.mark.parametrize("how", ["unary", "stream"])
async def test_09_tls_to_a_plaintext_server_is_one_clear_error_not_retried(
    make_harness: Callable[..., Harness], emu: Emulator, waits: list[float], how: str
) -> None:
    h = make_harness(insecure=None)  # TLS, the default
    with pytest.raises(UnavailableError) as info:
        if how == "unary":
            await h.complete(MODEL, "hi")
        else:
            await h.collect(MODEL, "hi")
    err = info.value
    assert err.hint == (
        f"the server at {emu.address} does not speak TLS — a local emulator? pass insecure=True / --insecure "
        "(or set YANDEXGPT_INSECURE=1)"
    )
    assert str(err).endswith(err.hint)
    assert err.attempts == 1 and waits == []  # nothing to wait for: it never heals
    assert emu.calls == []


@pytest.mark.parametrize(
    ("details", "hint_start"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:5051: Tls handshake failed "
            "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
            "the server at 127.0.0.1:5051 does not speak TLS — a local emulator? pass insecure=True",
        ),
        (
            "last error: UNKNOWN: ipv6:%5B::1%5D:5051: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
            "SSL_ERROR_SSL: WRONG_VERSION_NUMBER",
            "the server at [::1]:5051 does not speak TLS — a local emulator?",
        ),
        (
            "last error: UNKNOWN: unix:/tmp/emu.sock: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
            "SSL_ERROR_SSL: WRONG_VERSION_NUMBER",
            "the server at /tmp/emu.sock does not speak TLS — a local emulator?",
        ),
        (
            "last error: UNKNOWN: ipv4:10.1.2.3:443: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
            "SSL_ERROR_SSL: WRONG_VERSION_NUMBER",
            "the server at 10.1.2.3:443 does not speak TLS — a plaintext server or proxy? plaintext is allowed only",
        ),
        ("Ssl handshake failed: WRONG_VERSION_NUMBER", "the server does not speak TLS — a local emulator?"),
    ],
)
def test_09_plaintext_server_is_recognised_and_named(details: str, hint_start: str) -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    assert _errors.is_permanent(unavailable, details)
    assert _errors.plaintext_hint(details).startswith(hint_start)


@pytest.mark.parametrize(
    "details",
    [
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host",
        "Tls handshake failed (TSI_PROTOCOL_FAILURE): Socket closed",  # cut mid-handshake: may heal
        "WRONG_VERSION_NUMBER",  # not a handshake failure
    ],
)
def test_09_other_connection_failures_stay_transient(details: str) -> None:
    assert not _errors.is_permanent(grpc.StatusCode.UNAVAILABLE, details)


def test_09_untrusted_certificate_keeps_its_own_hint() -> None:
    details = "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED"
    assert not _errors.is_plaintext_server(grpc.StatusCode.UNAVAILABLE, details)


@pytest.mark.parametrize("value", ["1", "true", "YES", " True ", "yes\n"])
async def test_09_yandexgpt_insecure_turns_plaintext_on_for_loopback(
    make_harness: Callable[..., Harness], emu: Emulator, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("YANDEXGPT_INSECURE", value)
    monkeypatch.setenv("YANDEXGPT_ENDPOINT", emu.address)
    monkeypatch.setenv("YC_API_KEY", API_KEY)
    monkeypatch.setenv("YC_FOLDER_ID", "b1genv")
    h = make_harness(endpoint=None, insecure=None, api_key=None, folder_id=None)
    assert (await h.complete(MODEL, "hi")).text
    alts, _ = await h.collect(MODEL, "hi")
    assert alts[-1].is_final and len(emu.calls) == 2


@CLIENTS
@pytest.mark.parametrize("value", ["0", "false", "No", "", "  "])
def test_09_yandexgpt_insecure_off_values_mean_tls(
    client_cls: type, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("YANDEXGPT_INSECURE", value)
    client = client_cls(api_key="k")  # the default, remote endpoint: fine over TLS
    assert client._config.insecure is False


@CLIENTS
@pytest.mark.parametrize("value", ["2", "on", "off", "insecure", "y"])
def test_09_yandexgpt_insecure_unknown_value_names_the_variable(
    client_cls: type, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("YANDEXGPT_INSECURE", value)
    with pytest.raises(ConfigurationError, match=f"YANDEXGPT_INSECURE={value!r} is not understood"):
        client_cls("127.0.0.1:1", api_key="k")


@CLIENTS
def test_09_yandexgpt_insecure_is_still_loopback_only(client_cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YANDEXGPT_INSECURE", "1")
    with pytest.raises(ConfigurationError, match="YANDEXGPT_INSECURE=1 sends credentials in plaintext") as info:
        client_cls(api_key="k")  # the default endpoint is remote
    assert "'llm.api.cloud.yandex.net'" in str(info.value)
    with pytest.raises(ConfigurationError, match="loopback"):
        client_cls("10.0.0.5:50051", api_key="k")


@CLIENTS
def test_09_an_explicit_argument_beats_yandexgpt_insecure(client_cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YANDEXGPT_INSECURE", "1")
    assert client_cls("llm.api.cloud.yandex.net:443", api_key="k", insecure=False)._config.insecure is False
    monkeypatch.setenv("YANDEXGPT_INSECURE", "0")
    assert client_cls("127.0.0.1:1", api_key="k", insecure=True)._config.insecure is True


@pytest.fixture(scope="module")
def standalone_emulator() -> Iterator[str]:
    """`python -m yandexgpt_grpc.testing` as a user starts it: plaintext, its address on stdout."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "yandexgpt_grpc.testing"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


README_BLOCKS = [(line, code) for line, code, skipped in python_blocks(README.read_text("utf-8")) if not skipped]


@pytest.mark.parametrize(("line", "code"), README_BLOCKS, ids=[f"line{line}" for line, _ in README_BLOCKS])
def test_09_readme_blocks_run_unchanged_against_the_standalone_emulator(
    line: int, code: str, standalone_emulator: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_", "GRPC_"))}
    env.update(YANDEXGPT_ENDPOINT=standalone_emulator, YANDEXGPT_INSECURE="1", YC_API_KEY="any", YC_FOLDER_ID="any")
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, f"README.md block at line {line} failed:\n{proc.stderr}"


def test_09_the_cli_honours_yandexgpt_insecure(emu: Emulator) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_"))}
    env.update(YANDEXGPT_ENDPOINT=emu.address, YANDEXGPT_INSECURE="1", YC_API_KEY=API_KEY, YC_FOLDER_ID="b1genv")
    proc = subprocess.run(
        [sys.executable, "-m", "yandexgpt_grpc", "Hello"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'You said: "Hello"' in proc.stdout
    assert len(emu.calls) == 1


# --- 12: wrong types -----------------------------------------------------------------------------


@CLIENTS
@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((123,), {}, TypeError, "endpoint must be a str (host:port, e.g. 'llm.api.cloud.yandex.net:443'), got int 123"),
        ((b"127.0.0.1:1",), {}, TypeError, "endpoint must be a str"),
        ((), {"folder_id": 123}, TypeError, "folder_id must be a str such as 'b1g...', got int 123"),
        ((), {"insecure": "no"}, TypeError, "insecure must be True, False or None, got str 'no'"),
        ((), {"insecure": 1}, TypeError, "insecure must be True, False or None, got int 1"),
        ((), {"data_logging": "false"}, TypeError, "data_logging must be True, False or None, got str 'false'"),
        ((), {"metadata": "x"}, TypeError, "metadata must be a dict or a list of (key, value) pairs, got str"),
        ((), {"metadata": "authorization: Bearer secret-token"}, TypeError, "metadata must be a dict or a list"),
        ((), {"root_certificates": "-----BEGIN PRIVATE KEY----- secret"}, TypeError, "got str"),
        ((), {"metadata": [("a", "1"), "b"]}, TypeError, "metadata[1] must be a (key, value) pair, got str"),
        ((), {"metadata": [("a", "1", "2")]}, TypeError, "metadata[0] must be a (key, value) pair, got tuple"),
        ((), {"timeout": "5"}, TypeError, "timeout must be a number of seconds or None, got str '5'"),
        ((), {"timeout": float("nan")}, ValueError, "timeout must be a positive number of seconds or None"),
        ((), {"timeout": float("inf")}, ValueError, "timeout must be a positive number of seconds or None"),
        ((), {"max_retries": "3"}, TypeError, "max_retries must be an int or None, got str '3'"),
        ((), {"root_certificates": "-----BEGIN"}, TypeError, "root_certificates must be PEM bytes or None, got str"),
        ((), {"operation_endpoint": 5}, TypeError, "operation_endpoint must be a str"),
        ((), {"channel_options": "x"}, TypeError, "channel_options must be a dict or a list of (key, value) pairs"),
        ((), {"channel_options": [("grpc.x", 1, 2)]}, TypeError, "channel_options[0] must be a (key, value) pair"),
    ],
)
def test_12_wrong_constructor_types_name_the_argument_and_what_came(
    client_cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, message: str
) -> None:
    base: dict[str, Any] = {"api_key": "k"}
    if not args:
        base["endpoint"] = "127.0.0.1:1"
        base.setdefault("insecure", True)
    with pytest.raises(error) as info:
        client_cls(*args, **{**base, **kwargs})
    assert isinstance(info.value, error)
    assert message in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((Message.user("hi"),), {}, None, None),  # a single Message is fine
        ((b"hello",), {}, TypeError, "messages must be a str, a Message or a list of them, got bytes (decode it"),
        ((bytearray(b"hello"),), {}, TypeError, "got bytearray"),
        (("hi",), {"metadata": "x"}, TypeError, "metadata must be a dict or a list of (key, value) pairs"),
        (("hi",), {"metadata": [("k",)]}, TypeError, "metadata[0] must be a (key, value) pair, got tuple"),
        (("hi",), {"timeout": "5"}, TypeError, "timeout must be a number of seconds or None, got str '5'"),
        (("hi",), {"timeout": 0}, ValueError, "timeout must be a positive number"),
        (
            ("ab\ud800c",),
            {},
            ValueError,
            "messages[0]: the text has a lone surrogate '\\ud800' at offset 2",
        ),
        (
            ([Message.system("ok"), Message.user("fine"), Message.user("x\udcff")],),
            {},
            ValueError,
            "messages[2]: the text has a lone surrogate '\\udcff' at offset 1",
        ),
        (
            ([{"role": "user", "text": "\udc80"}],),
            {},
            ValueError,
            "messages[0]: the text has a lone surrogate '\\udc80' at offset 0",
        ),
    ],
)
async def test_12_wrong_call_arguments_are_refused_before_io(
    harness: Harness, emu: Emulator, args: tuple[Any, ...], kwargs: dict[str, Any], error: Any, message: Any
) -> None:
    calls = [
        lambda: harness.complete(MODEL, *args, **kwargs),
        lambda: harness.collect(MODEL, *args, **kwargs),
        lambda: harness.call("submit", MODEL, *args, **kwargs),
        lambda: harness.call("tokenize_messages", MODEL, *args, **kwargs),
    ]
    for call in calls:
        if error is None:
            await call()
            continue
        with pytest.raises(error) as info:
            await call()
        assert message in str(info.value)
    if error is not None:
        assert emu.calls == []


async def test_12_tokenize_names_a_lone_surrogate(harness: Harness, emu: Emulator) -> None:
    with pytest.raises(ValueError, match=r"text: the text has a lone surrogate '\\ud83d' at offset 3"):
        await harness.call("tokenize", MODEL, "abc\ud83d")
    assert emu.calls == []


# --- 13: a stream read twice -----------------------------------------------------------------------


async def read_all(stream: Any) -> list[Alternative]:
    """A fresh loop over the stream, as a user writes it (`for` / `async for`)."""
    if isinstance(stream, AsyncCompletionStream):
        return [alt async for alt in stream]
    return await asyncio.to_thread(list, stream)


async def read_text(stream: Any) -> list[str]:
    if isinstance(stream, AsyncCompletionStream):
        return [piece async for piece in stream.text_stream]
    return await asyncio.to_thread(lambda: list(stream.text_stream))


async def get_final(stream: Any) -> CompletionResult:
    if isinstance(stream, AsyncCompletionStream):
        return await stream.get_final()
    return await asyncio.to_thread(stream.get_final)


async def test_13_a_second_loop_after_the_end_raises(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["a", "b"]))
    stream = harness.stream(MODEL, "hi")
    first = await read_all(stream)
    assert [a.delta for a in first] == ["a", "b", ""]
    for again in (read_all, read_text):
        with pytest.raises(StreamConsumedError, match="already read to its end") as info:
            await again(stream)
        assert isinstance(info.value, YandexGPTError) and isinstance(info.value, RuntimeError)
    # get_final() on a consumed stream is friendly: the result again, without I/O.
    assert stream.final is not None
    assert await get_final(stream) is stream.final and stream.final.text == "ab"
    assert len(emu.calls) == 1


async def test_13_a_loop_after_the_with_block_raises(harness: Harness, emu: Emulator) -> None:
    stream = harness.stream(MODEL, "hi")
    if isinstance(stream, AsyncCompletionStream):
        async with stream:
            async for _ in stream:
                pass
    else:
        assert isinstance(stream, CompletionStream)

        def run() -> None:
            with stream:
                for _ in stream:
                    pass

        await asyncio.to_thread(run)
    with pytest.raises(StreamConsumedError, match="already read to its end"):
        await read_all(stream)
    assert (await get_final(stream)).text


async def test_13_a_loop_after_close_raises_and_get_final_says_why(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["a", "b", "c"]))
    stream = harness.stream(MODEL, "hi")
    assert (await harness.next(stream)).delta == "a"
    await harness.close_stream(stream)
    with pytest.raises(StreamConsumedError, match="closed before it ended"):
        await read_all(stream)
    with pytest.raises(StreamConsumedError, match="closed before it ended"):
        await get_final(stream)
    never_started = harness.stream(MODEL, "hi")
    await harness.close_stream(never_started)
    with pytest.raises(StreamConsumedError, match="closed before it ended"):
        await read_all(never_started)


async def test_13_a_loop_after_a_failure_raises(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.INTERNAL, after=1, chunks=["a"]))
    stream = harness.stream(MODEL, "hi")
    with pytest.raises(StreamInterruptedError):
        await read_all(stream)
    with pytest.raises(StreamConsumedError, match="failed"):
        await read_all(stream)
    with pytest.raises(StreamConsumedError, match="failed"):
        await get_final(stream)


async def test_13_a_loop_after_break_continues_and_get_final_finishes(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["a", "b", "c"]))
    stream = harness.stream(MODEL, "hi")
    assert (await harness.next(stream)).delta == "a"
    final = await get_final(stream)  # reads the rest
    assert final.text == "abc" and await get_final(stream) is final
    assert not emu.calls[0].cancelled


async def test_13_next_after_the_end_keeps_the_iterator_protocol(harness: Harness, emu: Emulator) -> None:
    """next()/anext() on an exhausted stream stop again, as every Python iterator does; only loops raise."""
    stream = harness.stream(MODEL, "hi")
    await read_all(stream)
    for _ in range(2):
        with pytest.raises(StopAsyncIteration):
            await harness.next(stream)


async def test_12_operation_id_of_the_wrong_type(harness: Harness, emu: Emulator) -> None:
    with pytest.raises(TypeError, match="operation_id must be a str, got int"):
        await harness.call("operation", 123)
    with pytest.raises(ValueError, match="operation_id must be a non-empty str"):
        await harness.call("operation", " ")
    assert emu.calls == []
