"""Credentials: static values, the refresh core, user providers, the metadata service, the env chain.

Time is a fake clock everywhere; nothing sleeps to make time pass.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests._clock import ManualClock as FakeClock
from yandexgpt_grpc._auth import (
    ApiKey,
    Credentials,
    CredentialsError,
    IamToken,
    IamTokenProvider,
    MetadataService,
    ServiceAccountKey,
    default_credentials,
    resolve_credentials,
)
from yandexgpt_grpc._auth_base import RefreshingCredentials, Token

T0 = 1_700_000_000.0
SECRET = "s3cr3t-value-0123456789"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for another thread's progress (not a sleep standing in for time passing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


# -- static credentials -------------------------------------------------------------------------


def test_static_values_and_flags() -> None:
    key, token = ApiKey(f"  {SECRET}\n"), IamToken(f"\t{SECRET} ")
    assert key.authorization() == f"Api-Key {SECRET}"
    assert token.authorization() == f"Bearer {SECRET}"
    assert asyncio.run(key.aauthorization()) == key.authorization()
    assert (key.refreshable, key.sends_folder_id) == (False, False)
    assert (token.refreshable, token.sends_folder_id) == (False, True)
    token.invalidate(token.authorization())  # a no-op for static values
    assert token.authorization() == f"Bearer {SECRET}"


@pytest.mark.parametrize("cls", [ApiKey, IamToken])
@pytest.mark.parametrize("bad", ["", "   ", "ab\ncd", "ab\r\ncd", "ab\0cd"])
def test_static_values_rejected_without_echo(cls: type[Credentials], bad: str) -> None:
    with pytest.raises(ValueError) as info:
        cls(bad.replace("ab", SECRET))  # type: ignore[call-arg]
    assert SECRET not in str(info.value)


def test_static_non_string_is_type_error() -> None:
    with pytest.raises(TypeError):
        ApiKey(b"bytes")  # type: ignore[arg-type]


def test_repr_never_shows_secrets() -> None:
    for creds in (ApiKey(SECRET), IamToken(SECRET), IamTokenProvider(lambda: SECRET)):
        assert SECRET not in repr(creds) and SECRET not in str(creds)
    assert repr(ApiKey(SECRET)) == "ApiKey(<redacted>)"
    assert SECRET not in repr(Token(SECRET, T0))


# -- the refresh core ---------------------------------------------------------------------------


class Scripted(RefreshingCredentials):
    """Hands out tok1, tok2, … valid for `lifetime`; fails while `failing` is set."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600.0) -> None:
        super().__init__(clock=clock)
        self.lifetime = lifetime
        self.calls = 0
        self.failing: Exception | None = None
        self.gate: threading.Event | None = None

    def _fetch(self) -> Token:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.failing is not None:
            raise self.failing
        return Token(f"tok{self.calls}-{SECRET}", self._clock() + self.lifetime)


def test_caches_until_advisory_window(clock: FakeClock) -> None:
    creds = Scripted(clock)
    first = creds.authorization()
    assert first == f"Bearer tok1-{SECRET}"
    clock.advance(1799)  # more than half the lifetime left
    assert creds.authorization() == first
    assert creds.calls == 1
    clock.advance(2)  # less than half left: advisory refresh
    assert creds.authorization() == f"Bearer tok2-{SECRET}"
    assert creds.expires_at == clock.now + 3600


