"""The egress policy (SSRF guard): may a probe connect to this address?

A probe resolves a host once through :meth:`EgressPolicy.resolve`, which
checks every address and returns only checked ones; the probe then connects
to one of those addresses (never to the name again), so a second DNS answer
cannot steer it elsewhere (DNS rebinding).

Denied by default: loopback, private, link-local
(169.254.169.254 included), CGNAT, multicast, reserved, documentation and
unspecified ranges in IPv4 and IPv6. IPv6 forms that carry an IPv4 address
(IPv4-mapped, IPv4-translated, NAT64 ``64:ff9b::/96``, 6to4) are judged by the
IPv4 address inside; IPv4-compatible, local-use NAT64 and Teredo addresses are
denied outright, and so is any IPv6 address outside global unicast
``2000::/3``. Hosts are parsed the way a browser's URL parser does (WHATWG
"ends in a number"), so the legacy numeric spellings ``2130706433``,
``0x7f.1``, ``017700000001``, ``127.1`` and ``0177.0.0.1`` are the address
they denote, and a host such as ``foo.123`` that is neither a name nor an
address is refused. The allow list (``CONNECTORD_EGRESS_ALLOW``, CIDRs) opens
ranges: an address inside it is allowed whatever range it is in.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from connectord.errors import ProbeError
from connectord.model import ErrorKind

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in pairs)


#: Denied ranges and what they are, most specific first (the first match names the reason).
DENIED_RANGES: tuple[tuple[IPNetwork, str], ...] = _nets(
    ("0.0.0.0/8", "'this network' / unspecified"),
    ("10.0.0.0/8", "private-use"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private-use"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    ("192.168.0.0/16", "private-use"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved / broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignments"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6) SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def _low32(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)


#: IPv6 ranges whose packets really go to the IPv4 address inside them.
EMBEDDING_RANGES: tuple[
    tuple[ipaddress.IPv6Network, str, Callable[[ipaddress.IPv6Address], ipaddress.IPv4Address]], ...
] = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped", _low32),
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), "IPv4-translated", _low32),
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64", _low32),
    (
        ipaddress.IPv6Network("2002::/16"),
        "6to4",
        lambda a: ipaddress.IPv4Address((int(a) >> 80) & 0xFFFFFFFF),
    ),
)

#: RFC 6761 section 6.3: these names are loopback; resolve them without asking DNS.
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_ADDRESSES: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)
_BAD_HOST_CHARS = re.compile(r"[\x00-\x20\x7f/\\?#@%]")
_NUMBER = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
_VERDICT_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked address to connect to, with the name TLS must still verify."""

    host: str
    address: str
    port: int


