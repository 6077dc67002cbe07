"""Migration 0005 on a store with data: devices of unverified users wait as pending after the
upgrade, and a downgrade turns pending devices into disabled ones (the older schema has no
pending state)."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import both_stores
from tests.support.world import World
from tongdao.store import migrate
from tongdao.testing.keys import public_key


@both_stores
def test_upgrade_holds_devices_of_unverified_users(world: World, store_url: str) -> None:
    api, h = f"/api/v1/tenants/{world.a.id}", world.a.admin.headers
    user = world.client.post(
        f"{api}/users", json={"email": "new@a.example", "display_name": "New"}, headers=h
    ).json()
    waiting = world.client.post(
        f"{api}/devices",
        json={"name": "w", "public_key": public_key(), "user_id": user["id"]},
        headers=h,
    ).json()
    served = world.client.post(
        f"{api}/devices",
        json={"name": "s", "public_key": public_key(), "user_id": str(world.a.employee.user_id)},
        headers=h,
    ).json()
    assert (waiting["state"], served["state"]) == ("pending", "active")
    world.runtime.db.dispose()

    def states() -> dict[str, str]:
        with world.runtime.db.session() as session:
            rows = session.execute(text("SELECT public_key, state FROM devices")).all()
        world.runtime.db.dispose()
        return {str(k): str(s) for k, s in rows}

    migrate.downgrade(store_url, "0004_licence_rules_and_kyc")
    assert states()[waiting["public_key"]] == "disabled"
    with world.runtime.db.session() as session:  # as an older version would have left it
        session.execute(text("UPDATE devices SET state = 'active'"))
        session.commit()
    world.runtime.db.dispose()
    migrate.upgrade(store_url)
    after = states()
    assert after[waiting["public_key"]] == "pending"
    assert after[served["public_key"]] == "active"
