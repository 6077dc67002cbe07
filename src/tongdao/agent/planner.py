"""From (desired, actual) to what must change: pure functions, tested without root.

The WireGuard part is exact: a peer is sent only when it is new or its allowed IPs,
keepalive or endpoint differ, and removed only when it is no longer wanted, so one device's
change costs one peer in one UAPI transaction, never a rewrite of the interface.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from tongdao.agent.engine import DeviceState, PeerConfig, normalize_allowed_ip, normalize_endpoint
from tongdao.gateway.desired import DesiredState, TenantInterface

# Interfaces an agent manages (PoP tenant interfaces, site connector interfaces); anything
# else on the host is never touched, whatever the state directory says.
OWNED_PREFIXES = ("wgt", "wgs")


@dataclass(frozen=True)
class InterfacePlan:
    tenant: TenantInterface
    create: bool
    configure_key: bool  # set our private key (new interface, or a key the engine lost)
    configure_port: bool
    upserts: tuple[PeerConfig, ...]
    removals: tuple[str, ...]

    @property
    def ifname(self) -> str:
        return self.tenant.ifname

    @property
    def routes(self) -> tuple[str, ...]:
        """What the tenant's table routes into the interface: its pools, and every peer
        prefix outside them (sites' networks). Device and gateway addresses lie inside the
        pools, so thousands of devices cost no routes; WireGuard picks the peer itself."""
        pools = [ipaddress.ip_network(p) for p in self.tenant.pools]
        prefixes = {str(p) for p in pools}
        for peer in self.tenant.peers:
            if peer.kind == "device":
                continue  # device addresses are allocated from the pools
            for cidr in peer.allowed_ips:
                net = ipaddress.ip_network(cidr, strict=False)
                if not any(net.version == p.version and net.subnet_of(p) for p in pools):  # type: ignore[arg-type]
                    prefixes.add(str(net))
        return tuple(sorted(prefixes))

    @property
    def changes_peers(self) -> bool:
        return bool(self.upserts or self.removals)


@dataclass(frozen=True)
class Plan:
    interfaces: tuple[InterfacePlan, ...]
    delete: tuple[str, ...]  # owned interfaces no tenant wants any more

    @property
    def rules(self) -> dict[str, int]:
        return {p.ifname: p.tenant.table for p in self.interfaces}


def _peer_differs(want: PeerConfig, have: object) -> bool:
    from tongdao.agent.engine import PeerState

    assert isinstance(have, PeerState)
    if (
        want.allowed_ips == have.allowed_ips  # usually the very tuple set last time
        and (want.keepalive or None) == (have.keepalive or None)
        and (want.endpoint is None or want.endpoint == have.endpoint)
    ):
        return False
    # Both sides are canonical CIDR text almost always: compare that first, parse only if not.
    if sorted(want.allowed_ips) != sorted(have.allowed_ips) and {
        normalize_allowed_ip(a) for a in want.allowed_ips
    } != {normalize_allowed_ip(a) for a in have.allowed_ips}:
        return True
    if (want.keepalive or None) != (have.keepalive or None):
        return True
    return want.endpoint is not None and (
        have.endpoint is None
        or normalize_endpoint(want.endpoint) != normalize_endpoint(have.endpoint)
    )


def plan_interface(
    tenant: TenantInterface,
    actual: DeviceState | None,
    our_public_key: str,
    applied: TenantInterface | None = None,
) -> InterfacePlan:
    """``applied``: the tenant as this process last applied it, when ``actual`` is what that
    apply left (not read back since): a peer that is the very same object there is unchanged
    since, and is not compared again."""
    have = actual.peers if actual is not None else {}
    same: dict[str, object] = (
        {p.public_key: p for p in applied.peers} if applied is not None and actual else {}
    )
    # In the desired state's order (devices by id, so by creation and address): wireguard-go
    # fills its allowed-IPs trie faster with neighbouring prefixes one after another than in
    # key order, which scatters them (about 3% of a 10,000-peer set, measured).
    upserts = tuple(
        cfg
        for p in tenant.peers
        if not (same.get(p.public_key) is p and p.public_key in have)
        for cfg in (PeerConfig.from_desired(p, new=p.public_key not in have),)
        if p.public_key not in have or _peer_differs(cfg, have[p.public_key])
    )
    wanted = {p.public_key for p in tenant.peers}
    removals = tuple(sorted(k for k in have if k not in wanted))
    return InterfacePlan(
        tenant=tenant,
        create=actual is None,
        configure_key=actual is None or actual.public_key != our_public_key,
        configure_port=actual is None or actual.listen_port != tenant.listen_port,
        upserts=upserts,
        removals=removals,
    )


def plan(
    desired: DesiredState,
    actual: Mapping[str, DeviceState | None],
    public_keys: Mapping[str, str],
    applied: Mapping[str, TenantInterface] | None = None,
) -> Plan:
    """``actual``: every owned interface that exists (None: the socket is gone); ``public_keys``:
    our key per interface name (made before planning); ``applied``: see :func:`plan_interface`."""
    last = applied or {}
    interfaces = tuple(
        plan_interface(t, actual.get(t.ifname), public_keys[t.ifname], last.get(t.ifname))
        for t in desired.tenants
    )
    wanted = {t.ifname for t in desired.tenants}
    delete = tuple(sorted(n for n in actual if n.startswith(OWNED_PREFIXES) and n not in wanted))
    return Plan(interfaces=interfaces, delete=delete)
