"""Login (argon2id), TOTP, throttling, tokens: scoped, expiring, hashed, revocable."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.world import PASSWORD, World, make_user
from tongdao.auth.models import ApiToken
from tongdao.runtime import Runtime
from tongdao.tenancy.models import User


def login(client: TestClient, email: str, password: str = PASSWORD, **extra: str) -> object:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password, **extra})


def test_login_me_logout(world: World) -> None:
    resp = world.client.post(
        "/api/v1/auth/login", json={"email": "Tenant_Admin@A.example", "password": PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token"].startswith("tds_")
    assert body["user"]["roles"] == ["tenant_admin"]
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert world.client.get("/api/v1/auth/me", headers=headers).json()["email"] == (
        "tenant_admin@a.example"
    )
    assert world.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    resp = world.client.get("/api/v1/auth/me", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


def test_password_is_stored_as_argon2id(world: World) -> None:
    with world.runtime.db.session() as session:
        user = session.scalar(select(User).where(User.email == "employee@a.example"))
        assert user is not None
        assert user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("email", "password"),
    [("employee@a.example", "wrong password!"), ("nobody@a.example", PASSWORD)],
)
def test_bad_credentials_give_one_message(world: World, email: str, password: str) -> None:
    resp = world.client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] == "email, password or TOTP code is wrong"


def test_failed_logins_are_throttled_and_audited(world: World) -> None:
    email = "employee@a.example"
    for _ in range(world.runtime.settings.login_max_failures):
        resp = world.client.post("/api/v1/auth/login", json={"email": email, "password": "nope!"})
        assert resp.status_code == 401
    # Even the right password is refused while throttled (from this address): no oracle.
    resp = world.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0
    # Other accounts are unaffected.
    ok = world.client.post(
        "/api/v1/auth/login", json={"email": "tenant_admin@a.example", "password": PASSWORD}
    )
    assert ok.status_code == 200
    events = world.client.get(
        "/api/v1/audit/events", params={"action": "login_failed"}, headers=world.admin.headers
    ).json()
    assert events["count"] == world.runtime.settings.login_max_failures


def test_throttle_window_expires(world: World, runtime: Runtime) -> None:
    email = "employee@a.example"
    for _ in range(runtime.settings.login_max_failures):
        world.client.post("/api/v1/auth/login", json={"email": email, "password": "nope!"})
    later = datetime.now(UTC) + timedelta(seconds=runtime.settings.login_window_seconds + 1)
    runtime.clock = lambda: later
    resp = world.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200


def test_totp_enrolment_and_login(world: World) -> None:
    client, headers = world.client, world.a.admin.headers
    setup = client.post("/api/v1/auth/totp", headers=headers).json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(setup["secret"])
    bad = client.post(
        "/api/v1/auth/totp/confirm",
        json={"code": "000000", "current_password": PASSWORD},
        headers=headers,
    )
    assert bad.status_code == 422
    assert "code" in bad.json()["error"]["fields"]
    # Turning TOTP on takes the password: a stolen session cannot bind the account to an
    # authenticator its owner does not hold.
    for body in ({"code": totp.now()}, {"code": totp.now(), "current_password": "not it"}):
        refused = client.post("/api/v1/auth/totp/confirm", json=body, headers=headers)
        assert refused.status_code in (401, 422), refused.text
        assert "current_password" in refused.json()["error"].get("fields", {}), refused.text
    body = {"code": totp.now(), "current_password": PASSWORD}
    ok = client.post("/api/v1/auth/totp/confirm", json=body, headers=headers)
    assert ok.status_code == 204

    email = "tenant_admin@a.example"
    resp = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 401  # the same answer as a wrong password (test_sign_in.py)
    resp = client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "totp_code": "123456"}
    )
    assert resp.status_code == 401
    # The code that confirmed enrolment is spent (no replay): the next one signs in.
    resp = client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": PASSWORD, "totp_code": totp.at(time.time() + 30)},
    )
    assert resp.status_code == 200
    # The secret is sealed at rest.
    with world.runtime.db.session() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        assert user.totp_secret_sealed is not None
        assert setup["secret"] not in user.totp_secret_sealed


def test_api_tokens_are_scoped_hashed_and_revocable(world: World) -> None:
    client, headers = world.client, world.admin.headers
    resp = client.post(
        "/api/v1/tokens",
        json={
            "name": "automation",
            "scopes": ["read"],
            "expires_in_days": 7,
            "current_password": PASSWORD,
        },
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    secret = created["token"]
    ro = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/tenants", headers=ro).status_code == 200
    denied = client.post("/api/v1/pops", json={}, headers=ro)
    assert denied.status_code in (403, 422)
    denied = client.post(
        "/api/v1/pops",
        json={"name": "p", "region": "CN-BJ", "country": "CN", "endpoint_host": "198.51.100.9"},
        headers=ro,
    )
    assert denied.status_code == 403
    assert "read-only" in denied.json()["error"]["message"]
    with world.runtime.db.session() as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
        assert secret not in stored
    listed = client.get("/api/v1/tokens", headers=headers).json()["data"]
    assert [t["name"] for t in listed] == ["test", "automation"]
    assert "token" not in listed[1]
    assert client.delete(f"/api/v1/tokens/{created['id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/tenants", headers=ro).status_code == 401
    # Another user's token id is not found.
    other = client.delete(f"/api/v1/tokens/{created['id']}", headers=world.a.admin.headers)
    assert other.status_code == 404


def test_expired_token_is_refused(world: World, runtime: Runtime) -> None:
    later = datetime.now(UTC) + timedelta(days=2)
    runtime.clock = lambda: later
    assert world.client.get("/api/v1/auth/me", headers=world.admin.headers).status_code == 401


def test_disabled_user_cannot_use_tokens(world: World) -> None:
    resp = world.client.patch(
        f"/api/v1/tenants/{world.a.id}/users/{world.a.employee.user_id}",
        json={"state": "disabled"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 200
    assert world.client.get("/api/v1/auth/me", headers=world.a.employee.headers).status_code == 401


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer nonsense", "Basic abc", "Bearer tds_x"])
def test_malformed_credentials(client: TestClient, header: str) -> None:
    resp = client.get("/api/v1/tenants", headers={"Authorization": header} if header else {})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "not_authenticated"


def test_password_change_and_policy(world: World) -> None:
    headers = world.a.employee.headers
    weak = world.client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert weak.status_code == 422
    assert "new_password" in weak.json()["error"]["fields"]
    wrong = world.client.post(
        "/api/v1/auth/password",
        json={"current_password": "not it at all", "new_password": "a much better one 42"},
        headers=headers,
    )
    assert wrong.json()["error"]["fields"] == {"current_password": "is wrong"}
    ok = world.client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a much better one 42"},
        headers=headers,
    )
    assert ok.status_code == 204
    resp = world.client.post(
        "/api/v1/auth/login",
        json={"email": "employee@a.example", "password": "a much better one 42"},
    )
    assert resp.status_code == 200


def test_terminated_tenant_users_cannot_log_in(world: World, runtime: Runtime) -> None:
    resp = world.client.patch(
        f"/api/v1/tenants/{world.a.id}", json={"state": "terminated"}, headers=world.admin.headers
    )
    assert resp.status_code == 200, resp.text
    resp = world.client.post(
        "/api/v1/auth/login", json={"email": "employee@a.example", "password": PASSWORD}
    )
    assert resp.status_code == 401
    assert world.client.get("/api/v1/auth/me", headers=world.a.employee.headers).status_code == 401


def test_user_without_password_cannot_log_in(runtime: Runtime, client: TestClient) -> None:
    make_user(runtime, "nopw@operator.example", ["auditor"], password=None)
    resp = client.post(
        "/api/v1/auth/login", json={"email": "nopw@operator.example", "password": PASSWORD}
    )
    assert resp.status_code == 401
