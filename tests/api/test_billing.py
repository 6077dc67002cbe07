"""Billing over the API: plans, subscriptions, the run, invoice states, payments, credit notes,
CSV and e-fapiao exports, tenant scoping and the audit trail."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from tests.conftest import both_stores
from tests.support.billing import TAX_CODE, plan_body
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.tenancy.models import Tenant, User

API = "/api/v1"


def call(
    world: World, method: str, path: str, role: str, body: Any = None, label: str = "a"
) -> Any:
    return world.client.request(
        method, API + path, json=body, headers=world.actor(role, label).headers
    )


def billed_a(world: World) -> dict[str, Any]:
    """Tenant A on a plan since October 2026, its accounts made before, November billed."""
    with world.runtime.db.session() as session:
        session.execute(
            update(User)
            .where(User.tenant_id == world.a.id)
            .values(created_at=datetime(2026, 9, 1, tzinfo=UTC))
        )
        session.execute(
            update(Tenant)
            .where(Tenant.id == world.a.id)
            .values(
                invoice_buyer_name='=HYPERLINK("x")',
                invoice_address_phone="北京市朝阳区 010-12345678",
                invoice_bank="中国银行北京分行",
                invoice_account="1234567890",
            )
        )
        session.commit()
    plan = call(world, "POST", "/billing/plans", "billing_clerk", plan_body())
    assert plan.status_code == 201, plan.text
    sub = call(
        world,
        "POST",
        f"/tenants/{world.a.id}/subscriptions",
        "billing_clerk",
        {"plan_id": plan.json()["id"], "starts_on": "2026-10-01"},
    )
    assert sub.status_code == 201, sub.text
    run = call(world, "POST", "/billing/runs", "billing_clerk", {"month": "2026-11"})
    assert run.status_code == 200, run.text
    assert run.json() == {"month": "2026-11", "created": ["INV00000001"], "existing": 0}
    listed = call(world, "GET", f"/tenants/{world.a.id}/invoices", "tenant_admin")
    assert listed.status_code == 200 and listed.json()["count"] == 1
    invoice: dict[str, Any] = listed.json()["data"][0]
    return invoice


@both_stores
def test_the_billing_cycle(world: World) -> None:
    inv = billed_a(world)
    a = f"/tenants/{world.a.id}/invoices/{inv['id']}"
    # Two accounts (A's admin and employee) at 35.50, base 1000.00, no sites: VAT per line.
    assert [(x["kind"], x["quantity"], x["amount"], x["vat"]) for x in inv["lines"]] == [
        ("base", "1.000000", "1000.00", "60.00"),
        ("seats", "2.000000", "71.00", "4.26"),
    ]
    assert (inv["subtotal"], inv["vat"], inv["total"]) == ("1071.00", "64.26", "1135.26")
    assert inv["buyer_tax_id"] == world.a.data["uscc"] and inv["state"] == "draft"
    assert all(x["tax_code"] == TAX_CODE for x in inv["lines"])

    again = call(world, "POST", "/billing/runs", "billing_clerk", {"month": "2026-11"})
    assert again.json() == {"month": "2026-11", "created": [], "existing": 1}

    assert call(world, "POST", a + "/issue", "billing_clerk").json()["state"] == "issued"
    assert call(world, "POST", a + "/issue", "billing_clerk").status_code == 409
    part = call(
        world, "POST", a + "/payments", "billing_clerk",
        {"amount": "1000.00", "received_on": "2026-12-05", "reference": "BOC 1"},
    )  # fmt: skip
    assert part.status_code == 201, part.text
    over = call(
        world, "POST", a + "/payments", "billing_clerk",
        {"amount": "200.00", "received_on": "2026-12-05"},
    )  # fmt: skip
    assert over.status_code == 422 and "amount" in over.json()["error"]["fields"]
    balance = call(world, "GET", f"/tenants/{world.a.id}/balance", "tenant_admin").json()
    assert (balance["invoiced"], balance["paid"], balance["balance"]) == (
        "1135.26",
        "1000.00",
        "135.26",
    )
    rest = call(
        world, "POST", a + "/payments", "billing_clerk",
        {"amount": "135.26", "received_on": "2026-12-06"},
    )  # fmt: skip
    assert rest.status_code == 201
    assert call(world, "GET", a, "auditor").json()["state"] == "paid"

    fapiao = call(world, "POST", a + "/fapiao", "billing_clerk", {"fapiao_number": "2" * 20})
    assert fapiao.status_code == 200 and fapiao.json()["fapiao_number"] == "2" * 20
    assert call(world, "POST", a + "/void", "billing_clerk", {"reason": "x"}).status_code == 409

    note = call(world, "POST", a + "/credit-notes", "billing_clerk", {"reason": "price error"})
    assert note.status_code == 201, note.text
    body = note.json()
    assert (body["kind"], body["number"], body["corrects_id"]) == (
        "credit_note",
        "CN00000001",
        inv["id"],
    )
    assert body["total"] == "-1135.26"
    efapiao = call(
        world, "GET", f"/tenants/{world.a.id}/invoices/{body['id']}/e-fapiao", "tenant_admin"
    ).json()
    assert efapiao["red"] is True and efapiao["original"]["fapiao_number"] == "2" * 20

    # Every billing change is in the audit chain.
    with world.runtime.db.session(write=False) as session:
        kinds = set(session.scalars(select(AuditEvent.object_type)))
        actions = set(session.scalars(select(AuditEvent.action)))
    assert {"billing_plan", "billing_subscription", "invoice", "invoice_line", "payment"} <= kinds
    assert "billing_invoice_made" in actions


@both_stores
def test_exports_and_scoping(world: World) -> None:
    inv = billed_a(world)
    a = f"/tenants/{world.a.id}/invoices/{inv['id']}"
    resp = call(world, "GET", a + "/csv", "tenant_admin")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[1][0] == "INV00000001" and rows[1][4] == '\'=HYPERLINK("x")'
    assert rows[-1] == ["1071.00", "64.26", "1135.26"]

    ef = call(world, "GET", a + "/e-fapiao", "auditor").json()
    assert ef["format"] == "tongdao.efapiao/1" and ef["invoice_type"] == "81"
    assert (
        ef["buyer"]["bank"] == "中国银行北京分行" and ef["buyer"]["tax_id"] == world.a.data["uscc"]
    )
    seats = ef["items"][1]
    assert (seats["tax_classification_code"], seats["quantity"], seats["unit_price"]) == (
        TAX_CODE,
        "2",
        "35.5",
    )
    assert (seats["tax_rate"], seats["tax"], ef["total_with_tax"]) == ("0.06", "4.26", "1135.26")

    # Another tenant's invoice answers 404, by its path or under the caller's own tenant.
    assert call(world, "GET", a, "tenant_admin", label="b").status_code == 404
    b_path = f"/tenants/{world.b.id}/invoices/{inv['id']}"
    assert call(world, "GET", b_path, "tenant_admin", label="b").status_code == 404
    assert call(world, "GET", a + "/csv", "tenant_admin", label="b").status_code == 404
    assert call(world, "GET", a, "employee").status_code == 403
    assert call(world, "POST", a + "/issue", "tenant_admin").status_code == 403


@both_stores
def test_bad_input_is_field_keyed(world: World) -> None:
    bad = call(
        world, "POST", "/billing/plans", "billing_clerk",
        plan_body(base_tax_code="30402", seat_price="-1"),
    )  # fmt: skip
    assert bad.status_code == 422
    assert {"base_tax_code", "seat_price"} <= set(bad.json()["error"]["fields"])
    future = call(world, "POST", "/billing/runs", "billing_clerk", {"month": "2099-01"})
    assert future.status_code == 422 and "not ended" in future.json()["error"]["fields"]["month"]
    assert (
        call(world, "POST", "/billing/runs", "billing_clerk", {"month": "2026-13"}).status_code
        == 422
    )
    nosuch = call(
        world, "POST", f"/tenants/{world.a.id}/subscriptions", "billing_clerk",
        {"plan_id": "00000000-0000-7000-8000-000000000000", "starts_on": "2026-10-01"},
    )  # fmt: skip
    assert nosuch.status_code == 422 and "plan_id" in nosuch.json()["error"]["fields"]
    assert (
        call(world, "POST", "/billing/runs", "tenant_admin", {"month": "2026-11"}).status_code
        == 403
    )
    inv = billed_a(world)
    late = call(
        world, "POST", f"/tenants/{world.a.id}/subscriptions", "billing_clerk",
        {"plan_id": None, "starts_on": "2026-11-15"},
    )  # fmt: skip
    assert late.status_code == 422 and "invoiced" in late.json()["error"]["fields"]["starts_on"]
    a = f"/tenants/{world.a.id}/invoices/{inv['id']}"
    assert (
        call(world, "POST", a + "/fapiao", "billing_clerk", {"fapiao_number": "x"}).status_code
        == 422
    )
    # a draft takes no payment and no fapiao number
    pay = call(
        world,
        "POST",
        a + "/payments",
        "billing_clerk",
        {"amount": "1", "received_on": "2026-12-01"},
    )
    assert pay.status_code == 409


@both_stores
def test_the_pdf_carries_the_invoice_chinese_included(world: World) -> None:
    from pypdf import PdfReader

    inv = billed_a(world)
    resp = call(world, "GET", f"/tenants/{world.a.id}/invoices/{inv['id']}/pdf", "tenant_admin")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(resp.content))
    # Cells are laid out apart: compare without whitespace.
    text = "".join("".join(page.extract_text() or "" for page in reader.pages).split())
    for expected in (
        "INV00000001",
        "账单",
        "价税合计",
        "中国银行北京分行",
        "北京市朝阳区010-12345678",
        world.a.data["uscc"],
        TAX_CODE,
        "¥1,071.00",
        "¥64.26",
        "71.00",  # the seats line
        "¥1,135.26",
        "6%",
    ):
        assert expected in text, (expected, text[:400])
    fonts = {
        str(font.get_object()["/BaseFont"])
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }
    assert any("WenQuanYi" in name for name in fonts), fonts  # embedded, subset
