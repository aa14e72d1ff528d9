"""Credentials: what the clients put in the ``authorization`` metadata entry.

Every credential type answers one question -- "what is the header value right now?" -- and may
refresh behind it. The clients never look inside a credential; they call
:meth:`Credentials.authorization` (or the async twin), and :meth:`Credentials.invalidate` when
the server refuses the value.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ._auth_base import (
    Clock,
    Credentials,
    CredentialsError,
    RefreshingCredentials,
    Token,
    clean_secret,
)
from ._checks import strip_auth_scheme
from ._constants import ENV_API_KEY, ENV_IAM_TOKEN, ENV_METADATA_ADDR
from ._errors import ConfigurationError
from ._public import public

if TYPE_CHECKING:
    from ._auth_metadata import MetadataService
    from ._auth_sa import ServiceAccountKey

# Service-account keys (the IAM stubs, JWT signing) and the VM metadata service (http.client, email)
# load on first use: most processes authenticate with a key or a token, and a one-shot command
# should not pay for them at start-up.
_LAZY = {"ServiceAccountKey": "._auth_sa", "MetadataService": "._auth_metadata"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __package__), name)
    globals()[name] = value
    return value


__all__ = [
    "ApiKey",
    "Credentials",
    "CredentialsError",
    "IamToken",
    "IamTokenProvider",
    "MetadataService",
    "ServiceAccountKey",
    "default_credentials",
    "resolve_credentials",
]

ENV_SERVICE_ACCOUNT_KEY_FILE = "YC_SERVICE_ACCOUNT_KEY_FILE"
ENV_METADATA_CREDENTIALS = "YC_METADATA_CREDENTIALS"
_TRUE = frozenset({"1", "true", "yes", "on"})


class _StaticHeader(Credentials):
    """Credentials whose authorization never changes: no refresh, no await."""

    __slots__ = ("_header",)

    def __init__(self, header: str) -> None:
        self._header = header

    def authorization(self) -> str:
        return self._header

    async def aauthorization(self) -> str:
        return self._header

    @property
    def static_authorization(self) -> str:
        return self._header


class ApiKey(_StaticHeader):
    """A static API key (``Api-Key …``); the key's service account picks the folder.

    A pasted header scheme (``Api-Key abc``, ``Authorization: Api-Key abc``) is dropped.
    """

    __slots__ = ()

    def __init__(self, key: str) -> None:
        super().__init__("Api-Key " + clean_secret(strip_auth_scheme(key, "Api-Key", "API key"), "API key"))


class IamToken(_StaticHeader):
    """A static IAM token (``Bearer …``); it expires, so prefer a refreshing source.

    A pasted header scheme (``Bearer t1.…``) is dropped.
    """

    sends_folder_id: ClassVar[bool] = True
    __slots__ = ()

    def __init__(self, token: str) -> None:
        super().__init__("Bearer " + clean_secret(strip_auth_scheme(token, "Bearer", "IAM token"), "IAM token"))


ProviderResult = str | tuple[str, datetime.datetime | float]
TokenFunction = Callable[[], ProviderResult | Awaitable[ProviderResult]]


class IamTokenProvider(RefreshingCredentials):
    """IAM tokens from your own function, cached and refreshed like the built-in sources.

    ``fn()`` returns the token, or ``(token, expires_at)`` with ``expires_at`` a datetime (naive
    means UTC, as protobuf's ``ToDatetime()`` returns) or epoch seconds; a bare token is taken as
    valid for ``ttl`` seconds. ``fn`` may be async: the async client awaits it on its own loop,
    while the sync client runs it on a private event loop in a helper thread -- so an async ``fn``
    used from the sync client must not depend on objects bound to another loop.
    """

    sends_folder_id: ClassVar[bool] = True
    _source: ClassVar[str] = "the IAM token provider"

    def __init__(self, fn: TokenFunction, *, ttl: float = 3600.0, clock: Clock | None = None):
        if not callable(fn):
            raise TypeError(f"IamTokenProvider needs a callable, got {type(fn).__name__}")
        if not ttl > 0:
            raise ValueError("ttl must be positive")
        super().__init__(clock=clock)
        self._fn = fn
        self._ttl = float(ttl)
        self.needs_event_loop = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )

    def __repr__(self) -> str:
        name = getattr(self._fn, "__qualname__", type(self._fn).__name__)
        return f"IamTokenProvider({name})"

    def _fetch(self) -> Token:
        now = self._clock()
        result: Any = self._fn()
        if inspect.isawaitable(result):
            result = _run_in_private_loop(result)
        return self._to_token(result, now)

    async def _afetch(self) -> Token:
        now = self._clock()
        result: Any = self._fn() if self.needs_event_loop else await asyncio.to_thread(self._fn)
        if inspect.isawaitable(result):
            result = await result
        return self._to_token(result, now)

    def _to_token(self, result: Any, now: float) -> Token:
        if isinstance(result, str):
            return Token(result, now + self._ttl)
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str):
            token, expires = result
            if isinstance(expires, datetime.datetime):
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=datetime.timezone.utc)
                return Token(token, expires.timestamp())
            if isinstance(expires, (int, float)) and not isinstance(expires, bool):
                return Token(token, float(expires))
        raise TypeError(
            f"the IAM token provider must return a str or a (str, expires_at) tuple, got {type(result).__name__}"
        )


def _run_in_private_loop(awaitable: Awaitable[Any]) -> Any:
    """Finish an async provider's awaitable from sync code, even inside a running loop's thread."""
    box: dict[str, Any] = {}

    async def wait() -> Any:
        return await awaitable

    def run() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="yandexgpt-grpc-token-provider", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


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
    ``YC_METADATA_CREDENTIALS=1``. Nothing here touches the network: refreshing sources fetch
    their first token on first use.
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
        raise ValueError(f"pass only one of credentials=, api_key=, iam_token= (got {', '.join(given)})")
    if credentials is not None:
        if not isinstance(credentials, Credentials):
            raise TypeError(f"credentials must be a Credentials instance, got {type(credentials).__name__}")
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
    key_file = environ.get(ENV_SERVICE_ACCOUNT_KEY_FILE, "").strip()
    if key_file:
        from ._auth_sa import ServiceAccountKey

        return ServiceAccountKey.from_file(key_file)
    if environ.get(ENV_METADATA_CREDENTIALS, "").strip().lower() in _TRUE:
        from ._auth_metadata import MetadataService

        return MetadataService(env=environ)
    raise ConfigurationError(
        "no credentials: pass api_key=, iam_token= or credentials=, or set "
        f"{ENV_API_KEY}, {ENV_IAM_TOKEN} or {ENV_SERVICE_ACCOUNT_KEY_FILE} "
        f"(on a Yandex Cloud VM, set {ENV_METADATA_CREDENTIALS}=1 to use its metadata service; "
        f"{ENV_METADATA_ADDR} overrides the address)"
    )


#: Alias under the name users of other cloud SDKs look for.
default_credentials = resolve_credentials


public(ApiKey, IamToken, IamTokenProvider)
