"""Allocation against the store: tenant pools and per-tenant overlay addresses.

Allocations read what is taken and then write, so they serialise on an :class:`IpamLock`
row: the UPDATE that bumps its generation takes a row lock on PostgreSQL and the write lock
on SQLite (whose write transactions begin IMMEDIATE). Unique constraints are the backstop.

A tenant's overlay addresses are numbered: host index ``n`` is the IPv4 pool's network
address + n and the IPv6 host subnet's network address + n, so a device or gateway holds the
same offset in both families. The lowest free index is found in SQL with index lookups
(candidates are 1 and every taken index + 1), not by reading every address.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, Uuid, bindparam, exists, func, literal, select, union_all, update
from sqlalchemy.orm import Session

from tongdao.errors import Conflict
from tongdao.ipam.allocator import OVERLAY_V4, TENANT_V6_PREFIXLEN, first_fit, v6_host_subnet
from tongdao.ipam.models import IpamLock
from tongdao.store.engine import WRITE_OPTION

ROOT_LOCK = "overlay"

# Tables whose rows hold overlay addresses of a tenant (tenant_id, host_index, ipv4, ipv6).
_ADDRESS_OWNERS: list[Any] = []


def register_address_owner(model: Any) -> Any:
    """Declare a model whose rows take addresses from their tenant's pools."""
    _ADDRESS_OWNERS.append(model)
    return model


def tenant_lock_name(tenant_id: uuid.UUID) -> str:
    return f"tenant:{tenant_id}"


def lock(session: Session, name: str) -> None:
    """Serialise with every other allocation under ``name`` until this transaction ends.

    A write transaction on SQLite began IMMEDIATE and holds the file's one write lock until
    it ends, which serialises it with every other writer (of any lock name, in any process):
    the lock row would add a statement and nothing else, so it is skipped there. Anywhere
    else (PostgreSQL, or an SQLite transaction that began deferred) the row is updated.
    """
    if holds_sqlite_write_lock(session):
        return
    result = session.connection().execute(_BUMP_LOCK, {"lock_name": name})
    if result.rowcount == 0:
        session.add(IpamLock(name=name, generation=1))
        session.flush()


_LOCKS = cast(Table, IpamLock.__table__)
# Core, not the ORM's bulk-update path (issue 10: CPU per write request).
_BUMP_LOCK = (
    update(_LOCKS)
    .where(_LOCKS.c.name == bindparam("lock_name"))
    .values(generation=_LOCKS.c.generation + 1)
)


def holds_sqlite_write_lock(session: Session) -> bool:
    """Whether this session's transaction is an SQLite write transaction (BEGIN IMMEDIATE,
    :mod:`tongdao.store.engine`); begins the transaction if it has not begun."""
    conn = session.connection()
    return conn.dialect.name == "sqlite" and bool(conn.get_execution_options().get(WRITE_OPTION))


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


@dataclass(frozen=True)
class Address:
    host_index: int
    ipv4: str
    ipv6: str


def lowest_free_index(session: Session, tenant_id: uuid.UUID, last: int) -> int | None:
    """The lowest host index in 1..last that no address owner of the tenant holds.

    It runs under the tenant's IPAM lock (on SQLite, under the file's one write lock), so it
    is kept short: when the taken indexes are exactly 1..max (no gaps: the usual case), the
    answer is max + 1, read from the (tenant_id, host_index) indexes by one count-and-max
    per owner table (1 ms for 3,000 devices where the gap search took 3-13 ms, issue 10).
    Only when something was freed below max does the gap search run.
    """
    taken, top = session.execute(_taken_stats(), {"tenant_id": tenant_id}).one()
    top = int(top or 0)
    if int(taken or 0) == top:  # 1..top all taken (indexes are distinct across owners)
        return top + 1 if top + 1 <= last else None
    return _lowest_gap(session, tenant_id, last)


_STATS: dict[tuple[Any, ...], Any] = {}


def _taken_stats() -> Any:
    """How many host indexes the owners of tenant ``:tenant_id`` hold, and the highest.

    Built once (per set of owners) with the tenant as a bound parameter: composing the
    union for every allocation cost more CPU than running it (issue 10).
    """
    owners = tuple(_ADDRESS_OWNERS)
    stmt = _STATS.get(owners)
    if stmt is None:
        tenant = bindparam("tenant_id", type_=Uuid())
        stats = union_all(
            *(
                select(func.count(o.host_index).label("n"), func.max(o.host_index).label("top"))
                .where(o.tenant_id == tenant)
                .where(o.host_index >= 1)
                for o in owners
            )
        ).subquery()
        stmt = _STATS[owners] = select(func.sum(stats.c.n), func.max(stats.c.top))
    return stmt


def _lowest_gap(session: Session, tenant_id: uuid.UUID, last: int) -> int | None:
    candidates = union_all(
        select(literal(0).label("i")),
        *(select(o.host_index.label("i")).where(o.tenant_id == tenant_id) for o in _ADDRESS_OWNERS),
    ).subquery()
    following = candidates.c.i + 1
    free = [
        ~exists().where(o.tenant_id == tenant_id, o.host_index == following)
        for o in _ADDRESS_OWNERS
    ]
    value = session.scalar(select(func.min(following)).where(*free))
    return int(value) if value is not None and value <= last else None


def allocate_address(
    session: Session, tenant_id: uuid.UUID, ipv4_pool: str, ipv6_pool: str
) -> Address:
    """The tenant's lowest free host index and its IPv4 and IPv6 overlay addresses."""
    lock(session, tenant_lock_name(tenant_id))
    pool4 = ipaddress.IPv4Network(ipv4_pool)
    subnet6 = v6_host_subnet(ipaddress.IPv6Network(ipv6_pool))
    index = lowest_free_index(session, tenant_id, pool4.num_addresses - 2)
    if index is None:
        raise Conflict(f"the tenant's IPv4 pool {pool4} is full")
    return Address(
        index,
        str(pool4.network_address + index),
        str(subnet6.network_address + index),
    )
