"""Service-account keys: key files, the JWT, and the exchange against the emulated IAM service.

The full flow (key -> token -> completion -> expiry -> refresh -> completion) runs through the
real Client / AsyncClient and the emulator on loopback, with a fake clock shared by the
credentials and the emulated IAM service.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from tests._clock import ManualClock as FakeClock
from yandexgpt_grpc import AsyncClient, Client
from yandexgpt_grpc._auth import CredentialsError, ServiceAccountKey
from yandexgpt_grpc._auth_sa import IAM_TOKEN_AUDIENCE, JWT_LIFETIME
from yandexgpt_grpc.testing import Emulator
from yandexgpt_grpc.testing._iam import IamService

T0 = 1_700_000_000.0
SA_ID = "ajeserviceaccount01"
FOLDER = "b1gfolder"
MODEL = "yandexgpt-lite"


@pytest.fixture(scope="module")
def shared_key() -> dict[str, str]:
    """One RSA key for the module: generating keys is the slow part of these tests."""
    return IamService().create_key(SA_ID, key_id="ajekeyid0001")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def iam(clock: FakeClock, shared_key: dict[str, str]) -> IamService:
    service = IamService(token_lifetime=60, clock=clock)
    service.add_key(shared_key["id"], SA_ID, shared_key["public_key"])
    return service


@pytest.fixture
def emu(iam: IamService) -> Iterator[Emulator]:
    with Emulator(folder_id=FOLDER, extra_services=[iam]) as emulator:
        yield emulator


def sa_creds(key: dict[str, str], emu: Emulator, clock: FakeClock) -> ServiceAccountKey:
    return ServiceAccountKey(key, endpoint=emu.address, insecure=True, clock=clock)


def b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# -- key material -------------------------------------------------------------------------------


def test_jwt_header_claims_and_signature(shared_key: dict[str, str]) -> None:
    creds = ServiceAccountKey.from_dict(shared_key)
    jwt = creds._create_jwt(T0 + 0.7)
    head, body, sig = jwt.split(".")
    assert b64json(head) == {"typ": "JWT", "alg": "PS256", "kid": "ajekeyid0001"}
    assert b64json(body) == {
        "iss": SA_ID,
        "aud": IAM_TOKEN_AUDIENCE,
        "iat": int(T0),
        "exp": int(T0) + JWT_LIFETIME,
    }
    public = serialization.load_pem_public_key(shared_key["public_key"].encode())
    public.verify(  # type: ignore[union-attr, call-arg]
        base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)),
        f"{head}.{body}".encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),  # RFC 7518: salt = hash
        hashes.SHA256(),  # type: ignore[arg-type]
    )
    assert "=" not in jwt and "+" not in jwt and "/" not in jwt


def test_from_file_with_yc_banner(tmp_path: Path, shared_key: dict[str, str]) -> None:
    data = dict(shared_key)
    data["private_key"] = "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <x>\n" + data["private_key"]
    path = tmp_path / "authorized_key.json"
    path.write_text(json.dumps(data))
    creds = ServiceAccountKey.from_file(path)
    assert (creds.key_id, creds.service_account_id) == ("ajekeyid0001", SA_ID)
    assert (creds.refreshable, creds.sends_folder_id) == (True, False)
    assert repr(creds) == (
        "ServiceAccountKey(id='ajekeyid0001', service_account_id='ajeserviceaccount01', "
        "endpoint='iam.api.cloud.yandex.net:443')"
    )


def _no_key_material(exc: BaseException, key: dict[str, str]) -> None:
    """Neither the message nor any chained exception may carry the private key."""
    body = key["private_key"].splitlines()[1]
    seen: BaseException | None = exc
    while seen is not None:
        assert body not in str(seen) and body not in repr(seen)
        assert "PRIVATE KEY" not in str(seen)
        assert getattr(seen, "doc", None) is None  # JSONDecodeError keeps the whole document
        seen = seen.__cause__ or seen.__context__


@pytest.mark.parametrize("field", ["id", "service_account_id", "private_key"])
def test_missing_or_empty_fields_are_named(shared_key: dict[str, str], field: str) -> None:
    data = {k: v for k, v in shared_key.items() if k != field}
    with pytest.raises(ValueError, match=f"missing the field '{field}'") as info:
        ServiceAccountKey(data)
    _no_key_material(info.value, shared_key)
    with pytest.raises(ValueError, match=f"'{field}' must be a non-empty string"):
        ServiceAccountKey({**shared_key, field: "  "})


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pem: pem.replace("-----BEGIN PRIVATE KEY-----", ""),  # no PEM at all
        lambda pem: pem[: len(pem) // 2],  # truncated
        lambda pem: pem.replace(pem.splitlines()[3], "A" * 64),  # corrupted body
    ],
)
def test_malformed_private_key_named_not_echoed(shared_key: dict[str, str], mangle: Any) -> None:
    with pytest.raises(ValueError, match="'private_key'") as info:
        ServiceAccountKey({**shared_key, "private_key": mangle(shared_key["private_key"])})
    _no_key_material(info.value, shared_key)
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_non_rsa_key_rejected(shared_key: dict[str, str]) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="RSA"):
        ServiceAccountKey({**shared_key, "private_key": pem})


def test_bad_json_file_not_echoed(tmp_path: Path, shared_key: dict[str, str]) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(shared_key)[:-5])  # truncated mid-key
    with pytest.raises(ValueError, match="not JSON") as info:
        ServiceAccountKey.from_file(path)
    _no_key_material(info.value, shared_key)
    assert info.value.__context__ is None
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        ServiceAccountKey(str(path))


def test_insecure_only_to_loopback(shared_key: dict[str, str]) -> None:
    for endpoint in ("localhost:1", "127.0.0.1:1", "[::1]:1", "unix:/tmp/x.sock"):
        ServiceAccountKey(shared_key, endpoint=endpoint, insecure=True)
    for endpoint in ("iam.api.cloud.yandex.net:443", "10.0.0.1:443", "[2001:db8::1]:443"):
        with pytest.raises(ValueError, match="loopback"):
            ServiceAccountKey(shared_key, endpoint=endpoint, insecure=True)


def test_missing_cryptography_names_the_extra(shared_key: dict[str, str]) -> None:
    script = """
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
import yandexgpt_grpc
from yandexgpt_grpc._auth import ServiceAccountKey, resolve_credentials
resolve_credentials(api_key="k")  # the rest of the package works without the extra
try:
    ServiceAccountKey(json.loads(sys.stdin.read()))
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(shared_key),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "pip install 'yandexgpt-grpc[sa]'" in out.stdout
    assert "cryptography" in out.stdout


