"""Credentials: what the clients put in the ``authorization`` metadata entry.

Every credential type answers one question -- "what is the header value right now?" -- and may
refresh behind it. The clients never look inside a credential; they call
:meth:`Credentials.authorization` (or the async twin), and :meth:`Credentials.invalidate` when
the server refuses the value.
"""

from __future__ import annotations

import abc
import asyncio
import os
from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "ApiKey",
    "Credentials",
    "IamToken",
    "default_credentials",
    "resolve_credentials",
]

ENV_API_KEY = "YC_API_KEY"
ENV_IAM_TOKEN = "YC_IAM_TOKEN"
ENV_SERVICE_ACCOUNT_KEY_FILE = "YC_SERVICE_ACCOUNT_KEY_FILE"
ENV_METADATA_CREDENTIALS = "YC_METADATA_CREDENTIALS"
ENV_METADATA_ADDR = "YC_METADATA_ADDR"


class Credentials(abc.ABC):
    """Source of the ``authorization`` header value; subclasses may cache and refresh."""

    #: True when :meth:`invalidate` followed by a new call can produce a different value, so a
    #: retry after UNAUTHENTICATED is worth it.
    refreshable: ClassVar[bool] = False
    #: Whether the client should add ``x-folder-id``: user IAM tokens need it; API keys and
    #: service-account tokens carry their own folder.
    sends_folder_id: ClassVar[bool] = False

    @abc.abstractmethod
    def authorization(self) -> str:
        """Return the full header value (``Api-Key …`` or ``Bearer …``); may block to refresh."""

    async def aauthorization(self) -> str:
        """Async twin of :meth:`authorization`; the default runs it in a worker thread."""
        return await asyncio.to_thread(self.authorization)

    def invalidate(self, rejected: str) -> None:  # noqa: B027 - deliberately a no-op by default
        """Tell the credential that the server refused ``rejected`` (a previous header value).

        Static credentials ignore this; refreshing ones drop the cached token unless a newer one
        has already replaced it.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


def _clean_secret(value: object, what: str) -> str:
    """Validate a static secret without ever echoing it: a newline would break gRPC metadata."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    cleaned = value.strip()
    if not cleaned:
        raise ValueError(f"{what} is empty")
    if any(ch in cleaned for ch in "\r\n\0"):
        raise ValueError(f"{what} contains a line break or NUL character; check how it was read")
    return cleaned


class ApiKey(Credentials):
    """A static API key (``Api-Key …``); the key's service account picks the folder."""

    __slots__ = ("_header",)

    def __init__(self, key: str) -> None:
        self._header = "Api-Key " + _clean_secret(key, "API key")

    def authorization(self) -> str:
        return self._header

    async def aauthorization(self) -> str:
        return self._header


class IamToken(Credentials):
    """A static IAM token (``Bearer …``); it expires, so prefer a refreshing source."""

    sends_folder_id: ClassVar[bool] = True
    __slots__ = ("_header",)

    def __init__(self, token: str) -> None:
        self._header = "Bearer " + _clean_secret(token, "IAM token")

    def authorization(self) -> str:
        return self._header

    async def aauthorization(self) -> str:
        return self._header


def resolve_credentials(
    *,
    api_key: str | None = None,
    iam_token: str | None = None,
    credentials: Credentials | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    """Pick credentials: explicit arguments first, then the environment.

    Order: ``credentials=`` / ``api_key=`` / ``iam_token=`` (at most one), then ``YC_API_KEY``,
    ``YC_IAM_TOKEN``, ``YC_SERVICE_ACCOUNT_KEY_FILE``, and the VM metadata service only when
    ``YC_METADATA_CREDENTIALS=1``, so nothing here touches the network.
    """
    given = [
        name
        for name, value in (
            ("credentials", credentials),
            ("api_key", api_key),
            ("iam_token", iam_token),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"pass only one of credentials=, api_key=, iam_token= (got {', '.join(given)})"
        )
    if credentials is not None:
        if not isinstance(credentials, Credentials):
            raise TypeError(
                f"credentials must be a Credentials instance, got {type(credentials).__name__}"
            )
        return credentials
    if api_key is not None:
        return ApiKey(api_key)
    if iam_token is not None:
        return IamToken(iam_token)

    environ = os.environ if env is None else env
    if environ.get(ENV_API_KEY, "").strip():
        return ApiKey(environ[ENV_API_KEY])
    if environ.get(ENV_IAM_TOKEN, "").strip():
        return IamToken(environ[ENV_IAM_TOKEN])
    raise ValueError(
        "no credentials: pass api_key=, iam_token= or credentials=, or set "
        f"{ENV_API_KEY}, {ENV_IAM_TOKEN} or {ENV_SERVICE_ACCOUNT_KEY_FILE} "
        f"(or {ENV_METADATA_CREDENTIALS}=1 on a Yandex Cloud VM)"
    )


#: Alias under the name users of other cloud SDKs look for.
default_credentials = resolve_credentials
