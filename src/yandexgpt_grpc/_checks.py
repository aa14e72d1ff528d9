"""Checks of configuration and call arguments, with errors that say what was expected and what came.

Kept apart from the clients so the same words serve Client, AsyncClient and the CLI, and so every
mistake a user can copy-paste (a URL for an endpoint, a whole authorization header for a key, a
string for a bool) is refused at construction instead of failing at the first call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import ConfigurationError
from ._net import is_local, split_host

ENV_INSECURE = "YANDEXGPT_INSECURE"
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no", ""})

# grpc's own target schemes pass through; anything else with "://" is a copy-paste mistake.
_GRPC_SCHEMES = frozenset({"dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock", "xds"})
# Regular expressions here are compiled on first use (re caches them): each costs ~0.5-1 M instructions
# to compile, and a client built from a plain host:port and key never needs them.
_SCHEME = r"^([A-Za-z][A-Za-z0-9+.\-]*)://"
_EXPECTED = "host:port, e.g. 'llm.api.cloud.yandex.net:443'"


def given(value: object, *, show: bool = True) -> str:
    """How an error names a wrong value: its type, and the value itself when short.

    `show=False` for what may hold a secret (metadata, certificates): the type only.
    """
    kind = type(value).__name__
    if not show:
        return kind
    if isinstance(value, (bool, int, float, str, bytes, bytearray)) or value is None:
        text = repr(value)
        if len(text) > 40:
            text = text[:37] + "..."
        return f"{kind} {text}" if value is not None else "None"
    return kind


def check_str(name: str, value: object, expected: str = "a str") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {expected}, got {given(value)}")
    return value


def check_bool(name: str, value: object, *, optional: bool = False) -> bool | None:
    """Only real bools: `insecure="no"` must not silently mean True."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        expected = "True, False or None" if optional else "True or False"
        raise TypeError(f"{name} must be {expected}, got {given(value)}")
    return value


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no environment variable; anything unrecognised is an error, not a silent default."""
    raw = env.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not understood: use 1, true or yes (or 0, false, no, empty)")


_USERINFO = r"(?<=//)[^/@]*@"


def _shown(value: str) -> str:
    """The endpoint as an error quotes it: a pasted `user:password@` is masked."""
    return repr(re.sub(_USERINFO, "<redacted>@", value))


def parse_endpoint(value: object, name: str, *, insecure: bool, insecure_from: str = "insecure=True") -> str:
    """A grpc target from what users paste: `host:port`, `https://host[:port][/path]`, grpc's own schemes.

    `https://host` means `host:443` (any path is dropped: gRPC has none); `http://host[:port]`
    means plaintext, which needs `insecure` and a loopback host (port 80 if none is given).
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str ({_EXPECTED}), got {given(value)}")
    text = value.strip()
    if not text:
        raise ConfigurationError(f"{name} is empty: use {_EXPECTED}")
    match = re.match(_SCHEME, text) if "://" in text else None
    scheme = match.group(1).lower() if match else None
    if scheme in ("https", "http"):
        assert match is not None
        rest = text[match.end() :]
        hostport = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        if "@" in hostport or not hostport:
            raise ConfigurationError(f"{name} {_shown(value)} is not a server address: use {_EXPECTED}")
        default = "443" if scheme == "https" else "80"
        target = hostport if _has_port(hostport) else f"{hostport}:{default}"
        _check_port(name, value, target)
        if scheme == "https" and insecure:
            raise ConfigurationError(
                f"{name} {_shown(value)} says https (TLS) but {insecure_from} asks for plaintext: drop one of them"
            )
        if scheme == "http" and not insecure:
            raise ConfigurationError(
                f"{name} {_shown(value)} says http (plaintext): pass insecure=True (or set {ENV_INSECURE}=1) "
                f"for a local server, or use https:// or {_EXPECTED} for TLS"
            )
        text = target
    elif scheme is not None and scheme not in _GRPC_SCHEMES:
        raise ConfigurationError(f"{name} {_shown(value)} has an unknown scheme {scheme!r}: use {_EXPECTED}")
    elif scheme is None and not text.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")):
        if "/" in text or any(c.isspace() for c in text):
            raise ConfigurationError(f"{name} {_shown(value)} is not {_EXPECTED}")
        _check_port(name, value, text)
    if insecure and not is_local(text):
        raise ConfigurationError(
            f"{insecure_from} sends credentials in plaintext and is allowed only to loopback addresses "
            f"and Unix sockets, not to {split_host(text)!r}; use TLS (the default) for remote endpoints"
        )
    return text


