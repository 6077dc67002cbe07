"""Allocation against the store: tenant pools and per-tenant overlay addresses.

Allocations read what is taken and then write, so they serialise on an :class:`IpamLock`
row: the UPDATE that bumps its generation takes a row lock on PostgreSQL and the write lock
on SQLite (whose write transactions begin IMMEDIATE). Unique constraints are the backstop.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tongdao.errors import Conflict
from tongdao.ipam.allocator import (
    OVERLAY_V4,
    TENANT_V6_PREFIXLEN,
    first_fit,
    lowest_free,
    v6_host_subnet,
)
from tongdao.ipam.models import IpamLock

ROOT_LOCK = "overlay"

# Tables whose rows hold overlay addresses of a tenant (tenant_id, ipv4, ipv6 columns).
_ADDRESS_OWNERS: list[Any] = []


def register_address_owner(model: Any) -> Any:
    """Declare a model whose rows take addresses from their tenant's pools."""
    _ADDRESS_OWNERS.append(model)
    return model


def tenant_lock_name(tenant_id: uuid.UUID) -> str:
    return f"tenant:{tenant_id}"


def lock(session: Session, name: str) -> None:
    """Serialise with every other allocation under ``name`` until this transaction ends."""
    result = session.execute(
        update(IpamLock)
        .where(IpamLock.name == name)
        .values(generation=IpamLock.generation + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) == 0:
        session.add(IpamLock(name=name, generation=1))
        session.flush()


@dataclass(frozen=True)
class TenantPools:
    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network


def allocate_tenant_pools(session: Session, ipv4_prefixlen: int) -> TenantPools:
    from tongdao.tenancy.models import Tenant

    lock(session, ROOT_LOCK)
    rows = session.execute(select(Tenant.ipv4_pool, Tenant.ipv6_pool)).all()
    used4 = [ipaddress.ip_network(r[0]) for r in rows]
    used6 = {r[1] for r in rows}
    v4 = first_fit(OVERLAY_V4, ipv4_prefixlen, used4)
    if v4 is None:
        raise Conflict(f"the overlay range {OVERLAY_V4} has no free /{ipv4_prefixlen} left")
    for _ in range(64):
        # RFC 4193: fd00::/8 plus a random 40-bit global ID.
        global_id = secrets.randbits(40)
        v6 = ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), TENANT_V6_PREFIXLEN))
        if str(v6) not in used6:
            break
    else:  # pragma: no cover - 64 collisions in 2^40 do not happen
        raise Conflict("could not find a free IPv6 /48")
    assert isinstance(v4, ipaddress.IPv4Network)
    return TenantPools(v4, v6)


def allocate_address(
    session: Session, tenant_id: uuid.UUID, ipv4_pool: str, ipv6_pool: str
) -> tuple[str, str]:
    """The lowest free IPv4 and IPv6 overlay addresses of a tenant."""
    lock(session, tenant_lock_name(tenant_id))
    pool4 = ipaddress.IPv4Network(ipv4_pool)
    subnet6 = v6_host_subnet(ipaddress.IPv6Network(ipv6_pool))
    used4: list[int] = []
    used6: list[int] = []
    base4, base6 = int(pool4.network_address), int(subnet6.network_address)
    for owner in _ADDRESS_OWNERS:
        for ip4, ip6 in session.execute(
            select(owner.ipv4, owner.ipv6).where(owner.tenant_id == tenant_id)
        ):
            if ip4:
                used4.append(int(ipaddress.IPv4Address(ip4)) - base4)
            if ip6:
                used6.append(int(ipaddress.IPv6Address(ip6)) - base6)
    off4 = lowest_free(pool4, used4)
    if off4 is None:
        raise Conflict(f"the tenant's IPv4 pool {pool4} is full")
    off6 = lowest_free(subnet6, used6)
    if off6 is None:  # pragma: no cover - a /64
        raise Conflict(f"the tenant's IPv6 subnet {subnet6} is full")
    return str(ipaddress.IPv4Address(base4 + off4)), str(ipaddress.IPv6Address(base6 + off6))