class EgressPolicy:
    """Denies internal ranges unless the allow list opens them."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in allow)
        # The same few addresses are checked over and over (bulk tests): remember verdicts.
        self._verdicts: dict[IPAddress, tuple[str, str] | None] = {}

    def _allowed(self, address: IPAddress) -> bool:
        return any(address in net for net in self.allow if net.version == address.version)

    def denied_range(self, address: IPAddress) -> tuple[str, str] | None:
        """``(cidr, what it is)`` of the denied range holding the address, or ``None``."""
        try:
            return self._verdicts[address]
        except KeyError:
            pass
        if len(self._verdicts) >= _VERDICT_CACHE:
            self._verdicts.clear()
        verdict = self._verdicts[address] = self._judge(address)
        return verdict

    def _judge(self, address: IPAddress) -> tuple[str, str] | None:
        if self._allowed(address):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            for carrier, form, extract in EMBEDDING_RANGES:
                if address in carrier:
                    inner = self.denied_range(extract(address))
                    if inner is None:
                        return None
                    return inner[0], f"the {form} form of {extract(address)}, which is {inner[1]}"
        for net, label in DENIED_RANGES:
            if net.version == address.version and address in net:
                return str(net), label
        if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
            return "outside 2000::/3", "not global unicast"
        return None

    def denial(self, address: IPAddress) -> str | None:
        """Why this address is denied, or ``None`` if a probe may reach it."""
        found = self.denied_range(address)
        if found is None:
            return None
        cidr, label = found
        return f"{address} is {label} ({cidr})"

    def check(self, address: IPAddress, host: str | None = None) -> None:
        """Raise ``ProbeError(egress_denied)`` if the address is denied.

        ``host`` is the name that resolved to it, for the message.
        """
        reason = self.denial(address)
        if reason is None:
            return
        via = f"{host} resolves to " if host and host != str(address) else ""
        raise ProbeError(
            ErrorKind.EGRESS_DENIED,
            f"egress policy: {via}{reason}; an operator can open it with CONNECTORD_EGRESS_ALLOW",
            {"denied_address": str(address)},
        )

    async def resolve(self, host: str, port: int) -> list[Destination]:
        """Resolve once, check every address, and return them (all allowed) in order.

        Raises :class:`ProbeError`: ``invalid_config`` for a host that is neither a
        name nor an address, ``dns`` when the name does not resolve,
        ``egress_denied`` when any address it resolves to is denied (a mixed answer
        is refused whole, so a rebinding name cannot pass on its public half).
        """
        name = _clean_host(host)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ProbeError(ErrorKind.INVALID_CONFIG, f"port {port!r} is not between 1 and 65535")
        try:
            literal = parse_ip_literal(name)
        except ValueError as exc:
            raise ProbeError(ErrorKind.INVALID_CONFIG, str(exc)) from None
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        elif _is_loopback_name(name):
            addresses = list(_LOOPBACK_ADDRESSES)
        else:
            addresses = await _getaddrinfo(name, port)
        for ip in addresses:  # every address, not only the first
            self.check(ip, name)
        return [Destination(name, str(ip), port) for ip in addresses]


def _clean_host(host: str) -> str:
    """The host without URL brackets; :class:`ProbeError` if it cannot be a host."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    core = text.split("%", 1)[0] if ":" in text else text  # only IPv6 carries a zone id
    if not core or _BAD_HOST_CHARS.search(core) or len(core) > 254:
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"{host!r} is not a valid host name or address")
    return text


def _is_loopback_name(name: str) -> bool:
    label = name.lower().rstrip(".")
    return any(label == n or label.endswith("." + n) for n in _LOOPBACK_NAMES)


async def _getaddrinfo(name: str, port: int) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProbeError(ErrorKind.DNS, f"cannot resolve host {name!r}") from exc
    except UnicodeError as exc:  # IDNA encoding of the name failed
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"{name!r} is not a valid host name") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


@functools.lru_cache(maxsize=4096)
def parse_ip_literal(host: str) -> IPAddress | None:
    """The IP address a host denotes, in any spelling a resolver accepts; ``None`` for a name.

    IPv6 may come bracketed and with a zone id (``[fe80::1%eth0]``; the zone is
    dropped). IPv4 follows the WHATWG URL host parser: a host whose last label
    is a number is an IPv4 address in the legacy forms ``inet_aton`` accepts
    (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``, ``0177.0.0.1``,
    a trailing dot allowed), and :class:`ValueError` if that number is not a
    valid address (``foo.123``, ``1.2.3.256``), because a resolver would read
    such a host differently from a string check.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv6 address") from None
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _NUMBER.match(parts[-1]):
        return None
    value = _ipv4_number(parts)
    if value is None:
        raise ValueError(f"{host!r} ends in a number but is not a valid IPv4 address")
    return ipaddress.IPv4Address(value)


def _ipv4_number(parts: list[str]) -> int | None:
    """The 32-bit value of WHATWG IPv4 parts, or ``None`` if they are not an address."""
    if len(parts) > 4 or not all(_NUMBER.match(p) for p in parts):
        return None
    numbers = [_part_value(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *head, last = values
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(values)):
        return None
    total = last
    for index, n in enumerate(head):
        total += n << (8 * (3 - index))
    return total


def _part_value(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        return int(part[2:], 16) if part[2:] else 0
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if all(c in "01234567" for c in part) else None
    return int(part)
