"""The prefix classification behind network.no_default_or_public and declaration overlaps."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace
from typing import Any

import pytest

from tongdao.compliance.rules import rule
from tongdao.network.declared import Exposure, _clash, _covered

TENANT: Any = SimpleNamespace(id=None, ipv4_pool="100.64.4.0/22", ipv6_pool="fd12:3456:789a::/48")


class NoStore:
    """Reading other tenants' pools is not expected for IPv4 prefixes."""

    @property
    def session(self) -> Any:
        raise AssertionError("no store access expected")


def why(cidr: str) -> str | None:
    return Exposure(NoStore(), TENANT)(ipaddress.ip_network(cidr))  # type: ignore[arg-type]


def test_the_private_blocks_are_well_formed_and_cover_the_test_ranges() -> None:
    blocks = [
        ipaddress.ip_network(b)
        for b in rule("network.no_default_or_public").param("private_blocks")
    ]
    assert {b.version for b in blocks} == {4, 6}
    for test_range in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15"):
        assert ipaddress.ip_network(test_range) in blocks
    # Nothing in the list is Internet-routable (3fff::/20, RFC 9637 of 2024, postdates the
    # table of Python's ipaddress).
    newer = ipaddress.ip_network("3fff::/20")
    assert not any(b.is_global for b in blocks if b != newer)


@pytest.mark.parametrize(
    ("cidr", "fragment"),
    [
        ("0.0.0.0/0", "default route"),
        ("128.0.0.0/1", "split in two"),
        ("1.1.1.0/24", "is public"),
        ("192.0.0.0/16", "is public"),  # straddles 192.0.2/24 and public space
        ("100.64.0.0/22", "other tenants' pools"),
        ("100.64.0.0/16", "other tenants' pools"),  # contains the tenant's pool and others
    ],
)
def test_exposed_prefixes(cidr: str, fragment: str) -> None:
    reason = why(cidr)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize(
    "cidr", ["10.1.0.0/16", "172.31.0.0/16", "192.168.1.0/24", "198.19.0.0/16", "100.64.4.0/24"]
)
def test_private_prefixes_are_not_exposed(cidr: str) -> None:
    assert why(cidr) is None


def test_wide_prefixes_may_contain_others_but_never_repeat() -> None:
    default, lan = ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("198.18.1.0/24")
    half = ipaddress.ip_network("198.18.1.0/25")
    assert _clash(lan, False, half, False)
    assert not _clash(default, True, lan, False)
    assert _clash(default, True, default, True)
    assert not _clash(lan, False, ipaddress.ip_network("fd00::/8"), False)


def test_adjacent_prefixes_cover_their_union() -> None:
    halves = [ipaddress.ip_network("198.18.0.0/25"), ipaddress.ip_network("198.18.0.128/25")]
    assert _covered(ipaddress.ip_network("198.18.0.0/24"), halves)
    assert not _covered(ipaddress.ip_network("198.18.0.0/23"), halves)
    assert not _covered(ipaddress.ip_network("fd00::/64"), halves)
