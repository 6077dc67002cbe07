"""A write request on SQLite checks its token before it queues for the write lock.

The token is read in a read transaction of its own (issue 10): the request's write transaction,
and with it its place in the write gate's queue, begins in the endpoint. So a request with a
bad token never waits behind writers, and a valid one holds the lock only for its own write.
The check reads the store on every request (no cache): a revoked token is refused at once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import update

from tests.support.world import World
from tongdao.auth.models import ApiToken
from tongdao.auth.service import hash_token
from tongdao.testing.keys import public_key


def _create(world: World, headers: dict[str, str], name: str) -> int:
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/devices",
        json={"name": name, "public_key": public_key(), "user_id": str(world.a.admin.user_id)},
        headers=headers,
    )
    return resp.status_code


def test_a_write_with_a_bad_token_is_refused_without_waiting_for_the_write_lock(
    world: World,
) -> None:
    gate = world.runtime.db.write_gate
    assert gate is not None  # SQLite
    assert gate.acquire(1)  # a long writer holds the lock
    try:
        began = time.monotonic()
        assert _create(world, {"Authorization": "Bearer tdp_not-a-token"}, "x") == 401
        assert time.monotonic() - began < 5  # before: queued for the lock (30 s) first
    finally:
        gate.release()


def test_a_revoked_token_is_refused_on_the_next_write(world: World) -> None:
    headers = world.a.admin.headers
    assert _create(world, headers, "before") == 201
    with world.runtime.db.session() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hash_token(world.a.admin.token))
            .values(revoked_at=datetime.now(UTC))
        )
        session.commit()
    assert _create(world, headers, "after") == 401
