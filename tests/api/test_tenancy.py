"""Tenants, users and groups: lifecycle, self-service limits, real identity, scoping."""

from __future__ import annotations

from sqlalchemy import select, text

from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.tenancy.models import User

RESIDENT_ID = "11010519491231002X"


def test_tenant_lifecycle_follows_the_workflow(world: World) -> None:
    item = f"/api/v1/tenants/{world.a.id}"
    h = world.operators["compliance_officer"].headers
    resp = world.client.patch(item, json={"state": "active"}, headers=h)
    assert resp.status_code == 422
    assert (
        "applied tenant can move to rejected, under_review"
        in resp.json()["error"]["fields"]["state"]
    )
    for state in ("under_review", "approved", "active", "suspended", "active", "terminated"):
        resp = world.client.patch(item, json={"state": state}, headers=h)
        assert resp.status_code == 200, (state, resp.text)
        assert resp.json()["state"] == state
    resp = world.client.patch(item, json={"state": "active"}, headers=h)
    assert resp.status_code == 422


def test_tenant_admin_self_service(world: World) -> None:
    item = f"/api/v1/tenants/{world.a.id}"
    h = world.a.admin.headers
    ok = world.client.patch(
        item,
        json={
            "contact_name": "李娜",
            "invoice_bank": "中国银行北京分行",
            "dns_servers": ["198.51.100.53"],
        },
        headers=h,
    )
    assert ok.status_code == 200
    assert ok.json()["dns_servers"] == ["198.51.100.53"]
    refused = world.client.patch(item, json={"state": "active", "name_en": "Mine"}, headers=h)
    assert refused.status_code == 403
    assert set(refused.json()["error"]["fields"]) == {"name_en", "state"}
    assert (
        world.client.patch(
            item, json={"contact_name": "x"}, headers=world.a.employee.headers
        ).status_code
        == 403
    )
    listed = world.client.get("/api/v1/tenants", headers=h).json()
    assert [t["id"] for t in listed["data"]] == [str(world.a.id)]
    assert (
        world.client.post(
            "/api/v1/tenants", json={"name_en": "X", "uscc": "91350100M000100Y43"}, headers=h
        ).status_code
        == 403
    )


def test_tenant_with_users_cannot_be_deleted(world: World) -> None:
    resp = world.client.delete(f"/api/v1/tenants/{world.a.id}", headers=world.admin.headers)
    assert resp.status_code == 409
    assert "terminate" in resp.json()["error"]["message"]


def test_pools_are_distinct_per_tenant(world: World) -> None:
    assert world.a.data["ipv4_pool"] != world.b.data["ipv4_pool"]
    assert world.a.data["ipv4_pool"].startswith("100.")
    assert world.a.data["ipv6_pool"].startswith("fd")
    assert world.a.data["ipv6_pool"].endswith("::/48")


