"""Which resolved addresses an outgoing forward may connect to (the SSRF guard), and resolution.

`is_public` and `first_refused` are pure and decide on addresses already resolved, so literal IPs,
odd IPv4 spellings (`0x7f.1`, `2130706433`: the resolver normalises them) and DNS names are all
judged the same way. `resolve` is the one piece of I/O. Nothing here connects anywhere.

Refused: loopback, private (RFC 1918, ULA fc00::/7), link-local (169.254/16 with the cloud
metadata service, fe80::/10), multicast, reserved, unspecified, site-local fec0::/10, and anything
Python does not call globally reachable, which includes the shared address space 100.64/10
(carrier-grade NAT, but also cloud internals such as 100.100.100.200 and overlay networks).
IPv6 forms that carry an IPv4 address (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4
2002::/16) are judged by the IPv4 address they lead to; IPv4-compatible ::a.b.c.d is reserved.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The well-known NAT64 prefix: a translator turns 64:ff9b::a.b.c.d into a.b.c.d.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def is_public(address: IPAddress) -> bool:
    """True when `address` is globally reachable and in none of the refused ranges."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def first_refused(addresses: Iterable[IPAddress]) -> IPAddress | None:
    """The first address that is not public, or None when every one may be connected to."""
    return next((address for address in addresses if not is_public(address)), None)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to for TCP, in the resolver's order, without repeats.

    Raises `OSError` (`socket.gaierror`) when the name does not resolve.
    """
    try:
        return [ipaddress.ip_address(host)]  # a literal: no resolver thread needed
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: dict[IPAddress, None] = {}
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            found.setdefault(ipaddress.ip_address(sockaddr[0]), None)
    return list(found)
