"""The wg-quick file a device downloads."""

from __future__ import annotations

from tongdao.network.wgconfig import PeerSpec, endpoint, render


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
