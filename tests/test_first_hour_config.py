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

from ._certs import make_ca_and_server_cert
from .conftest import API_KEY, Harness

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
