"""The SSRF guard's address table, and resolution of literal and oddly spelled IPs.

Public addresses appear here only as values: nothing in this file connects anywhere, and the
only names resolved are numeric spellings and `localhost`, which never leave the machine.
"""

from __future__ import annotations

import ipaddress

import pytest

from service.handlers.addresses import first_refused, is_public, resolve

ALLOWED = [
    pytest.param("93.184.216.34", id="public-v4"),
    pytest.param("1.1.1.1", id="public-v4-anycast"),
    pytest.param("2606:4700::1111", id="public-v6"),
    pytest.param("2a00:1450:4001:80b::200e", id="public-v6-other"),
    pytest.param("::ffff:93.184.216.34", id="mapped-public"),
    pytest.param("64:ff9b::5db8:d822", id="nat64-of-public"),
    pytest.param("2002:5db8:d822::1", id="6to4-of-public"),
]

REFUSED = [
    pytest.param("127.0.0.1", id="loopback"),
    pytest.param("127.255.255.254", id="loopback-range"),
    pytest.param("10.0.0.1", id="rfc1918-10"),
    pytest.param("172.16.5.4", id="rfc1918-172"),
    pytest.param("192.168.1.1", id="rfc1918-192"),
    pytest.param("169.254.169.254", id="link-local-metadata"),
    # Shared address space (RFC 6598): not routable on the internet and used inside clouds
    # (100.100.100.200 is a metadata service) and overlay VPNs, so refused like RFC 1918.
    pytest.param("100.64.0.1", id="shared-100.64"),
    pytest.param("100.100.100.200", id="shared-cloud-metadata"),
    pytest.param("0.0.0.0", id="unspecified-v4"),  # noqa: S104 - a value, nothing binds here
    pytest.param("0.1.2.3", id="this-network"),
    pytest.param("224.0.0.1", id="multicast-v4"),
    pytest.param("239.255.255.250", id="multicast-ssdp"),
    pytest.param("240.0.0.1", id="reserved-v4"),
    pytest.param("255.255.255.255", id="broadcast"),
    pytest.param("192.0.2.1", id="documentation-v4"),
    pytest.param("198.18.0.1", id="benchmarking"),
    pytest.param("::1", id="loopback-v6"),
    pytest.param("::", id="unspecified-v6"),
    pytest.param("fc00::1", id="ula-fc"),
    pytest.param("fd12:3456::1", id="ula-fd"),
    pytest.param("fe80::1", id="link-local-v6"),
    pytest.param("fe80::1%2", id="link-local-v6-scoped"),
    pytest.param("fec0::1", id="site-local-v6"),
    pytest.param("ff02::1", id="multicast-v6"),
    pytest.param("2001:db8::1", id="documentation-v6"),
    pytest.param("100::1", id="discard-v6"),
    pytest.param("::ffff:127.0.0.1", id="mapped-loopback"),
    pytest.param("::ffff:169.254.169.254", id="mapped-metadata"),
    pytest.param("::ffff:10.0.0.1", id="mapped-private"),
    pytest.param("::ffff:100.64.0.1", id="mapped-shared"),
    pytest.param("::ffff:0.0.0.0", id="mapped-unspecified"),
    pytest.param("::127.0.0.1", id="compat-loopback"),
    pytest.param("::ffff:0:7f00:1", id="siit-translated-loopback"),
    pytest.param("64:ff9b::a00:1", id="nat64-of-private"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-of-metadata"),
    pytest.param("64:ff9b:1::1", id="nat64-local-use"),
    pytest.param("2002:7f00:1::", id="6to4-of-loopback"),
    pytest.param("2002:a00:1::1", id="6to4-of-private"),
    pytest.param("2001::1", id="teredo"),
]


class TestIsPublic:
    @pytest.mark.parametrize("text", ALLOWED)
    def test_allowed(self, text: str) -> None:
        """Globally reachable addresses, and IPv6 forms of public IPv4 ones, may be used."""
        assert is_public(ipaddress.ip_address(text))

    @pytest.mark.parametrize("text", REFUSED)
    def test_refused(self, text: str) -> None:
        """Internal, special-purpose and IPv6-wrapped internal addresses are refused."""
        assert not is_public(ipaddress.ip_address(text))


class TestFirstRefused:
    def test_all_public(self) -> None:
        """A host whose every address is public has nothing refused."""
        addresses = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:4700::1")]
        assert first_refused(addresses) is None

    def test_any_private_address_refuses(self) -> None:
        """One internal address among public ones is enough to refuse (and is the one named)."""
        addresses = [
            ipaddress.ip_address("93.184.216.34"),
            ipaddress.ip_address("10.1.2.3"),
            ipaddress.ip_address("::1"),
        ]
        assert first_refused(addresses) == ipaddress.ip_address("10.1.2.3")

    def test_no_addresses(self) -> None:
        """An empty answer refuses nothing (the handler reports it separately)."""
        assert first_refused([]) is None


class TestResolve:
    @pytest.mark.parametrize(
        "host", ["127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.1", "localhost"]
    )
    async def test_odd_ipv4_spellings_normalise(self, host: str) -> None:
        """The resolver turns every spelling of loopback into 127.0.0.1, which is then refused."""
        addresses = await resolve(host, 443)
        assert ipaddress.ip_address("127.0.0.1") in addresses
        assert first_refused(addresses) is not None

    async def test_ipv6_literal(self) -> None:
        """A bare IPv6 literal resolves to itself."""
        assert await resolve("::1", 443) == [ipaddress.ip_address("::1")]
