"""Render a device's wg-quick configuration for the stock WireGuard apps (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KEEPALIVE_SECONDS = 25


@dataclass(frozen=True)
class PeerSpec:
    pop_name: str
    region: str
    public_key: str
    endpoint_host: str
    listen_port: int
    gateway_ipv4: str
    gateway_ipv6: str


def endpoint(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def collapse(prefixes: Iterable[str]) -> list[str]:
    nets = [ipaddress.ip_network(p) for p in prefixes]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    return [str(n) for n in (*v4, *v6)]


def render(
    *,
    device_name: str,
    device_id: str,
    tenant_name: str,
    ipv4: str,
    ipv6: str,
    dns: Sequence[str],
    routable: Sequence[str],
    peers: Sequence[PeerSpec],
) -> str:
    """A wg-quick file. The first peer carries the routes; further PoPs are standbys that
    carry only their own gateway address, since WireGuard routes each prefix to one peer."""
    lines = [
        f"# Tongdao device {device_name!r} ({device_id}) of {tenant_name}",
        "# The private key was generated on this device and never left it: put it below.",
        "[Interface]",
        "# PrivateKey = <this device's private key>",
        f"Address = {ipv4}/32, {ipv6}/128",
    ]
    if dns:
        lines.append(f"DNS = {', '.join(dns)}")
    for index, peer in enumerate(peers):
        allowed = (
            collapse(routable)
            if index == 0
            else [f"{peer.gateway_ipv4}/32", f"{peer.gateway_ipv6}/128"]
        )
        role = "primary" if index == 0 else "standby"
        lines += [
            "",
            "[Peer]",
            f"# PoP {peer.pop_name} ({peer.region}), {role}",
            f"PublicKey = {peer.public_key}",
            f"Endpoint = {endpoint(peer.endpoint_host, peer.listen_port)}",
            f"AllowedIPs = {', '.join(allowed)}",
            f"PersistentKeepalive = {KEEPALIVE_SECONDS}",
        ]
    return "\n".join(lines) + "\n"


def render_site(
    *,
    site_name: str,
    site_id: str,
    tenant_name: str,
    ipv4: str,
    ipv6: str,
    peer: PeerSpec,
    allowed: Sequence[str],
) -> str:
    """A wg-quick file for a site's own WireGuard router, in place of a Tongdao connector."""
    return "\n".join(
        [
            f"# Tongdao site {site_name!r} ({site_id}) of {tenant_name}",
            "# The private key was generated on the router and never left it: put it below.",
            "# Route the tunnel's AllowedIPs from the LAN to this interface.",
            "[Interface]",
            "# PrivateKey = <the router's private key>",
            f"Address = {ipv4}/32, {ipv6}/128",
            "",
            "[Peer]",
            f"# PoP {peer.pop_name} ({peer.region})",
            f"PublicKey = {peer.public_key}",
            f"Endpoint = {endpoint(peer.endpoint_host, peer.listen_port)}",
            f"AllowedIPs = {', '.join(collapse(allowed))}",
            f"PersistentKeepalive = {KEEPALIVE_SECONDS}",
            "",
        ]
    )
