"""The monthly run on SQLite and PostgreSQL: lines from the store, gapless numbers under
concurrent runs and faults, idempotence, immutable invoices, and the job lease."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from tests.conftest import both_stores
from tests.support.billing import add_plan, add_tenants, ctx_for, subscribe
from tongdao.audit import chain
from tongdao.audit.models import AuditEvent
from tongdao.billing import money, service
from tongdao.billing.models import Invoice, InvoiceKind, InvoiceLine, NumberSeries
from tongdao.errors import Conflict
from tongdao.gateway.models import Gateway, UsageRecord
from tongdao.jobs import lease
from tongdao.network.models import Device, Pop
from tongdao.runtime import Runtime
from tongdao.tenancy.models import Tenant, User
from tongdao.testing.keys import public_key

MONTH = date(2027, 1, 1)  # after the test's users and sites were made: all of them count


def numbers(runtime: Runtime, kind: InvoiceKind = InvoiceKind.INVOICE) -> list[int]:
    with runtime.db.session(write=False) as session:
        found = session.scalars(select(Invoice.number).where(Invoice.kind == kind))
        return sorted(service.number_value(n) for n in found)


def series_value(runtime: Runtime, kind: InvoiceKind = InvoiceKind.INVOICE) -> int:
    with runtime.db.session(write=False) as session:
        row = session.get(NumberSeries, kind.value)
        return 0 if row is None else row.last_value


def invoices_of(runtime: Runtime) -> list[Invoice]:
    with runtime.db.session(write=False) as session:
        rows = list(session.scalars(select(Invoice).order_by(Invoice.number)))
        for row in rows:
            _ = row.lines
        return rows


def run_parallel(work: Callable[[int], None], threads: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def runner(n: int) -> None:
        try:
            start.wait(timeout=30)
            work(n)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=runner, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in pool), "threads hung"
    return errors


@both_stores
def test_lines_come_from_the_store_and_prorate_a_mid_month_change(runtime: Runtime) -> None:
    cheap = add_plan(runtime, "Cheap", base_fee="310.00", seat_price="31.00", site_price="0")
    dear = add_plan(runtime, "Dear", base_fee="620.00", seat_price="0", site_price="0")
    [tenant] = add_tenants(runtime, 1)
    with runtime.db.session() as session:
        for i in range(3):
            session.add(
                User(tenant_id=tenant, email=f"u{i}@billed.example", display_name="U", roles=[])
            )
        session.commit()
    subscribe(runtime, tenant, cheap, date(2026, 12, 1))
    subscribe(runtime, tenant, dear, date(2027, 1, 11))  # 10 days cheap, 21 days dear
    outcome = service.run_month(runtime.db, MONTH)
    assert outcome.created == ["INV00000001"]
    [inv] = invoices_of(runtime)
    got = [(x.kind, x.quantity, x.amount, x.vat, x.period_start, x.period_end) for x in inv.lines]
    assert got == [
        ("base", 1, Decimal("100.00"), Decimal("6.00"), date(2027, 1, 1), date(2027, 1, 11)),
        ("seats", 3, Decimal("30.00"), Decimal("1.80"), date(2027, 1, 1), date(2027, 1, 11)),
        ("base", 1, Decimal("420.00"), Decimal("25.20"), date(2027, 1, 11), date(2027, 2, 1)),
    ]
    assert (inv.subtotal, inv.vat, inv.total) == (
        Decimal("550.00"),
        Decimal("33.00"),
        Decimal("583.00"),
    )
    assert inv.buyer_tax_id and inv.buyer_name == "Billed 500"
    assert inv.month == "2027-01" and inv.state == "draft"


@both_stores
def test_active_seats_are_users_with_a_device_handshake_in_the_segment(runtime: Runtime) -> None:
    plan = add_plan(runtime, "Active", base_fee="0", seat_price="10.00", seat_basis="active")
    [tenant] = add_tenants(runtime, 1)
    with runtime.db.session() as session:
        users = [
            User(tenant_id=tenant, email=f"a{i}@billed.example", display_name="A", roles=[])
            for i in range(3)
        ]
        session.add_all(users)
        session.flush()
        devices = [
            Device(
                tenant_id=tenant,
                user_id=u.id,
                name=f"d{i}",
                public_key=public_key(),
                host_index=10 + i,
                ipv4=f"100.64.0.{10 + i}",
                ipv6=f"fd00::{10 + i}",
            )
            for i, u in enumerate(users)
        ]
        # user 0 has two devices: one seat
        devices.append(
            Device(
                tenant_id=tenant,
                user_id=users[0].id,
                name="d9",
                public_key=public_key(),
                host_index=19,
                ipv4="100.64.0.19",
                ipv6="fd00::19",
            )
        )
        session.add_all(devices)
        pop = Pop(name="bj-1", region="CN-BJ", country="CN", endpoint_host="198.51.100.1",
                  port_min=51820, port_max=51900)  # fmt: skip
        session.add(pop)
        session.flush()
        gw = Gateway(pop_id=pop.id, credential_hash="f" * 64)
        session.add(gw)
        session.flush()
        in_month = datetime(2027, 1, 5, 3, tzinfo=UTC)
        before = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai: December
        for seq, (device, seen) in enumerate(
            [(devices[0], in_month), (devices[3], in_month), (devices[1], in_month),
             (devices[2], before)]
        ):  # fmt: skip
            session.add(
                UsageRecord(gateway_id=gw.id, seq=seq, tenant_id=tenant,
                            peer_key=device.public_key, peer_kind="device",
                            peer_ref=str(device.id), rx_bytes=1, tx_bytes=1,
                            last_handshake=seen, period_start=seen, period_end=seen)
            )  # fmt: skip
        session.commit()
    subscribe(runtime, tenant, plan, date(2027, 1, 1))
    service.run_month(runtime.db, MONTH)
    [inv] = invoices_of(runtime)
    [line] = inv.lines
    assert (line.kind, line.quantity, line.amount) == ("seats", 2, Decimal("20.00"))
    assert line.usage_key == "store:users:active"


@both_stores
def test_running_twice_changes_nothing(runtime: Runtime) -> None:
    plan = add_plan(runtime)
    tenants = add_tenants(runtime, 3)
    for t in tenants:
        subscribe(runtime, t, plan, date(2026, 12, 15))
    first = service.run_month(runtime.db, MONTH)
    before = [(i.number, i.total, i.updated_at) for i in invoices_of(runtime)]
    second = service.run_month(runtime.db, MONTH)
    assert len(first.created) == 3 and second.created == [] and second.existing == 3
    assert [(i.number, i.total, i.updated_at) for i in invoices_of(runtime)] == before
    assert series_value(runtime) == 3  # the second run's numbers were given back


@both_stores
def test_concurrent_runs_number_without_gaps(runtime: Runtime) -> None:
    plan = add_plan(runtime)
    tenants = add_tenants(runtime, 8)
    for t in tenants:
        subscribe(runtime, t, plan, date(2027, 1, 1))
    made: list[list[str]] = []

    def work(_n: int) -> None:
        made.append(service.run_month(runtime.db, MONTH).created)

    assert run_parallel(work, 4) == []
    assert numbers(runtime) == list(range(1, 9))
    assert sorted(n for run in made for n in run) == [f"INV{i:08d}" for i in range(1, 9)]
    with runtime.db.session(write=False) as session:
        per_tenant = session.execute(
            select(Invoice.tenant_id, func.count()).group_by(Invoice.tenant_id)
        ).all()
    assert sorted(c for _, c in per_tenant) == [1] * 8
    assert series_value(runtime) == 8


@both_stores
def test_a_run_failing_mid_way_leaves_no_half_invoice_and_no_gap(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant whose invoice cannot be computed stops the run before the batch is written:
    the batch's tenants before it are written and committed, nothing of it or after it."""
    plan = add_plan(runtime)
    tenants = add_tenants(runtime, 4)
    for t in tenants:
        subscribe(runtime, t, plan, date(2027, 1, 1))
    victim = sorted(tenants)[2]
    draft = service.draft_invoice

    def fail_on_victim(
        session: Session,
        tenant: Tenant,
        month: date,
        facts: service.MonthFacts,
        *,
        fresh: bool = False,
    ) -> service.InvoiceDraft | None:
        if tenant.id == victim:
            raise RuntimeError("killed mid-run")
        return draft(session, tenant, month, facts, fresh=fresh)

    monkeypatch.setattr(service, "draft_invoice", fail_on_victim)
    with pytest.raises(RuntimeError):
        service.run_month(runtime.db, MONTH)
    monkeypatch.setattr(service, "draft_invoice", draft)
    assert numbers(runtime) == [1, 2] and series_value(runtime) == 2
    with runtime.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(InvoiceLine)) == sum(
            len(i.lines) for i in invoices_of(runtime)
        )
    again = service.run_month(runtime.db, MONTH)
    assert again.created == ["INV00000003", "INV00000004"] and again.existing == 2
    assert numbers(runtime) == [1, 2, 3, 4]


