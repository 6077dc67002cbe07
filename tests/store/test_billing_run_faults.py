"""The monthly run's set-based batch write under review (s23-billrev): a later tenant's
computation failing in the database itself, and a run-made invoice against the ORM's."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import both_stores
from tests.store.test_billing_store import MONTH, invoices_of, numbers, series_value
from tests.support.billing import add_plan, add_tenants, ctx_for, subscribe
from tongdao.audit import chain
from tongdao.audit.models import AuditEvent
from tongdao.billing import service
from tongdao.billing.models import Invoice
from tongdao.billing.schemas import SubscriptionCreate
from tongdao.errors import ValidationError
from tongdao.runtime import Runtime
from tongdao.tenancy.models import Tenant, User


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_database_error_in_a_later_tenant_keeps_the_tenants_before_it(
    runtime: Runtime,
) -> None:
    """A tenant's own query failing on PostgreSQL (a statement timeout, a cancelled query:
    here a division by zero) aborts the transaction; the batch's tenants before it are still
    written (no gap) and the run raises the tenant's error, not "transaction is aborted"."""
    plan = add_plan(runtime, seat_basis="active")  # seats counted per tenant, in the batch
    tenants = add_tenants(runtime, 4)
    for t in tenants:
        subscribe(runtime, t, plan, date(2027, 1, 1))
    victim = sorted(tenants)[2]

    def fail_for_victim(
        _conn: object, _cursor: object, statement: str, params: Any, _ctx: object, _many: bool
    ) -> tuple[str, Any]:
        values = params.values() if isinstance(params, Mapping) else params or ()
        if "FROM usage_records" in statement and any(
            v == victim or v == victim.hex or v == str(victim) for v in values
        ):
            statement = f"SELECT * FROM ({statement}) AS q WHERE 1 / 0 = 1"  # noqa: S608
        return statement, params

    event.listen(runtime.db.engine, "before_cursor_execute", fail_for_victim, retval=True)
    try:
        with pytest.raises(DBAPIError) as raised:
            service.run_month(runtime.db, MONTH)
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", fail_for_victim)
    assert "division by zero" in str(raised.value)
    assert numbers(runtime) == [1, 2] and series_value(runtime) == 2
    assert [i.tenant_id for i in invoices_of(runtime)] == sorted(tenants)[:2]
    again = service.run_month(runtime.db, MONTH)
    assert again.created == ["INV00000003", "INV00000004"] and again.existing == 2
    report = chain.verify_chain(runtime.db, chain.SigningKey.from_settings(runtime.settings))
    assert report.ok, report


_OWN = {"id", "tenant_id", "invoice_id", "number", "dedupe_key", "created_at", "updated_at",
        "buyer_name", "buyer_tax_id"}  # fmt: skip


def _columns(obj: Any) -> dict[str, tuple[Any, str]]:
    return {
        c.key: (getattr(obj, c.key), type(getattr(obj, c.key)).__name__)
        for c in obj.__table__.c
        if c.key not in _OWN
    }


def _audited(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _OWN}


@both_stores
def test_a_run_made_invoice_is_the_one_the_orm_makes_column_by_column(runtime: Runtime) -> None:
    """The run's Core insert and its audit record against :func:`service.bill_tenant` (the
    ORM, its defaults and its flush hook) for two tenants alike: same stored values and types,
    and the run's record holds what the ORM's creation records hold (a column added with an
    ORM default but left out of :func:`service.draft_invoice` would show here)."""
    cheap = add_plan(runtime, "Cheap", base_fee="310.00", seat_price="31.00", site_price="3.00")
    dear = add_plan(runtime, "Dear", base_fee="620.00", seat_price="0", site_price="0")
    by_orm, by_run = add_tenants(runtime, 2)
    with runtime.db.session() as session:
        for n, t in enumerate((by_orm, by_run)):
            for i in range(2):
                session.add(
                    User(tenant_id=t, email=f"u{n}{i}@billed.example", display_name="U", roles=[])
                )
        session.commit()
    for t in (by_orm, by_run):
        subscribe(runtime, t, cheap, date(2026, 12, 1))
        subscribe(runtime, t, dear, date(2027, 1, 11))  # a plan change mid-month
    with runtime.db.session() as session:
        assert service.bill_tenant(session, by_orm, MONTH) is not None
        session.commit()
    assert service.run_month(runtime.db, MONTH).created == ["INV00000002"]
    with runtime.db.session(write=False) as session:
        orm = session.scalars(select(Invoice).where(Invoice.tenant_id == by_orm)).one()
        run = session.scalars(select(Invoice).where(Invoice.tenant_id == by_run)).one()
        assert _columns(run) == _columns(orm)
        assert len(run.lines) == len(orm.lines) == 3
        assert [_columns(x) for x in run.lines] == [_columns(x) for x in orm.lines]
        for made in (run, orm):
            assert made.created_at.tzinfo is not None and made.number.startswith("INV")
        records = {
            e.object_id: e.after or {}
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.object_type.in_(["invoice", "invoice_line"]))
            )
        }
        made = dict(records[str(run.id)])
        lines = made.pop("lines")
        assert _audited(made) == _audited(records[str(orm.id)])
        assert [_audited(x) for x in lines] == [_audited(records[str(x.id)]) for x in orm.lines]
        assert [x["id"] for x in lines] == [str(x.id) for x in run.lines]


