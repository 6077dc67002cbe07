"""WebAuthn second factor and the operator's staff rule, on SQLite and PostgreSQL, through the
API with a software authenticator (real P-256 signatures checked by py_webauthn): register,
sign in, and the refusals: a replayed challenge, a wrong origin, another user's key, a counter
that goes back (a cloned authenticator), an expired challenge; then the staff rule."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import both_stores
from tests.support.authenticator import SoftAuthenticator
from tests.support.world import PASSWORD, World
from tongdao.audit.models import AuditEvent
from tongdao.runtime import Runtime

API = "/api/v1"


def _session(client: TestClient, email: str) -> dict[str, str]:
    resp = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def _register(
    client: TestClient, headers: dict[str, str], key: SoftAuthenticator, name: str = "Key 1"
) -> dict[str, Any]:
    options = client.post(f"{API}/auth/webauthn/registration-options", headers=headers)
    assert options.status_code == 200, options.text
    body = {"name": name, "credential": key.create(options.json()), "current_password": PASSWORD}
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def _pending(client: TestClient, email: str) -> dict[str, Any]:
    resp = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 401, resp.text
    data: dict[str, Any] = resp.json()
    assert data["error"]["code"] == "webauthn_required"
    return data


def _finish(client: TestClient, pending: str, credential: dict[str, Any]) -> Any:
    return client.post(
        f"{API}/auth/login/webauthn", json={"pending": pending, "credential": credential}
    )


def _reasons(runtime: Runtime) -> list[str]:
    with runtime.db.session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "login_failed").order_by(AuditEvent.seq)
        )
        return [str((row.after or {}).get("reason")) for row in rows]


@both_stores
def test_register_sign_in_and_refusals(runtime: Runtime, world: World) -> None:
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    email = "auditor@operator.example"
    headers = _session(client, email)
    key = SoftAuthenticator(origin=origin)
    created = _register(client, headers, key, "YubiKey 5")
    assert created["name"] == "YubiKey 5"
    listed = client.get(f"{API}/auth/webauthn/credentials", headers=headers).json()
    assert [c["name"] for c in listed["data"]] == ["YubiKey 5"]

    # The password alone no longer signs in: the key must answer.
    first = _pending(client, email)
    assert first["options"]["userVerification"] == "required"
    answer = key.get(first["options"])
    done = _finish(client, first["pending"], answer)
    assert done.status_code == 200, done.text
    token = {"Authorization": f"Bearer {done.json()['token']}"}
    assert client.get(f"{API}/auth/me", headers=token).status_code == 200

    # Replayed: the same answer to the same (now spent) challenge.
    assert _finish(client, first["pending"], answer).status_code == 401

    # Wrong origin (a phishing site relaying the challenge).
    second = _pending(client, email)
    forged = key.get(second["options"], origin="https://tongdao.evil.example")
    assert _finish(client, second["pending"], forged).status_code == 401

    # Another user's key answering this user's challenge.
    other_headers = _session(client, "billing_clerk@operator.example")
    other_key = SoftAuthenticator(origin=origin)
    _register(client, other_headers, other_key)
    third = _pending(client, email)
    assert _finish(client, third["pending"], other_key.get(third["options"])).status_code == 401

    # A clone: the counter goes back.
    fourth = _pending(client, email)
    assert _finish(client, fourth["pending"], key.get(fourth["options"])).status_code == 200
    fifth = _pending(client, email)
    clone = key.get(fifth["options"], counter=1)
    assert _finish(client, fifth["pending"], clone).status_code == 401

    # Expired: answered after the challenge's lifetime.
    sixth = _pending(client, email)
    now = runtime.clock()
    runtime.clock = lambda: now + timedelta(seconds=runtime.settings.webauthn_challenge_seconds)
    assert _finish(client, sixth["pending"], key.get(sixth["options"])).status_code == 401

    reasons = _reasons(runtime)
    assert any("origin" in r.lower() for r in reasons), reasons
    assert any("not one of this account's" in r for r in reasons), reasons
    assert any("possible cloned authenticator" in r for r in reasons), reasons


@both_stores
def test_registration_refusals(runtime: Runtime, world: World) -> None:
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    headers = _session(client, "employee@a.example")
    key = SoftAuthenticator(origin=origin)
    # No options asked: nothing to answer.
    body = {
        "name": "K",
        "credential": key.create({"challenge": "AAAA"}),
        "current_password": PASSWORD,
    }
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 422 and "credential" in resp.json()["error"]["fields"], resp.text
    # Wrong password.
    options = client.post(f"{API}/auth/webauthn/registration-options", headers=headers).json()
    body = {"name": "K", "credential": key.create(options), "current_password": "wrong" * 4}
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 422 and "current_password" in resp.json()["error"]["fields"]
    # Wrong origin at registration.
    options = client.post(f"{API}/auth/webauthn/registration-options", headers=headers).json()
    bad = key.create(options, origin="https://elsewhere.example")
    body = {"name": "K", "credential": bad, "current_password": PASSWORD}
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 422, resp.text
    # A good one, then another user's removal of it answers 404.
    created = _register(client, headers, key, "Phone")
    other = world.a.admin.headers
    url = f"{API}/auth/webauthn/credentials/{created['id']}"
    password = {"current_password": PASSWORD}
    resp = client.request("DELETE", url, json=password, headers=other)
    assert resp.status_code == 404
    resp = client.request("DELETE", url, json=password, headers=headers)
    assert resp.status_code == 204


@both_stores
def test_staff_rule(runtime: Runtime, world: World) -> None:
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    admin_email = "operator_admin@operator.example"
    policy = f"{API}/operator/second-factor-policy"
    # Only the operator admin sets it.
    clerk = world.operators["billing_clerk"].headers
    assert client.put(policy, json={"required_for_staff": True}, headers=clerk).status_code == 403
    # The admin's own password-only credential may not turn it on (they would be locked out).
    resp = client.put(policy, json={"required_for_staff": True}, headers=world.admin.headers)
    assert resp.status_code == 409, resp.text
    admin_key = SoftAuthenticator(origin=origin)
    _register(client, _session(client, admin_email), admin_key)
    pending = _pending(client, admin_email)
    signed = _finish(client, pending["pending"], admin_key.get(pending["options"]))
    admin = {"Authorization": f"Bearer {signed.json()['token']}"}
    resp = client.put(policy, json={"required_for_staff": True}, headers=admin)
    assert resp.status_code == 200 and resp.json() == {"required_for_staff": True}

    # Password-only credentials of staff are refused from now on.
    auditor = world.operators["auditor"].headers
    assert client.get(f"{API}/tenants", headers=auditor).status_code == 401
    # ... tenant people are not staff: unchanged.
    assert client.get(f"{API}/auth/me", headers=world.a.employee.headers).status_code == 200

    # A staff member without a second factor signs in to enrol, and can do nothing else.
    enrol = _session(client, "auditor@operator.example")
    resp = client.get(f"{API}/tenants", headers=enrol)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "second_factor_enrolment_required"
    status = client.get(f"{API}/auth/second-factor", headers=enrol).json()
    assert status["required"] and status["enrolment_only"]
    auditor_key = SoftAuthenticator(origin=origin)
    _register(client, enrol, auditor_key)
    assert client.get(f"{API}/tenants", headers=enrol).status_code == 200
    # The last key stays while the rule is on.
    keys = client.get(f"{API}/auth/webauthn/credentials", headers=enrol).json()["data"]
    url = f"{API}/auth/webauthn/credentials/{keys[0]['id']}"
    resp = client.request("DELETE", url, json={"current_password": PASSWORD}, headers=enrol)
    assert resp.status_code == 409

    # TOTP serves as well: enrolled from an enrolment-only session, then signed in with.
    officer_email = "compliance_officer@operator.example"
    officer = _session(client, officer_email)
    assert client.get(f"{API}/tenants", headers=officer).status_code == 403
    secret = client.post(f"{API}/auth/totp", headers=officer).json()["secret"]
    body = {"code": pyotp.TOTP(secret).now(), "current_password": PASSWORD}
    assert client.post(f"{API}/auth/totp/confirm", json=body, headers=officer).status_code == 204
    assert client.get(f"{API}/tenants", headers=officer).status_code == 200
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step: a code is used once
    login = {"email": officer_email, "password": PASSWORD, "totp_code": code}
    resp = client.post(f"{API}/auth/login", json=login)
    assert resp.status_code == 200, resp.text
    totp_session = {"Authorization": f"Bearer {resp.json()['token']}"}
    assert client.get(f"{API}/tenants", headers=totp_session).status_code == 200

    # A lost key: the admin resets a colleague (audited), never themselves.
    auditor_id = world.operators["auditor"].user_id
    resp = client.post(f"{API}/operator/staff/{auditor_id}/second-factor-reset", headers=admin)
    assert resp.status_code == 200 and resp.json()["webauthn_removed"] == 1, resp.text
    assert client.get(f"{API}/tenants", headers=enrol).status_code == 401  # signed out
    admin_id = world.admin.user_id
    resp = client.post(f"{API}/operator/staff/{admin_id}/second-factor-reset", headers=admin)
    assert resp.status_code == 403
    with runtime.db.session() as session:
        actions = set(session.scalars(select(AuditEvent.action)))
        types = set(session.scalars(select(AuditEvent.object_type)))
    assert {"second_factors_reset", "login"} <= actions
    assert {"second_factor_policy", "webauthn_credential"} <= types


MALFORMED: list[dict[str, Any]] = [
    {},
    {"rawId": 5},
    {"rawId": "AAAA"},
    {"rawId": "AAAA", "id": "AAAA", "type": "public-key", "response": 5},
    {"rawId": "AAAA", "id": "AAAA", "type": "public-key", "response": {"clientDataJSON": "!!"}},
    {
        "rawId": "AAAA",
        "id": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": "e30", "attestationObject": "oA", "authenticatorData": "A"},
    },
]


def test_malformed_answers_are_refused_not_failed(runtime: Runtime, world: World) -> None:
    """Whatever a client sends as the key's answer: a 4xx, never a 500."""
    # Each refused answer counts as a failed sign-in; the throttle is not what is tested here.
    runtime.settings.login_max_failures = 100
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    email = "auditor@operator.example"
    headers = _session(client, email)
    key = SoftAuthenticator(origin=origin)
    for bad in MALFORMED:
        client.post(f"{API}/auth/webauthn/registration-options", headers=headers)
        body = {"name": "K", "credential": bad, "current_password": PASSWORD}
        resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
        assert resp.status_code == 422, (bad, resp.text)
    _register(client, headers, key)
    for bad in [
        *MALFORMED,
        {**key.get({"challenge": "AAAA"}), "rawId": key.get({"challenge": "A"})["rawId"]},
    ]:
        pending = _pending(client, email)
        resp = _finish(client, pending["pending"], bad)
        assert resp.status_code in (401, 422), (bad, resp.text)
    resp = _finish(client, "tdw_" + "x" * 40, key.get({"challenge": "AAAA"}))
    assert resp.status_code == 401
    # A malformed answer spends the challenge too: the right answer after it is refused.
    pending = _pending(client, email)
    assert _finish(client, pending["pending"], {"rawId": "AAAA"}).status_code == 401
    assert _finish(client, pending["pending"], key.get(pending["options"])).status_code == 401
    # Same for a registration.
    options = client.post(f"{API}/auth/webauthn/registration-options", headers=headers).json()
    new_key = SoftAuthenticator(origin=origin)
    body = {"name": "K2", "credential": {"rawId": "AAAA"}, "current_password": PASSWORD}
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 422
    body = {"name": "K2", "credential": new_key.create(options), "current_password": PASSWORD}
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 422 and "expired or was already used" in resp.text
