"""Pure validators: WireGuard keys, prefixes, regions, hosts, phones."""

from __future__ import annotations

import base64
import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongdao import validation
from tongdao.compliance.identity import id_number_problem, resident_id_check_digit
from tongdao.testing.keys import keypair


def test_generated_public_key_is_accepted() -> None:
    _, public = keypair()
    assert validation.wireguard_key(public) == public


@pytest.mark.parametrize(
    "key",
    [
        "",
        "abc",
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.b64encode(bytes(32)).decode(),  # all-zero
        "!" * 43 + "=",
        base64.b64encode(b"\x01" * 32).decode().replace("=", "A"),
    ],
)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="WireGuard key"):
        validation.wireguard_key(key)


@given(st.binary(min_size=32, max_size=32).filter(any))
def test_every_nonzero_32_bytes_is_a_key(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert validation.wireguard_key(text) == text


def test_network_accepts_canonical_prefixes() -> None:
    assert str(validation.network("198.51.100.0/24")) == "198.51.100.0/24"
    assert str(validation.network("fd00:1::/64", family=6)) == "fd00:1::/64"


@pytest.mark.parametrize(
    ("text", "family", "fragment"),
    [
        ("198.51.100.1/24", None, "host bits set; the prefix is 198.51.100.0/24"),
        ("198.51.100.0", None, "no prefix length"),
        ("300.1.1.0/24", None, "not an IP prefix"),
        ("198.51.100.0/24", 6, "IPv6 prefix is required"),
        ("fd00::/8", 4, "IPv4 prefix is required"),
        ("198.51.100.0/33", None, "not an IP prefix"),
    ],
)
def test_network_refusals(text: str, family: int | None, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        validation.network(text, family=family)


def test_overlaps_are_reported_against_the_earlier_prefix() -> None:
    nets = [
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("198.51.100.128/25"),
        ipaddress.ip_network("fd00::/64"),
    ]
    assert validation.non_overlapping(nets) == {2: "198.51.100.128/25 overlaps 198.51.100.0/24"}


@pytest.mark.parametrize("value", ["CN-BJ", "cn-bj", "DE-FRA", "US-1"])
def test_regions(value: str) -> None:
    assert validation.region(value) == value.upper()


@pytest.mark.parametrize("value", ["CN", "XX-BJ", "CN_BJ", "CN-", "CN-TOOLONGNAME"])
def test_bad_regions(value: str) -> None:
    with pytest.raises(ValueError, match="region"):
        validation.region(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pop.example.com.", "pop.example.com"),
        ("198.51.100.1", "198.51.100.1"),
        ("FD00::1", "fd00::1"),
    ],
)
def test_hosts(value: str, expected: str) -> None:
    assert validation.hostname_or_ip(value) == expected


@pytest.mark.parametrize("value", ["localhost", "-bad.example", "a..b", "1.2.3.999", "x" * 300])
def test_bad_hosts(value: str) -> None:
    with pytest.raises(ValueError, match="DNS name"):
        validation.hostname_or_ip(value)


def test_mobile() -> None:
    assert validation.mobile("+86 138-0013-8000") == "+8613800138000"
    with pytest.raises(ValueError, match="phone"):
        validation.mobile("call me")


def test_resident_id_check_digit() -> None:
    # GB 11643 worked example: 11010519491231002X
    assert resident_id_check_digit("11010519491231002") == "X"
    assert id_number_problem("prc_resident_id", "11010519491231002X") is None
    assert "check digit" in (id_number_problem("prc_resident_id", "110105194912310021") or "")
    assert "birth date" in (id_number_problem("prc_resident_id", "110105194913310021") or "")
    assert id_number_problem("passport", "E12345678") is None
    assert id_number_problem("passport", "E1") is not None