# -- the exchange -------------------------------------------------------------------------------


def test_exchange_and_cache(emu: Emulator, iam: IamService, clock: FakeClock, shared_key: dict[str, str]) -> None:
    creds = sa_creds(shared_key, emu, clock)
    header = creds.authorization()
    assert header == f"Bearer {iam.issued[0].token}"
    assert creds.expires_at == T0 + 60
    assert creds.authorization() == header
    assert iam.exchanges == 1
    issued = iam.issued[0]
    assert issued.jwt_header["kid"] == "ajekeyid0001" and issued.jwt_claims["iss"] == SA_ID


def test_unknown_key_and_bad_signature_are_refused(emu: Emulator, clock: FakeClock, shared_key: dict[str, str]) -> None:
    other = IamService().create_key(SA_ID)  # registered with another service, not this one
    with pytest.raises(CredentialsError, match="UNAUTHENTICATED: unknown key id") as info:
        sa_creds(other, emu, clock).authorization()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    forged = {**other, "id": shared_key["id"]}  # known kid, wrong private key
    with pytest.raises(CredentialsError, match="signature"):
        sa_creds(forged, emu, clock).authorization()
    wrong_sa = {**shared_key, "service_account_id": "ajeintruder"}
    with pytest.raises(CredentialsError, match="iss"):
        sa_creds(wrong_sa, emu, clock).authorization()


def test_stale_jwt_is_refused(emu: Emulator, iam: IamService, clock: FakeClock, shared_key: dict[str, str]) -> None:
    client_clock = FakeClock(T0)
    client_clock.now = T0 - 2 * JWT_LIFETIME  # a client whose clock lags far behind
    with pytest.raises(CredentialsError, match="expired"):
        sa_creds(shared_key, emu, client_clock).authorization()
    assert iam.exchanges == 0 and iam.attempts == 1


