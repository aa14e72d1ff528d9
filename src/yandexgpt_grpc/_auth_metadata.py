"""IAM tokens from the metadata service of a Yandex Cloud VM (or serverless container).

Standard-library HTTP only, talking straight to the address (no proxies: the metadata service is
link-local), with a short timeout because off-cloud the address simply does not answer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from ._auth_base import Clock, CredentialsError, RefreshingCredentials, Token
from ._constants import ENV_METADATA_ADDR
from ._errors import ConfigurationError
from ._public import public

__all__ = ["DEFAULT_METADATA_ADDR", "METADATA_TOKEN_PATH", "MetadataService"]

DEFAULT_METADATA_ADDR = "169.254.169.254"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


class MetadataService(RefreshingCredentials):
    """Tokens of the service account attached to the VM, from its metadata service.

    ``address`` is ``host[:port]``; by default ``YC_METADATA_ADDR`` or ``169.254.169.254``.
    The service answers ``{access_token, expires_in, token_type}``; ``expires_in`` drives the
    refresh schedule. The token belongs to a service account, so no ``x-folder-id`` is sent.
    """

    _source: ClassVar[str] = "the metadata service"

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 1.0,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        environ = os.environ if env is None else env
        self.address = (address or environ.get(ENV_METADATA_ADDR) or DEFAULT_METADATA_ADDR).strip()
        if not self.address or "/" in self.address or any(c.isspace() for c in self.address):
            raise ConfigurationError(f"metadata service address must be host[:port], got {self.address!r}")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"MetadataService(address={self.address!r})"

    def _fetch(self) -> Token:
        now = self._clock()
        where = f"the metadata service at {self.address}"
        conn = http.client.HTTPConnection(self.address, timeout=self.timeout)
        failure = None
        status, body = 0, b""
        try:
            conn.request("GET", METADATA_TOKEN_PATH, headers={"Metadata-Flavor": "Google"})
            response = conn.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            failure = f"{where} is unreachable ({type(exc).__name__}: {exc})"
        finally:
            conn.close()
        if failure is None and status != 200:
            failure = f"{where} answered HTTP {status}"
        if failure is not None:
            raise CredentialsError(failure)
        return _parse(body, where, now)


def _parse(body: bytes, where: str, now: float) -> Token:
    """Read the token document; errors describe the shape, never the content."""
    data: Any = None
    with contextlib.suppress(ValueError):
        data = json.loads(body)
    if not isinstance(data, dict):
        raise CredentialsError(f"{where} answered something other than a JSON object")
    token, expires_in, kind = data.get("access_token"), data.get("expires_in"), data.get("token_type")
    if not isinstance(token, str) or not token.strip():
        raise CredentialsError(f"{where} answered without 'access_token'")
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
        raise CredentialsError(f"{where} answered without a positive 'expires_in'")
    if kind is not None and str(kind).lower() != "bearer":
        raise CredentialsError(f"{where} answered token_type {kind!r}, expected 'Bearer'")
    return Token(token, now + float(expires_in))


public(MetadataService)
