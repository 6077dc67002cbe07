"""The staff second-factor rule in the console: the operator admin turns it on (only when
signed in with a second factor), staff without one are sent to enrol and reach nothing else,
staff signed in by password alone are sent to sign in again, and the admin resets a
colleague's factors (not their own)."""

from __future__ import annotations

import pyotp
from sqlalchemy import select

from tests.support.console import as_person, csrf_of
from tests.support.world import PASSWORD, World
from tongdao.auth.models import ApiToken
from tongdao.auth.webauthn_models import WebAuthnCredential


def _with_factor(world: World, user_id: object, factor: str = "webauthn") -> None:
    """Mark the person's console sessions as signed in with a second factor (what a sign-in
    with a key does; the key ceremony itself is tested in tests/store and tests/browser)."""
    with world.runtime.db.session() as session:
        for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)):
            token.second_factor = factor
        session.add(
            WebAuthnCredential(
                user_id=user_id, name="Key", credential_id=f"c-{user_id}", public_key="AA"
            )
        )
        session.commit()


def test_rule_enrolment_and_reset(world: World) -> None:
    admin = as_person(world, world.admin)
    # Signed in by password alone, the admin may not turn the rule on (it would lock them out).
    page = admin.post("/console/second-factors", {"required_for_staff": "on"})
    assert page.status_code == 409 and "sign in with your own second factor first" in page.text
    _with_factor(world, world.admin.user_id)
    done = admin.post("/console/second-factors", {"required_for_staff": "on"})
    assert done.status_code == 303, done.text
    assert "Required" in admin.get("/console/second-factors").text

    # A staff member without a second factor: sent to enrol, nothing else opens.
    clerk = as_person(world, world.operators["billing_clerk"])
    home = clerk.get("/console/home")
    assert home.status_code == 303
    assert home.headers["location"] == "/console/account/keys?enrol=1"
    assert clerk.get("/console/billing").headers["location"] == "/console/account/keys?enrol=1"
    enrol = clerk.get("/console/account/keys?enrol=1")
    assert enrol.status_code == 200 and 'id="enrol-required"' in enrol.text
    assert clerk.get("/console/account").status_code == 200  # the authenticator app is there

    # A staff member who has a factor but whose session came from a password alone: sign in.
    auditor = as_person(world, world.operators["auditor"])
    with world.runtime.db.session() as session:
        session.add(
            WebAuthnCredential(
                user_id=world.operators["auditor"].user_id,
                name="Key",
                credential_id="c-auditor",
                public_key="AA",
            )
        )
        session.commit()
    assert auditor.get("/console/home").headers["location"].startswith("/console/sign-in")

    # Tenant people are not staff: unchanged.
    assert as_person(world, world.a.employee).get("/console/home").status_code == 200

    # The admin resets a colleague (their sessions end), never themselves.
    auditor_id = world.operators["auditor"].user_id
    reset = admin.post(f"/console/second-factors/staff/{auditor_id}/reset")
    assert reset.status_code == 303, reset.text
    with world.runtime.db.session() as session:
        left = session.scalars(
            select(WebAuthnCredential).where(WebAuthnCredential.user_id == auditor_id)
        ).all()
    assert left == []
    mine = admin.post(f"/console/second-factors/staff/{world.admin.user_id}/reset")
    assert mine.status_code == 403
    csrf_of(admin.get("/console/second-factors").text)


def test_adding_a_key_asks_the_app_code_when_totp_is_on(world: World) -> None:
    """With TOTP on, the key form asks the app's code too (a stolen session and the password
    must not add a key that skips the app), and refuses without it, next to the field."""
    client, headers = world.client, world.a.employee.headers
    secret = client.post("/api/v1/auth/totp", headers=headers).json()["secret"]
    body = {"code": pyotp.TOTP(secret).now(), "current_password": PASSWORD}
    assert client.post("/api/v1/auth/totp/confirm", json=body, headers=headers).status_code == 204
    employee = as_person(world, world.a.employee)
    assert 'name="totp_code"' in employee.get("/console/account/keys").text
    form = {"name": "Thief", "current_password": PASSWORD, "credential": '{"rawId": "AAAA"}'}
    page = employee.post("/console/account/keys", form)
    assert page.status_code == 422, page.text
    assert 'id="f-key-totp_code" name="totp_code"' in page.text
    assert 'aria-invalid="true"' in page.text.split('name="totp_code"')[1].split(">")[0]


def test_removing_a_key_asks_the_password(world: World) -> None:
    """The remove button of a key asks the password: a stolen session alone keeps no key
    from the account's owner."""
    employee = as_person(world, world.a.employee)
    with world.runtime.db.session() as session:
        key = WebAuthnCredential(
            user_id=world.a.employee.user_id, name="Key", credential_id="c-emp", public_key="AA"
        )
        session.add(key)
        session.commit()
        key_id = key.id
    assert 'name="current_password"' in employee.get("/console/account/keys").text
    page = employee.post(f"/console/account/keys/{key_id}/remove", {})
    assert page.status_code == 422 and "your password is wrong: the key stays" in page.text
    done = employee.post(f"/console/account/keys/{key_id}/remove", {"current_password": PASSWORD})
    assert done.status_code == 303, done.text
    with world.runtime.db.session() as session:
        assert session.get(WebAuthnCredential, key_id) is None
