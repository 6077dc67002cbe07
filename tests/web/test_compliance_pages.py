"""The compliance officer's pages over HTTP: the work queue and its decisions (tenants,
declared networks, identities), licences and shareholders, the dashboard. Each success is
checked through the API; each refusal shows next to its field and stores nothing."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import FastAPI

from tests.api.test_gateway import make_site
from tests.conftest import both_stores
from tests.support.console import as_person
from tests.support.privacy import identity_body
from tests.support.world import World, uscc_for
from tongdao.web import i18n

API = "/api/v1"


def officer_of(world: World) -> Any:
    return as_person(world, world.operators["compliance_officer"])


def api_get(world: World, path: str) -> dict[str, Any]:
    resp = world.client.get(f"{API}{path}", headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def field_error(html: str, name: str) -> str:
    found = re.search(rf'id="f-{name}-error">([^<]*)<', html)
    assert found, f"no error element for {name}"
    return found.group(1)


def new_tenant(world: World, uscc: str, **extra: Any) -> dict[str, Any]:
    resp = world.client.post(
        f"{API}/tenants",
        json={"name_en": f"Co {uscc}", "name_zh": "测试公司", "uscc": uscc, **extra},
        headers=world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


# --- the queue -----------------------------------------------------------------------------


@both_stores
def test_the_queue_lists_each_kind_of_item(world: World) -> None:
    site = make_site(world, ["198.51.100.0/24"])
    officer = officer_of(world)
    tenants = officer.get("/console/compliance")
    assert tenants.status_code == 200, tenants.text
    assert "Tenant A" in tenants.text and "Tenant B" in tenants.text
    assert f'href="/console/compliance/tenants/{world.a.id}"' in tenants.text
    networks = officer.get("/console/compliance?queue=networks")
    assert "198.51.100.0/24" in networks.text
    decl = site["declarations"][0]["id"]
    assert f'href="/console/compliance/networks/{decl}"' in networks.text
    identities = officer.get("/console/compliance?queue=identities")
    assert identities.status_code == 200
    # Every world user is verified: the queue says what to do next.
    assert "No tenant admin" in identities.text
    # Filters: a name, and a state outside the list is a field error.
    only_b = officer.get("/console/compliance", params={"q": "Tenant B"})
    assert "Tenant B" in only_b.text and "Tenant A" not in only_b.text
    bad = officer.get("/console/compliance", params={"state": "nonsense"})
    assert bad.status_code == 422
    assert field_error(bad.text, "state")


def test_the_queue_is_for_the_compliance_officer(world: World) -> None:
    for role in ("operator_admin", "auditor", "billing_clerk"):
        page = as_person(world, world.operators[role]).get("/console/compliance")
        assert page.status_code == 403, role
    page = as_person(world, world.a.admin).get("/console/compliance")
    assert page.status_code == 403
    nav = officer_of(world).get("/console/home").text
    assert 'href="/console/compliance"' in nav
    assert (
        'href="/console/compliance"' not in as_person(world, world.admin).get("/console/home").text
    )


# --- tenants -------------------------------------------------------------------------------


@both_stores
def test_approving_a_tenant_through_the_page_changes_its_state(world: World) -> None:
    officer = officer_of(world)
    path = f"/console/compliance/tenants/{world.b.id}"
    page = officer.get(path)
    assert page.status_code == 200
    assert "914403001922038216" in page.text
    assert "check character matches" in page.text
    review = officer.post(f"{path}/decision", {"state": "under_review", "state_reason": ""})
    assert review.status_code == 303, review.text
    assert api_get(world, f"/tenants/{world.b.id}")["state"] == "under_review"
    done = officer.post(f"{path}/decision", {"state": "approved", "state_reason": "documents ok"})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"{path}?done=approved"
    tenant = api_get(world, f"/tenants/{world.b.id}")
    assert (tenant["state"], tenant["state_reason"]) == ("approved", "documents ok")
    assert "The tenant is approved." in officer.get(done.headers["location"]).text


def test_a_rejection_without_a_reason_is_refused_next_to_the_field(world: World) -> None:
    officer = officer_of(world)
    path = f"/console/compliance/tenants/{world.b.id}"
    refused = officer.post(f"{path}/decision", {"state": "rejected", "state_reason": "  "})
    assert refused.status_code == 422
    assert field_error(refused.text, "state_reason") == "give the reason for the rejection"
    assert 'id="f-state_reason" name="state_reason" rows="4"' in refused.text
    assert api_get(world, f"/tenants/{world.b.id}")["state"] == "applied"
    rejected = officer.post(
        f"{path}/decision", {"state": "rejected", "state_reason": "business licence expired"}
    )
    assert rejected.status_code == 303
    tenant = api_get(world, f"/tenants/{world.b.id}")
    assert (tenant["state"], tenant["state_reason"]) == ("rejected", "business licence expired")


def test_a_rejection_message_is_translated_for_a_chinese_officer(world: World) -> None:
    officer = officer_of(world)
    officer.http.cookies.set("tongdao_lang", "zh_CN")
    refused = officer.post(
        f"/console/compliance/tenants/{world.b.id}/decision",
        {"state": "rejected", "state_reason": ""},
    )
    assert refused.status_code == 422
    assert '<html lang="zh-CN">' in refused.text
    assert field_error(refused.text, "state_reason") == i18n.Locale("zh_CN").gettext(
        "give the reason for the rejection"
    )
    assert field_error(refused.text, "state_reason") != "give the reason for the rejection"


def test_a_checksum_failure_is_verified_by_hand_on_the_page(world: World) -> None:
    tenant = new_tenant(world, "91350100M000100Y44")  # check character changed: Fujian
    officer = officer_of(world)
    path = f"/console/compliance/tenants/{tenant['id']}"
    page = officer.get(path)
    assert "check character does not match" in page.text
    assert "kyc.uscc" in page.text  # what blocks approval, with its rule
    officer.post(f"{path}/decision", {"state": "under_review"})
    refused = officer.post(f"{path}/decision", {"state": "approved", "state_reason": ""})
    assert refused.status_code == 409
    assert "verifies the code" in refused.text
    assert api_get(world, f"/tenants/{tenant['id']}")["state"] == "under_review"
    saved = officer.post(f"{path}/vetting", {"uscc_verified": "yes"})
    assert saved.status_code == 303, saved.text
    assert api_get(world, f"/tenants/{tenant['id']}")["needs_manual_verification"] is False
    assert officer.post(f"{path}/decision", {"state": "approved"}).status_code == 303
    assert api_get(world, f"/tenants/{tenant['id']}")["state"] == "approved"


def test_a_beijing_customer_needs_evidence_before_approval(world: World) -> None:
    tenant = new_tenant(world, uscc_for(11))  # Beijing
    officer = officer_of(world)
    path = f"/console/compliance/tenants/{tenant['id']}"
    officer.post(f"{path}/decision", {"state": "under_review"})
    refused = officer.post(f"{path}/decision", {"state": "approved"})
    assert refused.status_code == 409
    assert "kyc.foreign_invested_beijing" in refused.text
    assert field_error(refused.text, "foreign_invested")
    half = officer.post(f"{path}/vetting", {"foreign_invested": "yes"})
    assert half.status_code == 303
    refused = officer.post(f"{path}/decision", {"state": "approved"})
    assert field_error(refused.text, "foreign_invested_evidence")
    officer.post(
        f"{path}/vetting",
        {"foreign_invested": "yes", "foreign_invested_evidence": "回执 2026-0042"},
    )
    assert officer.post(f"{path}/decision", {"state": "approved"}).status_code == 303
    stored = api_get(world, f"/tenants/{tenant['id']}")
    assert (stored["state"], stored["foreign_invested_evidence"]) == ("approved", "回执 2026-0042")


def test_tenant_pages_answer_404_for_unknown_and_foreign_ids(world: World) -> None:
    officer = officer_of(world)
    assert officer.get("/console/compliance/tenants/not-a-uuid").status_code == 404
    missing = "/console/compliance/tenants/01a24aec-4702-7000-8e7b-300cbb3b930a"
    assert officer.get(missing).status_code == 404
    admin_a = as_person(world, world.a.admin)
    assert admin_a.get(f"/console/compliance/tenants/{world.b.id}").status_code == 404
    assert admin_a.get(f"/console/compliance/tenants/{world.a.id}").status_code == 403
    posted = admin_a.post(
        f"/console/compliance/tenants/{world.a.id}/decision", {"state": "under_review"}
    )
    assert posted.status_code == 403
    assert api_get(world, f"/tenants/{world.a.id}")["state"] == "applied"


# --- declared networks ---------------------------------------------------------------------


def test_a_declared_network_is_approved_and_rejected_with_a_reason(world: World) -> None:
    site = make_site(world, ["198.51.100.0/24", "203.0.113.0/24"])
    first, second = (d["id"] for d in site["declarations"])
    officer = officer_of(world)
    page = officer.get(f"/console/compliance/networks/{first}")
    assert page.status_code == 200
    assert "Tenant A" in page.text and "hq" in page.text
    approved = officer.post(f"/console/compliance/networks/{first}/approve", {"reason": ""})
    assert approved.status_code == 303, approved.text
    assert api_get(world, f"/declarations/{first}")["state"] == "approved"
    refused = officer.post(f"/console/compliance/networks/{second}/reject", {"reason": " "})
    assert refused.status_code == 422
    assert field_error(refused.text, "reason")
    assert api_get(world, f"/declarations/{second}")["state"] == "pending"
    rejected = officer.post(
        f"/console/compliance/networks/{second}/reject", {"reason": "not an office network"}
    )
    assert rejected.status_code == 303
    decl = api_get(world, f"/declarations/{second}")
    assert (decl["state"], decl["reason"]) == ("rejected", "not an office network")
    # Deciding again what is decided already is a conflict shown above the form.
    again = officer.post(f"/console/compliance/networks/{first}/approve", {"reason": ""})
    assert again.status_code == 409
    assert "already approved" in again.text


def test_network_pages_answer_404_for_another_tenants_declaration(world: World) -> None:
    site = make_site(world, ["198.51.100.0/24"])
    decl = site["declarations"][0]["id"]
    admin_b = as_person(world, world.b.admin)
    assert admin_b.get(f"/console/compliance/networks/{decl}").status_code == 404
    assert admin_b.post(f"/console/compliance/networks/{decl}/approve").status_code == 404
    assert (
        as_person(world, world.a.admin).get(f"/console/compliance/networks/{decl}").status_code
        == 403
    )
    assert api_get(world, f"/declarations/{decl}")["state"] == "pending"


# --- identities ----------------------------------------------------------------------------


def _new_admin(world: World, identity: bool = True) -> str:
    body: dict[str, Any] = {
        "email": "second-admin@a.example",
        "display_name": "Second Admin",
        "roles": ["tenant_admin"],
    }
    if identity:
        body.update(identity_body())
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/users", json=body, headers=world.admin.headers
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@both_stores
def test_a_tenant_admins_identity_is_verified_by_the_officer(world: World) -> None:
    user_id = _new_admin(world)
    officer = officer_of(world)
    queue = officer.get("/console/compliance?queue=identities")
    assert f'href="/console/compliance/identities/{user_id}"' in queue.text
    assert "complete: ready to verify" in queue.text
    page = officer.get(f"/console/compliance/identities/{user_id}")
    assert page.status_code == 200
    assert "Second Admin" in page.text
    # The ID number is shown masked, never in full.
    assert identity_body(1)["id_number"][:10] not in page.text
    done = officer.post(f"/console/compliance/identities/{user_id}/verify")
    assert done.status_code == 303, done.text
    user = api_get(world, f"/tenants/{world.a.id}/users/{user_id}")
    assert user["identity_verified_at"] is not None
    assert user_id not in officer.get("/console/compliance?queue=identities").text
    withdrawn = officer.post(f"/console/compliance/identities/{user_id}/withdraw")
    assert withdrawn.status_code == 303
    assert api_get(world, f"/tenants/{world.a.id}/users/{user_id}")["identity_verified_at"] is None


def test_an_incomplete_identity_is_refused_with_the_missing_fields(world: World) -> None:
    user_id = _new_admin(world, identity=False)
    officer = officer_of(world)
    refused = officer.post(f"/console/compliance/identities/{user_id}/verify")
    assert refused.status_code == 409
    assert "identity.real_name" in refused.text
    assert field_error(refused.text, "legal_name")
    assert api_get(world, f"/tenants/{world.a.id}/users/{user_id}")["identity_verified_at"] is None
    # Another tenant's admin cannot even see that the user exists.
    assert (
        as_person(world, world.b.admin).get(f"/console/compliance/identities/{user_id}").status_code
        == 404
    )


# --- licences and shareholders ---------------------------------------------------------------


def test_a_licence_is_added_and_a_bad_one_refused_next_to_its_field(world: World) -> None:
    officer = officer_of(world)
    page = officer.get("/console/compliance/licences")
    assert page.status_code == 200
    form = {
        "number": "沪B1-20260042",
        "service_codes": "B13, B14",
        "issuing_authority": "上海市通信管理局",
        "provinces": "31",
        "valid_from": "2026-01-01",
        "valid_to": "2030-12-31",
    }
    added = officer.post("/console/compliance/licences", form)
    assert added.status_code == 303, added.text
    numbers = [lic["number"] for lic in api_get(world, "/operator/licences")["data"]]
    assert "沪B1-20260042" in numbers
    assert "The licence is recorded." in officer.get(added.headers["location"]).text
    bad = officer.post("/console/compliance/licences", {**form, "number": "B13-12"})
    assert bad.status_code == 422
    assert field_error(bad.text, "number")
    assert 'value="B13-12"' in bad.text  # the entered values stay
    again = officer.post("/console/compliance/licences", form)
    assert again.status_code == 409
    assert field_error(again.text, "number") == "already recorded"
    assert len(api_get(world, "/operator/licences")["data"]) == len(numbers)


def test_shareholders_are_added_and_edited(world: World) -> None:
    world.clear_shareholders()
    officer = officer_of(world)
    added = officer.post(
        "/console/compliance/shareholders",
        {"name": "北京通道投资有限公司", "foreign": "no", "stake_percent": "51"},
    )
    assert added.status_code == 303, added.text
    officer.post(
        "/console/compliance/shareholders",
        {"name": "Overseas Telecom Ltd", "foreign": "yes", "stake_percent": "49"},
    )
    holders = api_get(world, "/operator/shareholders")["data"]
    assert sorted(h["stake_percent"] for h in holders) == ["49.00", "51.00"]
    over = officer.post(
        "/console/compliance/shareholders",
        {"name": "Third", "foreign": "no", "stake_percent": "5"},
    )
    assert over.status_code == 422
    assert field_error(over.text, "stake_percent") == "stakes would add up to more than 100%"
    foreign = next(h for h in holders if h["foreign"])
    path = f"/console/compliance/shareholders/{foreign['id']}"
    assert officer.get(path).status_code == 200
    edited = officer.post(
        path, {"name": "Overseas Telecom Ltd", "foreign": "yes", "stake_percent": "40"}
    )
    assert edited.status_code == 303, edited.text
    assert api_get(world, f"/operator/shareholders/{foreign['id']}")["stake_percent"] == "40.00"
    bad = officer.post(path, {"name": "", "foreign": "yes", "stake_percent": "abc"})
    assert bad.status_code == 422
    assert field_error(bad.text, "stake_percent")
    missing = "/console/compliance/shareholders/01a24aec-4702-7000-8e7b-300cbb3b930a"
    assert officer.get(missing).status_code == 404


def test_licences_are_read_by_operator_roles_and_kept_by_the_officer(world: World) -> None:
    auditor = as_person(world, world.operators["auditor"])
    page = auditor.get("/console/compliance/licences")
    assert page.status_code == 200
    assert "Record the licence" not in page.text
    refused = auditor.post("/console/compliance/shareholders", {"name": "x", "foreign": "no"})
    assert refused.status_code == 403
    assert as_person(world, world.a.admin).get("/console/compliance/licences").status_code == 403


def test_the_dashboard_shows_what_the_compliance_status_api_returns(world: World) -> None:
    officer = officer_of(world)
    status = world.client.get(
        f"{API}/operator/compliance", headers=world.operators["compliance_officer"].headers
    ).json()
    page = officer.get("/console/compliance/dashboard")
    assert page.status_code == 200
    assert status["rules_version"] in page.text
    assert f"{status['ownership']['foreign_percent']}%" in page.text
    world.clear_shareholders()
    status = world.client.get(
        f"{API}/operator/compliance", headers=world.operators["compliance_officer"].headers
    ).json()
    problems = [p["rule"] for p in status["problems"]]
    assert problems
    page = officer.get("/console/compliance/dashboard")
    for rule_id in problems:
        assert rule_id in page.text


def test_every_compliance_page_is_bilingual(app: FastAPI, world: World) -> None:
    officer = officer_of(world)
    officer.http.cookies.set("tongdao_lang", "zh_CN")
    for path in (
        "/console/compliance",
        "/console/compliance?queue=networks",
        "/console/compliance?queue=identities",
        f"/console/compliance/tenants/{world.a.id}",
        "/console/compliance/licences",
        "/console/compliance/dashboard",
    ):
        page = officer.get(path)
        assert page.status_code == 200, path
        assert '<html lang="zh-CN">' in page.text
        assert "工作队列" in page.text, path


# --- privacy notices (s18-notice) ----------------------------------------------------------

NOTICES = "/console/privacy-notices"
NOTICE_FORM = {
    "version": "2026-02",
    "title": "个人信息处理告知书",
    "text": "我们处理您的姓名、证件号码和手机号码，以提供 VPN 服务。\r\n\r\nSecond paragraph.",
    "transfer_abroad_text": "Recipient abroad: your employer's head office (privacy@hq.example).",
    "reconsent_required": "yes",
}


def notices_api(world: World) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = api_get(world, "/privacy-notices")["data"]
    return data


def test_without_a_notice_every_place_that_says_so_leads_to_the_publish_form(
    world: World,
) -> None:
    officer = officer_of(world)
    listing = officer.get(NOTICES)
    assert listing.status_code == 200, listing.text
    assert 'id="no-notice"' in listing.text
    assert f'href="{NOTICES}/new"' in listing.text
    dashboard = officer.get("/console/compliance/dashboard").text
    assert 'id="no-notice"' in dashboard and f'href="{NOTICES}/new"' in dashboard
    # The menu and the area's tabs reach the page.
    assert f'<a href="{NOTICES}"' in officer.get("/console/compliance/licences").text
    admin = as_person(world, world.admin)
    operations = admin.get("/console/operator").text
    assert "alert-privacy_notice" in operations and f'href="{NOTICES}/new"' in operations
    assert f'<li><a href="{NOTICES}"' in admin.get("/console/home").text
    # Staff who may only read are told who publishes it; no link to a form they cannot use.
    auditor = as_person(world, world.operators["auditor"])
    read_only = auditor.get(NOTICES).text
    assert 'id="no-notice"' in read_only and f"{NOTICES}/new" not in read_only
    assert f"{NOTICES}/new" not in auditor.get("/console/compliance/dashboard").text
    # An employee learns what it means for them and who can have it published.
    mine = as_person(world, world.a.employee).get("/console/my/privacy").text
    assert 'id="no-notice-next"' in mine


@both_stores
def test_a_notice_is_published_through_the_form_as_the_api_publishes_it(world: World) -> None:
    officer = officer_of(world)
    form = officer.get(f"{NOTICES}/new")
    assert form.status_code == 200, form.text
    for name in ("version", "title", "text", "transfer_abroad_text", "reconsent_required"):
        assert f'id="f-{name}"' in form.text, name
    assert 'id="f-reconsent_required" name="reconsent_required" value="yes" checked' in form.text
    assert "Traffic abroad stops at once" in form.text
    done = officer.post(NOTICES, NOTICE_FORM)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"{NOTICES}?done=published-reconsent"
    current = api_get(world, "/privacy-notices/current")
    assert current["version"] == "2026-02"
    assert current["title"] == NOTICE_FORM["title"]
    assert current["text"] == NOTICE_FORM["text"].replace("\r\n", "\n")
    assert current["transfer_abroad_text"] == NOTICE_FORM["transfer_abroad_text"]
    assert current["reconsent_required"] is True
    listing = officer.get(done.headers["location"]).text
    assert "Consents to earlier versions have lapsed" in listing
    assert f'href="{NOTICES}/{current["id"]}"' in listing
    assert "compliance_officer@operator.example" in listing or "compliance_officer" in listing
    # The operator admin publishes the next version without asking for fresh consent; the
    # form starts from the current texts.
    admin = as_person(world, world.admin)
    again = admin.get(f"{NOTICES}/new").text
    assert "Second paragraph." in again and 'value="2026-02"' not in again
    second = admin.post(NOTICES, {**NOTICE_FORM, "version": "2026-03", "reconsent_required": ""})
    assert second.headers["location"] == f"{NOTICES}?done=published"
    newest = notices_api(world)
    assert [n["version"] for n in newest] == ["2026-03", "2026-02"]
    assert newest[0]["reconsent_required"] is False
    # One version's page: its texts, and whether it is still the current one.
    old = officer.get(f"{NOTICES}/{current['id']}").text
    assert "Second paragraph." in old and NOTICE_FORM["transfer_abroad_text"].split(":")[0] in old
    assert "superseded" in old
    assert "current" in officer.get(f"{NOTICES}/{newest[0]['id']}").text


def test_fresh_consent_makes_earlier_consents_lapse_and_the_form_says_how_many(
    world: World,
) -> None:
    from tests.support.privacy import consent_abroad, publish_notice

    publish_notice(world.client, world.admin.headers, "2026-01")
    consent_abroad(world.client, world.a.id, world.a.employee.user_id, world.a.employee.headers)
    officer = officer_of(world)
    form = officer.get(f"{NOTICES}/new").text
    assert "1 person has a consent to transfer abroad now" in form
    assert officer.post(NOTICES, NOTICE_FORM).status_code == 303
    consents = world.client.get(
        f"{API}/tenants/{world.a.id}/users/{world.a.employee.user_id}/consents",
        headers=world.operators["compliance_officer"].headers,
    ).json()["data"]
    assert consents and not any(c["current"] for c in consents)
    assert "0 people have a consent" in officer.get(f"{NOTICES}/new").text


def test_a_refused_notice_shows_the_reason_next_to_the_field_and_keeps_what_was_typed(
    world: World,
) -> None:
    officer = officer_of(world)
    bad = officer.post(
        NOTICES, {**NOTICE_FORM, "version": "v 1", "text": " ", "reconsent_required": ""}
    )
    assert bad.status_code == 422, bad.text
    assert field_error(bad.text, "version").startswith("use only letters, digits")
    assert field_error(bad.text, "text")
    assert field_error(bad.text, "title") == ""
    assert NOTICE_FORM["title"] in bad.text and 'value="v 1"' in bad.text
    assert 'value="yes" aria-describedby' in bad.text  # the box stays unticked
    assert notices_api(world) == []
    # A version already published: 409, next to the version.
    assert officer.post(NOTICES, NOTICE_FORM).status_code == 303
    again = officer.post(NOTICES, {**NOTICE_FORM, "title": "Another title"})
    assert again.status_code == 409
    assert field_error(again.text, "version") == "already in use"
    assert "Another title" in again.text
    assert len(notices_api(world)) == 1
    # Chinese: the reasons in Chinese, next to their fields.
    officer.http.cookies.set("tongdao_lang", "zh_CN")
    zh = officer.post(NOTICES, {**NOTICE_FORM, "version": "2026-09", "title": ""})
    assert zh.status_code == 422
    assert re.search(r"[\u4e00-\u9fff]", field_error(zh.text, "title")), field_error(
        zh.text, "title"
    )


def test_long_texts_are_kept_whole_and_too_long_ones_refused(world: World) -> None:
    officer = officer_of(world)
    long_text = "第一条：个人信息处理者。\n" * 3_000  # 36,000 characters, past the console's 20,000
    assert len(long_text) > 30_000
    done = officer.post(NOTICES, {**NOTICE_FORM, "text": long_text})
    assert done.status_code == 303, done.text[:500]
    assert api_get(world, "/privacy-notices/current")["text"] == long_text.strip()
    too_long = officer.post(NOTICES, {**NOTICE_FORM, "version": "2026-04", "text": "字" * 50_001})
    assert too_long.status_code == 422
    assert "50000" in field_error(too_long.text, "text").replace(",", "")
    assert len(notices_api(world)) == 1


def test_notices_are_read_by_operator_staff_and_published_by_the_admin_and_the_officer(
    world: World,
) -> None:
    from tests.support.privacy import publish_notice

    notice = publish_notice(world.client, world.admin.headers)
    for role in ("auditor", "billing_clerk"):
        reader = as_person(world, world.operators[role])
        assert reader.get(NOTICES).status_code == 200, role
        assert reader.get(f"{NOTICES}/{notice['id']}").status_code == 200, role
        assert f"{NOTICES}/new" not in reader.get(NOTICES).text
        assert reader.get(f"{NOTICES}/new").status_code == 403, role
        refused = reader.post(NOTICES, {**NOTICE_FORM, "version": f"x-{role}"})
        assert refused.status_code == 403, role
    for actor in (world.a.admin, world.a.employee):
        person = as_person(world, actor)
        assert person.get(NOTICES).status_code == 403
        assert person.get(f"{NOTICES}/{notice['id']}").status_code == 403
        assert person.get(f"{NOTICES}/{uuid.uuid4()}").status_code == 404
    assert officer_of(world).get(f"{NOTICES}/{uuid.uuid4()}").status_code == 404
    assert officer_of(world).get(f"{NOTICES}/not-an-id").status_code == 404
    assert [n["version"] for n in notices_api(world)] == [notice["version"]]


def test_the_list_is_newest_first_paginated_and_filtered(world: World) -> None:
    from tests.support.privacy import publish_notice

    for n in range(23):
        publish_notice(world.client, world.admin.headers, f"v{n + 1}", reconsent_required=n == 0)
    officer = officer_of(world)
    first = officer.get(NOTICES).text
    versions = re.findall(r'class="item-title" href="[^"]+">([^<]+)<', first)
    assert versions == [f"v{n}" for n in range(23, 3, -1)]
    assert "23 versions, newest first." in first
    cursor = re.search(r'href="\?cursor=([^"]+)"', first)
    assert cursor, "no next page"
    rest = officer.get(NOTICES, params={"cursor": cursor.group(1).replace("&amp;", "&")}).text
    assert re.findall(r'class="item-title" href="[^"]+">([^<]+)<', rest) == ["v3", "v2", "v1"]
    assert "yes: earlier consents lapsed" in rest  # v1 asked for fresh consent
    only = officer.get(NOTICES, params={"q": "v2"}).text
    assert re.findall(r'class="item-title" href="[^"]+">([^<]+)<', only) == [
        "v23",
        "v22",
        "v21",
        "v20",
        "v2",
    ]
    none = officer.get(NOTICES, params={"q": "nothing like it"})
    assert "No version matches" in none.text
    assert officer.get(NOTICES, params={"cursor": "garbage"}).status_code == 404


def test_the_notice_pages_are_bilingual(world: World) -> None:
    from tests.support.privacy import publish_notice

    notice = publish_notice(world.client, world.admin.headers)
    officer = officer_of(world)
    officer.http.cookies.set("tongdao_lang", "zh_CN")
    for path in (NOTICES, f"{NOTICES}/new", f"{NOTICES}/{notice['id']}"):
        page = officer.get(path)
        assert page.status_code == 200, path
        assert '<html lang="zh-CN">' in page.text
        assert "隐私声明" in page.text, path
        assert "（北京时间）" in page.text or path.endswith("/new")


# --- end of privacy notices (s18-notice) ---------------------------------------------------
