"""Addresses never collide, also when created concurrently, on SQLite and PostgreSQL."""

from __future__ import annotations

import ipaddress
import threading
import uuid
from collections.abc import Callable

from sqlalchemy import select

from tests.conftest import both_stores
from tests.support.world import World, uscc_for
from tongdao.auth.permissions import Role
from tongdao.auth.principal import ALL_SCOPES, Principal
from tongdao.network import schemas as ns
from tongdao.network.models import Device
from tongdao.network.service import DeviceResource
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy import schemas as ts
from tongdao.tenancy.models import Tenant
from tongdao.tenancy.service import TenantResource
from tongdao.testing.keys import public_key

THREADS = 6


def _run_parallel(work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def runner(n: int) -> None:
        try:
            start.wait(timeout=30)
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "allocation threads hung"
    return errors


def _ctx(runtime: Runtime, session: object, user_id: uuid.UUID) -> Ctx:
    principal = Principal(
        user_id, "admin@test", None, frozenset({Role.OPERATOR_ADMIN}), ALL_SCOPES, uuid.uuid4()
    )
    return Ctx(session=session, runtime=runtime, principal=principal)  # type: ignore[arg-type]


@both_stores
def test_concurrent_tenants_get_disjoint_pools(world: World, runtime: Runtime) -> None:
    sizes = [22, 24, 20]

    def work(n: int) -> None:
        for i in range(5):
            with runtime.db.session() as session:
                data = ts.TenantCreate(
                    name_en=f"T{n}-{i}",
                    uscc=uscc_for(n * 100 + i),
                    ipv4_pool_prefixlen=sizes[(n + i) % 3],
                )
                TenantResource().create(_ctx(runtime, session, world.admin.user_id), None, data)
                session.commit()

    assert _run_parallel(work) == []
    with runtime.db.session(write=False) as session:
        rows = session.execute(select(Tenant.ipv4_pool, Tenant.ipv6_pool)).all()
    assert len(rows) == 2 + THREADS * 5
    v4 = [ipaddress.ip_network(r[0]) for r in rows]
    for i, a in enumerate(v4):
        for b in v4[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    assert len({r[1] for r in rows}) == len(rows)


@both_stores
def test_concurrent_devices_get_distinct_addresses(world: World, runtime: Runtime) -> None:
    def work(n: int) -> None:
        for i in range(8):
            with runtime.db.session() as session:
                tenant = session.get(Tenant, world.a.id)
                assert tenant is not None
                data = ns.DeviceCreate(
                    name=f"d{n}-{i}", public_key=public_key(), user_id=world.a.employee.user_id
                )
                DeviceResource().create(_ctx(runtime, session, world.admin.user_id), tenant, data)
                session.commit()

    assert _run_parallel(work) == []
    with runtime.db.session(write=False) as session:
        rows = session.execute(
            select(Device.ipv4, Device.ipv6).where(Device.tenant_id == world.a.id)
        ).all()
    assert len(rows) == THREADS * 8
    assert len({r[0] for r in rows}) == len(rows)
    assert len({r[1] for r in rows}) == len(rows)
    # Lowest-first: the addresses are exactly the first N hosts of the pool.
    pool = ipaddress.ip_network(world.a.data["ipv4_pool"])
    offsets = sorted(int(ipaddress.ip_address(r[0])) - int(pool.network_address) for r in rows)
    assert offsets == list(range(1, len(rows) + 1))
