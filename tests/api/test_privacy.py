"""Real identity (rule identity.real_name), notice and consent (rule pi.notice_and_consent),
export and erasure of personal data within retention (rule logs.retention), through the API.

Every refusal is exercised with its message: a compliance refusal is HTTP 409 with code
``compliance_refused`` and a message naming the rule and its source.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from tests.api.test_gateway import activate, enrol, make_pop, state
from tests.conftest import both_stores
from tests.support.crossborder import authorise_abroad
from tests.support.privacy import (
    NOTICE_VERSION,
    consent_abroad,
    identity_body,
    publish_notice,
    resident_id,
    sign_in,
)
from tests.support.world import Actor, World, make_user
from tongdao.audit.models import AuditEvent
from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.gateway.desired import DesiredState
from tongdao.gateway.models import Gateway, UsageRecord
from tongdao.privacy.models import Consent
from tongdao.testing.keys import public_key

API = "/api/v1"


def refused(resp: Any, rule_id: str, source: str) -> dict[str, Any]:
    """Assert a compliance refusal naming ``rule_id`` and its source; the error body."""
    assert resp.status_code == 409, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == "compliance_refused", error
    assert f"rule {rule_id}" in error["message"], error["message"]
    assert source in error["message"], error["message"]
    return error


def new_user(world: World, *, identity: bool = False, **extra: Any) -> dict[str, Any]:
    n = uuid.uuid4().hex[:8]
    body = {"email": f"u{n}@a.example", "display_name": f"User {n}", **extra}
    if identity:
        body.update(identity_body())
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/users", json=body, headers=world.a.admin.headers
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def new_device(world: World, user_id: str, **extra: Any) -> dict[str, Any]:
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "laptop", "public_key": public_key(), "user_id": user_id, **extra},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def user_url(world: World, user_id: object, tenant: object = None) -> str:
    return f"{API}/tenants/{tenant or world.a.id}/users/{user_id}"


def device_url(world: World, device: dict[str, Any]) -> str:
    return f"{API}/tenants/{world.a.id}/devices/{device['id']}"


def officer(world: World) -> dict[str, str]:
    return world.operators["compliance_officer"].headers


# --- identity.real_name ----------------------------------------------------------------------
@both_stores
def test_devices_of_an_unverified_user_wait_until_the_identity_is_verified(world: World) -> None:
    c, h = world.client, world.a.admin.headers
    user = new_user(world)
    dev = new_device(world, user["id"])
    assert dev["state"] == "pending"
    # No configuration while pending, and no way around it by hand.
    refused(
        c.get(device_url(world, dev) + "/wireguard.conf", headers=h),
        "identity.real_name",
        "Cybersecurity Law art. 24",
    )
    error = refused(
        c.patch(device_url(world, dev), json={"state": "active"}, headers=h),
        "identity.real_name",
        "Cybersecurity Law",
    )
    assert "state" in error["fields"]

    # Verification needs the whole identity, field by field.
    verify = user_url(world, user["id"]) + "/identity-verification"
    error = refused(c.post(verify, headers=h), "identity.real_name", "Cybersecurity Law")
    assert set(error["fields"]) == {"legal_name", "id_type", "id_number", "mobile"}
    resp = c.patch(user_url(world, user["id"]), json=identity_body(), headers=h)
    assert resp.status_code == 200, resp.text
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "pending"

    resp = c.post(verify, headers=h)
    assert resp.status_code == 200, resp.text
    verified_at = resp.json()["identity_verified_at"]
    assert verified_at is not None
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "active"
    resp = c.patch(device_url(world, dev), json={"state": "pending"}, headers=h)
    assert resp.status_code == 422
    assert "set by the platform" in resp.json()["error"]["fields"]["state"]
    # Verified again: nothing changes, nothing is recorded twice.
    assert c.post(verify, headers=h).json()["identity_verified_at"] == verified_at
    with world.runtime.db.session() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "verify_identity", AuditEvent.object_id == user["id"]
            )
        ).all()
    assert len(events) == 1
    assert events[0].actor_id == world.a.admin.user_id  # who
    assert events[0].occurred_at is not None  # when
    assert events[0].after is not None and events[0].after["devices_activated"] == 1

    # The same identity sent again keeps the verification; a changed one resets it and the
    # devices wait again.
    same = c.get(user_url(world, user["id"]), headers=h).json()
    assert same["identity_verified_at"] is not None
    resp = c.patch(user_url(world, user["id"]), json={"mobile": "+8613912345678"}, headers=h)
    assert resp.json()["identity_verified_at"] is None
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "pending"
    c.post(verify, headers=h)
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "active"
    # Withdrawn by the compliance officer: pending again; a disabled device stays disabled.
    other = new_device(world, user["id"])
    c.patch(device_url(world, other), json={"state": "disabled"}, headers=h)
    resp = c.delete(verify, headers=officer(world))
    assert resp.status_code == 200, resp.text
    assert resp.json()["identity_verified_at"] is None
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "pending"
    c.post(verify, headers=officer(world))
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "active"
    assert c.get(device_url(world, other), headers=h).json()["state"] == "disabled"


def test_admins_find_the_users_awaiting_verification(world: World) -> None:
    user = new_user(world, identity=True)
    base = f"{API}/tenants/{world.a.id}/users"
    h = world.a.admin.headers
    waiting = world.client.get(base, params={"identity_verified": False}, headers=h).json()
    assert [u["id"] for u in waiting["data"]] == [user["id"]]
    done = world.client.get(base, params={"identity_verified": True}, headers=h).json()
    assert user["id"] not in {u["id"] for u in done["data"]} and done["count"] == 2
    resp = world.client.get(base, params={"identity_verified": "maybe"}, headers=h)
    assert resp.status_code == 422 and "identity_verified" in resp.json()["error"]["fields"]


def test_an_unchanged_id_number_keeps_the_verification(world: World) -> None:
    c, h = world.client, world.a.admin.headers
    body = identity_body()
    user = new_user(world, **body)
    c.post(user_url(world, user["id"]) + "/identity-verification", headers=h)
    resp = c.patch(user_url(world, user["id"]), json=body, headers=h)
    assert resp.json()["identity_verified_at"] is not None
    changed = {"id_type": "passport", "id_number": "E12345678"}
    resp = c.patch(user_url(world, user["id"]), json=changed, headers=h)
    assert resp.json()["identity_verified_at"] is None
    assert resp.json()["id_number_masked"] == "*****5678"


def test_who_may_verify_an_identity(world: World) -> None:
    c = world.client
    user = new_user(world, identity=True)
    verify = user_url(world, user["id"]) + "/identity-verification"
    # Operator admin, billing, auditor: not among the rule's verifiers.
    for role in ("operator_admin", "billing_clerk", "auditor"):
        assert c.post(verify, headers=world.operators[role].headers).status_code == 403
    # An employee sees no other user (404) and cannot verify their own identity (403).
    assert c.post(verify, headers=world.a.employee.headers).status_code == 404
    own = user_url(world, world.a.employee.user_id) + "/identity-verification"
    assert c.post(own, headers=world.a.employee.headers).status_code == 403
    # Another tenant's admin: 404, whichever tenant the path names.
    assert c.post(verify, headers=world.b.admin.headers).status_code == 404
    foreign = user_url(world, user["id"], world.b.id) + "/identity-verification"
    assert c.post(foreign, headers=world.b.admin.headers).status_code == 404
    # Nobody verifies themselves.
    admin_self = user_url(world, world.a.admin.user_id) + "/identity-verification"
    resp = c.post(admin_self, headers=world.a.admin.headers)
    assert resp.status_code == 403
    assert "own identity" in resp.json()["error"]["message"]
    # The compliance officer may.
    assert c.post(verify, headers=officer(world)).status_code == 200
    assert c.post(user_url(world, uuid.uuid4()) + "/identity-verification").status_code == 401
    missing = user_url(world, uuid.uuid4()) + "/identity-verification"
    assert c.post(missing, headers=officer(world)).status_code == 404


def _tenant_admin(world: World, *, identity: bool) -> Actor:
    """A second tenant admin of A, made the way a tenant admin can make one: no verified
    identity (and with ``identity``, one recorded by the admin themselves)."""
    n = uuid.uuid4().hex[:8]
    uid, token = make_user(world.runtime, f"admin{n}@a.example", ["tenant_admin"], world.a.id)
    actor = Actor("tenant_admin", uid, token, world.a.id)
    if identity:
        resp = world.client.patch(user_url(world, uid), json=identity_body(), headers=actor.headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["identity_verified_at"] is None
    return actor


def test_a_tenant_admin_is_verified_by_the_compliance_officer_only(world: World) -> None:
    """Issue 10: a tenant admin verified their own identity through a second admin account
    they made with no identity. Tenant admins verify employees only, once they are verified
    themselves; a tenant admin's identity is the compliance officer's to verify."""
    c = world.client
    mallory = _tenant_admin(world, identity=True)
    puppet = _tenant_admin(world, identity=False)
    verify_mallory = user_url(world, mallory.user_id) + "/identity-verification"
    # The second admin cannot verify the first ...
    error = refused(c.post(verify_mallory, headers=puppet.headers), "identity.real_name", "art. 24")
    assert "compliance officer" in error["message"] and "roles" in error["fields"]
    # ... nor can a verified tenant admin verify another tenant admin.
    error = refused(
        c.post(verify_mallory, headers=world.a.admin.headers), "identity.real_name", "art. 24"
    )
    assert "roles" in error["fields"]
    # An unverified tenant admin verifies nobody, not even an employee (else they would
    # record their own identity on a fresh employee account, verify it and promote it).
    twin = new_user(world, **identity_body())
    verify_twin = user_url(world, twin["id"]) + "/identity-verification"
    for admin in (mallory, puppet):
        error = refused(c.post(verify_twin, headers=admin.headers), "identity.real_name", "art. 24")
        assert "your own identity" in error["message"]
    assert (
        c.get(user_url(world, twin["id"]), headers=officer(world)).json()["identity_verified_at"]
        is None
    )
    with world.runtime.db.session() as session:
        assert not session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "verify_identity",
                AuditEvent.object_id.in_([str(mallory.user_id), twin["id"]]),
            )
        ).all()
    # The compliance officer verifies the admin; from then on the admin verifies employees.
    resp = c.post(verify_mallory, headers=officer(world))
    assert resp.status_code == 200, resp.text
    assert resp.json()["identity_verified_at"] is not None
    resp = c.post(verify_twin, headers=mallory.headers)
    assert resp.status_code == 200, resp.text


def test_role_changes_do_not_get_around_the_compliance_officer(world: World) -> None:
    c = world.client
    mallory = _tenant_admin(world, identity=True)
    puppet = _tenant_admin(world, identity=False)
    item = user_url(world, mallory.user_id)
    # Demoting an unverified admin (themselves, their second account, or a verified admin)
    # would let a tenant admin verify them as an "employee" and promote them back: refused.
    for actor in (mallory, puppet, world.a.admin):
        error = refused(
            c.patch(item, json={"roles": ["employee"]}, headers=actor.headers),
            "identity.real_name",
            "art. 24",
        )
        assert "roles" in error["fields"] and "compliance officer" in error["fields"]["roles"]
    assert c.get(item, headers=officer(world)).json()["roles"] == ["tenant_admin"]
    # Other changes to the admin go through; disabling them is the way out.
    resp = c.patch(item, json={"display_name": "Mallory"}, headers=world.a.admin.headers)
    assert resp.status_code == 200, resp.text
    # A verified admin whose identity changes is unverified again, and the same holds.
    resp = c.post(item + "/identity-verification", headers=officer(world))
    assert resp.status_code == 200, resp.text
    resp = c.patch(item, json={"mobile": "+8613700137000"}, headers=mallory.headers)
    assert resp.json()["identity_verified_at"] is None
    refused(
        c.post(item + "/identity-verification", headers=world.a.admin.headers),
        "identity.real_name",
        "art. 24",
    )
    refused(
        c.patch(item, json={"roles": ["employee"]}, headers=world.a.admin.headers),
        "identity.real_name",
        "art. 24",
    )
    # Verified by the officer, the admin may be demoted like anyone.
    assert c.post(item + "/identity-verification", headers=officer(world)).status_code == 200
    resp = c.patch(item, json={"roles": ["employee"]}, headers=world.a.admin.headers)
    assert resp.status_code == 200, resp.text

    # Granting tenant_admin to an employee a verified admin verified withdraws that
    # verification (else an admin could promote an account they verified under a made-up
    # identity; see test_a_promotion_keeps_only_the_compliance_officers_verification): the
    # new admin verifies employees once the officer has verified them.
    uid, token = make_user(
        world.runtime, f"e{uuid.uuid4().hex[:6]}@a.example", ["employee"], world.a.id
    )
    employee = Actor("employee", uid, token, world.a.id)
    c.patch(user_url(world, uid), json=identity_body(), headers=world.a.admin.headers)
    resp = c.post(user_url(world, uid) + "/identity-verification", headers=world.a.admin.headers)
    assert resp.status_code == 200, resp.text
    resp = c.patch(
        user_url(world, uid), json={"roles": ["tenant_admin"]}, headers=world.a.admin.headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["identity_verified_at"] is None
    other = new_user(world, identity=True)
    verify_other = user_url(world, other["id"]) + "/identity-verification"
    refused(c.post(verify_other, headers=employee.headers), "identity.real_name", "art. 24")
    resp = c.post(user_url(world, uid) + "/identity-verification", headers=officer(world))
    assert resp.status_code == 200, resp.text
    resp = c.post(verify_other, headers=employee.headers)
    assert resp.status_code == 200, resp.text
    # Promoting an unverified employee makes an unverified admin: the officer's to verify.
    fresh = new_user(world, identity=True)
    resp = c.patch(
        user_url(world, fresh["id"]), json={"roles": ["tenant_admin"]}, headers=puppet.headers
    )
    assert resp.status_code == 200, resp.text
    refused(
        c.post(user_url(world, fresh["id"]) + "/identity-verification", headers=employee.headers),
        "identity.real_name",
        "art. 24",
    )


def test_unverified_devices_never_reach_the_data_plane(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    verified = new_device(world, str(world.a.employee.user_id))
    user = new_user(world, identity=True)
    waiting = new_device(world, user["id"])
    keys = {p.public_key for p in state(world, gw).tenants[0].peers}
    assert verified["public_key"] in keys and waiting["public_key"] not in keys
    # Even a device forced to active in the store stays out while its owner is unverified.
    with world.runtime.db.session() as session:
        session.execute(
            text("UPDATE devices SET state = 'active' WHERE public_key = :k"),
            {"k": waiting["public_key"]},
        )
        session.commit()
    assert waiting["public_key"] not in {p.public_key for p in state(world, gw).tenants[0].peers}
    c = world.client
    c.post(user_url(world, user["id"]) + "/identity-verification", headers=officer(world))
    assert waiting["public_key"] in {p.public_key for p in state(world, gw).tenants[0].peers}
    # Withdrawing the employee's verification takes their device off the PoP.
    c.delete(
        user_url(world, world.a.employee.user_id) + "/identity-verification",
        headers=officer(world),
    )
    assert verified["public_key"] not in {p.public_key for p in state(world, gw).tenants[0].peers}


def test_id_numbers_are_sealed_masked_and_kept_out_of_logs(world: World) -> None:
    c, h = world.client, world.a.admin.headers
    body = identity_body()
    user = new_user(world, **body)
    number, mobile, name = body["id_number"], body["mobile"], body["legal_name"]
    for resp in (
        c.get(user_url(world, user["id"]), headers=h),
        c.get(f"{API}/tenants/{world.a.id}/users", headers=h),
        c.get(user_url(world, user["id"]), headers=officer(world)),
    ):
        assert number not in resp.text and mobile not in resp.text
        assert number[-4:] in resp.text  # masked: the last four only
    with world.runtime.db.session() as session:
        sealed = session.execute(
            text("SELECT id_number_sealed FROM users WHERE id_number_last4 = :l"),
            {"l": number[-4:]},
        ).scalar_one()
        assert sealed.startswith(f"v1:{world.runtime.settings.data_key_id}:")
        assert number not in sealed
        logged = " ".join(
            str((e.before, e.after)) for e in session.scalars(select(AuditEvent)).all()
        )
    for secret in (number, mobile, name):
        assert secret not in logged


def test_erased_users_get_no_devices(world: World) -> None:
    user = new_user(world, identity=True)
    resp = world.client.post(
        user_url(world, user["id"]) + "/personal-data/erase", headers=officer(world)
    )
    assert resp.status_code == 200, resp.text
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "x", "public_key": public_key(), "user_id": user["id"]},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 422
    assert "erased" in resp.json()["error"]["fields"]["user_id"]


# --- pi.notice_and_consent -------------------------------------------------------------------
def test_notices_are_versioned_and_published_by_the_operator(world: World) -> None:
    c = world.client
    assert c.get(
        f"{API}/privacy-notices/current", headers=world.a.employee.headers
    ).status_code == (404)
    first = publish_notice(c, officer(world), "2026-01")
    assert first["seq"] == 1
    resp = c.post(
        f"{API}/privacy-notices",
        json={**first, "title": "again"} | {"version": "2026-01"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 422  # published fields are not input
    resp = c.post(
        f"{API}/privacy-notices",
        json={
            "version": "2026-01",
            "title": "t",
            "text": "x",
            "transfer_abroad_text": "y",
        },
        headers=world.admin.headers,
    )
    assert resp.status_code == 409
    assert resp.json()["error"]["fields"] == {"version": "already in use"}
    resp = c.post(
        f"{API}/privacy-notices",
        json={"version": "bad version!", "title": "t", "text": "x", "transfer_abroad_text": ""},
        headers=world.admin.headers,
    )
    assert resp.status_code == 422
    assert {"version", "transfer_abroad_text"} <= set(resp.json()["error"]["fields"])
    for actor in (world.a.admin, world.a.employee, world.operators["auditor"]):
        resp = c.post(
            f"{API}/privacy-notices",
            json={"version": "x", "title": "t", "text": "x", "transfer_abroad_text": "y"},
            headers=actor.headers,
        )
        assert resp.status_code == 403
    publish_notice(c, world.admin.headers, "2026-02")
    current = c.get(f"{API}/privacy-notices/current", headers=world.a.employee.headers).json()
    assert current["version"] == "2026-02"
    listed = c.get(f"{API}/privacy-notices", headers=world.a.employee.headers).json()
    assert [n["version"] for n in listed["data"]] == ["2026-02", "2026-01"]


@both_stores
def test_consents_are_recorded_with_version_and_time_and_revocable(world: World) -> None:
    c = world.client
    emp = world.a.employee
    url = user_url(world, emp.user_id) + "/consents"
    body = {"kind": "notice", "notice_version": NOTICE_VERSION}
    session = sign_in(c, emp.headers)  # a consent of one's own comes from one's own session
    refused(c.post(url, json=body, headers=session), "pi.notice_and_consent", "PIPL")
    publish_notice(c, world.admin.headers)
    resp = c.post(url, json={**body, "notice_version": "1999"}, headers=session)
    assert resp.status_code == 422
    assert NOTICE_VERSION in resp.json()["error"]["fields"]["notice_version"]
    # The separate consent comes after the notice.
    error = refused(
        c.post(url, json={**body, "kind": "transfer_abroad"}, headers=session),
        "pi.notice_and_consent",
        "PIPL arts. 38-40",
    )
    assert "kind" in error["fields"]
    before = datetime.now(UTC)
    resp = c.post(url, json=body, headers=session)
    assert resp.status_code == 201, resp.text
    notice = resp.json()
    assert (notice["method"], notice["notice_version"], notice["current"]) == (
        "self",
        NOTICE_VERSION,
        True,
    )
    assert datetime.fromisoformat(notice["given_at"]) >= before - timedelta(seconds=1)
    assert c.post(url, json=body, headers=session).json()["id"] == notice["id"]
    abroad = c.post(url, json={**body, "kind": "transfer_abroad"}, headers=session)
    assert abroad.status_code == 201
    # Revoking is the person's (or their admin's), idempotent, and keeps the record.
    assert c.delete(url + "/transfer-abroad", headers=emp.headers).status_code == 204
    assert c.delete(url + "/transfer-abroad", headers=emp.headers).status_code == 204
    listed = c.get(url, headers=emp.headers).json()
    by_kind = {row["kind"]: row for row in listed["data"]}
    assert by_kind["transfer_abroad"]["revoked_at"] is not None
    assert by_kind["transfer_abroad"]["current"] is False
    assert by_kind["notice"]["current"] is True

    # An admin records a consent given on paper, naming the evidence.
    other = new_user(world, identity=True)
    other_url = user_url(world, other["id"]) + "/consents"
    resp = c.post(other_url, json=body, headers=world.a.admin.headers)
    assert resp.status_code == 422
    assert "signed consent" in resp.json()["error"]["fields"]["evidence"]
    resp = c.post(
        other_url, json={**body, "evidence": "HR form 2026-117"}, headers=world.a.admin.headers
    )
    assert resp.status_code == 201
    assert (resp.json()["method"], resp.json()["evidence"]) == ("recorded", "HR form 2026-117")
    # An employee sees and gives only their own; another tenant sees nothing; the compliance
    # officer reads but does not give consent for someone.
    assert c.get(other_url, headers=emp.headers).status_code == 404
    assert c.post(other_url, json=body, headers=emp.headers).status_code == 404
    assert c.get(other_url, headers=world.b.admin.headers).status_code == 404
    assert c.get(other_url, headers=officer(world)).status_code == 200
    assert c.post(other_url, json=body, headers=officer(world)).status_code == 403
    resp = c.post(url, json={"kind": "everything", "notice_version": "x"}, headers=emp.headers)
    assert resp.status_code == 422 and "kind" in resp.json()["error"]["fields"]

    # A new notice asking for fresh consent makes the old consents lapse; one that does not
    # ask keeps them.
    publish_notice(c, world.admin.headers, "2026-02", reconsent_required=False)
    assert c.get(url, headers=emp.headers).json()["data"][-1]["current"] is True
    publish_notice(c, world.admin.headers, "2026-03", reconsent_required=True)
    assert not any(row["current"] for row in c.get(url, headers=emp.headers).json()["data"])


def signed_in(world: World, actor: Actor) -> dict[str, str]:
    """Headers of a session ``actor`` opened by signing in with their password (the console
    and ``tongdao login`` do the same)."""
    return sign_in(world.client, actor.headers)


@both_stores
def test_a_consent_as_self_comes_from_the_persons_own_session(world: World) -> None:
    """Issue 10: a consent recorded as "self" must be the person's own act, given in their
    own signed-in session; an API token (which may sit in a script, or in someone else's
    hands) gives none, and an admin records one only with the evidence. Each consent keeps
    how it was given and from where."""
    c, emp = world.client, world.a.employee
    publish_notice(c, world.admin.headers)
    url = user_url(world, emp.user_id) + "/consents"
    body = {"kind": "notice", "notice_version": NOTICE_VERSION}
    # The person's API token: refused, with or without a reference to a form.
    for extra in ({}, {"evidence": "signed form T-1"}):
        resp = c.post(url, json={**body, **extra}, headers=emp.headers)
        assert resp.status_code == 403, resp.text
        error = resp.json()["error"]
        assert (
            "signed-in session" in error["message"]
            and "pi.notice_and_consent" in (error["message"])
        )
    assert c.get(url, headers=emp.headers).json()["count"] == 0
    # Nobody claims "self" for someone else: the method is not input.
    other = new_user(world, identity=True)
    other_url = user_url(world, other["id"]) + "/consents"
    resp = c.post(
        other_url,
        json={**body, "method": "self", "evidence": "x"},
        headers=signed_in(world, world.a.admin),
    )
    assert resp.status_code == 422 and "method" in resp.json()["error"]["fields"]
    # In the person's own session: "self", given in a session, from the caller's address.
    session = signed_in(world, emp)
    resp = c.post(url, json=body, headers=session)
    assert resp.status_code == 201, resp.text
    given = resp.json()
    assert (given["method"], given["given_via"], given["source_ip"]) == (
        "self",
        "session",
        "testclient",  # the TestClient's peer address
    )
    # An admin records one from a signed form, with an API token or a session: "recorded".
    resp = c.post(
        other_url, json={**body, "evidence": "HR form 2026-118"}, headers=world.a.admin.headers
    )
    assert resp.status_code == 201, resp.text
    recorded = resp.json()
    assert (recorded["method"], recorded["given_via"], recorded["evidence"]) == (
        "recorded",
        "api_token",
        "HR form 2026-118",
    )
    # An admin's own consent is theirs to give in their own session, like anyone's.
    own_url = user_url(world, world.a.admin.user_id) + "/consents"
    resp = c.post(own_url, json={**body, "evidence": "x"}, headers=world.a.admin.headers)
    assert resp.status_code == 403, resp.text
    resp = c.post(own_url, json=body, headers=signed_in(world, world.a.admin))
    assert resp.status_code == 201 and resp.json()["method"] == "self"
    # The record and its audit event keep how and where.
    with world.runtime.db.session() as session_:
        row = session_.get(Consent, uuid.UUID(given["id"]))
        assert row is not None
        assert (row.method, row.given_via, row.source_ip) == ("self", "session", "testclient")
        event = session_.scalars(
            select(AuditEvent).where(
                AuditEvent.object_type == "consent", AuditEvent.object_id == given["id"]
            )
        ).one()
        assert event.after is not None and event.after["given_via"] == "session"
    listed = c.get(url, headers=session).json()["data"]
    assert [(r["method"], r["given_via"]) for r in listed] == [("self", "session")]


def test_erasure_blanks_the_address_of_consents_past_retention(world: World) -> None:
    c = world.client
    uid, token = make_user(world.runtime, "quitter@a.example", ["employee"], world.a.id)
    person = Actor("employee", uid, token, world.a.id)
    publish_notice(c, world.admin.headers)
    consent_abroad(c, world.a.id, uid, person.headers)
    listed = c.get(user_url(world, uid) + "/consents", headers=officer(world)).json()["data"]
    assert {r["source_ip"] for r in listed} == {"testclient"}
    old = datetime.now(UTC) - timedelta(days=200)
    with world.runtime.db.session() as session:
        set_actor(session, SYSTEM)
        notice = session.scalars(
            select(Consent).where(Consent.user_id == uid, Consent.kind == "notice")
        ).one()
        notice.given_at = old
        session.commit()
    resp = c.post(user_url(world, uid) + "/personal-data/erase", headers=officer(world))
    assert resp.status_code == 200, resp.text
    assert resp.json()["consent_addresses_blanked"] == 1
    listed = c.get(user_url(world, uid) + "/consents", headers=officer(world)).json()["data"]
    by_kind = {r["kind"]: r for r in listed}
    assert by_kind["notice"]["source_ip"] is None  # past retention: the address goes
    assert by_kind["notice"]["given_via"] == "session"  # the consent and how it was given stay
    assert by_kind["transfer_abroad"]["source_ip"] == "testclient"  # within retention: kept


def _cross_border(world: World) -> dict[str, Any]:
    """BJ and FRA, a registered link, tenant A's HQ site at FRA, a policy staff → HQ."""
    c, adm = world.client, world.admin.headers
    bj, fra = make_pop(world, "bj"), make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw_bj, gw_fra = enrol(world, bj), enrol(world, fra)
    activate(world, world.a.id)
    dev = new_device(world, str(world.a.employee.user_id))
    site = c.post(
        f"{API}/tenants/{world.a.id}/sites",
        json={
            "name": "hq",
            "country": "DE",
            "purpose": "hq",
            "prefixes": ["198.18.7.0/24"],
            "pop_id": fra,
            "connector_public_key": public_key(),
        },
        headers=world.a.admin.headers,
    ).json()
    approve = getattr(world, "approve_site", None)
    if approve is not None:
        approve(site)
    c.patch(f"{API}/tenants/{world.a.id}/sites/{site['id']}", json={"state": "active"}, headers=adm)
    resp = c.post(
        f"{API}/tenants/{world.a.id}/groups",
        json={"name": "staff", "member_ids": [str(world.a.employee.user_id)]},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    group = resp.json()
    resp = c.post(
        f"{API}/tenants/{world.a.id}/policies",
        json={
            "name": "staff to hq",
            "rules": [
                {
                    "sources": [{"kind": "group", "id": group["id"]}],
                    "destinations": [{"kind": "site", "id": site["id"]}],
                }
            ],
        },
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    for gw in (gw_bj, gw_fra):
        state(world, gw)
        resp = c.put(
            f"{API}/gateway/interfaces/{world.a.id}", json={"public_key": public_key()}, headers=gw
        )
        assert resp.status_code == 204, resp.text
    resp = c.post(
        f"{API}/links",
        json={
            "name": "bj-fra",
            "pop_a_id": bj,
            "pop_b_id": fra,
            "circuit_ref": "CU-1",
            "approval_ref": "工信部国际〔2026〕7号",
            "capacity_mbps": 100,
        },
        headers=adm,
    )
    assert resp.status_code == 201, resp.text
    # Tenant A's authorisation to use the link (rule crossborder.tenant_authorised).
    authorise_abroad(world, [site["id"]], resp.json()["id"])
    return {
        "bj": bj,
        "fra": fra,
        "gw_bj": gw_bj,
        "gw_fra": gw_fra,
        "dev": dev,
        "site": site,
        "group": group,
    }


def _carried_abroad(world: World, net: dict[str, Any], dev: dict[str, Any]) -> dict[str, bool]:
    """Where the device shows in the desired states of BJ and FRA."""
    addr = f"{dev['ipv4']}/32"
    bj: DesiredState = state(world, net["gw_bj"])
    fra: DesiredState = state(world, net["gw_fra"])
    fra_pop = next(p for p in fra.tenants[0].peers if p.kind == "pop")
    bj_policy = bj.tenants[0].policy
    return {
        "bj_peer": dev["public_key"] in {p.public_key for p in bj.tenants[0].peers},
        "fra_peer": dev["public_key"] in {p.public_key for p in fra.tenants[0].peers},
        "fra_allowed": addr in fra_pop.allowed_ips,
        # BJ lets the device's address reach the HQ prefix only if a rule pairs them.
        "bj_policy": any(
            any(_contains(s, dev["ipv4"]) for s in r.src) and "198.18.7.0/24" in r.dst
            for r in bj_policy
        ),
        "fra_policy": any(
            any(_contains(s, dev["ipv4"]) for s in r.src) for r in fra.tenants[0].policy
        ),
    }


def _contains(cidr: str, address: str) -> bool:
    import ipaddress

    net = ipaddress.ip_network(cidr)
    ip = ipaddress.ip_address(address)
    return ip.version == net.version and ip in net


@both_stores
def test_no_consent_no_route_abroad(world: World) -> None:
    c = world.client
    net = _cross_border(world)
    dev, emp = net["dev"], world.a.employee
    # Without a consent: served in China, but never abroad, and China drops what would cross.
    assert _carried_abroad(world, net, dev) == {
        "bj_peer": True,
        "fra_peer": False,
        "fra_allowed": False,
        "bj_policy": False,
        "fra_policy": False,
    }
    # A consenting colleague in the same group is carried; the rule is split around the
    # withheld device only.
    colleague = new_user(world, identity=True)
    c.post(
        user_url(world, colleague["id"]) + "/identity-verification", headers=world.a.admin.headers
    )
    resp = c.patch(
        f"{API}/tenants/{world.a.id}/groups/{net['group']['id']}",
        json={"member_ids": [str(emp.user_id), colleague["id"]]},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    other = new_device(world, colleague["id"])
    publish_notice(c, world.admin.headers)
    consent_abroad(c, world.a.id, colleague["id"], world.a.admin.headers)
    assert _carried_abroad(world, net, other)["fra_allowed"]
    assert _carried_abroad(world, net, other)["bj_policy"]
    assert not _carried_abroad(world, net, dev)["bj_policy"]

    consent_abroad(c, world.a.id, emp.user_id, emp.headers)
    carried = _carried_abroad(world, net, dev)
    assert carried["fra_allowed"] and carried["bj_policy"] and not carried["fra_peer"]
    # The config never lists the overseas PoP for a device in China.
    conf = c.get(device_url(world, dev) + "/wireguard.conf", headers=emp.headers)
    assert conf.status_code == 200 and "fra" not in conf.text

    # Homing a device abroad needs the consent; revoking it takes the device off that PoP
    # and its config away.
    abroad_dev = new_device(world, str(emp.user_id), pop_id=net["fra"])
    assert (
        "fra" in c.get(device_url(world, abroad_dev) + "/wireguard.conf", headers=emp.headers).text
    )
    assert _carried_abroad(world, net, abroad_dev)["fra_peer"]
    assert (
        c.delete(
            user_url(world, emp.user_id) + "/consents/transfer-abroad", headers=emp.headers
        ).status_code
        == 204
    )
    assert not _carried_abroad(world, net, dev)["fra_allowed"]
    assert not _carried_abroad(world, net, dev)["bj_policy"]
    assert not _carried_abroad(world, net, abroad_dev)["fra_peer"]
    refused(
        c.get(device_url(world, abroad_dev) + "/wireguard.conf", headers=emp.headers),
        "pi.notice_and_consent",
        "PIPL",
    )
    resp = c.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "x", "public_key": public_key(), "pop_id": net["fra"]},
        headers=emp.headers,
    )
    assert refused(resp, "pi.notice_and_consent", "PIPL")["fields"] == {
        "pop_id": "the owner has not consented to transfer abroad"
    }
    resp = c.patch(device_url(world, dev), json={"pop_id": net["fra"]}, headers=emp.headers)
    refused(resp, "pi.notice_and_consent", "PIPL")
    # A new notice asking for fresh consent stops the colleague's traffic abroad too.
    assert _carried_abroad(world, net, other)["fra_allowed"]
    publish_notice(c, world.admin.headers, "2026-02")
    assert not _carried_abroad(world, net, other)["fra_allowed"]


# --- export and erasure, logs.retention ------------------------------------------------------
def _usage(world: World, devices: list[dict[str, Any]], ages_days: list[int]) -> None:
    """Connection records of the devices, one per age (days before now)."""
    now = datetime.now(UTC)
    pop = make_pop(world, f"rec-{uuid.uuid4().hex[:6]}")
    with world.runtime.db.session() as session:
        set_actor(session, SYSTEM)
        gateway = Gateway(pop_id=uuid.UUID(pop), credential_hash=uuid.uuid4().hex * 2)
        session.add(gateway)
        session.flush()
        seq = 0
        for dev in devices:
            for age in ages_days:
                seq += 1
                end = now - timedelta(days=age)
                session.add(
                    UsageRecord(
                        gateway_id=gateway.id,
                        seq=seq,
                        tenant_id=world.a.id,
                        peer_key=dev["public_key"],
                        peer_kind="device",
                        peer_ref=dev["id"],
                        rx_bytes=1000 + age,
                        tx_bytes=2000 + age,
                        last_handshake=end,
                        endpoint=f"198.51.100.{age % 250}:51820",
                        period_start=end - timedelta(seconds=30),
                        period_end=end,
                    )
                )
        session.commit()


def test_export_gives_the_person_their_data_decrypted_and_is_audited(world: World) -> None:
    c = world.client
    emp = world.a.employee
    dev = new_device(world, str(emp.user_id))
    _usage(world, [dev], [1, 2])
    publish_notice(c, world.admin.headers)
    consent_abroad(c, world.a.id, emp.user_id, emp.headers)
    url = user_url(world, emp.user_id) + "/personal-data"
    resp = c.get(url, headers=emp.headers)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    with world.runtime.db.session() as session:
        sealed = session.execute(
            text("SELECT id_number_sealed, legal_name FROM users WHERE id = :i"),
            {"i": emp.user_id.hex if world.runtime.db.is_sqlite else emp.user_id},
        ).one()
    number = world.runtime.cipher.open(sealed[0], "user.id_number")
    assert data["identity"]["id_number"] == number
    assert data["identity"]["legal_name"] == sealed[1]
    assert data["account"]["email"] == "employee@a.example"
    assert [d["id"] for d in data["devices"]] == [dev["id"]]
    assert {x["kind"] for x in data["consents"]} == {"notice", "transfer_abroad"}
    assert len(data["connection_days"]) == 2
    assert data["connection_days"][0]["endpoints"] == ["198.51.100.2:51820"]
    assert data["retention"]["rule"] == "logs.retention"
    # Who may: the person, their admin, the compliance officer; nobody else.
    assert c.get(url, headers=world.a.admin.headers).status_code == 200
    assert c.get(url, headers=officer(world)).status_code == 200
    for role in ("operator_admin", "auditor", "billing_clerk"):
        assert c.get(url, headers=world.operators[role].headers).status_code == 403
    assert c.get(url, headers=world.b.admin.headers).status_code == 404
    admins = user_url(world, world.a.admin.user_id) + "/personal-data"
    assert c.get(admins, headers=emp.headers).status_code == 404
    with world.runtime.db.session() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "export_personal_data")
        ).all()
    assert [(e.actor_id, e.object_id) for e in events[:1]] == [(emp.user_id, str(emp.user_id))]
    assert len(events) == 3
    assert all(number not in str(e.after) for e in events)


