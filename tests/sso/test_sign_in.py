"""Employees sign in to the console through their tenant's own OpenID Provider: a real one
(django-oidc-provider in its own process, tests/support/oidc_provider.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.conftest import both_stores
from tests.sso.support import API, at_provider, begin, connect, me, session_of, sign_in
from tests.support.console import anonymous
from tests.support.oidc_provider import IdTokenFault, OidcProvider, SignInRefused
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.sso.models import SsoIdentity
from tongdao.sso.oidc import DISCOVERY
from tongdao.web.console import SESSION_COOKIE


def _audit(world: World, action: str) -> list[AuditEvent]:
    with world.runtime.db.session() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
            )
        )


def _last_refusal(world: World) -> str:
    events = _audit(world, "login_failed")
    assert events, "no refusal was audited"
    reason: str = events[-1].after["reason"]
    return reason


@both_stores
def test_an_invited_employee_signs_in_and_is_then_known_by_issuer_and_subject(
    world: World, app: FastAPI, oidc_provider: OidcProvider
) -> None:
    sso = connect(world, oidc_provider)
    assert "client_secret" not in sso.settings and sso.settings["client_secret_set"] is True
    user = oidc_provider.add_user("employee@a.example")

    response = sign_in(app, oidc_provider, user)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/home"
    assert me(world, session_of(response))["email"] == "employee@a.example"

    # Linked by issuer + subject: the next sign-in finds the same user by them.
    oidc_provider.set_user_claims(user, {"email": "renamed@a.example"})
    response = sign_in(app, oidc_provider, user, email="employee@a.example")
    assert response.status_code == 303, response.text
    assert me(world, session_of(response))["email"] == "employee@a.example"
    with world.runtime.db.session() as session:
        identities = session.scalars(select(SsoIdentity)).all()
        assert [(i.issuer, i.subject) for i in identities] == [(oidc_provider.issuer, user.sub)]
        assert identities[0].user_id == world.a.employee.user_id
    logins = [e for e in _audit(world, "login") if (e.after or {}).get("method") == "sso"]
    assert len(logins) == 2 and logins[0].tenant_id == world.a.id


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("bad_signature", "signature"),
        ("foreign_key", "signature"),
        ("wrong_audience", "aud"),
        ("wrong_nonce", "nonce"),
        ("wrong_issuer", "iss"),
        ("expired", "expired"),
    ],
)
def test_a_bad_id_token_is_refused(
    world: World, app: FastAPI, oidc_provider: OidcProvider, fault: IdTokenFault, reason: str
) -> None:
    connect(world, oidc_provider)
    user = oidc_provider.add_user("employee@a.example")
    oidc_provider.inject_id_token_fault(fault)
    response = sign_in(app, oidc_provider, user)
    assert response.status_code == 401, response.text
    assert "Single sign-on was refused" in response.text
    assert session_of_absent(response)
    assert reason in _last_refusal(world)
    # The next, good token lets the employee in.
    assert sign_in(app, oidc_provider, user).status_code == 303


def session_of_absent(response: object) -> bool:
    return SESSION_COOKIE not in getattr(response, "cookies", {})


def test_key_rotation_at_the_provider_is_followed(
    world: World, app: FastAPI, oidc_provider: OidcProvider
) -> None:
    connect(world, oidc_provider)
    user = oidc_provider.add_user("employee@a.example")
    assert sign_in(app, oidc_provider, user).status_code == 303
    fetches = DISCOVERY.jwks_fetches
    oidc_provider.rotate_signing_key()
    assert sign_in(app, oidc_provider, user).status_code == 303
    assert DISCOVERY.jwks_fetches == fetches + 1  # one fetch for the unknown kid
    assert sign_in(app, oidc_provider, user).status_code == 303
    assert DISCOVERY.jwks_fetches == fetches + 1


def test_a_replayed_or_foreign_callback_is_refused(
    world: World, app: FastAPI, oidc_provider: OidcProvider
) -> None:
    connect(world, oidc_provider)
    user = oidc_provider.add_user("employee@a.example")
    browser, url = begin(app, user.email)
    callback = at_provider(oidc_provider, url, user)
    # Another browser (no binding cookie) cannot finish it ...
    stranger = anonymous(app)
    assert stranger.get(callback).status_code == 401
    assert "another browser" in _last_refusal(world)
    # ... the state is still fresh for its own browser, once.
    binding = browser.cookies.get("tongdao_sso")
    assert binding
    assert browser.get(callback).status_code == 303
    assert "tongdao_sso" not in browser.cookies  # spent: the browser forgets it
    browser.cookies.set("tongdao_sso", binding)  # a replay with the cookie kept
    replay = browser.get(callback)
    assert replay.status_code == 401
    assert "used already" in _last_refusal(world)
    # A made-up state is refused too.
    assert browser.get("/console/sso/callback?state=forged&code=x").status_code == 401


def test_who_may_sign_in(world: World, app: FastAPI, oidc_provider: OidcProvider) -> None:
    connect(world, oidc_provider)
    # Nobody invited with this address, just-in-time creation off: refused.
    stranger = oidc_provider.add_user("newcomer@a.example")
    assert sign_in(app, oidc_provider, stranger).status_code == 401
    assert "just-in-time is off" in _last_refusal(world)
    # A disabled Tongdao user is refused even though the provider lets them in.
    admin = world.a.admin.headers
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/users/{world.a.employee.user_id}",
        json={"state": "disabled"},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    employee = oidc_provider.add_user("employee@a.example")
    assert sign_in(app, oidc_provider, employee).status_code == 401
    assert _last_refusal(world) == "user is disabled"
    # A user the provider disabled cannot get a code at all.
    oidc_provider.set_user_active(stranger, False)
    with pytest.raises(SignInRefused):
        sign_in(app, oidc_provider, stranger)


def test_an_unverified_address_does_not_link(
    world: World, app: FastAPI, oidc_providers: Callable[..., OidcProvider]
) -> None:
    provider = oidc_providers(email_verified="false")
    connect(world, provider)
    user = provider.add_user("employee@a.example")
    assert sign_in(app, provider, user).status_code == 401
    assert "does not vouch" in _last_refusal(world)


def test_entra_id_vouches_with_xms_edov(
    world: World, app: FastAPI, oidc_providers: Callable[..., OidcProvider]
) -> None:
    provider = oidc_providers(email_verified="omit")  # as Entra ID: no email_verified
    connect(world, provider, email_trust="entra_xms_edov")
    user = provider.add_user("employee@a.example")
    assert sign_in(app, provider, user).status_code == 401
    assert "does not vouch" in _last_refusal(world)
    provider.set_user_claims(user, {"xms_edov": True})
    response = sign_in(app, provider, user)
    assert response.status_code == 303, response.text
    assert me(world, session_of(response))["email"] == "employee@a.example"


def test_just_in_time_creates_an_employee_without_verified_identity(
    world: World, app: FastAPI, oidc_provider: OidcProvider
) -> None:
    connect(world, oidc_provider, jit_users=True)
    user = oidc_provider.add_user("li.na@a.example", given_name="Na", family_name="Li")
    response = sign_in(app, oidc_provider, user)
    assert response.status_code == 303, response.text
    created = me(world, session_of(response))
    assert created["email"] == "li.na@a.example"
    assert created["roles"] == ["employee"]
    assert created["tenant_id"] == str(world.a.id)
    assert created["identity_verified_at"] is None  # SSO does not verify real identity
    assert [e.object_id for e in _audit(world, "sso_user_created")] == [created["id"]]


def test_two_tenants_with_their_own_providers_never_see_each_others_users(
    world: World, app: FastAPI, oidc_providers: Callable[..., OidcProvider]
) -> None:
    idp_a, idp_b = oidc_providers(), oidc_providers()
    connect(world, idp_a, "a", jit_users=True)
    connect(world, idp_b, "b", jit_users=True)
    # Tenant B cannot have a.example approved: it is tenant A's.
    resp = world.client.post(
        f"{API}/tenants/{world.b.id}/sso/domains",
        json={"domain": "a.example", "evidence": "we own it too, honestly"},
        headers=world.b.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    resp = world.client.post(
        f"{API}/tenants/{world.b.id}/sso/domains/{resp.json()['id']}/decision",
        json={"decision": "approve"},
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 409, resp.text
    # The form sends an a.example address to A's provider.
    _browser, url = begin(app, "employee@a.example")
    assert url.startswith(idp_a.base_url)
    # B's provider vouches for an a.example address, through B's sign-in link: refused.
    intruder = idp_b.add_user("employee@a.example")
    browser = anonymous(app)
    start = browser.get(f"/console/sign-in/sso?tenant={world.b.id}")
    assert start.status_code == 303 and start.headers["location"].startswith(idp_b.base_url)
    refused = browser.get(at_provider(idp_b, start.headers["location"], intruder))
    assert refused.status_code == 401, refused.text
    assert "a.example is not allowed" in _last_refusal(world)
    # Each tenant's employee lands in their own tenant.
    for idp, email, tenant in (
        (idp_a, "new@a.example", world.a),
        (idp_b, "new@b.example", world.b),
    ):
        response = sign_in(app, idp, idp.add_user(email))
        assert response.status_code == 303, response.text
        assert me(world, session_of(response))["tenant_id"] == str(tenant.id)
    with world.runtime.db.session() as session:
        count = session.scalar(select(func.count()).select_from(SsoIdentity))
    assert count == 2
