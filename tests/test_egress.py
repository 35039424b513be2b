"""The egress policy's decision, table-driven. Nothing here sends a packet.

Only ``parse_ip_literal``, ``denial`` and ``resolve`` of literals and of
loopback names run; an autouse fixture makes any DNS lookup fail the test, so
no case can slip out to a resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from connectord.model import ErrorKind
from connectord.network.egress import Destination, EgressPolicy, parse_ip_literal
from connectord.plugin import ProbeError

LOOPBACK_OPEN = ("127.0.0.0/8", "::1/128")


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that would ask a resolver (a lookup may leave the machine)."""

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a DNS lookup was attempted: {args[:2]}")

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", refuse)


# (host as written, allow list, denied range expected or None when allowed)
DECISIONS: list[tuple[str, tuple[str, ...], str | None]] = [
    # IPv4 loopback in every spelling a resolver accepts
    ("127.0.0.1", (), "127.0.0.0/8"),
    ("127.255.255.254", (), "127.0.0.0/8"),
    ("2130706433", (), "127.0.0.0/8"),
    ("0x7f.1", (), "127.0.0.0/8"),
    ("0X7F.0.0.1", (), "127.0.0.0/8"),
    ("017700000001", (), "127.0.0.0/8"),
    ("127.1", (), "127.0.0.0/8"),
    ("127.0.1", (), "127.0.0.0/8"),
    ("0177.0.0.1", (), "127.0.0.0/8"),
    ("0x7f000001", (), "127.0.0.0/8"),
    ("127.0.0.1.", (), "127.0.0.0/8"),
    # unspecified, private, link-local and cloud metadata
    ("0", (), "0.0.0.0/8"),
    ("0.0.0.0", (), "0.0.0.0/8"),
    ("10.1.2.3", (), "10.0.0.0/8"),
    ("012.1.2.3", (), "10.0.0.0/8"),
    ("172.16.0.1", (), "172.16.0.0/12"),
    ("172.31.255.255", (), "172.16.0.0/12"),
    ("192.168.1.1", (), "192.168.0.0/16"),
    ("169.254.169.254", (), "169.254.0.0/16"),
    ("0xa9fea9fe", (), "169.254.0.0/16"),
    ("2852039166", (), "169.254.0.0/16"),
    ("0251.0376.0251.0376", (), "169.254.0.0/16"),
    ("100.64.0.1", (), "100.64.0.0/10"),
    ("100.127.255.255", (), "100.64.0.0/10"),
    # multicast, reserved, broadcast, documentation, benchmarking
    ("224.0.0.1", (), "224.0.0.0/4"),
    ("239.255.255.250", (), "224.0.0.0/4"),
    ("240.0.0.1", (), "240.0.0.0/4"),
    ("255.255.255.255", (), "240.0.0.0/4"),
    ("192.0.2.1", (), "192.0.2.0/24"),
    ("198.18.0.1", (), "198.18.0.0/15"),
    ("192.0.0.8", (), "192.0.0.0/24"),
    # IPv6: loopback, unspecified, and the forms that carry an IPv4 address
    ("::1", (), "::1/128"),
    ("[::1]", (), "::1/128"),
    ("0:0:0:0:0:0:0:1", (), "::1/128"),
    ("::", (), "::/128"),
    ("::ffff:127.0.0.1", (), "127.0.0.0/8"),
    ("[::ffff:7f00:1]", (), "127.0.0.0/8"),
    ("::ffff:169.254.169.254", (), "169.254.0.0/16"),
    ("::ffff:0:10.0.0.1", (), "10.0.0.0/8"),
    ("::127.0.0.1", (), "::/96"),
    ("::8.8.8.8", (), "::/96"),
    ("64:ff9b::10.0.0.1", (), "10.0.0.0/8"),
    ("64:ff9b::a9fe:a9fe", (), "169.254.0.0/16"),
    ("64:ff9b:1::1", (), "64:ff9b:1::/48"),
    ("2002:7f00:1::", (), "127.0.0.0/8"),
    ("2002:a9fe:a9fe::1", (), "169.254.0.0/16"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", (), "2001::/32"),
    ("2001:db8::1", (), "2001:db8::/32"),
    ("3fff::1", (), "3fff::/20"),
    ("100::1", (), "100::/64"),
    ("fe80::1%eth0", (), "fe80::/10"),
    ("[fe80::1%25eth0]", (), "fe80::/10"),
    ("fc00::1", (), "fc00::/7"),
    ("fd12:3456::1", (), "fc00::/7"),
    ("fec0::1", (), "fec0::/10"),
    ("ff02::1", (), "ff00::/8"),
    ("4000::1", (), "outside 2000::/3"),
    # public addresses are allowed, whatever the spelling
    ("8.8.8.8", (), None),
    ("1.1.1.1", (), None),
    ("0x08080808", (), None),
    ("134744072", (), None),
    ("172.32.0.1", (), None),
    ("100.128.0.1", (), None),
    ("11.0.0.1", (), None),
    ("2606:4700:4700::1111", (), None),
    ("[2a00:1450:4001::200e]", (), None),
    ("::ffff:8.8.8.8", (), None),
    ("64:ff9b::8.8.8.8", (), None),
    ("2002:808:808::1", (), None),
    # the allow list opens ranges, and only those
    ("127.0.0.1", LOOPBACK_OPEN, None),
    ("0x7f.1", LOOPBACK_OPEN, None),
    ("::1", LOOPBACK_OPEN, None),
    ("::ffff:127.0.0.1", ("127.0.0.0/8",), None),
    ("127.0.0.2", ("127.0.0.1/32",), "127.0.0.0/8"),
    ("::1", ("127.0.0.0/8",), "::1/128"),
    ("10.1.2.3", ("10.1.0.0/16",), None),
    ("10.2.0.1", ("10.1.0.0/16",), "10.0.0.0/8"),
    ("169.254.169.254", ("10.0.0.0/8",), "169.254.0.0/16"),
    ("fd00::5", ("fd00::/64",), None),
]


@pytest.mark.parametrize(
    ("host", "allow", "denied"), DECISIONS, ids=[f"{h}|{','.join(a)}" for h, a, _ in DECISIONS]
)
def test_decision(host: str, allow: tuple[str, ...], denied: str | None) -> None:
    address = parse_ip_literal(host)
    assert address is not None, f"{host} should parse as an address"
    policy = EgressPolicy(allow)
    found = policy.denied_range(address)
    assert (found[0] if found else None) == denied
    reason = policy.denial(address)
    assert (reason is None) == (denied is None)
    if reason is not None:
        assert denied is not None
        assert denied in reason


def test_table_is_large_enough() -> None:
    assert len(DECISIONS) >= 40
    assert sum(1 for _, _, d in DECISIONS if d) >= 40


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("1.2.3", "1.2.0.3"),
        ("1.65539", "1.1.0.3"),
        ("[::ffff:1.2.3.4]", "::ffff:102:304"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_numeric_spellings_parse_like_a_resolver(host: str, expected: str) -> None:
    assert parse_ip_literal(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("host", ["example.com", "localhost", "api.example.com.", "0x1g", "a1"])
def test_names_are_not_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "host", ["1.2.3.256", "foo.123", "1.2.3.4.5", "08.1.1.1", "4294967296", "::g", "1..2"]
)
def test_hosts_ending_in_a_bad_number_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        parse_ip_literal(host)


async def test_resolve_literal_denied_names_the_policy() -> None:
    with pytest.raises(ProbeError) as caught:
        await EgressPolicy().resolve("0xa9fea9fe", 80)
    assert caught.value.kind is ErrorKind.EGRESS_DENIED
    assert "169.254.169.254" in caught.value.message
    assert "CONNECTORD_EGRESS_ALLOW" in caught.value.message
    assert caught.value.details["denied_address"] == "169.254.169.254"


async def test_resolve_allowed_literal_returns_the_checked_address() -> None:
    got = await EgressPolicy(LOOPBACK_OPEN).resolve("0x7f.1", 8080)
    assert got == [Destination("0x7f.1", "127.0.0.1", 8080)]
    assert await EgressPolicy(LOOPBACK_OPEN).resolve("[::1]", 443) == [Destination("::1", "::1", 443)]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "api.localhost", "x.y.localhost."])