@both_stores
def test_a_batch_failing_in_its_write_leaves_nothing_of_it(runtime: Runtime) -> None:
    """The database refusing the batch's lines (a fault in the write itself): the whole batch
    rolls back, its invoices, numbers and audit records with it."""
    plan = add_plan(runtime)
    tenants = add_tenants(runtime, 4)
    for t in tenants:
        subscribe(runtime, t, plan, date(2027, 1, 1))
    with runtime.db.session(write=False) as session:
        records = session.scalar(select(func.count()).select_from(AuditEvent))

    def refuse_lines(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT INTO billing_invoice_lines"):
            raise RuntimeError("killed mid-write")

    event.listen(runtime.db.engine, "before_cursor_execute", refuse_lines)
    try:
        with pytest.raises(RuntimeError):
            service.run_month(runtime.db, MONTH, batch=3)
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", refuse_lines)
    assert numbers(runtime) == [] and series_value(runtime) == 0
    with runtime.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(InvoiceLine)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == records
    again = service.run_month(runtime.db, MONTH, batch=3)
    assert again.created == [f"INV{i:08d}" for i in range(1, 5)] and again.existing == 0


@both_stores
def test_a_run_made_invoice_has_one_audit_record_with_its_lines(runtime: Runtime) -> None:
    """The run audits an invoice it makes as one document: one chained record carrying the
    invoice's columns and its lines; a line changed later gets a record of its own."""
    plan = add_plan(runtime)
    tenants = add_tenants(runtime, 3)
    for t in tenants:
        subscribe(runtime, t, plan, date(2026, 12, 15))
    with runtime.db.session(write=False) as session:
        before = session.scalar(select(func.max(AuditEvent.id))) or 0
    assert len(service.run_month(runtime.db, MONTH, batch=2).created) == 3
    with runtime.db.session(write=False) as session:
        made = list(session.scalars(select(AuditEvent).where(AuditEvent.id > before)))
        assert {(e.action, e.object_type, e.kind) for e in made} == {
            ("billing_invoice_made", "invoice", "change")
        }
        for invoice in session.scalars(select(Invoice)):
            [ev] = [e for e in made if e.object_id == str(invoice.id)]
            after = ev.after or {}
            assert (after["number"], after["total"], after["state"]) == (
                invoice.number, str(invoice.total), "draft"
            )  # fmt: skip
            assert [(x["id"], x["position"], x["amount"], x["vat"]) for x in after["lines"]] == [
                (str(x.id), x.position, str(x.amount), str(x.vat)) for x in invoice.lines
            ]
            assert ev.seq is not None
    with runtime.db.session() as session:  # a credit note's lines: records of their own
        inv = session.scalars(select(Invoice).order_by(Invoice.number)).first()
        assert inv is not None
        ctx = ctx_for(runtime, session)
        service.issue(ctx, inv)
        session.commit()
        note = service.credit_note(ctx, inv, "plan sold in error")
        session.commit()
        lines = session.scalars(
            select(AuditEvent.object_id).where(AuditEvent.object_type == "invoice_line")
        )
        assert set(lines) == {str(x.id) for x in note.lines}
    report = chain.verify_chain(runtime.db, chain.SigningKey.from_settings(runtime.settings))
    assert report.ok, report


@both_stores
def test_an_issued_invoice_never_changes_and_a_void_keeps_its_number(runtime: Runtime) -> None:
    plan = add_plan(runtime)
    [tenant] = add_tenants(runtime, 1)
    subscribe(runtime, tenant, plan, date(2027, 1, 1))
    service.run_month(runtime.db, MONTH)
    with runtime.db.session() as session:
        inv = session.scalars(select(Invoice)).one()
        service.issue(ctx_for(runtime, session), inv)
        session.commit()
        inv.total = inv.total + 1
        with pytest.raises(Conflict):
            session.flush()
        session.rollback()
        inv = session.scalars(select(Invoice)).one()
        inv.lines[0].amount = Decimal("0.01")
        with pytest.raises(Conflict):
            session.flush()
        session.rollback()
    with runtime.db.session() as session:
        inv = session.scalars(select(Invoice)).one()
        service.void(ctx_for(runtime, session), inv, "wrong buyer")
        session.commit()
    # The void one keeps its number; the month is billed again under the next number.
    assert service.run_month(runtime.db, MONTH).created == ["INV00000002"]
    assert service.run_month(runtime.db, MONTH).created == []
    voided, fresh = invoices_of(runtime)
    assert (voided.state, voided.number, fresh.state) == ("void", "INV00000001", "draft")


@both_stores
def test_credit_notes_have_their_own_gapless_series(runtime: Runtime) -> None:
    plan = add_plan(runtime)
    tenants = add_tenants(runtime, 3)
    for t in tenants:
        subscribe(runtime, t, plan, date(2027, 1, 1))
    service.run_month(runtime.db, MONTH)
    with runtime.db.session() as session:
        invs = list(session.scalars(select(Invoice).order_by(Invoice.number)))
        ctx = ctx_for(runtime, session)
        for inv in invs:
            service.issue(ctx, inv)
        session.commit()
        for inv in invs[1:]:
            note = service.credit_note(ctx, inv, "plan sold in error")
            session.flush()
            assert note.corrects_id == inv.id and note.total == -inv.total
            assert [x.amount for x in note.lines] == [-x.amount for x in inv.lines]
        session.commit()
        with pytest.raises(Conflict):
            service.credit_note(ctx, invs[1], "again")
        session.rollback()
        # A reversed invoice is not overdue and takes no payment; the first one still is.
        later = date(2099, 1, 1)
        overdue = set(session.scalars(service.overdue_query(later)))
        assert overdue == {invs[0]}
        with pytest.raises(Conflict):
            service.record_payment(ctx, invs[1], Decimal("1.00"), later, "")
        session.rollback()
    assert numbers(runtime, InvoiceKind.CREDIT_NOTE) == [1, 2]
    assert series_value(runtime, InvoiceKind.CREDIT_NOTE) == 2


@both_stores
def test_partial_and_full_payments_and_the_balance(runtime: Runtime) -> None:
    plan = add_plan(runtime, base_fee="100.00", seat_price="0", site_price="0")
    [tenant] = add_tenants(runtime, 1)
    subscribe(runtime, tenant, plan, date(2027, 1, 1))
    service.run_month(runtime.db, MONTH)
    with runtime.db.session() as session:
        inv = session.scalars(select(Invoice)).one()
        ctx = ctx_for(runtime, session)
        service.issue(ctx, inv)
        service.record_payment(ctx, inv, Decimal("50.00"), date(2027, 2, 2), "bank 1")
        assert inv.state == "issued"
        session.commit()
        later = money.shanghai_today(runtime.clock()) + timedelta(days=inv.payment_terms_days + 1)
        assert service.balance(session, tenant, later) == {
            "invoiced": Decimal("106.00"),
            "paid": Decimal("50.00"),
            "balance": Decimal("56.00"),
            "overdue": Decimal("56.00"),
        }
        assert service.balance(session, tenant, later - timedelta(days=2))["overdue"] == 0
        service.record_payment(ctx, inv, Decimal("56.00"), date(2027, 2, 3), "bank 2")
        assert inv.state == "paid"
        session.commit()
        assert service.balance(session, tenant, later)["balance"] == 0


# --- the lease -------------------------------------------------------------------------------
@both_stores
def test_of_two_contenders_one_holds_the_lease(runtime: Runtime) -> None:
    now = datetime.now(UTC)
    ttl = timedelta(minutes=10)
    for round_ in range(5):
        name = f"race.{round_}"
        won: list[str] = []

        def work(n: int, name: str = name, won: list[str] = won) -> None:
            if lease.acquire(runtime.db, name, f"replica-{n}", now, ttl):
                won.append(f"replica-{n}")

        assert run_parallel(work, 2) == []
        assert len(won) == 1, won
        loser = "replica-1" if won == ["replica-0"] else "replica-0"
        assert lease.acquire(runtime.db, name, won[0], now + timedelta(minutes=1), ttl)
        assert not lease.acquire(runtime.db, name, loser, now + timedelta(minutes=5), ttl)
        # The holder died: after the lease expires the other takes it.
        assert lease.acquire(runtime.db, name, loser, now + timedelta(minutes=12), ttl)
        assert not lease.release(runtime.db, name, won[0], now + timedelta(minutes=12))
        assert lease.release(runtime.db, name, loser, now + timedelta(minutes=13), done="x")
        assert lease.last_done(runtime.db, name) == "x"


@both_stores
def test_the_runs_facts_for_all_tenants_are_each_tenants_own(runtime: Runtime) -> None:
    """The monthly run reads every tenant's quantities at once (``month_facts``): for tenants
    with a plan change, sites, more users, one erased and one off every plan, the invoices it
    makes are exactly those each tenant's own reads make."""
    cheap = add_plan(runtime, "Cheap", base_fee="310.00", seat_price="31.00", site_price="9.30")
    dear = add_plan(runtime, "Dear", base_fee="620.00", seat_price="12.40", site_price="0")
    tenants = add_tenants(runtime, 4)
    with runtime.db.session() as session:
        for n, tenant in enumerate(tenants):
            for i in range(n + 1):
                erased = datetime(2026, 12, 20, tzinfo=UTC) if i == 1 else None
                session.add(
                    User(tenant_id=tenant, email=f"u{i}@t{n}.billed.example", display_name="U",
                         roles=[], erased_at=erased)
                )  # fmt: skip
        session.commit()
    subscribe(runtime, tenants[0], cheap, date(2026, 12, 1))
    subscribe(runtime, tenants[1], cheap, date(2026, 12, 1))
    subscribe(runtime, tenants[1], dear, date(2027, 1, 11))
    subscribe(runtime, tenants[2], dear, date(2027, 1, 20))  # from day 20 only
    subscribe(runtime, tenants[3], cheap, date(2026, 12, 1))
    subscribe(runtime, tenants[3], None, date(2027, 1, 1))  # off every plan this month

    def lines(facts: service.MonthFacts | None) -> dict[object, list[tuple[object, ...]]]:
        out: dict[object, list[tuple[object, ...]]] = {}
        with runtime.db.session() as session:
            for tenant in tenants:
                inv = service.bill_tenant(session, tenant, MONTH, facts)
                out[tenant] = [] if inv is None else [
                    (x.position, x.kind, x.quantity, x.amount, x.vat, x.period_start,
                     x.period_end, x.usage_key) for x in inv.lines
                ]  # fmt: skip
            session.rollback()
        return out

    with runtime.db.session(write=False) as session:
        facts = service.month_facts(session, tenants, MONTH)
        session.expunge_all()
    own, together = lines(None), lines(facts)
    assert together == own
    assert [len(own[t]) for t in tenants] == [2, 4, 2, 0]
    assert service.run_month(runtime.db, MONTH).created == ["INV00000001", "INV00000002",
                                                            "INV00000003"]  # fmt: skip


def test_a_row_that_would_not_fit_its_column_is_refused_before_the_write() -> None:
    """The run writes a batch with one statement: a value the database would refuse is
    found while the tenant's invoice is computed (a field-named refusal, nothing written)."""
    tenant = uuid.UUID(int=7)
    good = {"description": "x" * 200, "amount": Decimal("9999999999.99"), "vat": Decimal("-1")}
    service.check_fits(InvoiceLine, tenant, good)
    service.check_fits(InvoiceLine, tenant, {"quantity": Decimal("0.000001"), "unit": None})
    for bad in (
        {"description": "x" * 201},
        {"amount": Decimal("1000000000000.00")},
        {"amount": Decimal("0.001")},
        {"quantity": Decimal("0.0000001")},
        {"vat_rate": Decimal("NaN")},
    ):
        with pytest.raises(Conflict) as refused:
            service.check_fits(InvoiceLine, tenant, bad)
        assert f"billing_invoice_lines.{next(iter(bad))}" in str(refused.value)
    with pytest.raises(Conflict):
        service.check_fits(Invoice, tenant, {"buyer_tax_id": "9" * 19})