def test_advisory_failure_keeps_token_mandatory_failure_raises(
    emu: Emulator,
    iam: IamService,
    clock: FakeClock,
    shared_key: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    creds = sa_creds(shared_key, emu, clock)
    first = creds.authorization()
    clock.advance(35)  # 25 s of 60 left: advisory
    iam.fail_next(grpc.StatusCode.UNAVAILABLE, "iam is down")
    with caplog.at_level(logging.WARNING, logger="yandexgpt_grpc"):
        assert creds.authorization() == first
    assert "iam is down" in caplog.text and iam.issued[0].token not in caplog.text
    clock.advance(20)  # 5 s left: mandatory
    iam.fail_next(grpc.StatusCode.UNAVAILABLE, "still down")
    with pytest.raises(CredentialsError, match="UNAVAILABLE: still down") as info:
        creds.authorization()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert creds.authorization() != first
    assert (iam.attempts, iam.exchanges) == (4, 2)


def test_single_flight_50_threads_one_exchange(
    emu: Emulator, iam: IamService, clock: FakeClock, shared_key: dict[str, str]
) -> None:
    creds = sa_creds(shared_key, emu, clock)
    barrier = threading.Barrier(50)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(creds.authorization())

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 50 and len(set(results)) == 1
    assert iam.exchanges == 1


async def test_single_flight_50_tasks_one_exchange(
    emu: Emulator, iam: IamService, clock: FakeClock, shared_key: dict[str, str]
) -> None:
    creds = sa_creds(shared_key, emu, clock)
    results = await asyncio.gather(*(creds.aauthorization() for _ in range(50)))
    assert len(set(results)) == 1
    assert iam.exchanges == 1


# -- the full flow through the clients -----------------------------------------------------------


def test_full_flow_sync_client(
    emu: Emulator,
    iam: IamService,
    clock: FakeClock,
    shared_key: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(shared_key))
    creds = ServiceAccountKey.from_file(path, endpoint=emu.address, insecure=True, clock=clock)
    with (
        caplog.at_level(logging.DEBUG),
        Client(emu.address, insecure=True, credentials=creds, folder_id=FOLDER) as client,
    ):
        assert client.complete(MODEL, "one").text
        assert iam.exchanges == 1
        clock.advance(61)  # the token expires for client and server alike
        assert iam.expire_tokens() == 1
        assert client.complete(MODEL, "two").text
        assert iam.exchanges == 2
        iam.revoke(iam.issued[-1].token)  # refused before its time: one refresh and a retry
        assert client.complete(MODEL, "three").text
        assert iam.exchanges == 3
        secrets = [t.token for t in iam.issued] + [shared_key["private_key"].splitlines()[1]]
        assert not any(s in repr(client) for s in secrets)
    calls = [c for c in emu.calls if c.method.endswith("Completion")]
    assert [c.header("authorization") for c in calls] == [
        f"Bearer {iam.issued[0].token}",
        f"Bearer {iam.issued[1].token}",
        f"Bearer {iam.issued[1].token}",  # refused
        f"Bearer {iam.issued[2].token}",
    ]
    assert all(c.header("x-folder-id") is None for c in calls)  # the account's own folder
    assert not any(s in caplog.text for s in secrets)


async def test_full_flow_async_client(
    emu: Emulator, iam: IamService, clock: FakeClock, shared_key: dict[str, str]
) -> None:
    creds = sa_creds(shared_key, emu, clock)
    async with AsyncClient(emu.address, insecure=True, credentials=creds, folder_id=FOLDER) as client:
        assert (await client.complete(MODEL, "one")).text
        clock.advance(61)
        iam.expire_tokens()
        assert (await client.complete(MODEL, "two")).text
        iam.revoke(iam.issued[-1].token)
        assert (await client.complete(MODEL, "three")).text
    assert iam.exchanges == 3


def test_mandatory_failure_surfaces_from_client(
    emu: Emulator, iam: IamService, clock: FakeClock, shared_key: dict[str, str]
) -> None:
    creds = sa_creds(shared_key, emu, clock)
    iam.fail_next(grpc.StatusCode.PERMISSION_DENIED, "key revoked")
    with (
        Client(emu.address, insecure=True, credentials=creds, folder_id=FOLDER) as client,
        pytest.raises(CredentialsError, match="PERMISSION_DENIED: key revoked"),
    ):
        client.complete(MODEL, "x")
    assert not [c for c in emu.calls if c.method.endswith("Completion")]
