"""Dunning (tongdao.billing.dunning): reminders for overdue invoices at 1, 7 and 30 days past
due, each once; suspension for non-payment by the billing clerk, and its lift, which leaves a
compliance suspension alone (and the compliance watch leaves a non-payment one alone)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from typer.testing import CliRunner

from tests.api.test_compliance_watch import events, foreign_majority, foreign_minority, now
from tests.api.test_gateway import activate, device, enrol, make_pop, state
from tests.api.test_mail_reset import use_relay
from tests.conftest import both_stores
from tests.support.billing import billing_invoice
from tests.support.smtp import SmtpServer
from tests.support.world import World
from tongdao.billing import dunning
from tongdao.billing.models import Invoice, InvoiceState, Reminder
from tongdao.compliance import watch
from tongdao.jobs import lease
from tongdao.jobs.scheduler import Scheduler
from tongdao.runtime import Runtime

API = "/api/v1"
ADMIN_A = "tenant_admin@a.example"
ADMIN_B = "tenant_admin@b.example"


def call(world: World, method: str, path: str, role: str, body: Any = None) -> Any:
    return world.client.request(method, API + path, json=body, headers=world.actor(role).headers)


def invoice(runtime: Runtime, tenant_id: uuid.UUID, due: date, **values: Any) -> uuid.UUID:
    """An issued invoice of ¥106.00 (100.00 + 6% VAT), due on ``due``."""
    with runtime.db.session() as session:
        inv = billing_invoice(session, tenant_id, issued=True)
        session.commit()
        session.execute(update(Invoice).where(Invoice.id == inv.id).values(due_on=due, **values))
        session.commit()
        return inv.id


def number(runtime: Runtime, invoice_id: uuid.UUID) -> str:
    with runtime.db.session(write=False) as session:
        inv = session.get(Invoice, invoice_id)
        assert inv is not None
        return inv.number


def at(day: date) -> datetime:
    """Noon of an Asia/Shanghai day."""
    return datetime(day.year, day.month, day.day, 4, tzinfo=UTC)


@both_stores
def test_reminders_at_1_7_and_30_days_each_once(
    world: World, runtime: Runtime, smtp: SmtpServer
) -> None:
    use_relay(world, smtp.port)
    due = date(2026, 11, 30)
    partial = invoice(runtime, world.a.id, due)
    paid = invoice(runtime, world.a.id, due)
    late = invoice(runtime, world.b.id, due - timedelta(days=39))
    credited = invoice(runtime, world.a.id, due)
    draft = invoice(runtime, world.a.id, due, state=InvoiceState.DRAFT)
    p = f"/tenants/{world.a.id}/invoices"
    ok = call(world, "POST", f"{p}/{partial}/payments", "billing_clerk",
              {"amount": "40.00", "received_on": "2026-11-20"})  # fmt: skip
    assert ok.status_code == 201, ok.text
    ok = call(world, "POST", f"{p}/{paid}/payments", "billing_clerk",
              {"amount": "106.00", "received_on": "2026-11-20"})  # fmt: skip
    assert ok.status_code == 201, ok.text
    ok = call(world, "POST", f"{p}/{credited}/credit-notes", "billing_clerk", {"reason": "x"})
    assert ok.status_code == 201, ok.text

    # On A's due date: nothing for A; B's invoice, first seen 39 days past due, gets only the
    # 30-day step.
    assert dunning.run_reminders(runtime, at(due)).sent == [f"{number(runtime, late)}:30"]
    # One day past due: the partly paid invoice gets step 1 for its ¥66.00 outstanding. Paid,
    # credited and draft invoices get none.
    first = dunning.run_reminders(runtime, at(due + timedelta(days=1)))
    assert first.sent == [f"{number(runtime, partial)}:1"]
    mail = smtp.wait_for(ADMIN_A)
    assert number(runtime, partial) in mail.message["Subject"]
    assert "付款提醒" in mail.message["Subject"]
    assert "¥66.00" in mail.text and "2026-11-30" in mail.text and "Asia/Shanghai" in mail.text
    assert "未付" in mail.text
    assert "¥106.00" in smtp.wait_for(ADMIN_B).text
    # A rerun, and later days before the next step, send nothing twice.
    for day in (1, 2, 6):
        again = dunning.run_reminders(runtime, at(due + timedelta(days=day)))
        assert again.sent == [] and again.skipped == 2
    assert dunning.run_reminders(runtime, at(due + timedelta(days=7))).sent == [
        f"{number(runtime, partial)}:7"
    ]
    assert dunning.run_reminders(runtime, at(due + timedelta(days=30))).sent == [
        f"{number(runtime, partial)}:30"
    ]
    assert dunning.run_reminders(runtime, at(due + timedelta(days=90))).sent == []
    with runtime.db.session(write=False) as session:
        rows = session.execute(select(Reminder.invoice_id, Reminder.step)).all()
    assert sorted((i == partial, s) for i, s in rows) == [(False, 30), (True, 1), (True, 7),
                                                          (True, 30)]  # fmt: skip
    assert paid not in {i for i, _ in rows} and draft not in {i for i, _ in rows}
    sent = events(runtime, "billing_reminder_sent")
    assert len(sent) == 4 and all(e.actor == "job:billing.reminders" for e in sent)
    # The tenant admin reads theirs (newest first); B's are not among them.
    listed = call(world, "GET", f"/tenants/{world.a.id}/billing/reminders", "tenant_admin")
    assert listed.status_code == 200, listed.text
    assert [r["step"] for r in listed.json()["data"]] == [30, 7, 1]
    assert listed.json()["data"][0]["outstanding"] == "66.00"
    other = call(world, "GET", f"/tenants/{world.b.id}/billing/reminders", "tenant_admin")
    assert other.status_code == 404


def test_the_reminders_job_runs_under_its_lease(
    world: World, runtime: Runtime, tmp_path: Path, store_url: str
) -> None:
    from tests.store.test_billing_jobs import env_for
    from tongdao.cli import app as cli_app

    invoice(runtime, world.a.id, date(2026, 1, 1))
    scheduler = Scheduler(runtime, 0)
    t0 = runtime.clock()
    assert lease.acquire(runtime.db, dunning.JOB, "someone-else", t0, timedelta(minutes=5))
    assert scheduler.reminders() is None  # held elsewhere: skipped
    runner = CliRunner()
    env = env_for(tmp_path, store_url)
    held = runner.invoke(cli_app, ["billing", "remind"], env=env)
    assert held.exit_code == 3 and "lease" in held.output
    with runtime.db.session(write=False) as session:
        assert session.scalar(select(Reminder.id)) is None
    lease.release(runtime.db, dunning.JOB, "someone-else", t0)
    first = runner.invoke(cli_app, ["billing", "remind", "--json"], env=env)
    assert first.exit_code == 0, first.output
    assert ':30"]' in first.output
    again = runner.invoke(cli_app, ["billing", "remind"], env=env)
    assert again.exit_code == 0 and "0 reminders sent, 1 overdue" in again.output
    scheduler.tick()
    with runtime.db.session(write=False) as session:
        assert len(session.scalars(select(Reminder)).all()) == 1


def tenant_state(world: World, tid: uuid.UUID) -> str:
    resp = world.client.get(f"{API}/tenants/{tid}", headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["state"])


@both_stores
def test_suspension_for_nonpayment_is_the_clerks_audited_and_stops_traffic(
    world: World, runtime: Runtime
) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    assert [p.public_key for p in state(world, gw).tenants[0].peers] == [dev["public_key"]]
    base = f"/tenants/{world.a.id}/billing/suspension"
    # No overdue invoice: refused, keyed by field; an invoice not yet due changes nothing.
    invoice(runtime, world.a.id, date(2099, 1, 1))
    resp = call(world, "POST", base, "billing_clerk", {"reason": "unpaid"})
    assert resp.status_code == 409 and resp.json()["error"]["fields"] == {
        "tenant": "no overdue invoice"
    }
    due = invoice(runtime, world.a.id, date(2026, 1, 1))
    # A reason is required; the operator admin and the compliance officer may not do it.
    for body in ({}, {"reason": "  "}):
        resp = call(world, "POST", base, "billing_clerk", body)
        assert resp.status_code == 422 and "reason" in str(resp.json()["error"]["fields"])
    for role in ("operator_admin", "compliance_officer", "tenant_admin"):
        assert call(world, "POST", base, role, {"reason": "unpaid"}).status_code == 403
    assert tenant_state(world, world.a.id) == "active"

    resp = call(world, "POST", base, "billing_clerk", {"reason": "INV unpaid since January"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["tenant_state"] == "suspended"
    assert resp.json()["overdue_total"] == "106.00"
    assert resp.json()["suspended_by"] == "billing_clerk@operator.example"
    assert len(state(world, gw).tenants) == 0  # off the gateways
    (event,) = events(runtime, "billing_suspend")
    assert event.after is not None and event.after["reason"] == "INV unpaid since January"
    assert event.tenant_id == world.a.id
    again = call(world, "POST", base, "billing_clerk", {"reason": "twice"})
    assert again.status_code == 409 and "tenant" in again.json()["error"]["fields"]
    # Only the lift resumes it: a PATCH to active is refused, naming the field.
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}", json={"state": "active"}, headers=world.admin.headers
    )
    assert resp.status_code == 409 and "state" in resp.json()["error"]["fields"]
    # Paying does not lift it either; the clerk lifts it, with a reason.
    paid = call(world, "POST", f"/tenants/{world.a.id}/invoices/{due}/payments", "billing_clerk",
                {"amount": "106.00", "received_on": "2026-12-01"})  # fmt: skip
    assert paid.status_code == 201, paid.text
    assert tenant_state(world, world.a.id) == "suspended"
    assert call(world, "POST", base + "/lift", "billing_clerk", {}).status_code == 422
    assert call(world, "POST", base + "/lift", "operator_admin", {"reason": "x"}).status_code == 403
    resp = call(world, "POST", base + "/lift", "billing_clerk", {"reason": "paid on 12-01"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["tenant_state"] == "active" and resp.json()["lift_reason"] == "paid on 12-01"
    assert [p.public_key for p in state(world, gw).tenants[0].peers] == [dev["public_key"]]
    (lifted,) = events(runtime, "billing_lift")
    assert lifted.after is not None and lifted.after["resumed"] is True
    nothing = call(world, "POST", base + "/lift", "billing_clerk", {"reason": "again"})
    assert nothing.status_code == 409 and nothing.json()["error"]["fields"] == {
        "tenant": "not suspended for non-payment"
    }
    listed = call(world, "GET", f"/tenants/{world.a.id}/billing/suspensions", "tenant_admin")
    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert listed.json()["data"][0]["lifted_at"] is not None
    other = call(world, "GET", f"/tenants/{world.b.id}/billing/suspensions", "tenant_admin")
    assert other.status_code == 404


@both_stores
def test_the_two_suspensions_do_not_lift_each_other(world: World, runtime: Runtime) -> None:
    activate(world, world.a.id)
    invoice(runtime, world.a.id, date(2026, 1, 1))
    base = f"/tenants/{world.a.id}/billing/suspension"
    t0 = now()
    # The compliance watch suspends A; then the clerk suspends it for non-payment too.
    foreign_majority(world)
    watch.check(runtime, t0)
    assert watch.check(runtime, t0 + timedelta(days=8)).suspended == [world.a.id]
    resp = call(world, "POST", base, "billing_clerk", {"reason": "unpaid"})
    assert resp.status_code == 201, resp.text
    # The rule is met again: the watch resolves, but A stays suspended for non-payment.
    foreign_minority(world)
    outcome = watch.check(runtime, t0 + timedelta(days=9))
    assert outcome.resolved == ["ownership"] and outcome.lifted == []
    assert tenant_state(world, world.a.id) == "suspended"
    # The lift then resumes it (it was held only by the watch when suspended).
    resp = call(world, "POST", base + "/lift", "billing_clerk", {"reason": "paid"})
    assert resp.status_code == 200 and resp.json()["tenant_state"] == "active"

    # The other way round: non-payment first, then the watch; lifting the non-payment
    # suspension leaves the compliance one in place, and the watch resumes it later.
    resp = call(world, "POST", base, "billing_clerk", {"reason": "unpaid again"})
    assert resp.status_code == 201, resp.text
    t1 = t0 + timedelta(days=10)
    foreign_majority(world)
    watch.check(runtime, t1)
    watch.check(runtime, t1 + timedelta(days=8))
    resp = call(world, "POST", base + "/lift", "billing_clerk", {"reason": "paid"})
    assert resp.status_code == 200 and resp.json()["tenant_state"] == "suspended"
    (_, lifted) = events(runtime, "billing_lift")
    assert lifted.after is not None and lifted.after["held_by_compliance"] is True
    foreign_minority(world)
    assert watch.check(runtime, t1 + timedelta(days=9)).lifted == [world.a.id]
    assert tenant_state(world, world.a.id) == "active"


def test_a_tenant_a_person_suspended_stays_suspended_after_the_lift(
    world: World, runtime: Runtime
) -> None:
    activate(world, world.a.id)
    invoice(runtime, world.a.id, date(2026, 1, 1))
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}",
        json={"state": "suspended", "state_reason": "abuse report"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    base = f"/tenants/{world.a.id}/billing/suspension"
    assert call(world, "POST", base, "billing_clerk", {"reason": "unpaid"}).status_code == 201
    resp = call(world, "POST", base + "/lift", "billing_clerk", {"reason": "paid"})
    assert resp.status_code == 200 and resp.json()["tenant_state"] == "suspended"
    # A tenant not in service (never activated) cannot be suspended for non-payment.
    invoice(runtime, world.b.id, date(2026, 1, 1))
    resp = call(world, "POST", f"/tenants/{world.b.id}/billing/suspension", "billing_clerk",
                {"reason": "unpaid"})  # fmt: skip
    assert resp.status_code == 409 and "tenant" in resp.json()["error"]["fields"]


def test_the_cli_needs_a_reason() -> None:
    from tongdao.cli import app as cli_app

    runner = CliRunner()
    for command in ("suspend-nonpayment", "lift-nonpayment"):
        blank = runner.invoke(cli_app, ["tenants", command, str(uuid.uuid4()), "--reason", " "])
        assert blank.exit_code == 2 and "--reason" in blank.output, blank.output
        missing = runner.invoke(cli_app, ["tenants", command, str(uuid.uuid4())])
        assert missing.exit_code == 2