def test_advisory_failure_keeps_token_logs_warning_and_backs_off(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    creds = Scripted(clock)
    first = creds.authorization()
    clock.advance(2000)
    creds.failing = CredentialsError("exchange refused")
    with caplog.at_level(logging.DEBUG, logger="yandexgpt_grpc"):
        assert creds.authorization() == first
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "advisory" in warnings[0].getMessage()
    assert SECRET not in caplog.text
    assert creds.authorization() == first  # backing off: no new attempt yet
    assert creds.calls == 2
    clock.advance(31)
    creds.failing = None
    assert creds.authorization() == f"Bearer tok3-{SECRET}"


@pytest.mark.parametrize("advance", [3600 - 299, 3600, 5000])
def test_mandatory_failure_raises(clock: FakeClock, advance: float) -> None:
    creds = Scripted(clock)
    creds.authorization()
    clock.advance(advance)  # under 5 minutes left, or expired
    creds.failing = OSError(f"connection reset while sending {SECRET}")
    with pytest.raises(CredentialsError) as info:
        creds.authorization()
    assert SECRET not in str(info.value)
    creds.failing = None
    assert creds.authorization() == f"Bearer tok3-{SECRET}"


async def test_mandatory_failure_raises_async(clock: FakeClock) -> None:
    creds = Scripted(clock)
    creds.failing = CredentialsError("nope")
    with pytest.raises(CredentialsError, match="nope"):
        await creds.aauthorization()


def test_short_lifetimes_scale_the_windows(clock: FakeClock) -> None:
    creds = Scripted(clock, lifetime=60)
    first = creds.authorization()
    clock.advance(29)
    assert creds.authorization() == first
    clock.advance(2)
    creds.failing = CredentialsError("down")
    assert creds.authorization() == first  # advisory at 29 s left
    clock.advance(24)  # 5 s left: mandatory (lifetime / 10)
    with pytest.raises(CredentialsError):
        creds.authorization()


def test_invalidate_forces_refresh_only_for_current_token(clock: FakeClock) -> None:
    creds = Scripted(clock)
    first = creds.authorization()
    creds.invalidate("Bearer something-older")
    assert creds.authorization() == first
    creds.invalidate(first)
    second = creds.authorization()
    assert second != first
    creds.invalidate(first)  # a late report about the replaced token changes nothing
    assert creds.authorization() == second
    assert creds.calls == 2


def test_single_flight_50_threads(clock: FakeClock) -> None:
    creds = Scripted(clock)
    creds.gate = threading.Event()
    entered = []
    results: list[str] = []

    def worker() -> None:
        entered.append(1)
        results.append(creds.authorization())

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    wait_until(lambda: len(entered) == 50 and creds.calls == 1)
    creds.gate.set()
    for t in threads:
        t.join(10)
    assert creds.calls == 1
    assert results == [f"Bearer tok1-{SECRET}"] * 50


def test_single_flight_failure_is_shared_by_threads(clock: FakeClock) -> None:
    creds = Scripted(clock)
    creds.gate = threading.Event()
    creds.failing = CredentialsError("refused")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            creds.authorization()
        except CredentialsError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    wait_until(lambda: creds.calls == 1)
    creds.gate.set()
    for t in threads:
        t.join(10)
    # Callers that arrived during the failed attempt share its error; latecomers may try anew.
    assert len(errors) == 20
    assert creds.calls < 20


async def test_single_flight_50_tasks(clock: FakeClock) -> None:
    release = asyncio.Event()
    calls = 0

    async def fetch() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await release.wait()
        return f"async-{SECRET}", clock() + 3600

    creds = IamTokenProvider(fetch, clock=clock)
    tasks = [asyncio.create_task(creds.aauthorization()) for _ in range(50)]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*tasks) == [f"Bearer async-{SECRET}"] * 50
    assert calls == 1


async def test_single_flight_threads_and_tasks_together(clock: FakeClock) -> None:
    creds = Scripted(clock)
    creds.gate = threading.Event()
    threads_done: list[str] = []
    threads = [threading.Thread(target=lambda: threads_done.append(creds.authorization())) for _ in range(10)]
    for t in threads:
        t.start()
    wait_until(lambda: creds.calls == 1)
    tasks = [asyncio.create_task(creds.aauthorization()) for _ in range(10)]
    await asyncio.sleep(0)
    creds.gate.set()
    assert set(await asyncio.gather(*tasks)) == {f"Bearer tok1-{SECRET}"}
    for t in threads:
        t.join(10)
    assert set(threads_done) == {f"Bearer tok1-{SECRET}"}
    assert creds.calls == 1


async def test_cancelled_owner_hands_over(clock: FakeClock) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        started.set()
        if calls == 1:
            await asyncio.Event().wait()  # never finishes: its task gets cancelled
        await release.wait()
        return "second"

    creds = IamTokenProvider(fetch, clock=clock)
    owner = asyncio.create_task(creds.aauthorization())
    await started.wait()
    waiter = asyncio.create_task(creds.aauthorization())
    await asyncio.sleep(0)
    owner.cancel()
    release.set()
    assert await waiter == "Bearer second"
    assert calls == 2
    with pytest.raises(asyncio.CancelledError):
        await owner


# -- IamTokenProvider ---------------------------------------------------------------------------


def test_provider_return_shapes(clock: FakeClock) -> None:
    naive_utc = datetime.datetime(2030, 1, 1, 0, 0, 0)
    aware = datetime.datetime(2030, 1, 1, 3, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=3)))
    for result, expires in [
        ("plain", T0 + 3600),
        (("tuple", T0 + 100), T0 + 100),
        (("naive", naive_utc), naive_utc.replace(tzinfo=datetime.timezone.utc).timestamp()),
        (("aware", aware), aware.timestamp()),
    ]:
        creds = IamTokenProvider(lambda r=result: r, clock=clock)
        assert creds.authorization().startswith("Bearer ")
        assert creds.expires_at == expires
    assert IamTokenProvider(lambda: "x", ttl=10, clock=clock).sends_folder_id


