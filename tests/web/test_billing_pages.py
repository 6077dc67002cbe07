"""The billing area's pages over HTTP: plans, subscriptions, the monthly run (also with its
lease held elsewhere), invoices and their actions, payments, downloads.

Each form's success is a 303 with a translated notice and the same stored effect as the API's
route (checked through the API); each refusal is shown next to its field (422) with the typed
values kept and nothing stored; downloads are the API's bytes. Tenant admins read their own
tenant's billing only; employees get 403."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from tests.conftest import both_stores
from tests.support.billing import TAX_CODE, plan_body
from tests.support.console import ConsoleClient, as_person
from tests.support.world import World
from tongdao.billing.models import Invoice, Plan
from tongdao.jobs import lease
from tongdao.jobs.scheduler import BILLING_JOB
from tongdao.tenancy.models import User

API = "/api/v1"
B = "/console/billing"


def _api(world: World, method: str, path: str, role: str = "billing_clerk", **kw: Any) -> Any:
    answer = world.client.request(method, API + path, headers=world.actor(role).headers, **kw)
    assert answer.status_code < 300, answer.text
    return (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else answer
    )


def _clerk(world: World) -> ConsoleClient:
    return as_person(world, world.operators["billing_clerk"])


def _error(html: str, field: str, fid: str = "") -> str:
    """The error next to ``field`` (its element id ``f-<field>``, or ``fid`` where two forms
    on the page have a field of that name)."""
    found = re.search(rf'id="{re.escape(fid or "f-" + field)}-error">([^<]*)<', html)
    assert found, f"no error slot for {field}"
    return found.group(1)


def _form_error(html: str) -> str:
    found = re.search(r'id="form-error">([^<]*)<', html)
    return found.group(1) if found else ""


def _value(html: str, field: str, fid: str = "") -> str:
    element = re.escape(fid or "f-" + field)
    found = re.search(
        rf'id="{element}" name="{re.escape(field)}" type="[a-z]+" value="([^"]*)"', html
    )
    assert found, f"no input {field}"
    return found.group(1)


def _zh(client: ConsoleClient) -> None:
    client.post("/console/language", data={"language": "zh_CN", "next": B})


def _accounts_before_october(world: World) -> None:
    with world.runtime.db.session() as session:
        session.execute(
            update(User)
            .where(User.tenant_id == world.a.id)
            .values(created_at=datetime(2026, 9, 1, tzinfo=UTC))
        )
        session.commit()


def _form(body: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in body.items()}


def _billed(world: World, clerk: ConsoleClient, plan: str = "Remote 50") -> str:
    """Tenant A on a plan from October (made through the pages); November run: its invoice."""
    _accounts_before_october(world)
    made = clerk.post(B + "/plans", _form(plan_body(plan)))
    assert made.status_code == 303, made.text
    plan_id = made.headers["location"].split("/")[-1].split("?")[0]
    sub = clerk.post(
        f"{B}/tenants/{world.a.id}/subscriptions",
        {"plan_id": plan_id, "starts_on": "2026-10-01"},
    )
    assert sub.status_code == 303, sub.text
    run = clerk.post(B + "/run", {"month": "2026-11"})
    assert run.status_code == 200, run.text
    listed = _api(world, "GET", f"/tenants/{world.a.id}/invoices")
    assert listed["count"] == 1
    return str(listed["data"][0]["id"])


def _public(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plan.items() if k not in {"id", "name", "created_at", "updated_at"}}


@both_stores
def test_the_clerk_bills_a_month_through_the_pages(world: World) -> None:
    clerk = _clerk(world)
    _zh(clerk)
    _accounts_before_october(world)

    # A plan from the page is stored as the API stores the same body.
    made = clerk.post(B + "/plans", _form(plan_body("Remote 50")))
    assert made.status_code == 303, made.text
    assert made.headers["location"].endswith("?done=created")
    page = clerk.get(made.headers["location"])
    assert "套餐已创建" in page.text
    plan_id = made.headers["location"].split("/")[-1].split("?")[0]
    twin = _api(world, "POST", "/billing/plans", json=plan_body("API twin"))
    by_api = _api(world, "GET", f"/billing/plans/{twin['id']}")
    by_page = _api(world, "GET", f"/billing/plans/{plan_id}")
    assert _public(by_page) == _public(by_api)

    # Editing it: every field of the API's update schema.
    edit = {**_form(plan_body("Remote 50")), "seat_price": "40.00", "seat_basis": "active"}
    edit.pop("name")
    saved = clerk.post(f"{B}/plans/{plan_id}", edit)
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=saved")
    after = _api(world, "GET", f"/billing/plans/{plan_id}")
    assert (after["seat_price"], after["seat_basis"]) == ("40.00", "active")
    # Back to per account so the month below is priced like the API's billing test.
    back = clerk.post(
        f"{B}/plans/{plan_id}", {**edit, "seat_price": "35.50", "seat_basis": "account"}
    )
    assert back.status_code == 303

    # Tenant A on it from October.
    sub = clerk.post(
        f"{B}/tenants/{world.a.id}/subscriptions", {"plan_id": plan_id, "starts_on": "2026-10-01"}
    )
    assert sub.status_code == 303 and sub.headers["location"].endswith("?done=subscribed")
    assert "订阅已保存" in clerk.get(sub.headers["location"]).text
    subs = _api(world, "GET", f"/tenants/{world.a.id}/subscriptions")["data"]
    assert [(s["plan_id"], s["starts_on"]) for s in subs] == [(plan_id, "2026-10-01")]

    # The month: one invoice made; again: none made, one there.
    run = clerk.post(B + "/run", {"month": "2026-11"})
    assert run.status_code == 200, run.text
    assert "INV00000001" in run.text and "生成 1 张发票" in run.text
    again = clerk.post(B + "/run", {"month": "2026-11"})
    assert "生成 0 张发票" in again.text and "1 个租户已有当月发票" in again.text
    invoice = _api(world, "GET", f"/tenants/{world.a.id}/invoices")["data"][0]
    path = f"{B}/tenants/{world.a.id}/invoices/{invoice['id']}"
    api_path = f"/tenants/{world.a.id}/invoices/{invoice['id']}"

    listed = clerk.get(B + "/invoices?month=2026-11&state=draft")
    assert listed.status_code == 200 and "INV00000001" in listed.text
    assert "INV00000001" not in clerk.get(B + "/invoices?state=paid").text
    detail = clerk.get(path)
    assert detail.status_code == 200
    for text in ("¥1,135.26", "¥64.26", "¥4.26", TAX_CODE, "基本月费", "草稿"):
        assert text in detail.text, text
    # Its history: the run's one record of the invoice, its lines in it.
    lines = len(_api(world, "GET", f"/tenants/{world.a.id}/invoices/{invoice['id']}")["lines"])
    assert f"月度出账生成 · 含 {lines} 行明细" in detail.text
    log = as_person(world, world.operators["auditor"]).get(
        "/console/audit?action=billing_invoice_made"
    )
    assert log.status_code == 200 and "billing_invoice_made" in log.text
    assert f"lines[{lines}]" in log.text and f"lines[{lines + 1}]" not in log.text

    issued = clerk.post(path + "/issue")
    assert issued.status_code == 303 and issued.headers["location"].endswith("?done=issued")
    assert "发票已开具" in clerk.get(issued.headers["location"]).text
    assert _api(world, "GET", api_path)["state"] == "issued"

    part = clerk.post(
        path + "/payments", {"amount": "1000.00", "received_on": "2026-12-05", "reference": "BOC 1"}
    )
    assert part.status_code == 303 and part.headers["location"].endswith("?done=paid")
    balance = _api(world, "GET", f"/tenants/{world.a.id}/balance")
    assert (balance["paid"], balance["balance"]) == ("1000.00", "135.26")
    payments = clerk.get(B + "/payments")
    assert "BOC 1" in payments.text and "¥1,000.00" in payments.text
    overview = clerk.get(B)
    assert "¥135.26" in overview.text

    fapiao = clerk.post(path + "/fapiao", {"fapiao_number": "2" * 20})
    assert fapiao.status_code == 303
    assert _api(world, "GET", api_path)["fapiao_number"] == "2" * 20

    rest = clerk.post(path + "/payments", {"amount": "135.26", "received_on": "2026-12-06"})
    assert rest.status_code == 303
    assert _api(world, "GET", api_path)["state"] == "paid"

    note = clerk.post(path + "/credit-notes", {"reason": "单价有误"})
    assert note.status_code == 303 and note.headers["location"].endswith("?done=credited")
    notes = _api(world, "GET", f"/tenants/{world.a.id}/invoices?kind=credit_note")["data"]
    assert [(n["number"], n["corrects_id"], n["reason"]) for n in notes] == [
        ("CN00000001", invoice["id"], "单价有误")
    ]
    history = clerk.get(path).text
    assert "CN00000001" in history and "已付清" in history


@both_stores
def test_downloads_are_the_apis_bytes(world: World) -> None:
    clerk = _clerk(world)
    invoice_id = _billed(world, clerk)
    page = f"{B}/tenants/{world.a.id}/invoices/{invoice_id}"
    api = f"/tenants/{world.a.id}/invoices/{invoice_id}"
    admin = as_person(world, world.a.admin)
    for tail in ("/pdf", "/csv", "/e-fapiao"):
        ours = clerk.get(page + tail)
        theirs = world.client.get(
            API + api + tail, headers=world.operators["billing_clerk"].headers
        )
        assert ours.status_code == 200 == theirs.status_code, tail
        if tail == "/pdf":
            # fpdf2 stamps the creation time, and the file ID hashes it: the same bytes
            # apart from those two.
            strip = re.compile(rb"/CreationDate \(D:[0-9+'Z]+\)|/ID \[<[0-9A-F]+><[0-9A-F]+>\]")
            assert len(strip.findall(ours.content)) == 2
            assert strip.sub(b"", ours.content) == strip.sub(b"", theirs.content)
            assert ours.content.startswith(b"%PDF")
        elif tail == "/csv":
            assert ours.content == theirs.content
        else:
            assert ours.content == theirs.content
            assert ours.json()["invoice_type"] == "81"
        assert ours.headers["content-type"] == theirs.headers["content-type"]
        assert "attachment" in ours.headers["content-disposition"]
        # The tenant admin downloads their own.
        assert admin.get(page + tail).status_code == 200


@both_stores
def test_refusals_are_shown_next_to_their_fields(world: World) -> None:
    clerk = _clerk(world)
    bad = {**_form(plan_body("Bad plan")), "base_tax_code": "123", "vat_rate": "0.5"}
    answer = clerk.post(B + "/plans", bad)
    assert answer.status_code == 422
    assert _error(answer.text, "base_tax_code") and _error(answer.text, "vat_rate")
    assert (
        _value(answer.text, "name") == "Bad plan" and _value(answer.text, "base_tax_code") == "123"
    )
    with world.runtime.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Plan)) == 0
    # The same name twice: the service's refusal, on the name.
    assert clerk.post(B + "/plans", _form(plan_body("Remote 50"))).status_code == 303
    twice = clerk.post(B + "/plans", _form(plan_body("Remote 50")))
    assert twice.status_code in (409, 422) and _error(twice.text, "name")
    plan_id = _api(world, "GET", "/billing/plans")["data"][0]["id"]
    edit = _form(plan_body("Remote 50"))
    edit.pop("name")
    wrong = clerk.post(f"{B}/plans/{plan_id}", {**edit, "seat_price": "-1"})
    assert wrong.status_code == 422 and _error(wrong.text, "seat_price")
    assert _value(wrong.text, "seat_price") == "-1"
    assert _api(world, "GET", f"/billing/plans/{plan_id}")["seat_price"] == "35.50"

    tenant = f"{B}/tenants/{world.a.id}"
    no_day = clerk.post(tenant + "/subscriptions", {"plan_id": plan_id, "starts_on": "not a day"})
    assert no_day.status_code == 422 and _error(no_day.text, "starts_on")
    assert _value(no_day.text, "starts_on") == "not a day"
    assert _api(world, "GET", f"/tenants/{world.a.id}/subscriptions")["count"] == 0

    for month, field_text in (("2026-13", "YYYY-MM"), ("2999-01", "尚未结束")):
        _zh(clerk) if field_text == "尚未结束" else None
        run = clerk.post(B + "/run", {"month": month})
        assert run.status_code == 422, month
        assert field_text in _error(run.text, "month"), _error(run.text, "month")
        assert _value(run.text, "month") == month

    invoice_id = _billed(world, clerk, "Billed plan")
    path = f"{B}/tenants/{world.a.id}/invoices/{invoice_id}"
    api_path = f"/tenants/{world.a.id}/invoices/{invoice_id}"
    void = clerk.post(path + "/void", {"reason": "  "})
    assert void.status_code == 422 and _error(void.text, "reason", "f-void-reason")
    assert clerk.post(path + "/issue").status_code == 303
    again = clerk.post(path + "/issue")
    assert again.status_code == 409 and "只有草稿" in _form_error(again.text)  # as the API
    over = clerk.post(
        path + "/payments", {"amount": "9999.00", "received_on": "2026-12-05", "reference": "x"}
    )
    assert over.status_code == 422 and "1135.26" in _error(over.text, "amount")
    assert _value(over.text, "amount") == "9999.00" and _value(over.text, "reference") == "x"
    fapiao = clerk.post(path + "/fapiao", {"fapiao_number": "12ab"})
    assert fapiao.status_code == 422 and _error(fapiao.text, "fapiao_number")
    assert _value(fapiao.text, "fapiao_number") == "12ab"
    stored = _api(world, "GET", api_path)
    assert (stored["amount_paid"], stored["fapiao_number"]) == ("0.00", None)
    # A subscription change inside the invoiced month is the service's refusal.
    late = clerk.post(tenant + "/subscriptions", {"plan_id": "", "starts_on": "2026-11-15"})
    assert late.status_code == 422 and "2026-11" in _error(late.text, "starts_on")


@both_stores
def test_a_run_while_another_holds_the_lease_says_so(world: World) -> None:
    clerk = _clerk(world)
    _accounts_before_october(world)
    made = clerk.post(B + "/plans", _form(plan_body("Remote 50")))
    plan_id = made.headers["location"].split("/")[-1].split("?")[0]
    clerk.post(
        f"{B}/tenants/{world.a.id}/subscriptions", {"plan_id": plan_id, "starts_on": "2026-10-01"}
    )
    now = world.runtime.clock()
    assert lease.acquire(world.runtime.db, BILLING_JOB, "other-replica", now, timedelta(minutes=10))
    held = clerk.post(B + "/run", {"month": "2026-11"})
    assert held.status_code == 409
    assert "lease" in _form_error(held.text)
    assert _value(held.text, "month") == "2026-11"
    with world.runtime.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Invoice)) == 0
    lease.release(world.runtime.db, BILLING_JOB, "other-replica", now)
    done = clerk.post(B + "/run", {"month": "2026-11"})
    assert done.status_code == 200 and "INV00000001" in done.text


def test_tenant_people_see_their_own_billing_only(world: World) -> None:
    clerk = _clerk(world)
    invoice_id = _billed(world, clerk)
    admin = as_person(world, world.a.admin)
    home = admin.get("/console/home").text
    assert 'href="/console/billing"' in home
    assert 'href="/console/billing"' in clerk.get("/console/home").text
    own = admin.get(f"{B}/tenants/{world.a.id}/invoices/{invoice_id}")
    assert own.status_code == 200 and "INV00000001" in own.text
    assert 'method="post" action="/console/billing/tenants' not in own.text  # no actions
    assert admin.get(f"{B}/tenants/{world.a.id}").status_code == 200
    assert "INV00000001" in admin.get(B + "/invoices").text
    assert admin.get(f"{B}/tenants/{world.b.id}").status_code == 404
    assert admin.get(f"{B}/tenants/{world.b.id}/invoices/{invoice_id}").status_code == 404
    refused = admin.post(f"{B}/tenants/{world.a.id}/invoices/{invoice_id}/issue")
    assert refused.status_code == 403
    assert _api(world, "GET", f"/tenants/{world.a.id}/invoices/{invoice_id}")["state"] == "draft"
    # Tenant B's admin: A's invoice is not found.
    other = as_person(world, world.b.admin)
    assert other.get(f"{B}/tenants/{world.a.id}/invoices/{invoice_id}").status_code == 404
    # Employees: no billing.
    employee = as_person(world, world.a.employee)
    assert 'href="/console/billing"' not in employee.get("/console/home").text
    assert employee.get(B).status_code == 403
    assert employee.get(f"{B}/tenants/{world.a.id}/invoices/{invoice_id}").status_code == 403


def test_the_invoice_list_pages_and_a_draft_is_voided(world: World) -> None:
    from tests.support.billing import billing_invoice

    with world.runtime.db.session() as session:
        ids = [billing_invoice(session, world.a.id).id for _ in range(27)]
        session.commit()
    clerk = _clerk(world)
    first = clerk.get(f"{B}/invoices?tenant={world.a.id}&month=2026-11&kind=invoice")
    assert first.status_code == 200
    shown = re.findall(r">(INV\d{8})</a>", first.text)
    assert len(shown) == 25 and shown[0] == "INV00000027"  # newest first
    found = re.search(r'href="\?([^"]*cursor=[^"]+)"', first.text)
    assert found, "no next page link"
    assert "kind=invoice" in found.group(1) and "month=2026-11" in found.group(1)  # kept
    second = clerk.get(f"{B}/invoices?" + found.group(1).replace("&amp;", "&"))
    assert re.findall(r">(INV\d{8})</a>", second.text) == ["INV00000002", "INV00000001"]
    assert "Next page" not in second.text
    bad = clerk.get(f"{B}/invoices?month=2026-13")
    assert bad.status_code == 422 and _error(bad.text, "month")

    path = f"{B}/tenants/{world.a.id}/invoices/{ids[0]}"
    voided = clerk.post(path + "/void", {"reason": "开错了租户"})
    assert voided.status_code == 303 and voided.headers["location"].endswith("?done=voided")
    assert "The invoice is void" in clerk.get(voided.headers["location"]).text
    stored = _api(world, "GET", f"/tenants/{world.a.id}/invoices/{ids[0]}")
    assert (stored["state"], stored["reason"], stored["number"]) == (
        "void",
        "开错了租户",
        "INV00000001",
    )
    assert f'action="{path}/payments"' not in clerk.get(path).text  # a void takes none

    # An issued invoice with a credit note owes nothing and offers no payment (the service
    # would refuse one).
    credited = f"{B}/tenants/{world.a.id}/invoices/{ids[1]}"
    assert clerk.post(credited + "/issue").status_code == 303
    owing = clerk.get(credited).text
    assert f'action="{credited}/payments"' in owing
    assert clerk.post(credited + "/credit-notes", {"reason": "重复开具"}).status_code == 303
    page = clerk.get(credited).text
    assert f'action="{credited}/payments"' not in page
    assert "/ ¥0.00" in page
