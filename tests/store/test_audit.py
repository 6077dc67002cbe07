"""The audit hook: every change writes an event in the same transaction as the change."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import both_stores
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.audit.recorder import Actor, set_actor
from tongdao.network.models import Pop
from tongdao.runtime import Runtime


def _count(runtime: Runtime) -> int:
    with runtime.db.session(write=False) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


@both_stores
def test_rollback_discards_change_and_event_together(world: World, runtime: Runtime) -> None:
    before = _count(runtime)
    with runtime.db.session() as session:
        set_actor(session, Actor(None, "test"))
        session.add(
            Pop(
                name="p",
                region="CN-BJ",
                country="CN",
                endpoint_host="198.51.100.1",
                port_min=1,
                port_max=2,
            )
        )
        session.flush()
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == before + 1
        session.rollback()
    assert _count(runtime) == before
    with runtime.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Pop)) == 0


@both_stores
def test_update_records_before_and_after_with_source_ip(world: World) -> None:
    item = f"/api/v1/tenants/{world.a.id}"
    world.client.patch(item, json={"contact_name": "王"}, headers=world.admin.headers)
    events = world.client.get(
        "/api/v1/audit/events",
        params={"object_type": "tenant", "action": "update"},
        headers=world.admin.headers,
    ).json()["data"]
    assert events[0]["before"] == {"contact_name": ""}
    assert events[0]["after"] == {"contact_name": "王"}
    assert events[0]["source_ip"] == "testclient"
    assert events[0]["actor"] == "operator_admin@operator.example"
    assert events[0]["tenant_id"] == str(world.a.id)


def test_tenant_admin_sees_only_own_tenant_events(world: World) -> None:
    world.client.patch(
        f"/api/v1/tenants/{world.b.id}", json={"contact_name": "B"}, headers=world.admin.headers
    )
    events = world.client.get(
        "/api/v1/audit/events", params={"limit": 500}, headers=world.a.admin.headers
    ).json()
    assert events["count"] > 0
    assert {e["tenant_id"] for e in events["data"]} == {str(world.a.id)}
    assert (
        world.client.get("/api/v1/audit/events", headers=world.a.employee.headers).status_code
        == 403
    )


def test_audit_pagination_is_newest_first(world: World) -> None:
    h = world.admin.headers
    first = world.client.get("/api/v1/audit/events", params={"limit": 2}, headers=h).json()
    ids = [e["id"] for e in first["data"]]
    assert ids == sorted(ids, reverse=True)
    second = world.client.get(
        "/api/v1/audit/events", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    ).json()
    assert all(e["id"] < ids[-1] for e in second["data"])


@pytest.mark.parametrize("field", ["password_hash", "totp_secret_sealed", "token_hash"])
def test_secrets_never_reach_the_log(world: World, runtime: Runtime, field: str) -> None:
    with runtime.db.session(write=False) as session:
        for event in session.scalars(select(AuditEvent)):
            assert field not in (event.after or {})
            assert field not in (event.before or {})