@both_stores
def test_erasure_pseudonymises_and_keeps_what_retention_requires(world: World) -> None:
    c = world.client
    uid, token = make_user(world.runtime, "leaver@a.example", ["employee"], world.a.id)
    leaver = Actor("employee", uid, token, world.a.id)
    c.patch(user_url(world, uid), json=identity_body(), headers=world.a.admin.headers)
    c.post(user_url(world, uid) + "/identity-verification", headers=officer(world))
    dev = new_device(world, str(uid))
    _usage(world, [dev], [3, 400])
    publish_notice(c, world.admin.headers)
    consent_abroad(c, world.a.id, uid, leaver.headers)

    # Deleting outright would orphan connection records the law keeps.
    for url in (user_url(world, uid), device_url(world, dev)):
        error = refused(
            c.delete(url, headers=world.a.admin.headers),
            "logs.retention",
            "Cybersecurity Law art. 21",
        )
        assert "6 calendar months and a margin of 7 days" in error["message"]
    # Nobody erases themselves while signed in.
    resp = c.post(user_url(world, uid) + "/personal-data/erase", headers=leaver.headers)
    assert resp.status_code == 403  # an employee may read their data, not erase it
    self_erase = user_url(world, world.a.admin.user_id) + "/personal-data/erase"
    resp = c.post(self_erase, headers=world.a.admin.headers)
    assert resp.status_code == 409 and "own account" in resp.json()["error"]["message"]

    resp = c.post(user_url(world, uid) + "/personal-data/erase", headers=world.a.admin.headers)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["devices_revoked"] == 1
    assert report["consents_revoked"] == 1
    assert report["sessions_ended"] >= 1
    assert report["connection_records_kept"] == 1
    assert report["endpoints_blanked"] == 1
    assert (report["retention"]["months"], report["retention"]["margin_days"]) == (6, 7)

    user = c.get(user_url(world, uid), headers=world.a.admin.headers).json()
    assert user["email"].endswith("@erased.invalid") and user["display_name"] == "erased user"
    assert user["legal_name"] is None and user["id_number_masked"] is None
    assert user["mobile_masked"] is None and user["erased_at"] is not None
    assert user["state"] == "disabled"
    assert c.get(device_url(world, dev), headers=world.a.admin.headers).json()["state"] == (
        "revoked"
    )
    assert c.get(f"{API}/auth/me", headers=leaver.headers).status_code == 401
    with world.runtime.db.session() as session:
        rows = session.execute(
            select(UsageRecord.period_end, UsageRecord.endpoint).order_by(UsageRecord.period_end)
        ).all()
    assert [r.endpoint for r in rows] == [None, "198.51.100.3:51820"]  # the young one whole
    # The record stays, and cannot be changed; erasing again reports the same, idempotently.
    resp = c.patch(
        user_url(world, uid), json={"display_name": "back"}, headers=world.a.admin.headers
    )
    assert resp.status_code == 409 and "erased" in resp.json()["error"]["message"]
    again = c.post(user_url(world, uid) + "/personal-data/erase", headers=officer(world))
    assert again.status_code == 200
    assert again.json()["devices_revoked"] == 0
    assert again.json()["connection_records_kept"] == 1
    # Past retention (six calendar months, at most 184 days, and the 7-day margin), deleting
    # is allowed again.
    with world.runtime.db.session() as session:
        session.execute(
            text("UPDATE usage_records SET period_end = :t"),
            {"t": (datetime.now(UTC) - timedelta(days=192)).replace(tzinfo=None)}
            if world.runtime.db.is_sqlite
            else {"t": datetime.now(UTC) - timedelta(days=192)},
        )
        session.commit()
    assert c.delete(device_url(world, dev), headers=world.a.admin.headers).status_code == 204


