"""Migration 0008 on a store with data: connectors get their site's tenant, credentials revoked
before it say so, and nothing that refers to a gateway is lost (SQLite rebuilds the table)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from tests.api.test_gateway import make_pop
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.store import migrate
from tongdao.testing.keys import public_key

GATEWAYS = sa.table(
    "gateways",
    sa.column("id", sa.Uuid()),
    sa.column("site_id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("revoked_at", sa.DateTime()),
    sa.column("revoked_reason", sa.String()),
)
USAGE = sa.table(
    "usage_records",
    sa.column("gateway_id", sa.Uuid()),
    sa.column("seq", sa.BigInteger()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("peer_key", sa.String()),
    sa.column("peer_kind", sa.String()),
    sa.column("peer_ref", sa.String()),
    sa.column("rx_bytes", sa.BigInteger()),
    sa.column("tx_bytes", sa.BigInteger()),
    sa.column("period_start", sa.DateTime()),
    sa.column("period_end", sa.DateTime()),
)


@both_stores
def test_upgrade_fills_tenants_and_reasons_and_keeps_usage(world: World, store_url: str) -> None:
    pop = make_pop(world, "bj")
    api = "/api/v1"
    token = world.client.post(
        f"{api}/pops/{pop}/enrolments", json={}, headers=world.admin.headers
    ).json()["token"]
    gateway = world.client.post(f"{api}/gateway/enrol", json={"token": token}).json()
    site = world.client.post(
        f"{api}/tenants/{world.a.id}/sites",
        json={"name": "hq", "country": "CN", "purpose": "office", "prefixes": ["198.18.9.0/24"]},
        headers=world.a.admin.headers,
    ).json()
    token = world.client.post(
        f"{api}/tenants/{world.a.id}/sites/{site['id']}/enrolments",
        json={},
        headers=world.a.admin.headers,
    ).json()["token"]
    connector = world.client.post(f"{api}/gateway/enrol", json={"token": token}).json()
    db = world.runtime.db
    db.dispose()

    migrate.downgrade(store_url, "0007_audit_chain_and_export")
    # As an older version left things: a revoked gateway (no reason), usage of the connector.
    now = datetime.now(UTC).replace(tzinfo=None)
    with db.engine.begin() as conn:
        conn.execute(
            GATEWAYS.update()
            .where(GATEWAYS.c.id == uuid.UUID(gateway["gateway_id"]))
            .values(revoked_at=now)
        )
        conn.execute(
            USAGE.insert().values(
                gateway_id=uuid.UUID(connector["gateway_id"]),
                seq=1,
                tenant_id=world.a.id,
                peer_key=public_key(),
                peer_kind="pop",
                peer_ref=pop,
                rx_bytes=10,
                tx_bytes=20,
                period_start=now,
                period_end=now,
            )
        )
    db.dispose()
    migrate.upgrade(store_url)

    with db.engine.connect() as conn:
        rows = {
            str(r.id): (r.tenant_id, r.revoked_reason) for r in conn.execute(sa.select(GATEWAYS))
        }
        usage = conn.execute(sa.select(sa.func.count()).select_from(USAGE)).scalar_one()
    db.dispose()
    assert rows[gateway["gateway_id"]] == (None, "revoked")
    assert rows[connector["gateway_id"]] == (world.a.id, None)
    assert usage == 1
