"""The egress policy (SSRF guard): may a probe connect to this address?

A probe resolves a host once through :meth:`EgressPolicy.resolve`, which
checks every address and returns only checked ones; the probe then connects
to one of those addresses (never to the name again), so a second DNS answer
cannot steer it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from connectord.model import ErrorKind
from connectord.types.base import ProbeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DENIED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments
        "2001:db8::/32",
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked address to connect to, with the name TLS must still verify."""

    host: str
    address: str
    port: int


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or well-known NAT64 IPv6 address."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in ipaddress.ip_network("::/96") and int(addr) > 1:  # IPv4-compatible (deprecated)
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


class EgressPolicy:
    """Denies internal ranges unless the allow list opens them."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in allow)

    def denial(self, address: IPAddress) -> str | None:
        """Why this address is denied, or ``None`` if a probe may reach it."""
        if any(address in net for net in self.allow if net.version == address.version):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                return self.denial(inner)
        for net in DENIED_NETWORKS:
            if net.version == address.version and address in net:
                return f"{address} is in the denied range {net}"
        return None

    def check(self, address: IPAddress) -> None:
        """Raise ``ProbeError(egress_denied)`` if the address is denied."""
        reason = self.denial(address)
        if reason is not None:
            raise ProbeError(
                ErrorKind.EGRESS_DENIED,
                f"egress policy: {reason}; an operator can open it with CONNECTORD_EGRESS_ALLOW",
            )

    async def resolve(self, host: str, port: int) -> list[Destination]:
        """Resolve once, check every address, and return them (all allowed) in order."""
        literal = parse_ip_literal(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise ProbeError(ErrorKind.DNS, f"cannot resolve host {host!r}") from exc
            addresses = []
            for info in infos:
                ip = ipaddress.ip_address(info[4][0])
                if ip not in addresses:
                    addresses.append(ip)
        for ip in addresses:  # every address, not only the first: refuse mixed answers
            self.check(ip)
        return [Destination(host, str(ip), port) for ip in addresses]


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IP address written in any form a resolver accepts, or ``None`` for a name.

    ``inet_aton`` accepts the old numeric spellings (``2130706433``, ``0x7f.1``,
    ``017700000001``) that an attacker uses to slip past a string check.
    """
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None