def test_erase_and_export_take_only_real_users(world: World) -> None:
    c = world.client
    for method, suffix in (("GET", "/personal-data"), ("POST", "/personal-data/erase")):
        resp = c.request(method, user_url(world, uuid.uuid4()) + suffix, headers=officer(world))
        assert resp.status_code == 404
        resp = c.request(
            method, f"{API}/tenants/{world.a.id}/users/not-a-uuid{suffix}", headers=officer(world)
        )
        assert resp.status_code == 422 and "user_id" in resp.json()["error"]["fields"]


def test_resident_ids_of_the_fixtures_are_valid() -> None:
    from tongdao.compliance.identity import id_number_problem

    for n in range(2000):
        assert id_number_problem("prc_resident_id", resident_id(n)) is None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    id_type=st.sampled_from(["prc_resident_id", "passport", "foreign_permanent_residence", "x"]),
    number=st.one_of(st.text(max_size=40), st.from_regex(r"\A[0-9]{17}[0-9Xx]\Z")),
)
def test_identity_input_is_refused_field_by_field(world: World, id_type: str, number: str) -> None:
    from tongdao.compliance.identity import id_number_problem

    resp = world.client.patch(
        user_url(world, world.a.employee.user_id),
        json={"id_type": id_type, "id_number": number},
        headers=world.a.admin.headers,
    )
    assert resp.status_code in (200, 422), resp.text
    if resp.status_code == 200:
        assert id_number_problem(id_type, number) is None
        assert number.strip().upper() not in resp.text
        assert resp.json()["id_type"] == id_type
    else:
        assert set(resp.json()["error"]["fields"]) <= {"id_type", "id_number"}


