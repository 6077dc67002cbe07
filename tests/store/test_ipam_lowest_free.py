"""The lowest free host index: its no-gap fast path and its gap search agree with a brute
force over the taken indexes, on SQLite and PostgreSQL."""

from __future__ import annotations

import random

from sqlalchemy import delete, insert

from tests.conftest import both_stores
from tests.support.world import World
from tongdao.clock import utcnow
from tongdao.ids import new_id
from tongdao.ipam import service as ipam
from tongdao.network.models import Device
from tongdao.runtime import Runtime
from tongdao.testing.keys import public_key


def _brute(taken: set[int], last: int) -> int | None:
    return next((i for i in range(1, last + 1) if i not in taken), None)


@both_stores
def test_lowest_free_index_with_and_without_gaps(world: World, runtime: Runtime) -> None:
    import tongdao.network.service  # noqa: F401  (registers the address owners)

    rng = random.Random(10)
    tenant, user = world.b.id, world.b.employee.user_id
    now = utcnow()
    taken = set(range(1, 201))
    with runtime.db.session() as session:
        session.execute(
            insert(Device),
            [
                {
                    "id": new_id(),
                    "created_at": now,
                    "updated_at": now,
                    "tenant_id": tenant,
                    "user_id": user,
                    "name": f"d{i}",
                    "public_key": public_key(),
                    "host_index": i,
                    "ipv4": f"100.127.{i // 256}.{i % 256}",
                    "ipv6": f"fd00:10::{i:x}",
                    "state": "active",
                }
                for i in sorted(taken)
            ],
        )
        session.commit()
    with runtime.db.session() as session:
        assert ipam.lowest_free_index(session, tenant, 1000) == 201  # no gap: max + 1
        assert ipam.lowest_free_index(session, tenant, 200) is None  # full
        assert ipam.lowest_free_index(session, world.a.id, 1000) == _brute(set(), 1000) == 1
    for _round in range(4):
        freed = set(rng.sample(sorted(taken), 3))
        taken -= freed
        with runtime.db.session() as session:
            session.execute(delete(Device).where(Device.host_index.in_(freed)))
            session.commit()
        with runtime.db.session() as session:
            for last in (1000, max(taken), min(freed)):
                assert ipam.lowest_free_index(session, tenant, last) == _brute(taken, last)
    # Fill every gap: back on the fast path.
    with runtime.db.session() as session:
        gaps = [i for i in range(1, 201) if i not in taken]
        for expected in gaps:
            assert ipam.lowest_free_index(session, tenant, 1000) == expected
            session.execute(
                insert(Device).values(
                    id=new_id(),
                    created_at=now,
                    updated_at=now,
                    tenant_id=tenant,
                    user_id=user,
                    name=f"again{expected}",
                    public_key=public_key(),
                    host_index=expected,
                    ipv4=f"100.127.{expected // 256}.{expected % 256}",
                    ipv6=f"fd00:10::{expected:x}",
                    state="active",
                )
            )
        assert ipam.lowest_free_index(session, tenant, 1000) == 201
        session.commit()
