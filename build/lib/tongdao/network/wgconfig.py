"""Render a device's wg-quick configuration for the stock WireGuard apps (pure).

No field can start a line of the file: every value written after ``Key =`` is re-validated as
what it is (a WireGuard key, an IP address, a prefix, a host, a port) and written in its
canonical form, and text (PoP, tenant and device names, regions) appears only in ``#``
comments with every control character, line or paragraph separator and bidi override removed.
This holds for rows stored before the schemas refused such characters: the renderer does not
trust the store. A value that cannot be written raises :class:`ConfigDataError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tongdao import validation

KEEPALIVE_SECONDS = 25

A = TypeVar("A")
T = TypeVar("T")


class ConfigDataError(ValueError):
    """A stored value cannot be written into a configuration (e.g. a key that is not a key)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PeerSpec:
    pop_name: str
    region: str
    public_key: str
    endpoint_host: str
    listen_port: int
    gateway_ipv4: str
    gateway_ipv6: str


def _checked(field: str, check: Callable[[A], T], value: A) -> T:
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigDataError(field, str(exc)) from exc


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in value:  # ipaddress takes a zone of any text after '%'
        raise ValueError(f"{value!r} is not an IP address")
    return ipaddress.ip_address(value)


def _prefix(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if "%" in value:
        raise ValueError(f"{value!r} is not an IP prefix")
    return ipaddress.ip_network(value)


def _port(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{value!r} is not a port (1-65535)")
    return value


def comment(value: object) -> str:
    """Text for a ``#`` comment: one line, whatever the stored value holds."""
    return validation.one_line_text(value)


def endpoint(host: str, port: int) -> str:
    """``host:port`` (``[v6]:port``), the host checked as a DNS name or IP address."""
    name = validation.hostname_or_ip(host)
    number = _port(port)
    if ":" in name:
        return f"[{name}]:{number}"
    return f"{name}:{number}"


def collapse(prefixes: Iterable[str]) -> list[str]:
    nets = [_prefix(p) for p in prefixes]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    return [str(n) for n in (*v4, *v6)]


def _address_line(ipv4: str, ipv6: str) -> str:
    v4 = _checked("ipv4", _ip, ipv4)
    v6 = _checked("ipv6", _ip, ipv6)
    if v4.version != 4 or v6.version != 6:
        raise ConfigDataError("ipv4", f"{ipv4!r}/{ipv6!r} are not an IPv4 and an IPv6 address")
    return f"Address = {v4}/32, {v6}/128"


def _peer_lines(
    peer: PeerSpec, allowed: Sequence[str], title: str, *, field: str = "peer"
) -> list[str]:
    key = _checked(f"{field}.public_key", validation.wireguard_key, peer.public_key)
    try:
        dial = endpoint(peer.endpoint_host, peer.listen_port)
    except ValueError as exc:
        raise ConfigDataError(f"{field}.endpoint", str(exc)) from exc
    routes = _checked(f"{field}.allowed_ips", collapse, allowed)
    return [
        "[Peer]",
        f"# PoP {comment(peer.pop_name)} ({comment(peer.region)}){title}",
        f"PublicKey = {key}",
        f"Endpoint = {dial}",
        f"AllowedIPs = {', '.join(routes)}",
        f"PersistentKeepalive = {KEEPALIVE_SECONDS}",
    ]


def _finish(lines: list[str]) -> str:
    """Join the lines, refusing any line that holds a line break (defence in depth)."""
    for line in lines:
        if validation.NOT_IN_A_LINE.search(line):
            raise ConfigDataError("config", f"a line holds a line break: {line!r}")
    return "\n".join(lines) + "\n"


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
        f"# Tongdao device {comment(device_name)!r} ({comment(device_id)}) of "
        f"{comment(tenant_name)}",
        "# The private key was generated on this device and never left it: put it below.",
        "[Interface]",
        "# PrivateKey = <this device's private key>",
        _address_line(ipv4, ipv6),
    ]
    if dns:
        servers = [str(_checked("dns_servers", _ip, str(server))) for server in dns]
        lines.append(f"DNS = {', '.join(servers)}")
    for index, peer in enumerate(peers):
        allowed = (
            list(routable)
            if index == 0
            else [f"{peer.gateway_ipv4}/32", f"{peer.gateway_ipv6}/128"]
        )
        role = "primary" if index == 0 else "standby"
        lines += ["", *_peer_lines(peer, allowed, f", {role}", field=f"peers[{index}]")]
    return _finish(lines)


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
    lines = [
        f"# Tongdao site {comment(site_name)!r} ({comment(site_id)}) of {comment(tenant_name)}",
        "# The private key was generated on the router and never left it: put it below.",
        "# Route the tunnel's AllowedIPs from the LAN to this interface.",
        "[Interface]",
        "# PrivateKey = <the router's private key>",
        _address_line(ipv4, ipv6),
        "",
        *_peer_lines(peer, allowed, ""),
    ]
    return _finish(lines)
