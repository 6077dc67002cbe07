"""Review of the WebAuthn second factor (session 22): refusals an attacker reaches, on SQLite
and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import both_stores
from tests.support.authenticator import SoftAuthenticator
from tests.support.world import PASSWORD, World
from tongdao.audit.models import AuditEvent
from tongdao.auth.webauthn_models import WebAuthnCredential
from tongdao.runtime import Runtime
from tongdao.tenancy.models import Tenant, TenantState, User

API = "/api/v1"


def _session(client: TestClient, email: str) -> dict[str, str]:
    resp = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def _options(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    resp = client.post(f"{API}/auth/webauthn/registration-options", headers=headers)
    assert resp.status_code == 200, resp.text
    options: dict[str, Any] = resp.json()
    return options


def _pending(client: TestClient, email: str) -> dict[str, Any]:
    resp = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 401, resp.text
    data: dict[str, Any] = resp.json()
    return data


@both_stores
def test_key_names_are_one_line(runtime: Runtime, world: World) -> None:
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    headers = _session(client, "employee@a.example")
    key = SoftAuthenticator(origin=origin)
    for name in ("Key\x00one", "Key\u202eeno", "Key\x1b[31m"):
        body = {
            "name": name,
            "credential": key.create(_options(client, headers)),
            "current_password": PASSWORD,
        }
        resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
        assert resp.status_code == 422, (name, resp.text)
        assert "name" in resp.json()["error"]["fields"], resp.text


def _client_data(answer: dict[str, Any], **changes: str) -> dict[str, Any]:
    raw = answer["response"]["clientDataJSON"]
    data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    data.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return {**answer, "response": {**answer["response"], "clientDataJSON": encoded}}


@both_stores
def test_nul_in_the_keys_answer_is_refused_not_failed(runtime: Runtime, world: World) -> None:
    runtime.settings.login_max_failures = 100
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    email = "auditor@operator.example"
    headers = _session(client, email)
    key = SoftAuthenticator(origin=origin)
    body = {"name": "K", "credential": key.create(_options(client, headers))}
    body["current_password"] = PASSWORD
    assert client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers).is_success
    pending = _pending(client, email)
    bad = {**key.get(pending["options"]), "rawId": "AA\x00AA"}
    resp = client.post(
        f"{API}/auth/login/webauthn", json={"pending": pending["pending"], "credential": bad}
    )
    assert resp.status_code == 401, resp.text
    pending = _pending(client, email)
    bad = _client_data(key.get(pending["options"]), origin="https://evil\x00.example")
    resp = client.post(
        f"{API}/auth/login/webauthn", json={"pending": pending["pending"], "credential": bad}
    )
    assert resp.status_code == 401, resp.text


def _totp_on(client: TestClient, headers: dict[str, str]) -> pyotp.TOTP:
    secret = client.post(f"{API}/auth/totp", headers=headers).json()["secret"]
    totp = pyotp.TOTP(secret)
    body = {"code": totp.now(), "current_password": PASSWORD}
    assert client.post(f"{API}/auth/totp/confirm", json=body, headers=headers).status_code == 204
    return totp


@both_stores
def test_adding_a_key_takes_the_totp_code_when_totp_is_on(runtime: Runtime, world: World) -> None:
    """A stolen session and the password do not add the thief's key to an account with TOTP
    (then signing in with password and that key would skip the app), as they make no API
    token without a code."""
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    headers = _session(client, "employee@a.example")
    totp = _totp_on(client, headers)
    key = SoftAuthenticator(origin=origin)
    body = {
        "name": "Thief",
        "credential": key.create(_options(client, headers)),
        "current_password": PASSWORD,
    }
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 422, resp.text
    assert "totp_code" in resp.json()["error"]["fields"]
    assert client.get(f"{API}/auth/webauthn/credentials", headers=headers).json()["count"] == 0
    body = {
        "name": "Mine",
        "credential": key.create(_options(client, headers)),
        "current_password": PASSWORD,
        "totp_code": totp.at(time.time() + 30),  # the next step: a code is used once
    }
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    assert resp.status_code == 201, resp.text


@both_stores
def test_removing_a_key_takes_the_password(runtime: Runtime, world: World) -> None:
    """A stolen session alone does not strip an account of its keys (after which the password
    alone would sign in), as it does not turn TOTP off."""
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    headers = _session(client, "employee@a.example")
    key = SoftAuthenticator(origin=origin)
    body = {"name": "K", "credential": key.create(_options(client, headers))}
    body["current_password"] = PASSWORD
    created = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers)
    url = f"{API}/auth/webauthn/credentials/{created.json()['id']}"
    assert client.delete(url, headers=headers).status_code == 422
    wrong = {"current_password": "wrong password" * 2}
    resp = client.request("DELETE", url, json=wrong, headers=headers)
    assert resp.status_code == 422 and "current_password" in resp.json()["error"]["fields"]
    assert client.get(f"{API}/auth/webauthn/credentials", headers=headers).json()["count"] == 1
    right = {"current_password": PASSWORD}
    assert client.request("DELETE", url, json=right, headers=headers).status_code == 204


def _password_resets(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.db.session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "password_reset").order_by(AuditEvent.seq)
        )
        return [dict(row.after or {}) for row in rows]


@both_stores
def test_an_admin_reset_removes_a_bound_key_but_not_the_admins_own(
    runtime: Runtime, world: World
) -> None:
    """An admin's password reset clears TOTP so that a thief's bound authenticator cannot
    keep the owner out: a thief's bound key goes too. An admin resetting their own password
    keeps their factors (a stolen session with the mailbox must not shed them)."""
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    employee = world.a.employee
    headers = _session(client, "employee@a.example")
    thief_key = SoftAuthenticator(origin=origin)
    body = {"name": "Thief", "credential": thief_key.create(_options(client, headers))}
    body["current_password"] = PASSWORD
    assert client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers).is_success
    resp = client.post(
        f"{API}/tenants/{world.a.id}/users/{employee.user_id}/password-reset",
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 202, resp.text
    with runtime.db.session() as session:
        assert not session.scalars(
            select(WebAuthnCredential).where(WebAuthnCredential.user_id == employee.user_id)
        ).all()
    assert _password_resets(runtime)[-1]["webauthn_removed"] == 1

    admin = _session(client, "tenant_admin@a.example")
    _totp_on(client, admin)
    resp = client.post(
        f"{API}/tenants/{world.a.id}/users/{world.a.admin.user_id}/password-reset",
        headers=admin,
    )
    assert resp.status_code == 202, resp.text
    with runtime.db.session() as session:
        user = session.get(User, world.a.admin.user_id)
        assert user is not None and user.totp_enabled
    assert _password_resets(runtime)[-1]["totp_cleared"] is False


@both_stores
def test_the_key_step_checks_the_tenant_and_keeps_the_program(
    runtime: Runtime, world: World
) -> None:
    """A tenant terminated between the password and the key: refused like the password step
    (not a session that no request accepts, audited as a login). The API's key step keeps
    the program it came from, as the password step does, for the sessions list."""
    client = world.client
    _rp_id, origin = runtime.settings.webauthn_rp
    email = "employee@a.example"
    headers = _session(client, email)
    key = SoftAuthenticator(origin=origin)
    body = {"name": "K", "credential": key.create(_options(client, headers))}
    body["current_password"] = PASSWORD
    assert client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers).is_success
    pending = _pending(client, email)
    agent = {"User-Agent": "tongdao-cli/test"}
    done = client.post(
        f"{API}/auth/login/webauthn",
        json={"pending": pending["pending"], "credential": key.get(pending["options"])},
        headers=agent,
    )
    assert done.status_code == 200, done.text
    token = {"Authorization": f"Bearer {done.json()['token']}"}
    sessions = client.get(f"{API}/auth/sessions", headers=token).json()["data"]
    assert [s["user_agent"] for s in sessions if s["current"]] == ["tongdao-cli/test"]

    pending = _pending(client, email)
    with runtime.db.session() as session:
        tenant = session.get(Tenant, world.a.id)
        assert tenant is not None
        tenant.state = TenantState.TERMINATED
        session.commit()
    resp = client.post(
        f"{API}/auth/login/webauthn",
        json={"pending": pending["pending"], "credential": key.get(pending["options"])},
    )
    assert resp.status_code == 401, resp.text
    with runtime.db.session() as session:
        last = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(["login", "login_failed"]))
            .order_by(AuditEvent.seq.desc())
        ).first()
    assert last is not None and last.action == "login_failed"
    assert (last.after or {})["reason"] == "tenant is terminated"
