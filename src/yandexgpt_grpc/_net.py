"""Facts about grpc targets, shared by the clients and the credential exchanges."""

from __future__ import annotations

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def split_host(endpoint: str) -> str:
    """The host part of a grpc target (name, IPv4 or [IPv6]) without the port."""
    target = endpoint.split("///", 1)[-1] if endpoint.startswith("dns:") else endpoint
    if target.startswith("["):
        return target[1 : target.find("]")]
    if target.count(":") > 1:  # bare IPv6 without a port
        return target
    return target.rsplit(":", 1)[0]


def _ipv4_first_octet(host: str) -> int | None:
    """The first number of a dotted-quad IPv4 address, read by ipaddress's rules; None if it is not one."""
    parts = host.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        # As ipaddress: ASCII digits, at most 3, no leading zero, at most 255.
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (part[0] == "0" and part != "0"):
            return None
        if int(part) > 255:
            return None
    return int(parts[0])


def is_local(endpoint: str) -> bool:
    """True for Unix sockets and loopback addresses: the only plaintext targets we allow."""
    if endpoint.startswith(("unix:", "unix-abstract:")):
        return True
    host = split_host(endpoint).lower()
    if host in _LOOPBACK_NAMES or host == "::1":
        return True
    # IPv4 without ipaddress (~6 M instructions to import: a one-shot `--insecure` CLI call paid for it).
    first = _ipv4_first_octet(host)
    if first is not None:
        return first == 127
    import ipaddress  # other IPv6 spellings

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
