"""Credit notes (红字) for part of an invoice (issue 13): chosen lines by an amount or a
quantity, never more than earlier credit notes left on a line; VAT per line; the balance,
payments, overdue and reminders count them; the downloads name the corrected lines."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from tests.api.test_billing import billed_a, call
from tests.api.test_dunning import at, invoice, number
from tests.api.test_mail_reset import use_relay
from tests.conftest import both_stores
from tests.support.smtp import SmtpServer
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.billing import dunning
from tongdao.runtime import Runtime


def credit(world: World, path: str, body: dict[str, Any], role: str = "billing_clerk") -> Any:
    return call(world, "POST", path + "/credit-notes", role, body)


@both_stores
def test_partial_credit_notes(world: World) -> None:
    inv = billed_a(world)
    a = f"/tenants/{world.a.id}/invoices/{inv['id']}"
    base, seats = (line["id"] for line in inv["lines"])  # 1000.00 (+60.00), 71.00 (+4.26)

    draft = credit(world, a, {"reason": "x", "lines": [{"line_id": seats, "quantity": "1"}]})
    assert draft.status_code == 409 and "state" in draft.json()["error"]["fields"]
    assert call(world, "POST", a + "/issue", "billing_clerk").status_code == 200

    # One of the two seats: its share of the amount, VAT on the credit line.
    one = credit(world, a, {"reason": "one seat too many",
                            "lines": [{"line_id": seats, "quantity": "1"}]})  # fmt: skip
    assert one.status_code == 201, one.text
    note = one.json()
    assert (note["number"], note["kind"], note["corrects_id"]) == ("CN00000001", "credit_note",
                                                                   inv["id"])  # fmt: skip
    assert [(x["position"], x["quantity"], x["amount"], x["vat"]) for x in note["lines"]] == [
        (2, "-1.000000", "-35.50", "-2.13")
    ]
    assert (note["subtotal"], note["vat"], note["total"]) == ("-35.50", "-2.13", "-37.63")

    # A lower amount on the base fee: VAT half up to the fen (333.33 × 6% = 19.9998).
    cut = credit(world, a, {"reason": "discount",
                            "lines": [{"line_id": base, "amount_excl_vat": "333.33"}]})  # fmt: skip
    assert cut.status_code == 201, cut.text
    assert (cut.json()["number"], cut.json()["total"]) == ("CN00000002", "-353.33")

    # Refusals name the field and take no number.
    other = cut.json()["lines"][0]["id"]  # a line of another invoice (the credit note)
    refusals = [
        ({"lines": [{"line_id": seats, "amount_excl_vat": "35.51"}]}, 409,
         "lines.0.amount_excl_vat"),
        ({"lines": [{"line_id": base, "amount_excl_vat": "1.00"},
                    {"line_id": seats, "quantity": "2"}]}, 409, "lines.1.quantity"),
        ({"lines": [{"line_id": str(uuid.uuid4()), "amount_excl_vat": "1.00"}]}, 422,
         "lines.0.line_id"),
        ({"lines": [{"line_id": other, "amount_excl_vat": "1.00"}]}, 422, "lines.0.line_id"),
        ({"lines": [{"line_id": base, "amount_excl_vat": "0.00"}]}, 422,
         "lines.0.amount_excl_vat"),
        ({"lines": [{"line_id": base, "amount_excl_vat": "-5.00"}]}, 422,
         "lines.0.amount_excl_vat"),
        ({"lines": [{"line_id": base, "quantity": "0"}]}, 422, "lines.0.quantity"),
        ({"lines": [{"line_id": base, "amount_excl_vat": "1.00", "quantity": "1"}]}, 422,
         "lines.0"),
        ({"lines": [{"line_id": base, "amount_excl_vat": "1.00"},
                    {"line_id": base, "amount_excl_vat": "1.00"}]}, 422, "lines.1.line_id"),
        ({"lines": []}, 422, "lines"),
        ({}, 409, "lines"),  # the whole invoice, once part of it is credited
    ]  # fmt: skip
    for body, code, field in refusals:
        resp = credit(world, a, {"reason": "x", **body})
        assert resp.status_code == code, (body, resp.text)
        assert field in resp.json()["error"]["fields"], (body, resp.text)
    over = credit(world, a, {"reason": "x", "lines": [{"line_id": seats, "quantity": "2"}]})
    assert "line 2" in over.json()["error"]["fields"]["lines.0.quantity"]

    # Outstanding = total − credits − payments: the balance and the payment bound follow.
    bal = call(world, "GET", f"/tenants/{world.a.id}/balance", "tenant_admin").json()
    assert (bal["invoiced"], bal["paid"], bal["balance"]) == ("744.30", "0.00", "744.30")
    too_much = call(world, "POST", a + "/payments", "billing_clerk",
                    {"amount": "744.31", "received_on": "2026-12-05"})  # fmt: skip
    assert too_much.status_code == 422 and "amount" in too_much.json()["error"]["fields"]
    paid = call(world, "POST", a + "/payments", "billing_clerk",
                {"amount": "744.30", "received_on": "2026-12-05"})  # fmt: skip
    assert paid.status_code == 201, paid.text
    assert call(world, "GET", a, "auditor").json()["state"] == "paid"

    # A paid invoice is still credited line by line; the last credit of a line takes what VAT
    # is left on it, so the line's credits sum to its VAT exactly.
    last = [{"line_id": seats, "amount_excl_vat": "35.50"}]
    rest = credit(world, a, {"reason": "the other seat", "lines": last})
    assert rest.status_code == 201, rest.text
    assert (rest.json()["number"], rest.json()["vat"]) == ("CN00000003", "-2.13")
    gone = credit(world, a, {"reason": "x", "lines": [{"line_id": seats, "quantity": "0.5"}]})
    assert gone.status_code == 409 and "lines.0.quantity" in gone.json()["error"]["fields"]
    bal = call(world, "GET", f"/tenants/{world.a.id}/balance", "tenant_admin").json()
    assert (bal["invoiced"], bal["balance"]) == ("706.67", "-37.63")

    # The downloads of a partial credit note: negative amounts, the corrected invoice and line.
    n = f"/tenants/{world.a.id}/invoices/{cut.json()['id']}"
    rows = list(csv.reader(io.StringIO(call(world, "GET", n + "/csv", "tenant_admin").text)))
    assert rows[0][-1] == "corrects" and rows[1][-1] == inv["number"]
    assert rows[3][-1] == "corrects_line" and rows[4][0] == "1" and rows[4][-1] == "1"
    assert rows[4][8] == "-333.33" and rows[-1] == ["-333.33", "-20.00", "-353.33"]
    efapiao = call(world, "GET", n + "/e-fapiao", "tenant_admin").json()
    assert efapiao["red"] is True and efapiao["original"]["number"] == inv["number"]
    assert [(i["original_line"], i["amount"], i["tax"]) for i in efapiao["items"]] == [
        (1, "-333.33", "-20.00")
    ]
    pdf = call(world, "GET", n + "/pdf", "tenant_admin")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    # Another tenant's invoice answers 404; every credit note is in the audit chain.
    b = f"/tenants/{world.b.id}/invoices/{inv['id']}"
    assert credit(world, b, {"reason": "x"}, role="billing_clerk").status_code == 404
    with world.runtime.db.session(write=False) as session:
        made = set(
            session.scalars(
                select(AuditEvent.object_id).where(
                    AuditEvent.object_type == "invoice", AuditEvent.action == "create"
                )
            )
        )
    assert {one.json()["id"], cut.json()["id"], rest.json()["id"]} <= made


@both_stores
def test_whole_credit_stays_and_refuses_a_second(world: World) -> None:
    inv = billed_a(world)
    a = f"/tenants/{world.a.id}/invoices/{inv['id']}"
    assert call(world, "POST", a + "/issue", "billing_clerk").status_code == 200
    whole = credit(world, a, {"reason": "sold in error"})
    assert whole.status_code == 201 and whole.json()["total"] == "-1135.26"
    assert call(world, "GET", a, "auditor").json()["state"] == "paid"  # nothing is owed
    again = credit(world, a, {"reason": "again"})
    assert again.status_code == 409 and "lines" in again.json()["error"]["fields"]
    line = inv["lines"][0]["id"]
    part = credit(world, a, {"reason": "x", "lines": [{"line_id": line, "amount_excl_vat": "1"}]})
    assert part.status_code == 409 and "lines.0.amount_excl_vat" in part.json()["error"]["fields"]
    pay = call(world, "POST", a + "/payments", "billing_clerk",
               {"amount": "1.00", "received_on": "2026-12-05"})  # fmt: skip
    assert pay.status_code == 409 and "amount" in pay.json()["error"]["fields"]
    void = call(world, "POST", a + "/void", "billing_clerk", {"reason": "x"})
    assert void.status_code == 409


@both_stores
def test_credits_and_payments_that_cover_the_total_make_it_paid(world: World) -> None:
    """Paid in part, then credited for what is left: nothing is owed, so the invoice is paid
    (not left issued, overdue and reminded of ¥0.00); it takes no more payments."""
    inv = billed_a(world)  # 1000.00 + 60.00 VAT base fee, 2 seats 71.00 + 4.26: 1135.26
    a = f"/tenants/{world.a.id}/invoices/{inv['id']}"
    base, seats = (line["id"] for line in inv["lines"])
    assert call(world, "POST", a + "/issue", "billing_clerk").status_code == 200
    part = call(world, "POST", a + "/payments", "billing_clerk",
                {"amount": "1000.00", "received_on": "2026-12-05"})  # fmt: skip
    assert part.status_code == 201, part.text
    seats_off = credit(world, a, {"reason": "no seats",
                                  "lines": [{"line_id": seats, "quantity": "2"}]})  # fmt: skip
    assert seats_off.status_code == 201 and seats_off.json()["total"] == "-75.26"
    assert call(world, "GET", a, "auditor").json()["state"] == "issued"  # 60.00 left
    rest = credit(world, a, {"reason": "goodwill",
                             "lines": [{"line_id": base, "amount_excl_vat": "56.60"}]})  # fmt: skip
    assert rest.status_code == 201 and rest.json()["total"] == "-60.00", rest.text
    assert call(world, "GET", a, "auditor").json()["state"] == "paid"
    bal = call(world, "GET", f"/tenants/{world.a.id}/balance", "tenant_admin").json()
    assert bal["balance"] == "0.00"
    more = call(world, "POST", a + "/payments", "billing_clerk",
                {"amount": "1.00", "received_on": "2026-12-06"})  # fmt: skip
    assert more.status_code == 409 and "amount" in more.json()["error"]["fields"]
    with world.runtime.db.session(write=False) as session:  # the state change is audited
        states = [
            (e.after or {}).get("state")
            for e in session.scalars(
                select(AuditEvent).where(
                    AuditEvent.object_type == "invoice", AuditEvent.object_id == inv["id"]
                )
            )
        ]
    assert "paid" in states


@both_stores
def test_overdue_and_reminders_count_partial_credits(
    world: World, runtime: Runtime, smtp: SmtpServer
) -> None:
    use_relay(world, smtp.port)
    due = date(2026, 11, 30)
    partly = invoice(runtime, world.a.id, due)  # 106.00: 100.00 + 6.00 VAT, one line
    covered = invoice(runtime, world.a.id, due)
    p = f"/tenants/{world.a.id}/invoices"

    def line_of(invoice_id: uuid.UUID) -> str:
        body = call(world, "GET", f"{p}/{invoice_id}", "auditor").json()
        return str(body["lines"][0]["id"])

    ok = credit(world, f"{p}/{partly}", {"reason": "x", "lines": [
        {"line_id": line_of(partly), "amount_excl_vat": "30.00"}]})  # fmt: skip
    assert ok.status_code == 201 and ok.json()["total"] == "-31.80", ok.text
    ok = credit(world, f"{p}/{covered}", {"reason": "x", "lines": [
        {"line_id": line_of(covered), "amount_excl_vat": "50.00"}]})  # fmt: skip
    assert ok.status_code == 201, ok.text
    paid = call(world, "POST", f"{p}/{covered}/payments", "billing_clerk",
                {"amount": "53.00", "received_on": "2026-11-20"})  # fmt: skip
    assert paid.status_code == 201, paid.text

    today = due + timedelta(days=1)
    with runtime.db.session(write=False) as session:
        assert dunning.overdue_total(session, world.a.id, today) == Decimal("74.20")
    first = dunning.run_reminders(runtime, at(today))
    assert first.sent == [f"{number(runtime, partly)}:1"]
    assert "¥74.20" in smtp.wait_for("tenant_admin@a.example").text
