"""Service-account authorized keys: a PS256-signed JWT exchanged for an IAM token over gRPC.

The key file is the JSON that ``yc iam key create`` writes. Signing needs ``cryptography`` (the
optional ``[sa]`` extra), imported only when a key is loaded so the rest of the package works
without it. No error message, repr or exception chain here ever contains key material or a token.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import grpc

from ._auth_base import Clock, CredentialsError, RefreshingCredentials, Token
from ._constants import DEFAULT_IAM_ENDPOINT, USER_AGENT
from ._errors import ConfigurationError
from ._generated.yandex.cloud.iam.v1 import iam_token_service_pb2, iam_token_service_pb2_grpc
from ._net import is_local
from ._public import public

__all__ = ["IAM_TOKEN_AUDIENCE", "ServiceAccountKey"]

IAM_TOKEN_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
# The JWT is spent at once; a short life limits the damage if one leaks. IAM caps it at 1 h.
JWT_LIFETIME = 600
# IAM always sends expires_at; should it not, assume the shortest lifetime seen in practice.
_FALLBACK_TOKEN_LIFETIME = 3600.0
_MISSING_EXTRA = "ServiceAccountKey needs the 'cryptography' package: pip install 'yandexgpt-grpc[sa]'"
_REQUIRED_FIELDS = ("id", "service_account_id", "private_key")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _load_private_key(pem_text: str) -> Any:
    """Parse the PEM private key; errors name the field and never include its content."""
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        raise ImportError(_MISSING_EXTRA) from None
    # `yc` prefixes the PEM with a "PLEASE DO NOT REMOVE THIS LINE! …" banner.
    start = pem_text.find("-----BEGIN")
    problem = None
    key: Any = None
    if start < 0:
        problem = "does not contain a PEM private key"
    else:
        try:
            key = serialization.load_pem_private_key(pem_text[start:].encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            problem = "is not a readable, unencrypted PEM private key"
    # Raised outside the except block so no chained exception can carry the key text.
    if problem is not None:
        raise ConfigurationError(f"service-account key field 'private_key' {problem}")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("service-account key field 'private_key' must be an RSA key (PS256)")
    return key


def _read_key_file(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    problem = None
    data: Any = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # its .doc holds the whole file: do not chain it
        problem = f"line {exc.lineno} column {exc.colno}"
    if problem is not None:
        raise ConfigurationError(f"service-account key file {os.fspath(path)!r} is not JSON ({problem})")
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"service-account key file {os.fspath(path)!r} must hold a JSON object")
    return data


class ServiceAccountKey(RefreshingCredentials):
    """IAM tokens for a service account, from its authorized key (file path or parsed dict).

    Each refresh signs a short JWT (PS256, ``kid`` = key id, ``iss`` = service account) and
    exchanges it at ``IamTokenService.Create``. ``insecure=True`` is accepted only for loopback
    or Unix-socket endpoints (tests and emulators). Service-account tokens carry their folder, so
    the client sends no ``x-folder-id`` with them.
    """

    _source: ClassVar[str] = "the IAM token service"

    def __init__(
        self,
        key: str | os.PathLike[str] | Mapping[str, Any],
        *,
        endpoint: str = DEFAULT_IAM_ENDPOINT,
        insecure: bool = False,
        root_certificates: bytes | None = None,
        timeout: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock=clock)
        data = key if isinstance(key, Mapping) else _read_key_file(key)
        for name in _REQUIRED_FIELDS:
            value = data.get(name)
            if value is None:
                raise ConfigurationError(f"service-account key is missing the field {name!r}")
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"service-account key field {name!r} must be a non-empty string")
        self.key_id: str = data["id"].strip()
        self.service_account_id: str = data["service_account_id"].strip()
        self._private_key = _load_private_key(data["private_key"])
        if insecure and not is_local(endpoint):
            raise ValueError(
                "insecure=True would send the service-account JWT in plaintext; it is allowed only "
                f"to loopback addresses and Unix sockets, not {endpoint!r}"
            )
        if insecure and root_certificates is not None:
            raise ValueError("root_certificates and insecure=True contradict each other: pick one")
        self.endpoint = endpoint
        self._insecure = insecure
        self._root_certificates = root_certificates
        self._timeout = timeout

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> ServiceAccountKey:
        """Load the JSON key file that ``yc iam key create --output`` writes."""
        return cls(path, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> ServiceAccountKey:
        """Use an already parsed key (e.g. from a secret manager)."""
        return cls(data, **kwargs)

    def __repr__(self) -> str:
        return (
            f"ServiceAccountKey(id={self.key_id!r}, "
            f"service_account_id={self.service_account_id!r}, endpoint={self.endpoint!r})"
        )

    def _create_jwt(self, now: float) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "PS256", "kid": self.key_id}
        claims = {
            "iss": self.service_account_id,
            "aud": IAM_TOKEN_AUDIENCE,
            "iat": int(now),
            "exp": int(now) + JWT_LIFETIME,
        }
        signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
        signature = self._private_key.sign(
            signing_input.encode("ascii"),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
        return f"{signing_input}.{_b64url(signature)}"

    def _channel(self) -> grpc.Channel:
        options = [("grpc.primary_user_agent", USER_AGENT)]
        if self._insecure:
            return grpc.insecure_channel(self.endpoint, options=options)
        creds = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
        return grpc.secure_channel(self.endpoint, creds, options=options)

    def _fetch(self) -> Token:
        now = self._clock()
        request = iam_token_service_pb2.CreateIamTokenRequest(jwt=self._create_jwt(now))
        failure = None
        with self._channel() as channel:
            stub = iam_token_service_pb2_grpc.IamTokenServiceStub(channel)
            try:
                response = stub.Create(request, timeout=self._timeout)
            except grpc.RpcError as exc:
                failure = CredentialsError(
                    f"IAM token exchange at {self.endpoint} failed: {exc.code().name}: {exc.details()}",
                    code=exc.code(),
                )
        if failure is not None:
            raise failure
        if not response.iam_token:
            raise CredentialsError(f"the IAM token service at {self.endpoint} returned no token")
        if response.HasField("expires_at"):
            expires_at = response.expires_at.seconds + response.expires_at.nanos / 1e9
        else:
            expires_at = now + _FALLBACK_TOKEN_LIFETIME
        return Token(response.iam_token, expires_at)


public(ServiceAccountKey)