async def test_localhost_names_are_loopback_without_dns(host: str) -> None:
    with pytest.raises(ProbeError) as caught:
        await EgressPolicy().resolve(host, 80)
    assert caught.value.kind is ErrorKind.EGRESS_DENIED
    assert "loopback" in caught.value.message
    got = await EgressPolicy(LOOPBACK_OPEN).resolve(host, 80)
    assert {d.address for d in got} == {"127.0.0.1", "::1"}


async def test_a_mixed_answer_is_refused_whole() -> None:
    with pytest.raises(ProbeError) as caught:
        await EgressPolicy(["127.0.0.0/8"]).resolve("localhost", 80)  # ::1 stays closed
    assert caught.value.kind is ErrorKind.EGRESS_DENIED
    assert "::1" in caught.value.message


@pytest.mark.parametrize(
    "host", ["127.0.0.1 junk", "a/b", "host?x", "user@host", "", "[]", "foo.123", "1.2.3.256", "ex ample.com"]
)
async def test_malformed_hosts_are_invalid_config(host: str) -> None:
    with pytest.raises(ProbeError) as caught:
        await EgressPolicy().resolve(host, 80)
    assert caught.value.kind is ErrorKind.INVALID_CONFIG


@pytest.mark.parametrize("port", [0, 65536, -1])
async def test_bad_ports_are_invalid_config(port: int) -> None:
    with pytest.raises(ProbeError) as caught:
        await EgressPolicy(LOOPBACK_OPEN).resolve("127.0.0.1", port)
    assert caught.value.kind is ErrorKind.INVALID_CONFIG


def test_check_raises_egress_denied() -> None:
    policy = EgressPolicy()
    policy.check(ipaddress.ip_address("8.8.8.8"))
    with pytest.raises(ProbeError) as caught:
        policy.check(ipaddress.ip_address("10.0.0.1"), host="db.internal")
    assert caught.value.kind is ErrorKind.EGRESS_DENIED
    assert "db.internal resolves to 10.0.0.1" in caught.value.message


async def test_the_no_dns_guard_works() -> None:
    with pytest.raises(AssertionError, match="DNS lookup"):
        await EgressPolicy().resolve("example.com", 80)
