"""The operator admin's pages over HTTP: dashboard, PoPs and enrolment, links, staff, tenants.

Each form's success changes the store through the service the API uses (checked through the
API), each refusal is shown next to its field and stores nothing, and tenant roles get 403
(404 for another tenant's object).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.support.console import ConsoleClient, as_person
from tests.support.world import PASSWORD, World, uscc_for
from tongdao.auth.models import LoginAttempt
from tongdao.gateway.models import Gateway
from tongdao.tenancy.models import User
from tongdao.testing.outbox import link_token

API = "/api/v1"


def _api(world: World, method: str, path: str, **kwargs: Any) -> Any:
    answer = world.client.request(method, API + path, headers=world.admin.headers, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def _admin(world: World) -> ConsoleClient:
    return as_person(world, world.admin)


def _pop(world: World, name: str = "cn-bj-1", **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "region": "CN-BJ",
        "country": "CN",
        "endpoint_host": "203.0.113.10",
        **extra,
    }
    created: dict[str, Any] = _api(world, "POST", "/pops", json=body)
    return created


def _error(html: str, field: str) -> str:
    found = re.search(rf'id="f-{re.escape(field)}-error">([^<]*)<', html)
    assert found, f"no error slot for {field}"
    return found.group(1)


def _form_error(html: str) -> str:
    found = re.search(r'id="form-error">([^<]*)<', html)
    return found.group(1) if found else ""


# --- dashboard ---------------------------------------------------------------------------------
def test_the_dashboard_shows_pops_gateways_tenants_and_alerts(world: World) -> None:
    pop = _pop(world)
    idle = _pop(world, "cn-sh-1", region="CN-SH", endpoint_host="203.0.113.11")
    token = _api(world, "POST", f"/pops/{pop['id']}/enrolments", json={})["token"]
    enrolled = world.client.post(f"{API}/gateway/enrol", json={"token": token, "hostname": "gw1"})
    assert enrolled.status_code == 201
    gateway_id = uuid.UUID(enrolled.json()["gateway_id"])
    client = _admin(world)

    page = client.get("/console/operator")
    assert page.status_code == 200
    html = page.text
    assert 'href="/console/operator"' in html  # the menu entry
    assert "cn-bj-1" in html and "gw1" in html
    # Never reported: offline, and an alert links to the PoP's page that fixes it.
    assert f'href="/console/operator/pops/{pop["id"]}">Open the PoP' in html
    assert "alert-gateway_offline" in html
    # The other PoP has no gateway at all.
    assert f'href="/console/operator/pops/{idle["id"]}">Enrol a gateway' in html
    # Tenants by state: both world tenants are applied.
    assert re.search(r"tenants\?state=applied\"><span class=\"count\">2</span>", html)

    # A report just now makes it online.
    now = world.runtime.clock()
    with world.runtime.db.session() as session:
        session.execute(update(Gateway).where(Gateway.id == gateway_id).values(last_seen_at=now))
        session.commit()
    html = client.get("/console/operator").text
    assert "alert-gateway_offline" not in html
    assert 'state-online">online' in html


def test_the_dashboard_alerts_on_an_expiring_licence_and_ownership(world: World) -> None:
    officer = world.operators["compliance_officer"].headers
    licences = world.client.get(f"{API}/operator/licences", headers=officer).json()["data"]
    soon = (world.runtime.clock() + timedelta(days=20)).date().isoformat()
    answer = world.client.patch(
        f"{API}/operator/licences/{licences[0]['id']}", json={"valid_to": soon}, headers=officer
    )
    assert answer.status_code == 200, answer.text
    world.clear_shareholders()
    answer = world.client.post(
        f"{API}/operator/shareholders",
        json={"name": "Overseas Telecom Ltd", "foreign": True, "stake_percent": "60"},
        headers=officer,
    )
    assert answer.status_code == 201, answer.text
    html = _admin(world).get("/console/operator").text
    assert "alert-licence_expiring" in html
    assert 'href="/console/compliance/licences">Renew the licence' in html
    assert "alert-ownership" in html
    assert 'href="/console/compliance/licences#holders-title">Fix the shareholder register' in html


def test_the_dashboard_in_chinese(world: World) -> None:
    client = _admin(world)
    client.post("/console/language", data={"language": "zh_CN", "next": "/console/operator"})
    html = client.get("/console/operator").text
    assert '<html lang="zh-CN">' in html
    assert "运营" in html


# --- PoPs ----------------------------------------------------------------------------------------
def test_a_pop_is_created_from_its_form(world: World) -> None:
    client = _admin(world)
    page = client.get("/console/operator/pops")
    assert page.status_code == 200 and "No PoPs yet" in page.text
    answer = client.post(
        "/console/operator/pops",
        {
            "name": "cn-bj-9",
            "region": "CN-BJ",
            "country": "CN",
            "endpoint_host": "pop9.example.net",
            "port_min": "51820",
            "port_max": "51900",
            "max_rate_mbps": "",
            "state": "active",
        },
    )
    assert answer.status_code == 303
    pops = _api(world, "GET", "/pops")["data"]
    assert [(p["name"], p["port_max"], p["max_rate_mbps"]) for p in pops] == [
        ("cn-bj-9", 51900, 10_000)
    ]
    assert answer.headers["location"] == f"/console/operator/pops/{pops[0]['id']}?done=created"
    detail = client.get(answer.headers["location"])
    assert "Enrol its gateway next" in detail.text


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ("name", {"name": ""}, "at least 1 character"),
        ("country", {"country": "XX"}, ""),
        ("port_min", {"port_min": "many"}, "integer"),
        ("endpoint_host", {"endpoint_host": "not a host!"}, ""),
    ],
)
def test_a_refused_pop_shows_the_error_next_to_its_field(
    world: World, field: str, values: dict[str, str], expected: str
) -> None:
    form = {
        "name": "cn-bj-8",
        "region": "CN-BJ",
        "country": "CN",
        "endpoint_host": "203.0.113.8",
        "state": "active",
        **values,
    }
    answer = _admin(world).post("/console/operator/pops", form)
    assert answer.status_code == 422
    message = _error(answer.text, field)
    assert message and expected in message
    assert 'aria-invalid="true"' in answer.text
    assert f'value="{form["endpoint_host"]}"' in answer.text  # the entered values stay
    assert _api(world, "GET", "/pops")["count"] == 0


def test_a_duplicate_pop_name_is_refused_on_its_field(world: World) -> None:
    _pop(world)
    answer = _admin(world).post(
        "/console/operator/pops",
        {"name": "cn-bj-1", "region": "CN-BJ", "country": "CN", "endpoint_host": "203.0.113.9"},
    )
    assert answer.status_code == 409
    assert _error(answer.text, "name") == "already in use"


def test_the_pops_list_filters_by_state(world: World) -> None:
    _pop(world)
    _pop(world, "cn-sh-1", region="CN-SH", state="disabled")
    client = _admin(world)
    html = client.get("/console/operator/pops?filter_state=disabled").text
    assert ">cn-sh-1</a>" in html and ">cn-bj-1</a>" not in html
    refused = client.get("/console/operator/pops?filter_state=sleeping")
    assert refused.status_code == 422 and _error(refused.text, "filter_state")


def test_an_enrolment_token_is_shown_once_with_the_command(world: World) -> None:
    pop = _pop(world)
    client = _admin(world)
    answer = client.post(f"/console/operator/pops/{pop['id']}/enrolments", {"ttl_hours": "2"})
    assert answer.status_code == 201
    command = re.search(r'id="enrol-command"[^>]*>([^<]+)</pre>', answer.text)
    assert command
    server = world.runtime.settings.link_base_url
    token = re.search(r"--token (tde_\S+)", command.group(1))
    assert token
    assert command.group(1) == (
        f"tongdao gateway run --server {server} --token {token.group(1)} "
        "--state-dir /var/lib/tongdao"
    )
    # The page does not show it again; the token works once, at the API the agent calls.
    again = client.get(f"/console/operator/pops/{pop['id']}")
    assert token.group(1) not in again.text
    enrol = world.client.post(
        f"{API}/gateway/enrol", json={"token": token.group(1), "hostname": "gw-a"}
    )
    assert enrol.status_code == 201
    assert (
        world.client.post(f"{API}/gateway/enrol", json={"token": token.group(1)}).status_code == 401
    )
    listed = client.get(f"/console/operator/pops/{pop['id']}").text
    assert "gw-a" in listed


def test_an_enrolment_outside_its_bounds_is_refused_on_its_field(world: World) -> None:
    pop = _pop(world)
    answer = _admin(world).post(
        f"/console/operator/pops/{pop['id']}/enrolments", {"ttl_hours": "500"}
    )
    assert answer.status_code == 422
    assert "168" in _error(answer.text, "ttl_hours")
    assert "tde_" not in answer.text


def test_a_gateway_credential_is_revoked_from_the_pop_page(world: World) -> None:
    pop = _pop(world)
    token = _api(world, "POST", f"/pops/{pop['id']}/enrolments", json={})["token"]
    gateway = world.client.post(f"{API}/gateway/enrol", json={"token": token}).json()
    client = _admin(world)
    answer = client.post(
        f"/console/operator/pops/{pop['id']}/gateways/{gateway['gateway_id']}/revoke"
    )
    assert answer.status_code == 303
    listed = _api(world, "GET", f"/pops/{pop['id']}/gateways")["data"]
    assert listed[0]["revoked_reason"] == "revoked"
    assert "revoked" in client.get(answer.headers["location"]).text
    # A credential of another PoP is not found through this one.
    other = _pop(world, "cn-sh-1", region="CN-SH")
    wrong = client.post(
        f"/console/operator/pops/{other['id']}/gateways/{gateway['gateway_id']}/revoke"
    )
    assert wrong.status_code == 404


def test_a_pop_is_disabled_and_enabled(world: World) -> None:
    pop = _pop(world)
    client = _admin(world)
    answer = client.post(f"/console/operator/pops/{pop['id']}/state", {"state": "disabled"})
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=disabled")
    assert _api(world, "GET", f"/pops/{pop['id']}")["state"] == "disabled"
    answer = client.post(f"/console/operator/pops/{pop['id']}/state", {"state": "active"})
    assert answer.status_code == 303
    assert _api(world, "GET", f"/pops/{pop['id']}")["state"] == "active"


def test_an_unknown_pop_is_404(world: World) -> None:
    client = _admin(world)
    assert client.get(f"/console/operator/pops/{uuid.uuid4()}").status_code == 404
    assert client.get("/console/operator/pops/not-an-id").status_code == 404


# --- links ---------------------------------------------------------------------------------------
def test_a_link_is_recorded_and_a_crossing_needs_its_approval(world: World) -> None:
    bj = _pop(world)
    fra = _pop(world, "de-fra-1", region="DE-HE", country="DE", endpoint_host="198.51.100.7")
    client = _admin(world)
    form = {
        "name": "bj-fra",
        "pop_a_id": bj["id"],
        "pop_b_id": fra["id"],
        "circuit_ref": "CT-GLOBAL-42",
        "approval_ref": "",
        "capacity_mbps": "200",
        "state": "active",
    }
    refused = client.post("/console/operator/links", form)
    assert refused.status_code == 409
    assert _error(refused.text, "approval_ref") == "required for an active cross-border link"
    assert "crossborder.registered_link" in _form_error(refused.text)
    assert _api(world, "GET", "/links")["count"] == 0
    answer = client.post("/console/operator/links", {**form, "approval_ref": "MIIT-2026-7"})
    assert answer.status_code == 303
    links = _api(world, "GET", "/links")["data"]
    assert [(x["name"], x["approval_ref"], x["capacity_mbps"]) for x in links] == [
        ("bj-fra", "MIIT-2026-7", 200)
    ]
    html = client.get(answer.headers["location"]).text
    assert "The link is recorded." in html and "bj-fra" in html


def test_a_cross_border_link_is_enabled_once_its_approval_is_recorded(world: World) -> None:
    bj = _pop(world)
    fra = _pop(world, "de-fra-1", region="DE-HE", country="DE", endpoint_host="198.51.100.7")
    link = _api(
        world,
        "POST",
        "/links",
        json={
            "name": "bj-fra",
            "pop_a_id": bj["id"],
            "pop_b_id": fra["id"],
            "circuit_ref": "CT-GLOBAL-42",
            "capacity_mbps": 200,
            "state": "disabled",
        },
    )
    client = _admin(world)
    page = f"/console/operator/links/{link['id']}"
    assert "bj-fra" in client.get(page).text
    form = {"name": "bj-fra", "circuit_ref": "CT-GLOBAL-42", "capacity_mbps": "200"}
    refused = client.post(page, {**form, "approval_ref": "", "state": "active"})
    assert refused.status_code == 409
    assert _error(refused.text, "approval_ref") == "required for an active cross-border link"
    assert _api(world, "GET", f"/links/{link['id']}")["state"] == "disabled"
    answer = client.post(page, {**form, "approval_ref": "MIIT-2026-7", "state": "active"})
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=saved")
    saved = _api(world, "GET", f"/links/{link['id']}")
    assert (saved["state"], saved["approval_ref"]) == ("active", "MIIT-2026-7")
    assert client.get(f"/console/operator/links/{uuid.uuid4()}").status_code == 404
    auditor = as_person(world, world.operators["auditor"])
    assert "Save the link" not in auditor.get(page).text
    assert auditor.post(page, {**form, "state": "disabled"}).status_code == 403


def test_a_link_needs_two_different_pops(world: World) -> None:
    bj = _pop(world)
    _pop(world, "cn-sh-1", region="CN-SH")
    answer = _admin(world).post(
        "/console/operator/links",
        {
            "name": "loop",
            "pop_a_id": bj["id"],
            "pop_b_id": bj["id"],
            "circuit_ref": "X",
            "capacity_mbps": "0",
            "state": "active",
        },
    )
    assert answer.status_code == 422
    assert _error(answer.text, "capacity_mbps")
    assert _api(world, "GET", "/links")["count"] == 0


# --- staff ---------------------------------------------------------------------------------------
def test_a_staff_member_is_invited_by_mail(world: World) -> None:
    client = _admin(world)
    assert "auditor@operator.example" in client.get("/console/operator/staff").text
    answer = client.post(
        "/console/operator/staff",
        {"email": "new.noc@operator.example", "display_name": "New NOC", "roles": "auditor"},
    )
    assert answer.status_code == 303
    html = client.get(answer.headers["location"]).text
    assert "The invitation is on its way" in html
    listed = _api(world, "GET", "/operator/staff?email=new.noc@operator.example")["data"]
    assert listed[0]["roles"] == ["auditor"]
    # The invitation's link lets them choose their password and sign in.
    outbox = world.runtime.settings.data_dir / "outbox"
    secret = link_token(outbox, "new.noc@operator.example", timeout=20)
    chosen = world.client.post(
        f"{API}/auth/password-reset/complete",
        json={"token": secret, "new_password": PASSWORD},
    )
    assert chosen.status_code == 204, chosen.text
    signed_in = world.client.post(
        f"{API}/auth/login", json={"email": "new.noc@operator.example", "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text


def test_a_refused_invitation_stays_on_its_fields(world: World) -> None:
    client = _admin(world)
    answer = client.post(
        "/console/operator/staff", {"email": "not-an-address", "display_name": "X"}
    )
    assert answer.status_code == 422
    assert _error(answer.text, "email")
    assert _error(answer.text, "roles")
    taken = client.post(
        "/console/operator/staff",
        {"email": "auditor@operator.example", "display_name": "Dup", "roles": "auditor"},
    )
    assert taken.status_code == 409 and _error(taken.text, "email")
    assert _api(world, "GET", "/operator/staff")["count"] == 4


def test_staff_roles_state_reset_and_unlock(world: World) -> None:
    auditor = world.operators["auditor"]
    client = _admin(world)
    base = f"/console/operator/staff/{auditor.user_id}"
    assert client.get(base).status_code == 200
    answer = client.post(f"{base}/roles", {"roles": ["auditor", "billing_clerk"]})
    assert answer.status_code == 303
    assert _api(world, "GET", f"/operator/staff/{auditor.user_id}")["roles"] == [
        "auditor",
        "billing_clerk",
    ]
    refused = client.post(f"{base}/roles", {})
    assert refused.status_code == 422 and _error(refused.text, "roles")
    answer = client.post(f"{base}/state", {"state": "disabled"})
    assert answer.status_code == 303
    assert _api(world, "GET", f"/operator/staff/{auditor.user_id}")["state"] == "disabled"
    # A disabled account gets no reset link: the refusal is shown, nothing is sent.
    refused = client.post(f"{base}/password-reset")
    assert refused.status_code == 409 and "enable them first" in refused.text
    client.post(f"{base}/state", {"state": "active"})
    answer = client.post(f"{base}/password-reset")
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=reset")
    with world.runtime.db.session() as session:
        person = session.get(User, auditor.user_id)
        assert person is not None and person.password_hash is None
        session.add(
            LoginAttempt(
                email="auditor@operator.example",
                source_ip="192.0.2.5",
                success=False,
                at=world.runtime.clock(),
            )
        )
        session.commit()
    answer = client.post(f"{base}/sign-in-unlock")
    assert answer.status_code == 303
    with world.runtime.db.session() as session:
        left = session.scalars(select(LoginAttempt).where(LoginAttempt.cleared_at.is_(None))).all()
    assert left == []


def test_the_last_operator_admin_cannot_be_demoted(world: World) -> None:
    client = _admin(world)
    answer = client.post(
        f"/console/operator/staff/{world.admin.user_id}/roles", {"roles": "auditor"}
    )
    assert answer.status_code == 409
    assert "no active operator admin" in _form_error(answer.text)
    assert _api(world, "GET", f"/operator/staff/{world.admin.user_id}")["roles"] == [
        "operator_admin"
    ]


def test_a_tenant_user_is_not_a_staff_member(world: World) -> None:
    client = _admin(world)
    assert client.get(f"/console/operator/staff/{world.a.admin.user_id}").status_code == 404
    answer = client.post(
        f"/console/operator/staff/{world.a.admin.user_id}/state", {"state": "disabled"}
    )
    assert answer.status_code == 404


def test_staff_pages_follow_the_permissions(world: World) -> None:
    clerk = as_person(world, world.operators["billing_clerk"])
    assert clerk.get("/console/operator/staff").status_code == 403
    auditor = as_person(world, world.operators["auditor"])
    html = auditor.get("/console/operator/staff").text
    assert "Invite a staff member" not in html
    answer = auditor.post(
        f"/console/operator/staff/{world.admin.user_id}/state", {"state": "disabled"}
    )
    assert answer.status_code == 403


# --- tenants -------------------------------------------------------------------------------------
def test_tenants_are_listed_filtered_searched_and_paginated(world: World) -> None:
    for n in range(30):
        _api(world, "POST", "/tenants", json={"name_en": f"Applicant {n:02d}", "uscc": uscc_for(n)})
    client = _admin(world)
    first = client.get("/console/operator/tenants")
    assert first.status_code == 200
    assert "32 tenants" in first.text
    cursor = re.search(r'href="\?cursor=([^"]+)"', first.text)
    assert cursor
    second = client.get(f"/console/operator/tenants?cursor={cursor.group(1)}")
    assert second.status_code == 200 and "Applicant" in second.text
    found = client.get("/console/operator/tenants?q=Tenant+A").text
    assert "Tenant A" in found and "Applicant 01" not in found
    by_uscc = client.get(f"/console/operator/tenants?q={uscc_for(7)}").text
    assert "Applicant 07" in by_uscc and "Applicant 08" not in by_uscc
    none = client.get("/console/operator/tenants?state=suspended").text
    assert "No tenant matches" in none
    refused = client.get("/console/operator/tenants?state=asleep")
    assert refused.status_code == 422 and _error(refused.text, "state")


def test_a_tenant_is_created_from_its_form(world: World) -> None:
    client = _admin(world)
    answer = client.post(
        "/console/operator/tenants",
        {
            "name_en": "Acme Beijing",
            "name_zh": "阿克米北京",
            "uscc": uscc_for(901),
            "contact_email": "it@acme.example",
            "dns_servers": "192.0.2.53, 198.51.100.53",
            "foreign_invested": "yes",
            "foreign_invested_evidence": "FIE-2026-1",
            "ipv4_pool_prefixlen": "24",
        },
    )
    assert answer.status_code == 303, answer.text
    made = _api(world, "GET", f"/tenants?uscc={uscc_for(901)}")["data"][0]
    assert made["dns_servers"] == ["192.0.2.53", "198.51.100.53"]
    assert made["foreign_invested"] is True and made["state"] == "applied"
    assert made["ipv4_pool"].endswith("/24")
    html = client.get(answer.headers["location"]).text
    assert "Acme Beijing" in html and "It waits for vetting" in html


def test_a_refused_tenant_shows_its_errors_and_stores_nothing(world: World) -> None:
    client = _admin(world)
    answer = client.post(
        "/console/operator/tenants",
        {"name_en": "Bad", "uscc": "123", "dns_servers": "not-an-ip", "contact_email": "x@"},
    )
    assert answer.status_code == 422
    assert _error(answer.text, "uscc")
    assert _error(answer.text, "dns_servers")
    assert _error(answer.text, "contact_email")
    assert 'value="Bad"' in answer.text
    assert _api(world, "GET", "/tenants")["count"] == 2
    dup = client.post("/console/operator/tenants", {"name_en": "Dup", "uscc": world.a.data["uscc"]})
    assert dup.status_code == 409 and _error(dup.text, "uscc") == "already in use"


def test_a_tenant_detail_and_its_state_changes(world: World) -> None:
    client = _admin(world)
    officer = as_person(world, world.operators["compliance_officer"])
    base = f"/console/operator/tenants/{world.a.id}"
    html = client.get(base).text
    assert "Tenant A" in html
    assert re.search(r"<dt>Users</dt><dd>2</dd>", html)
    assert re.search(r"<dt>Devices</dt><dd>0</dd>", html)
    # Vetting is the compliance officer's (separation of duties): the admin is not offered it,
    # and a post anyway is refused naming the role that may.
    assert 'value="under_review"' not in html and 'value="rejected"' not in html
    refused = client.post(f"{base}/state", {"state": "under_review"})
    assert refused.status_code == 403 and "compliance_officer" in refused.text
    # Rejecting needs the reason: shown next to the reason field, nothing changed.
    refused = officer.post(f"{base}/state", {"state": "rejected"})
    assert refused.status_code == 422
    assert _error(refused.text, "state_reason") == "give the reason for the rejection"
    assert _api(world, "GET", f"/tenants/{world.a.id}")["state"] == "applied"
    for state in ("under_review", "approved"):
        answer = officer.post(f"{base}/state", {"state": state})
        assert answer.status_code == 303, (state, answer.text)
        assert _api(world, "GET", f"/tenants/{world.a.id}")["state"] == state
    for state in ("active", "suspended"):
        answer = client.post(f"{base}/state", {"state": state})
        assert answer.status_code == 303, (state, answer.text)
        assert _api(world, "GET", f"/tenants/{world.a.id}")["state"] == state
    wrong = client.post(f"{base}/state", {"state": "active", "state_reason": ""})
    assert wrong.status_code == 303
    wrong = client.post(f"{base}/state", {"state": "applied"})
    assert wrong.status_code == 422 and "active tenant can move to" in _error(wrong.text, "state")
    answer = client.post(f"{base}/state", {"state": "terminated", "state_reason": "contract ended"})
    assert answer.status_code == 303
    tenant = _api(world, "GET", f"/tenants/{world.a.id}")
    assert (tenant["state"], tenant["state_reason"]) == ("terminated", "contract ended")


def test_tenant_pages_are_for_operator_staff(world: World) -> None:
    tenant_admin = as_person(world, world.a.admin)
    assert tenant_admin.get("/console/operator/tenants").status_code == 403
    assert tenant_admin.get(f"/console/operator/tenants/{world.a.id}").status_code == 403
    assert tenant_admin.get(f"/console/operator/tenants/{world.b.id}").status_code == 404
    answer = tenant_admin.post(f"/console/operator/tenants/{world.b.id}/state", {"state": "active"})
    assert answer.status_code == 404
    assert _api(world, "GET", f"/tenants/{world.b.id}")["state"] == "applied"
    auditor = as_person(world, world.operators["auditor"])
    html = auditor.get(f"/console/operator/tenants/{world.a.id}").text
    assert "Change the state" not in html
    refused = auditor.post(
        f"/console/operator/tenants/{world.a.id}/state", {"state": "under_review"}
    )
    assert refused.status_code == 403


def test_one_account_is_not_both_operator_admin_and_compliance_officer(world: World) -> None:
    client = _admin(world)
    refused = client.post(
        f"/console/operator/staff/{world.admin.user_id}/roles",
        {"roles": ["operator_admin", "compliance_officer"]},
    )
    assert refused.status_code == 422
    assert "separate duties" in _error(refused.text, "roles")
    assert _api(world, "GET", f"/operator/staff/{world.admin.user_id}")["roles"] == [
        "operator_admin"
    ]
    # Nor does the admin make another account an officer: refused next to the roles.
    auditor = world.operators["auditor"].user_id
    refused = client.post(
        f"/console/operator/staff/{auditor}/roles", {"roles": ["compliance_officer"]}
    )
    assert refused.status_code == 403
    assert "given and taken by a compliance officer" in _error(refused.text, "roles")
    assert _api(world, "GET", f"/operator/staff/{auditor}")["roles"] == ["auditor"]