def test_provider_bad_results_raise_without_echo(clock: FakeClock) -> None:
    for result in [None, 42, (SECRET,), (SECRET, "tomorrow"), f"{SECRET}\nmore"]:
        creds = IamTokenProvider(lambda r=result: r, clock=clock)
        with pytest.raises(CredentialsError) as info:
            creds.authorization()
        assert SECRET not in str(info.value)
        assert SECRET not in str(info.value.__cause__)


def test_provider_argument_checks() -> None:
    with pytest.raises(TypeError):
        IamTokenProvider("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        IamTokenProvider(lambda: "x", ttl=0)


def test_async_provider_from_sync_code(clock: FakeClock) -> None:
    async def fetch() -> str:
        await asyncio.sleep(0)
        return "from-async"

    creds = IamTokenProvider(fetch, clock=clock)
    assert creds.authorization() == "Bearer from-async"


async def test_async_provider_from_sync_code_inside_a_running_loop(clock: FakeClock) -> None:
    async def fetch() -> str:
        return "nested"

    creds = IamTokenProvider(fetch, clock=clock)
    assert creds.authorization() == "Bearer nested"  # would fail with asyncio.run() in this thread


async def test_sync_provider_from_async_code_runs_off_the_loop(clock: FakeClock) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def fetch() -> str:
        seen.append(threading.get_ident())
        return "sync"

    creds = IamTokenProvider(fetch, clock=clock)
    assert await creds.aauthorization() == "Bearer sync"
    assert seen and seen[0] != loop_thread


def test_provider_error_propagates_as_credentials_error(clock: FakeClock) -> None:
    def fetch() -> str:
        raise RuntimeError("backend down")

    with pytest.raises(CredentialsError, match="RuntimeError") as info:
        IamTokenProvider(fetch, clock=clock).authorization()
    assert isinstance(info.value.__cause__, RuntimeError)


# -- the metadata service -----------------------------------------------------------------------


class MetadataServer:
    """A loopback stand-in for the VM metadata service."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.replies: list[tuple[int, bytes]] = []
        self.counter = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.path, dict(self.headers)))
                if outer.replies:
                    status, body = outer.replies.pop(0)
                else:
                    outer.counter += 1
                    status = 200
                    body = json.dumps(
                        {
                            "access_token": f"vm-{outer.counter}-{SECRET}",
                            "expires_in": 43200,
                            "token_type": "Bearer",
                        }
                    ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self) -> MetadataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def metadata_server() -> Iterator[MetadataServer]:
    with MetadataServer() as server:
        yield server


def test_metadata_service_fetches_and_refreshes(metadata_server: MetadataServer, clock: FakeClock) -> None:
    creds = MetadataService(metadata_server.address, clock=clock)
    assert creds.authorization() == f"Bearer vm-1-{SECRET}"
    assert creds.expires_at == T0 + 43200
    path, headers = metadata_server.requests[0]
    assert path == "/computeMetadata/v1/instance/service-accounts/default/token"
    assert headers["Metadata-Flavor"] == "Google"
    assert creds.authorization() == f"Bearer vm-1-{SECRET}"
    clock.advance(43200 - 100)  # under 5 minutes left
    assert creds.authorization() == f"Bearer vm-2-{SECRET}"
    assert (creds.refreshable, creds.sends_folder_id) == (True, False)
    assert SECRET not in repr(creds)


async def test_metadata_service_async(metadata_server: MetadataServer, clock: FakeClock) -> None:
    creds = MetadataService(metadata_server.address, clock=clock)
    results = await asyncio.gather(*(creds.aauthorization() for _ in range(50)))
    assert set(results) == {f"Bearer vm-1-{SECRET}"}
    assert len(metadata_server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (500, b"internal", "HTTP 500"),
        (404, b"", "HTTP 404"),
        (200, f"not json {SECRET}".encode(), "JSON object"),
        (200, json.dumps({"expires_in": 10}).encode(), "access_token"),
        (200, json.dumps({"access_token": SECRET}).encode(), "expires_in"),
        (200, json.dumps({"access_token": SECRET, "expires_in": 5, "token_type": "Mac"}).encode(), "token_type"),
    ],
)
def test_metadata_service_errors_do_not_echo_the_body(
    metadata_server: MetadataServer, clock: FakeClock, status: int, body: bytes, match: str
) -> None:
    metadata_server.replies.append((status, body))
    with pytest.raises(CredentialsError, match=match) as info:
        MetadataService(metadata_server.address, clock=clock).authorization()
    assert SECRET not in str(info.value)


def test_metadata_service_unreachable_fails_fast(clock: FakeClock) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    creds = MetadataService(f"127.0.0.1:{port}", timeout=0.5, clock=clock)
    with pytest.raises(CredentialsError, match="unreachable"):
        creds.authorization()


def test_metadata_service_address_from_env_and_validation() -> None:
    assert MetadataService(env={"YC_METADATA_ADDR": "10.0.0.1:8080"}).address == "10.0.0.1:8080"
    assert MetadataService(env={}).address == "169.254.169.254"
    with pytest.raises(ValueError, match="host"):
        MetadataService("http://x/y")


# -- resolve_credentials ------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A valid authorized-key file (ServiceAccountKey parses it without any network I/O)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    path = tmp_path / "key.json"
    path.write_text(json.dumps({"id": "ajekey", "service_account_id": "ajesa", "private_key": pem}))
    return path


def test_default_chain_order(key_file: Path) -> None:
    env = {
        "YC_API_KEY": "env-key",
        "YC_IAM_TOKEN": "env-token",
        "YC_SERVICE_ACCOUNT_KEY_FILE": str(key_file),
        "YC_METADATA_CREDENTIALS": "1",
        "YC_METADATA_ADDR": "127.0.0.1:9",
    }
    seen = []
    while True:
        try:
            creds = resolve_credentials(env=env)
        except ValueError:
            break
        seen.append(type(creds))
        env.pop(next(k for k in list(env) if k != "YC_METADATA_ADDR"))
    assert seen == [ApiKey, IamToken, ServiceAccountKey, MetadataService]
    assert default_credentials is resolve_credentials


def test_explicit_arguments_win_over_env() -> None:
    env = {"YC_API_KEY": "env-key"}
    assert resolve_credentials(iam_token="arg", env=env).authorization() == "Bearer arg"
    assert resolve_credentials(api_key="arg", env=env).authorization() == "Api-Key arg"
    mine = IamToken("mine")
    assert resolve_credentials(credentials=mine, env=env) is mine
    with pytest.raises(ValueError, match="only one"):
        resolve_credentials(api_key="a", iam_token="b")
    with pytest.raises(TypeError):
        resolve_credentials(credentials="Bearer x")  # type: ignore[arg-type]


def test_blank_env_values_are_skipped_and_metadata_needs_opt_in() -> None:
    env = {"YC_API_KEY": " ", "YC_IAM_TOKEN": "", "YC_METADATA_CREDENTIALS": "0"}
    with pytest.raises(ValueError) as info:
        resolve_credentials(env=env)
    message = str(info.value)
    for name in ("api_key=", "iam_token=", "credentials=", "YC_API_KEY", "YC_IAM_TOKEN"):
        assert name in message
    assert "YC_SERVICE_ACCOUNT_KEY_FILE" in message and "YC_METADATA_CREDENTIALS" in message
    for flag in ("1", "true", "YES"):
        assert isinstance(resolve_credentials(env={"YC_METADATA_CREDENTIALS": flag}), MetadataService)


def test_env_values_are_cleaned_and_checked() -> None:
    assert resolve_credentials(env={"YC_API_KEY": " k\n"}).authorization() == "Api-Key k"
    with pytest.raises(ValueError) as info:
        resolve_credentials(env={"YC_IAM_TOKEN": f"{SECRET}\n{SECRET}"})
    assert SECRET not in str(info.value)


def test_missing_key_file_from_env(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        resolve_credentials(env={"YC_SERVICE_ACCOUNT_KEY_FILE": str(tmp_path / "absent.json")})


async def test_only_static_credentials_offer_a_static_header(emu: Any) -> None:
    """AsyncClient skips aauthorization() for these; anything that may refresh must not offer one."""
    from yandexgpt_grpc import AsyncClient

    assert ApiKey("k").static_authorization == ApiKey("k").authorization() == "Api-Key k"
    assert IamToken("t").static_authorization == "Bearer t"
    provider = IamTokenProvider(lambda: "t1")
    assert provider.static_authorization is None

    class Custom(Credentials):
        def authorization(self) -> str:
            return "Api-Key custom"

    assert Custom().static_authorization is None
    async with AsyncClient(emu.address, insecure=True, credentials=provider, folder_id="b1g") as client:
        await client.complete("yandexgpt-lite", "hi")
        await client.stream("yandexgpt-lite", "hi").get_final()
    async with AsyncClient(emu.address, insecure=True, credentials=Custom(), folder_id="b1g") as client:
        await client.stream("yandexgpt-lite", "hi").get_final()
    assert [c.header("authorization") for c in emu.calls] == ["Bearer t1", "Bearer t1", "Api-Key custom"]