def test_real_identity_is_sealed_masked_and_verified(world: World) -> None:
    base = f"/api/v1/tenants/{world.a.id}/users"
    h = world.a.admin.headers
    resp = world.client.post(
        base,
        json={
            "email": "zhang@a.example",
            "display_name": "Zhang San",
            "legal_name": "张三",
            "id_type": "prc_resident_id",
            "id_number": RESIDENT_ID,
            "mobile": "+8613800138000",
        },
        headers=h,
    )
    assert resp.status_code == 201, resp.text
    user = resp.json()
    assert user["id_number_masked"] == "**************002X"
    assert user["mobile_masked"] == "+86*******8000"
    assert RESIDENT_ID not in resp.text
    assert user["identity_verified_at"] is None

    with world.runtime.db.session() as session:
        row = session.execute(
            text("SELECT id_number_sealed FROM users WHERE email = 'zhang@a.example'")
        ).scalar_one()
        assert RESIDENT_ID not in row
        assert row.startswith("v1:")
        audit = session.scalars(select(AuditEvent).where(AuditEvent.object_id == user["id"])).all()
        assert audit
        assert all(RESIDENT_ID not in str(e.after) for e in audit)
        assert audit[0].after is not None
        assert audit[0].after["id_number_sealed"] == "[encrypted]"
        assert "password_hash" not in audit[0].after

    item = f"{base}/{user['id']}"
    resp = world.client.post(f"{item}/identity-verification", headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["identity_verified_at"] is not None
    # A changed identity must be verified again.
    resp = world.client.patch(item, json={"mobile": "+8613900139000"}, headers=h)
    assert resp.json()["identity_verified_at"] is None


def test_identity_checks(world: World) -> None:
    base = f"/api/v1/tenants/{world.a.id}/users"
    h = world.a.admin.headers
    resp = world.client.post(
        base,
        json={
            "email": "x@a.example",
            "display_name": "X",
            "id_type": "prc_resident_id",
            "id_number": "110105194912310021",
        },
        headers=h,
    )
    assert resp.status_code == 422
    assert "check digit" in resp.json()["error"]["fields"]["id_number"]
    resp = world.client.post(
        base,
        json={"email": "x@a.example", "display_name": "X", "id_number": "E1234567"},
        headers=h,
    )
    assert resp.status_code == 422
    # Verification is an action of its own (tests/api/test_privacy.py), not a field.
    resp = world.client.patch(
        f"{base}/{world.a.employee.user_id}", json={"identity_verified": True}, headers=h
    )
    assert resp.status_code == 422
    assert "identity_verified" in resp.json()["error"]["fields"]


def test_employee_sees_only_themselves(world: World) -> None:
    base = f"/api/v1/tenants/{world.a.id}/users"
    h = world.a.employee.headers
    listed = world.client.get(base, headers=h).json()
    assert [u["id"] for u in listed["data"]] == [str(world.a.employee.user_id)]
    assert world.client.get(f"{base}/{world.a.admin.user_id}", headers=h).status_code == 404
    assert (
        world.client.post(
            base, json={"email": "y@a.example", "display_name": "Y"}, headers=h
        ).status_code
        == 403
    )


def test_email_is_unique_across_tenants(world: World) -> None:
    resp = world.client.post(
        f"/api/v1/tenants/{world.b.id}/users",
        json={"email": "EMPLOYEE@a.example", "display_name": "dup"},
        headers=world.b.admin.headers,
    )
    assert resp.status_code == 409
    assert resp.json()["error"]["fields"] == {"email": "already in use"}


def test_group_membership_stays_in_tenant(world: World) -> None:
    base = f"/api/v1/tenants/{world.a.id}/groups"
    h = world.a.admin.headers
    resp = world.client.post(
        base, json={"name": "eng", "member_ids": [str(world.b.employee.user_id)]}, headers=h
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"] == {"member_ids.0": "no such user in this tenant"}
    group = world.client.post(
        base, json={"name": "eng", "member_ids": [str(world.a.employee.user_id)]}, headers=h
    ).json()
    user = world.client.get(
        f"/api/v1/tenants/{world.a.id}/users/{world.a.employee.user_id}", headers=h
    ).json()
    assert user["group_ids"] == [group["id"]]
    filtered = world.client.get(
        f"/api/v1/tenants/{world.a.id}/users", params={"group_id": group["id"]}, headers=h
    ).json()
    assert [u["id"] for u in filtered["data"]] == [str(world.a.employee.user_id)]
    dup = world.client.post(base, json={"name": "eng"}, headers=h)
    assert dup.status_code == 409
    # Removing a user removes the membership and the user's devices, all audited.
    resp = world.client.delete(
        f"/api/v1/tenants/{world.a.id}/users/{world.a.employee.user_id}", headers=h
    )
    assert resp.status_code == 204
    assert world.client.get(f"{base}/{group['id']}", headers=h).json()["member_ids"] == []


def test_role_filter(world: World) -> None:
    resp = world.client.get(
        f"/api/v1/tenants/{world.a.id}/users",
        params={"role": "tenant_admin"},
        headers=world.admin.headers,
    ).json()
    assert [u["email"] for u in resp["data"]] == ["tenant_admin@a.example"]


def test_last_operator_admin_is_kept(world: World) -> None:
    item = f"/api/v1/operator/staff/{world.admin.user_id}"
    h = world.admin.headers
    resp = world.client.patch(item, json={"roles": ["auditor"]}, headers=h)
    assert resp.status_code == 409
    assert world.client.delete(item, headers=h).status_code == 409
    with world.runtime.db.session() as session:
        admin = session.get(User, world.admin.user_id)
        assert admin is not None
        assert admin.roles == ["operator_admin"]
