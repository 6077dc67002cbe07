"""The operator admin's invitation of a tenant's first admin, and the outgoing-mail page.

Both call what the API calls (``POST /tenants/{id}/users`` → UserResource.create and its
invitation mail; ``PUT /operator/mail`` → mail.service.put_settings); checked through the API
and a real SMTP server on loopback (aiosmtpd).
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.console import ConsoleClient, as_person
from tests.support.smtp import SmtpServer
from tests.support.world import PASSWORD, World
from tongdao.testing.outbox import link_token

API = "/api/v1"


def _api(world: World, method: str, path: str, **kwargs: Any) -> Any:
    answer = world.client.request(method, API + path, headers=world.admin.headers, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def _admin(world: World) -> ConsoleClient:
    return as_person(world, world.admin)


def _error(html: str, field: str) -> str:
    found = re.search(rf'id="f-{re.escape(field)}-error">([^<]*)<', html)
    assert found, f"no error slot for {field}"
    return found.group(1)


# --- a tenant's first admin -------------------------------------------------------------------
def test_the_operator_admin_invites_a_tenant_admin_from_the_tenant_page(world: World) -> None:
    made = _api(world, "POST", "/tenants", json={"name_en": "Newco", "uscc": "91110000600037341L"})
    base = f"/console/operator/tenants/{made['id']}"
    client = _admin(world)
    html = client.get(base).text
    assert "Invite one of the tenant&#39;s people" in html or "Invite one of the tenant's" in html
    answer = client.post(
        f"{base}/users",
        {"email": "it.lead@newco.example", "display_name": "Li Lei", "roles": "tenant_admin"},
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{base}?done=invited"
    assert "The invitation is on its way" in client.get(answer.headers["location"]).text
    users = _api(world, "GET", f"/tenants/{made['id']}/users")["data"]
    assert [(u["email"], u["roles"]) for u in users] == [
        ("it.lead@newco.example", ["tenant_admin"])
    ]
    # The invitation's link lets them choose a password and sign in as the tenant's admin.
    outbox = world.runtime.settings.data_dir / "outbox"
    secret = link_token(outbox, "it.lead@newco.example", timeout=20)
    chosen = world.client.post(
        f"{API}/auth/password-reset/complete", json={"token": secret, "new_password": PASSWORD}
    )
    assert chosen.status_code == 204, chosen.text
    signed_in = world.client.post(
        f"{API}/auth/login", json={"email": "it.lead@newco.example", "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text


def test_a_refused_invitation_is_shown_next_to_its_field_and_stores_nothing(
    world: World,
) -> None:
    base = f"/console/operator/tenants/{world.a.id}"
    client = _admin(world)
    listed = _api(world, "GET", f"/tenants/{world.a.id}/users")
    before, taken_email = listed["count"], listed["data"][0]["email"]
    bad = client.post(
        f"{base}/users", {"email": "not-an-address", "display_name": "X", "roles": "auditor"}
    )
    assert bad.status_code == 422
    assert _error(bad.text, "email")
    assert _error(bad.text, "roles")
    assert 'value="not-an-address"' in bad.text
    taken = client.post(
        f"{base}/users",
        {"email": taken_email, "display_name": "Again", "roles": "tenant_admin"},
    )
    assert taken.status_code == 409 and _error(taken.text, "email")
    assert _api(world, "GET", f"/tenants/{world.a.id}/users")["count"] == before


def test_only_the_operator_admin_invites_a_tenants_people(world: World) -> None:
    body = {"email": "x@a.example", "display_name": "X", "roles": "employee"}
    officer = as_person(world, world.operators["compliance_officer"])
    assert (
        "Invite one of the tenant"
        not in officer.get(f"/console/operator/tenants/{world.a.id}").text
    )
    assert officer.post(f"/console/operator/tenants/{world.a.id}/users", body).status_code == 403
    tenant_admin = as_person(world, world.a.admin)
    foreign = tenant_admin.post(f"/console/operator/tenants/{world.b.id}/users", body)
    assert foreign.status_code == 404
    own = tenant_admin.post(f"/console/operator/tenants/{world.a.id}/users", body)
    assert own.status_code == 403
    assert _api(world, "GET", f"/tenants/{world.a.id}/users?email=x@a.example")["count"] == 0


# --- outgoing mail ------------------------------------------------------------------------------
def test_the_mail_page_sets_the_relay_and_never_shows_the_password(world: World) -> None:
    client = _admin(world)
    html = client.get("/console/operator/mail").text
    assert "Outgoing mail" in html and "outbox directory" in html
    smtp = SmtpServer().start()
    try:
        answer = client.post(
            "/console/operator/mail",
            {
                "host": "127.0.0.1",
                "port": str(smtp.port),
                "security": "none",
                "sender": "noreply@operator.example",
                "username": "relay-user",
                "password": "s3cret-relay-pass",
            },
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/console/operator/mail?done=saved"
        html = client.get(answer.headers["location"]).text
        assert "The mail settings are saved" in html
        assert "s3cret-relay-pass" not in html
        assert "set (never shown)" in html
        assert "<dd>none (only to a relay on this machine)</dd>" in html
        stored = _api(world, "GET", "/operator/mail")
        assert (stored["host"], stored["port"], stored["security"]) == (
            "127.0.0.1",
            smtp.port,
            "none",
        )
        assert stored["password_set"] is True and stored["username"] == "relay-user"
        # Saving again with the password left empty keeps it; "forget" clears it.
        again = {
            "host": "127.0.0.1",
            "port": str(smtp.port),
            "security": "none",
            "sender": "noreply@operator.example",
        }
        assert client.post("/console/operator/mail", again).status_code == 303
        assert _api(world, "GET", "/operator/mail")["password_set"] is True
        again["clear_password"] = "yes"
        assert client.post("/console/operator/mail", again).status_code == 303
        assert _api(world, "GET", "/operator/mail")["password_set"] is False
        # Mail now leaves through the relay: a staff invitation reaches the SMTP server.
        invited = client.post(
            "/console/operator/staff",
            {"email": "noc2@operator.example", "display_name": "NOC 2", "roles": "auditor"},
        )
        assert invited.status_code == 303
        received = smtp.wait_for("noc2@operator.example", timeout=20)
        assert received.token
    finally:
        smtp.stop()


def test_a_refused_mail_setting_is_shown_next_to_its_field(world: World) -> None:
    client = _admin(world)
    bad = client.post(
        "/console/operator/mail",
        {"host": "", "port": "99999", "security": "starttls", "sender": "nobody"},
    )
    assert bad.status_code == 422
    for field in ("host", "port", "sender"):
        assert _error(bad.text, field), field
    plain = client.post(
        "/console/operator/mail",
        {"host": "198.51.100.25", "port": "25", "security": "none", "sender": "a@b.example"},
    )
    if world.runtime.settings.env.value != "development":
        assert plain.status_code == 422 and "loopback" in _error(plain.text, "security")
    assert _api(world, "GET", "/operator/mail")["configured"] is (plain.status_code == 303)


def test_the_mail_page_is_for_the_operator_admin(world: World) -> None:
    for role in ("compliance_officer", "auditor", "billing_clerk"):
        person = as_person(world, world.operators[role])
        assert person.get("/console/operator/mail").status_code == 403, role
        assert "/console/operator/mail" not in person.get("/console/operator/tenants").text
    tenant_admin = as_person(world, world.a.admin)
    assert tenant_admin.get("/console/operator/mail").status_code == 403
    body = {"host": "127.0.0.1", "port": "25", "security": "none", "sender": "a@b.example"}
    assert tenant_admin.post("/console/operator/mail", body).status_code == 403
    assert _api(world, "GET", "/operator/mail")["configured"] is False
