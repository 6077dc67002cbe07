"""The desired state of one PoP gateway: what the control plane wants it to run.

Shared by the control plane (which compiles it) and the agent (which plans and applies it).
Plain, JSON-round-trippable pydantic models; no private keys ever appear here (each gateway
generates its interfaces' keys and publishes only the public halves).

Per tenant served by the PoP there is one WireGuard interface named ``wgt<listen port>``, one
routing table numbered like the port, and nftables rules that let the tenant's traffic flow
only between its own peers, as its access policy allows (default deny).
"""

from __future__ import annotations

import bisect
import uuid
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

PeerKind = Literal["device", "site", "pop"]
Protocol = Literal["any", "tcp", "udp", "icmp"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Peer(Frozen):
    """A WireGuard peer on a tenant interface."""

    public_key: str
    kind: PeerKind
    ref: str = Field(description="id of the device, site or peer PoP")
    allowed_ips: tuple[str, ...] = Field(description="CIDRs routed to this peer")
    endpoint: str | None = Field(default=None, description="host:port, for peers we dial")
    keepalive: int | None = None
    # Quotas (tongdao.quotas): traffic to and from a blocked peer is dropped; a rate (Mbit/s,
    # each direction) is shared by the peers of one limit group on the PoP (a user's devices).
    blocked: bool = False
    rate_mbps: int | None = Field(default=None, ge=1, le=100_000)
    limit_group: str | None = Field(default=None, max_length=36)
    # A tenant over its cap and throttled: every device and site peer of the tenant on the PoP
    # shares this rate (each direction), on top of its own limit above (both hold: a user
    # limited below the throttle stays at their limit, and all together stay under it).
    tenant_rate_mbps: int | None = Field(default=None, ge=1, le=100_000)
    cross_border: bool = Field(
        default=False, description="a peer PoP across the border over a registered link"
    )
    # A peer PoP across the border: the tenant's approved cross-border bandwidth, enforced on
    # the traffic to and from it (tongdao.agent.firewall); None: no limit of this kind.
    link_rate_mbps: int | None = Field(default=None, ge=1, le=100_000)


class PolicyRule(Frozen):
    """One allow rule, already resolved to addresses: ``src`` may reach ``dst``."""

    src: tuple[str, ...]
    dst: tuple[str, ...]
    protocol: Protocol = "any"
    ports: tuple[str, ...] = ()  # "443" or "8000-8100"; only with tcp/udp


class TenantInterface(Frozen):
    tenant_id: uuid.UUID
    ifname: str = Field(max_length=15)
    listen_port: int
    table: int = Field(description="routing table for traffic arriving on the interface")
    address_v4: str = Field(description="gateway address with the pool's prefix length")
    address_v6: str
    pools: tuple[str, ...] = Field(description="the tenant's overlay pools")
    public_key: str | None = Field(
        default=None, description="the interface key the control plane has (None: not yet)"
    )
    peers: tuple[Peer, ...] = ()
    policy: tuple[PolicyRule, ...] = ()


class DesiredState(Frozen):
    version: int
    pop_id: uuid.UUID
    role: Literal["pop", "connector"] = "pop"
    tenants: tuple[TenantInterface, ...] = ()


TENANT_IFNAME_PREFIX: Final = "wgt"
"""Every tenant interface's name starts so (and no other interface's: the PoP firewall drops
forwarding through a ``wgt…`` interface it does not know)."""


def interface_name(listen_port: int) -> str:
    return f"{TENANT_IFNAME_PREFIX}{listen_port}"


def connector_interface_name(site_id: uuid.UUID) -> str:
    """Unique per site (wireguard-go sockets share one directory per host)."""
    return f"wgs{site_id.hex[-10:]}"


CONNECTOR_PORT = 51820
MAIN_TABLE = 254


# --- deltas ------------------------------------------------------------------------------------
# A gateway that already holds version N asks for what changed since N: the control plane
# sends only the tenants whose interface, policy or peers changed, and for those only the peers
# added, changed or removed. One device's change is then a few hundred bytes instead of the
# whole PoP (a megabyte at 5,000 devices), and the agent merges it into the state it holds.

KIND_RANK: dict[str, int] = {"device": 0, "site": 1, "pop": 2}


def peer_order(peer: Peer) -> tuple[int, str, str]:
    """The canonical order of a tenant's peers (devices, sites, peer PoPs; each by id), so a
    state merged from a delta equals the state compiled in full."""
    return KIND_RANK[peer.kind], peer.ref, peer.public_key


class TenantChange(Frozen):
    """A changed tenant interface: every field as in full (``peers`` left empty), and the peer
    changes against the base version."""

    interface: TenantInterface
    upserts: tuple[Peer, ...] = ()
    removals: tuple[str, ...] = Field(default=(), description="public keys of removed peers")
    peer_count: int = Field(ge=0, description="peers after the change (a check on the merge)")


class DesiredDelta(Frozen):
    version: int
    base_version: int = Field(description="the version this delta applies to")
    pop_id: uuid.UUID
    role: Literal["pop", "connector"] = "pop"
    interfaces: tuple[str, ...] = Field(description="every interface of the new state, in order")
    changes: tuple[TenantChange, ...] = ()


class DeltaMismatch(ValueError):
    """The delta does not fit the state it was applied to: fetch the whole state instead."""


def diff(base: DesiredState, new: DesiredState) -> DesiredDelta:
    """What turns ``base`` into ``new``. Unchanged peers are usually the very same objects
    (the compiler reuses them), so this is mostly identity checks."""
    old = {t.ifname: t for t in base.tenants}
    changes: list[TenantChange] = []
    for tenant in new.tenants:
        before = old.get(tenant.ifname)
        shell = tenant.model_copy(update={"peers": ()})
        if before is None:
            changes.append(
                TenantChange(interface=shell, upserts=tenant.peers, peer_count=len(tenant.peers))
            )
            continue
        if before.peers is tenant.peers:
            upserts: list[Peer] = []
            removals: list[str] = []
        else:
            had = {p.public_key: p for p in before.peers}
            upserts = []
            for peer in tenant.peers:
                was = had.pop(peer.public_key, None)
                if was is not peer and was != peer:
                    upserts.append(peer)
            removals = sorted(had)
        if upserts or removals or shell != before.model_copy(update={"peers": ()}):
            changes.append(
                TenantChange(
                    interface=shell,
                    upserts=tuple(upserts),
                    removals=tuple(removals),
                    peer_count=len(tenant.peers),
                )
            )
    return DesiredDelta(
        version=new.version,
        base_version=base.version,
        pop_id=new.pop_id,
        role=new.role,
        interfaces=tuple(t.ifname for t in new.tenants),
        changes=tuple(changes),
    )


def _merge_peers(base: tuple[Peer, ...], change: TenantChange) -> tuple[Peer, ...]:
    """``base`` (in :func:`peer_order`) with the change's removals and upserts, in that order
    still. The unchanged peers keep their places; each upsert is put in its own by bisection,
    so one device's change costs a few key computations, not a sort of the tenant's peers."""
    gone = set(change.removals)
    gone.update(p.public_key for p in change.upserts)
    kept = [p for p in base if p.public_key not in gone] if gone else list(base)
    for peer in sorted(change.upserts, key=peer_order):
        kept.insert(bisect.bisect_left(kept, peer_order(peer), key=peer_order), peer)
    return tuple(kept)


def merge(base: DesiredState, delta: DesiredDelta) -> DesiredState:
    """``base`` with ``delta`` applied; raises :class:`DeltaMismatch` when they do not fit."""
    if delta.base_version != base.version or delta.pop_id != base.pop_id:
        raise DeltaMismatch(
            f"delta from version {delta.base_version} does not apply to {base.version}"
        )
    old = {t.ifname: t for t in base.tenants}
    changed = {c.interface.ifname: c for c in delta.changes}
    tenants: list[TenantInterface] = []
    for ifname in delta.interfaces:
        change = changed.pop(ifname, None)
        before = old.get(ifname)
        if change is None:
            if before is None:
                raise DeltaMismatch(f"{ifname} is neither in the base state nor in the delta")
            tenants.append(before)
            continue
        merged = _merge_peers(before.peers if before is not None else (), change)
        if len(merged) != change.peer_count:
            raise DeltaMismatch(
                f"{ifname}: {len(merged)} peers after the merge, not {change.peer_count}"
            )
        tenants.append(change.interface.model_copy(update={"peers": merged}))
    if changed:
        raise DeltaMismatch(f"changes for interfaces not in the state: {sorted(changed)}")
    return DesiredState(
        version=delta.version, pop_id=delta.pop_id, role=delta.role, tenants=tuple(tenants)
    )