@both_stores
def test_a_plan_change_made_while_the_run_goes_is_billed_or_refused(runtime: Runtime) -> None:
    """A subscription for the month accepted while the run goes (the tenant not invoiced yet)
    must be in the tenant's invoice, or refused: never accepted and left out."""
    cheap = add_plan(runtime, "Cheap", base_fee="310.00", seat_price="0", site_price="0")
    dear = add_plan(runtime, "Dear", base_fee="620.00", seat_price="0", site_price="0")
    first, second = sorted(add_tenants(runtime, 2))
    for t in (first, second):
        subscribe(runtime, t, cheap, date(2026, 12, 1))
    asked: list[str] = []

    def keep_going() -> bool:  # between the batches: the clerk moves the second tenant
        if len(asked) == 1:
            with runtime.db.session() as session:
                tenant = session.get(Tenant, second)
                assert tenant is not None
                try:
                    service.subscribe(
                        ctx_for(runtime, session), tenant,
                        SubscriptionCreate(plan_id=dear, starts_on=date(2027, 1, 11)),
                    )  # fmt: skip
                    session.commit()
                    asked.append("accepted")
                except ValidationError:
                    asked.append("refused")
        else:
            asked.append("asked")
        return True

    service.run_month(runtime.db, MONTH, keep_going=keep_going, batch=1)
    [_, what] = asked
    with runtime.db.session(write=False) as session:
        inv = session.scalars(select(Invoice).where(Invoice.tenant_id == second)).one()
        if what == "accepted":
            assert [x.period_end for x in inv.lines] == [date(2027, 1, 11), date(2027, 2, 1)]
            assert inv.subtotal == Decimal("520.00")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_plan_change_during_a_batchs_write_waits_and_is_refused(runtime: Runtime) -> None:
    """PostgreSQL: a subscription for the month asked while the run writes the tenant's batch
    waits for the batch (the series' lock) and is then refused: the month is invoiced."""
    cheap = add_plan(runtime, "Cheap", base_fee="310.00", seat_price="0", site_price="0")
    dear = add_plan(runtime, "Dear", base_fee="620.00", seat_price="0", site_price="0")
    [tenant_id] = add_tenants(runtime, 1)
    subscribe(runtime, tenant_id, cheap, date(2026, 12, 1))
    outcome: list[str] = []

    def change_plan() -> None:
        with runtime.db.session() as session:
            tenant = session.get(Tenant, tenant_id)
            assert tenant is not None
            try:
                service.subscribe(
                    ctx_for(runtime, session), tenant,
                    SubscriptionCreate(plan_id=dear, starts_on=date(2027, 1, 11)),
                )  # fmt: skip
                session.commit()
                outcome.append("accepted")
            except ValidationError as exc:
                outcome.append(str(exc.fields))

    clerk = threading.Thread(target=change_plan)

    def waiting_for_the_series() -> bool:
        with runtime.db.engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%billing_number_series%' AND pid <> pg_backend_pid()"
                    )
                ).scalar()
            )

    def mid_write(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT INTO billing_invoices ") and not clerk.is_alive():
            clerk.start()
            for _ in range(6000):  # until the clerk's transaction waits for the batch's lock
                if waiting_for_the_series():
                    break
                threading.Event().wait(0.01)
            else:
                raise AssertionError("the plan change never waited for the series")

    event.listen(runtime.db.engine, "before_cursor_execute", mid_write)
    try:
        assert service.run_month(runtime.db, MONTH).created == ["INV00000001"]
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", mid_write)
        clerk.join(timeout=60)
    assert outcome == ["{'starts_on': '2027-01 is invoiced already; start on a later month'}"]
    [invoice] = invoices_of(runtime)
    assert [x.period_end for x in invoice.lines] == [date(2027, 2, 1)]
