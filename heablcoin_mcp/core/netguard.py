"""Where the server may send a request it was asked to send (webhooks, AI endpoints).

Every address a host name resolves to is judged, after unwrapping the IPv4 address an IPv6 one may
carry (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, translated ``::ffff:0:a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``), so no spelling of 127.0.0.1 or of
169.254.169.254 passes for a public address:

- *forbidden* always: link-local (cloud metadata lives there), unspecified, multicast, reserved,
  and the metadata host names;
- *private* only when the user allowed it: loopback, RFC 1918, unique-local, shared (CGNAT) ranges;
- *public* otherwise.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Literal
from urllib.parse import urlsplit

from heablcoin_mcp.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Kind = Literal["public", "private", "forbidden"]

METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"})
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254")})
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the spellings that carry one."""
    value = int(address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.teredo is not None:
        return address.teredo[1]
    if address in SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    if any(address in net for net in NAT64) or address in TRANSLATED:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in COMPATIBLE and value > 1:  # :: and ::1 are themselves
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def classify(address: Address) -> Kind:
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return classify(inner)
    if address in METADATA_ADDRESSES or address.is_link_local or address.is_unspecified or address.is_multicast:
        return "forbidden"
    if address.is_loopback:
        return "private"
    if address.is_reserved:
        return "forbidden"
    return "public" if address.is_global else "private"


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` stands for (a literal, or what DNS answers).

    Raises:
        InvalidInput: the name does not resolve.
    """
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise InvalidInput(f"host {host!r} does not resolve") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_target(url: str, *, what: str, allow_private: bool, setting: str) -> None:
    """Refuse a URL the server must not send to.

    Raises:
        InvalidInput: not http(s), credentials in the URL, a metadata or link-local target, or a
            private target while ``allow_private`` is off (the hint names ``setting``).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{what} {url!r} must be an http(s) URL")
    if parts.username or parts.password:
        raise InvalidInput(f"{what} must not contain credentials")
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTS:
        raise InvalidInput(f"{what} points at a cloud metadata service; that is never allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput(f"{what} {url!r} has an invalid port") from None
    for address in resolve(host, port):
        kind = classify(address)
        if kind == "forbidden":
            raise InvalidInput(f"{what} resolves to {address}, a link-local, metadata or reserved address; "
                               "that is never allowed")
        if kind == "private" and not allow_private:
            raise InvalidInput(f"{what} resolves to a non-public address ({address})",
                               hint=f"Loopback and private targets are refused unless the user sets {setting}=true.")
