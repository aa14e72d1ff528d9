"""An emulated ``IamTokenService`` for testing service-account flows against the emulator.

>>> iam = IamService(token_lifetime=60)
>>> key = iam.create_key("ajeserviceaccount")       # an authorized-key dict, as `yc` writes it
>>> with Emulator(extra_services=[iam]) as emu:
...     creds = ServiceAccountKey(key, endpoint=emu.address, insecure=True)

``Create`` checks the JWT like IAM does (PS256 signature by ``kid``, ``iss``, ``aud``, ``iat`` /
``exp``), then issues a short-lived token that the emulator accepts until it expires by the
service's clock. Needs ``cryptography`` (the test or ``[sa]`` extra).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from yandexgpt_grpc._auth_sa import IAM_TOKEN_AUDIENCE
from yandexgpt_grpc._generated.yandex.cloud.iam.v1 import iam_token_service_pb2, iam_token_service_pb2_grpc

if TYPE_CHECKING:
    from ._server import Emulator

__all__ = ["IamService"]

_MAX_JWT_LIFETIME = 3600
_MISSING = "IamService needs the 'cryptography' package: pip install 'yandexgpt-grpc[sa]'"


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise ImportError(_MISSING) from None
    return hashes, serialization, padding, rsa


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class _Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


@dataclass
class _Key:
    service_account_id: str
    public_key: Any


@dataclass
class IssuedToken:
    """One exchange the service granted: what the JWT said and what it got."""

    token: str = field(repr=False)
    service_account_id: str
    key_id: str
    expires_at: float
    jwt_header: dict[str, Any]
    jwt_claims: dict[str, Any]


class IamService:
    """Emulated ``yandex.cloud.iam.v1.IamTokenService``; pass it in ``Emulator(extra_services=…)``.

    ``clock`` (epoch seconds, default ``time.time``) decides JWT validity and token expiry, so
    tests move time without sleeping; :meth:`expire_tokens` makes the emulator drop tokens whose
    time is up. :meth:`fail_next` scripts failures of the next exchanges.
    """

    def __init__(
        self,
        *,
        token_lifetime: float = 60.0,
        clock: Callable[[], float] | None = None,
        leeway: float = 30.0,
    ) -> None:
        self.token_lifetime = token_lifetime
        self.clock = clock or time.time
        self.leeway = leeway
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._issued: list[IssuedToken] = []
        self._failures: list[tuple[grpc.StatusCode, str]] = []
        self._emulators: list[Emulator] = []
        self.attempts = 0

    # -- set-up ---------------------------------------------------------------------------------

    def __call__(self, server: grpc.aio.Server, emulator: Emulator) -> None:
        """The ``extra_services`` hook: serve IamTokenService next to the emulator's services."""
        self._emulators.append(emulator)
        iam_token_service_pb2_grpc.add_IamTokenServiceServicer_to_server(_Servicer(self), server)  # type: ignore[abstract]

    def add_key(self, key_id: str, service_account_id: str, public_key_pem: bytes | str) -> None:
        """Trust ``public_key_pem`` for JWTs with this ``kid`` issued by ``service_account_id``."""
        _, serialization, _, _ = _crypto()
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        with self._lock:
            self._keys[key_id] = _Key(service_account_id, serialization.load_pem_public_key(pem))

    def create_key(
        self, service_account_id: str = "ajeemulatedserviceaccount", key_id: str | None = None
    ) -> dict[str, str]:
        """Generate an RSA key, trust it, and return it in the ``yc iam key create`` JSON shape."""
        _, serialization, _, rsa = _crypto()
        key_id = key_id or "aje" + secrets.token_hex(8)
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.add_key(key_id, service_account_id, public_pem)
        return {
            "id": key_id,
            "service_account_id": service_account_id,
            "created_at": "2024-01-01T00:00:00Z",
            "key_algorithm": "RSA_2048",
            "public_key": public_pem.decode(),
            "private_key": private_pem.decode(),
        }

    def fail_next(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, details: str = "", count: int = 1) -> None:
        """Make the next ``count`` exchanges fail with ``code``."""
        with self._lock:
            self._failures.extend([(code, details or f"emulated {code.name}")] * count)

    # -- observation ----------------------------------------------------------------------------

    @property
    def issued(self) -> list[IssuedToken]:
        """Every token granted so far, oldest first."""
        with self._lock:
            return list(self._issued)

    @property
    def exchanges(self) -> int:
        """Number of successful exchanges."""
        with self._lock:
            return len(self._issued)

    def expire_tokens(self) -> int:
        """Drop tokens whose expiry has passed by :attr:`clock` from the emulator; return how many."""
        now = self.clock()
        with self._lock:
            stale = [t for t in self._issued if t.expires_at <= now]
        for issued in stale:
            self.revoke(issued.token)
        return len(stale)

    def revoke(self, token: str) -> None:
        """Make the emulator refuse ``token`` from now on."""
        for emu in self._emulators:
            emu.remove_iam_token(token)

    # -- the exchange ---------------------------------------------------------------------------

    def _verify(self, jwt: str) -> tuple[_Key, str, dict[str, Any], dict[str, Any]]:
        hashes, _, padding, _ = _crypto()
        parts = jwt.split(".")
        if len(parts) != 3:
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "jwt is not a compact JWS")
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except (ValueError, binascii.Error):
            header = claims = None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "jwt header or claims are not JSON")
        if header.get("alg") != "PS256":
            raise _Rejected(grpc.StatusCode.UNAUTHENTICATED, "jwt alg must be PS256")
        kid = header.get("kid")
        with self._lock:
            key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise _Rejected(grpc.StatusCode.UNAUTHENTICATED, "unknown key id")
        try:
            key.public_key.verify(
                signature,
                f"{parts[0]}.{parts[1]}".encode("ascii"),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
                hashes.SHA256(),
            )
        except Exception:
            ok = False
        else:
            ok = True
        if not ok:
            raise _Rejected(grpc.StatusCode.UNAUTHENTICATED, "jwt signature does not verify")
        self._check_claims(claims, key)
        return key, kid, header, claims

    def _check_claims(self, claims: dict[str, Any], key: _Key) -> None:
        now = self.clock()
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        iat, exp = claims.get("iat"), claims.get("exp")
        if claims.get("iss") != key.service_account_id:
            problem = "iss is not the key's service account"
        elif IAM_TOKEN_AUDIENCE not in auds:
            problem = f"aud must be {IAM_TOKEN_AUDIENCE}"
        elif not isinstance(iat, int) or not isinstance(exp, int):
            problem = "iat and exp must be integers"
        elif iat > now + self.leeway:
            problem = "jwt is issued in the future"
        elif exp <= now - self.leeway:
            problem = "jwt has expired"
        elif exp - iat > _MAX_JWT_LIFETIME:
            problem = "jwt lifetime exceeds 1 hour"
        else:
            return
        raise _Rejected(grpc.StatusCode.UNAUTHENTICATED, problem)

    def _create(self, jwt: str) -> IssuedToken:
        with self._lock:
            self.attempts += 1
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise _Rejected(*failure)
        key, kid, header, claims = self._verify(jwt)
        self.expire_tokens()
        issued = IssuedToken(
            token="t1.emu." + secrets.token_urlsafe(24),
            service_account_id=key.service_account_id,
            key_id=kid,
            expires_at=float(int(self.clock() + self.token_lifetime)),
            jwt_header=header,
            jwt_claims=claims,
        )
        for emu in self._emulators:
            emu.add_iam_token(issued.token)
        with self._lock:
            self._issued.append(issued)
        return issued


class _Servicer(iam_token_service_pb2_grpc.IamTokenServiceServicer):
    def __init__(self, service: IamService) -> None:
        self._service = service

    async def Create(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request.WhichOneof("identity") != "jwt":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the emulator accepts jwt only")
        try:
            issued = self._service._create(request.jwt)
        except _Rejected as exc:
            await context.abort(exc.code, exc.details)
            raise  # abort() raises; this keeps type checkers aware of it
        response = iam_token_service_pb2.CreateIamTokenResponse(iam_token=issued.token)
        response.expires_at.seconds = int(issued.expires_at)
        return response