def _has_port(hostport: str) -> bool:
    if hostport.startswith("["):
        return "]:" in hostport
    return hostport.count(":") == 1


def _check_port(name: str, value: str, target: str) -> None:
    """Refuse a port grpc cannot parse ("Failed to parse port" at the first call, then retried)."""
    if target.startswith("["):
        port = target.partition("]")[2]
        if port and not port.startswith(":"):
            raise ConfigurationError(f"{name} {_shown(value)} is not {_EXPECTED}")
        port = port[1:]
    elif target.count(":") == 1:
        port = target.rsplit(":", 1)[1]
    else:
        return  # no port (grpc picks 443) or a bare IPv6 address
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigurationError(f"{name} {_shown(value)} has no valid port: use {_EXPECTED}")


# "Api-Key abc" / "Bearer t" as copied from a curl header, maybe with "Authorization:" in front.
_AUTH_PREFIX = r"^\s*(?:authorization\s*:\s*)?(api-key|bearer)(?:\s+|$)"
# What _AUTH_PREFIX can start with (after spaces): a key ("AQVN...") or token ("t1....") never does.
_AUTH_STARTS = frozenset({"ap", "au", "be"})
_SCHEME_OF = {"api-key": "Api-Key", "bearer": "Bearer"}
_ARGUMENT_FOR = {"Api-Key": "api_key= (YC_API_KEY)", "Bearer": "iam_token= (YC_IAM_TOKEN)"}


def strip_auth_scheme(value: object, scheme: str, what: str) -> object:
    """The secret without a pasted header scheme; the other kind's scheme is an error (never echoed)."""
    if not isinstance(value, str):
        return value  # the secret's own check names the type
    if value.lstrip()[:2].lower() not in _AUTH_STARTS:  # no re.IGNORECASE match can start otherwise
        return value
    match = re.match(_AUTH_PREFIX, value, re.IGNORECASE)
    if match is None:
        return value
    found = _SCHEME_OF[match.group(1).lower()]
    if found != scheme:
        raise ConfigurationError(
            f"the {what} starts with {found!r}, the scheme of the other kind of credential: "
            f"pass it as {_ARGUMENT_FOR[found]}"
        )
    return value[match.end() :]


def check_metadata_pairs(name: str, metadata: object) -> Sequence[Any]:
    """Metadata as a mapping or a sequence of (key, value) pairs; a str is neither."""
    if isinstance(metadata, Mapping):
        return list(metadata.items())
    if isinstance(metadata, (str, bytes, bytearray)) or not isinstance(metadata, Sequence):
        raise TypeError(f"{name} must be a dict or a list of (key, value) pairs, got {given(metadata, show=False)}")
    for i, pair in enumerate(metadata):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"{name}[{i}] must be a (key, value) pair, got {given(pair, show=False)}")
    return metadata


def unencodable_text(exc: UnicodeEncodeError, texts: Sequence[tuple[str, str]]) -> ValueError:
    """The error for text protobuf cannot encode (a lone surrogate): where it is, before any I/O.

    `texts` names the strings the request was built from, e.g. ("messages[1]", text).
    """
    for where, text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as bad:
            return _surrogate_error(where, bad)
    return _surrogate_error("the request", exc)


def _surrogate_error(where: str, bad: UnicodeEncodeError) -> ValueError:
    char = bad.object[bad.start]
    return ValueError(
        f"{where}: the text has a lone surrogate {char!r} at offset {bad.start}, which UTF-8 cannot encode "
        "(text decoded with errors='surrogateescape' or cut in the middle of a UTF-16 pair?)"
    )