def test_a_promotion_keeps_only_the_compliance_officers_verification(world: World) -> None:
    """Issue 10: a verified tenant admin made an employee account with an address they
    control and a made-up identity, verified it as an employee and granted it tenant_admin:
    an admin no compliance officer checked. Promoted to tenant_admin, a user keeps a
    verification only the compliance officer made; one a tenant admin made is withdrawn
    (audited, the user's active devices wait again) until the officer verifies the admin."""
    c, h = world.client, world.a.admin.headers
    # The invitation goes to an address the admin controls: they hold the account.
    uid, secret = make_user(
        world.runtime, f"p{uuid.uuid4().hex[:6]}@a.example", ["employee"], world.a.id
    )
    puppet = Actor("employee", uid, secret, world.a.id)
    item = user_url(world, uid)
    assert c.patch(item, json=identity_body(), headers=h).status_code == 200
    assert c.post(item + "/identity-verification", headers=h).status_code == 200
    dev = new_device(world, str(uid))
    assert dev["state"] == "active"
    resp = c.patch(item, json={"roles": ["tenant_admin"]}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["roles"] == ["tenant_admin"]
    assert resp.json()["identity_verified_at"] is None
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "pending"
    with world.runtime.db.session() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "withdraw_identity_verification",
                AuditEvent.object_id == str(uid),
            )
        ).all()
    assert len(events) == 1 and events[0].actor_id == world.a.admin.user_id
    assert events[0].after is not None and events[0].after["devices_pending"] == 1
    assert "compliance officer" in events[0].after["reason"]
    # The promoted admin is unverified: tenant admins cannot verify them, and they verify
    # nobody; the officer's verification makes them an admin like any other.
    refused(c.post(item + "/identity-verification", headers=h), "identity.real_name", "art. 24")
    employee = new_user(world, identity=True)
    verify_employee = user_url(world, employee["id"]) + "/identity-verification"
    error = refused(
        c.post(verify_employee, headers=puppet.headers), "identity.real_name", "art. 24"
    )
    assert "your own identity" in error["message"]
    assert c.post(item + "/identity-verification", headers=officer(world)).status_code == 200
    assert c.get(device_url(world, dev), headers=h).json()["state"] == "active"
    assert c.post(verify_employee, headers=puppet.headers).status_code == 200

    # An employee the compliance officer verified keeps the verification when promoted.
    vetted = new_user(world, **identity_body())
    vetted_item = user_url(world, vetted["id"])
    assert c.post(vetted_item + "/identity-verification", headers=officer(world)).status_code == 200
    vetted_dev = new_device(world, vetted["id"])
    resp = c.patch(vetted_item, json={"roles": ["tenant_admin"]}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["identity_verified_at"] is not None
    assert c.get(device_url(world, vetted_dev), headers=h).json()["state"] == "active"


@both_stores
def test_connection_log_days_are_asia_shanghai_days(world: World) -> None:
    """A connection at 23:30 UTC is 07:30 the next day in Shanghai: the export's connection
    log puts it on that next day (periods in Tongdao are Asia/Shanghai days), and one at
    15:30 UTC (23:30 in Shanghai) on the same day as it."""
    emp = world.a.employee
    dev = new_device(world, str(emp.user_id))
    day = datetime.now(UTC).date() - timedelta(days=3)
    late = datetime(day.year, day.month, day.day, 23, 30, tzinfo=UTC)
    evening = late - timedelta(hours=8)
    pop = make_pop(world, "rec-shanghai-day")
    with world.runtime.db.session() as session:
        set_actor(session, SYSTEM)
        gateway = Gateway(pop_id=uuid.UUID(pop), credential_hash=uuid.uuid4().hex * 2)
        session.add(gateway)
        session.flush()
        for seq, end in enumerate((evening, late), start=1):
            session.add(
                UsageRecord(
                    gateway_id=gateway.id,
                    seq=seq,
                    tenant_id=world.a.id,
                    peer_key=dev["public_key"],
                    peer_kind="device",
                    peer_ref=dev["id"],
                    rx_bytes=10**seq,
                    tx_bytes=0,
                    last_handshake=end,
                    endpoint=f"198.51.100.{seq}:51820",
                    period_start=end - timedelta(seconds=30),
                    period_end=end,
                )
            )
        session.commit()
    resp = world.client.get(user_url(world, emp.user_id) + "/personal-data", headers=emp.headers)
    assert resp.status_code == 200, resp.text
    got = [(d["day"], d["rx_bytes"], d["endpoints"]) for d in resp.json()["connection_days"]]
    assert got == [
        (day.isoformat(), 10, ["198.51.100.1:51820"]),
        ((day + timedelta(days=1)).isoformat(), 100, ["198.51.100.2:51820"]),
    ]
