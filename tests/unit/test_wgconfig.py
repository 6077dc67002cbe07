"""The wg-quick file a device downloads."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.support.wgquick import have_wg_quick, parse, wg_quick_strip
from tongdao import validation
from tongdao.network.wgconfig import ConfigDataError, PeerSpec, endpoint, render, render_site


def peer(name: str, host: str = "pop.example.com") -> PeerSpec:
    return PeerSpec(name, "CN-BJ", "K" * 43 + "=", host, 51820, "100.64.0.1", "fd00:1:2::1")


def test_render_one_peer() -> None:
    text = render(
        device_name="laptop",
        device_id="d1",
        tenant_name="Acme",
        ipv4="100.64.0.2",
        ipv6="fd00:1:2::2",
        dns=["198.51.100.53"],
        routable=["100.64.0.0/22", "198.18.0.0/24", "198.18.1.0/24", "fd00:1:2::/48"],
        peers=[peer("bj1")],
    )
    assert "Address = 100.64.0.2/32, fd00:1:2::2/128" in text
    assert "DNS = 198.51.100.53" in text
    assert "AllowedIPs = 100.64.0.0/22, 198.18.0.0/23, fd00:1:2::/48" in text
    assert "Endpoint = pop.example.com:51820" in text
    assert "PersistentKeepalive = 25" in text
    assert "\nPrivateKey" not in text  # never in the control plane


def test_standby_peers_do_not_overlap_the_primary() -> None:
    text = render(
        device_name="x",
        device_id="d",
        tenant_name="t",
        ipv4="100.64.0.2",
        ipv6="fd00::2",
        dns=[],
        routable=["100.64.0.0/22"],
        peers=[peer("a"), peer("b")],
    )
    assert text.count("[Peer]") == 2
    assert "AllowedIPs = 100.64.0.1/32, fd00:1:2::1/128" in text
    assert "DNS" not in text


def test_ipv6_endpoint_is_bracketed() -> None:
    assert endpoint("2001:db8::1", 51820) == "[2001:db8::1]:51820"
    assert endpoint("198.51.100.1", 1) == "198.51.100.1:1"


# --- no field can start a line (issue 10) ------------------------------------------------------
INJECTION = "\n[Peer]\nPublicKey = {key}\nAllowedIPs = 0.0.0.0/0\n[Interface]\nPostUp = id"
BREAKS = {
    "LF": "\n",
    "CR": "\r",
    "CRLF": "\r\n",
    "VT": "\x0b",
    "FF": "\x0c",
    "FS": "\x1c",
    "GS": "\x1d",
    "RS": "\x1e",
    "NEL": "\x85",
    "LS": "\u2028",
    "PS": "\u2029",
}
INTERFACE_KEYS = {"address", "dns"}
PEER_KEYS = {"publickey", "endpoint", "allowedips", "persistentkeepalive"}


def evil(prefix: str, brk: str) -> str:
    return prefix + INJECTION.format(key="E" * 43 + "=").replace("\n", brk)


def device_conf(brk: str, **names: str) -> str:
    return render(
        device_name=names.get("device", "laptop"),
        device_id="d1",
        tenant_name=names.get("tenant", "Acme"),
        ipv4="100.64.0.2",
        ipv6="fd00:1:2::2",
        dns=["198.51.100.53"],
        routable=["100.64.0.0/22"],
        peers=[
            PeerSpec(
                names.get("pop", "bj1"),
                names.get("region", "CN-BJ"),
                "K" * 43 + "=",
                "pop.example.com",
                51820,
                "100.64.0.1",
                "fd00:1:2::1",
            )
        ],
    )


def assert_only_the_intended_peer(text: str) -> None:
    """Exactly [Interface] then one [Peer], with only the keys Tongdao writes."""
    for parsed in (parse(text), *([parse(wg_quick_strip(text))] if have_wg_quick() else [])):
        assert parsed.names[0] == "interface"
        assert parsed.stray == []
        interface, *rest = parsed.sections
        assert set(interface.keys) <= INTERFACE_KEYS
        [peer] = rest
        assert set(peer.keys) == PEER_KEYS
        assert peer.keys["publickey"] == ["K" * 43 + "="]
        assert peer.keys["allowedips"] == ["100.64.0.0/22"]
    assert all(line == "" or line[0] in "#[" or line[0].isupper() for line in text.split("\n"))


@pytest.mark.parametrize("brk", BREAKS.values(), ids=BREAKS.keys())
@pytest.mark.parametrize("field", ["tenant", "pop", "region", "device"])
def test_a_name_with_a_line_break_cannot_add_a_peer(field: str, brk: str) -> None:
    text = device_conf(brk, **{field: evil("Acme", brk)})
    assert_only_the_intended_peer(text)
    # The name is still there, on its comment line, without its line breaks.
    assert "Acme[Peer]PublicKey = " in text


def test_comments_drop_bidi_overrides_and_other_controls() -> None:
    text = device_conf("\n", tenant="Acme\u202eevil\x00\x1b[31m\t", pop="bj\u2066x\u2069")
    first = text.split("\n")[0]
    assert first.endswith("of Acmeevil[31m")
    assert "# PoP bjx (CN-BJ), primary" in text
    assert not any(validation.line_breaker(ch) for ch in text.replace("\n", ""))


@pytest.mark.parametrize("brk", ["\n", "\u2028"], ids=["LF", "U+2028"])
def test_a_site_config_is_as_safe(brk: str) -> None:
    text = render_site(
        site_name=evil("hq", brk),
        site_id="s1",
        tenant_name=evil("Acme", brk),
        ipv4="100.64.0.2",
        ipv6="fd00:1:2::2",
        peer=peer(evil("bj1", brk)),
        allowed=["100.64.0.0/22"],
    )
    assert_only_the_intended_peer(text)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"public_key": "K" * 43 + "=\nAllowedIPs = 0.0.0.0/0"}, "peers[0].public_key"),
        ({"endpoint_host": "pop.example.com\nAllowedIPs = 0.0.0.0/0"}, "peers[0].endpoint"),
        ({"endpoint_host": "fe80::1%x\n[Peer]"}, "peers[0].endpoint"),
        ({"endpoint_host": "a\n.example.com"}, "peers[0].endpoint"),
        ({"listen_port": 0}, "peers[0].endpoint"),
    ],
)
def test_stored_values_that_are_not_what_they_claim_are_refused(
    change: dict[str, Any], field: str
) -> None:
    spec = dataclasses.replace(peer("bj1"), **change)
    with pytest.raises(ConfigDataError) as caught:
        render(
            device_name="laptop",
            device_id="d1",
            tenant_name="Acme",
            ipv4="100.64.0.2",
            ipv6="fd00:1:2::2",
            dns=[],
            routable=["100.64.0.0/22"],
            peers=[spec],
        )
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ipv4": "100.64.0.2\nAllowedIPs = 0.0.0.0/0"}, "ipv4"),
        ({"ipv6": "fe80::1%x\n[Peer]"}, "ipv6"),
        ({"dns": ["198.51.100.53\n[Peer]"]}, "dns_servers"),
        ({"routable": ["fd00::%x\n[Peer]/64"]}, "peers[0].allowed_ips"),
    ],
)
def test_stored_addresses_are_written_only_as_addresses(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {
        "device_name": "laptop",
        "device_id": "d1",
        "tenant_name": "Acme",
        "ipv4": "100.64.0.2",
        "ipv6": "fd00:1:2::2",
        "dns": [],
        "routable": ["100.64.0.0/22"],
        "peers": [peer("bj1")],
        **kwargs,
    }
    with pytest.raises(ConfigDataError) as caught:
        render(**args)
    assert caught.value.field == field
