"""Facts about grpc targets, shared by the clients and the credential exchanges."""

from __future__ import annotations

import ipaddress

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def split_host(endpoint: str) -> str:
    """The host part of a grpc target (name, IPv4 or [IPv6]) without the port."""
    target = endpoint.split("///", 1)[-1] if endpoint.startswith("dns:") else endpoint
    if target.startswith("["):
        return target[1 : target.find("]")]
    if target.count(":") > 1:  # bare IPv6 without a port
        return target
    return target.rsplit(":", 1)[0]


def is_local(endpoint: str) -> bool:
    """True for Unix sockets and loopback addresses: the only plaintext targets we allow."""
    if endpoint.startswith(("unix:", "unix-abstract:")):
        return True
    host = split_host(endpoint).lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
