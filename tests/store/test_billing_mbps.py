"""Cross-border priced per committed Mbit/s: the monthly run's line is the approved Mbit/s of
the tenant's authorisations × the plan's price per Mbit/s per month × the Asia/Shanghai days
each was valid / the month's days, on both stores; plans refuse an inconsistent basis."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tests.api.test_billing import call
from tests.conftest import both_stores
from tests.support.billing import add_plan, plan_body, subscribe
from tests.support.world import World
from tongdao.billing import money
from tongdao.billing.export import to_efapiao
from tongdao.billing.models import Invoice, InvoiceLine, LineKind, Plan
from tongdao.billing.service import (
    Committed,
    Segment,
    price_committed_mbps,
    price_traffic,
    run_month,
)
from tongdao.crossborder.models import ApplicationState, CrossBorderApplication
from tongdao.runtime import Runtime

NOVEMBER = date(2026, 11, 1)  # 30 days, ended
MBPS_PLAN: dict[str, Any] = {
    "cross_border_basis": "mbps",
    "cross_border_price_per_gb": "0.00",
    "cross_border_price_per_mbps": "25.00",
}


def authorisation(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    mbps: int,
    valid: tuple[date, date],
    state: ApplicationState = ApplicationState.APPROVED,
    decided_at: datetime | None = None,
) -> None:
    with runtime.db.session() as session:
        session.add(
            CrossBorderApplication(
                tenant_id=tenant_id, state=state, internal_use_only=True, site_ids=[],
                bandwidth_mbps=mbps, headcount=5, manager_name="王经理",
                manager_phone="+8613800000000", manager_email="it@example.com",
                term_start=valid[0], term_end=valid[1], approval_ref=f"CU-{mbps}",
                approved_mbps=mbps, valid_from=valid[0], valid_to=valid[1],
                decided_at=decided_at,
            )
        )  # fmt: skip
        session.commit()


def lines_of(runtime: Runtime, tenant_id: uuid.UUID) -> tuple[Invoice, list[InvoiceLine]]:
    with runtime.db.session(write=False) as session:
        invoice = session.scalars(select(Invoice).where(Invoice.tenant_id == tenant_id)).one()
        lines = list(
            session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice.id)
                .order_by(InvoiceLine.position)
            )
        )
        session.expunge_all()
    return invoice, lines


@both_stores
def test_committed_mbps_line_prorates_approval_and_expiry(world: World, runtime: Runtime) -> None:
    plan = add_plan(runtime, **MBPS_PLAN)
    subscribe(runtime, world.a.id, plan, date(2026, 10, 1))
    subscribe(runtime, world.b.id, plan, date(2026, 10, 1))
    # approved mid-month on one link: 16..30 November, 15 of 30 days
    authorisation(runtime, world.a.id, 20, (date(2026, 11, 16), date(2027, 5, 15)))
    # on a second link, expired mid-month: valid until 10 November, 10 of 30 days
    authorisation(
        runtime, world.a.id, 10, (date(2026, 5, 1), date(2026, 11, 10)), ApplicationState.EXPIRED
    )
    # never billed: rejected, valid only after the month, another month entirely
    authorisation(
        runtime, world.a.id, 99, (date(2026, 11, 1), date(2026, 12, 1)), ApplicationState.REJECTED
    )
    authorisation(runtime, world.a.id, 50, (date(2026, 12, 1), date(2027, 1, 1)))
    authorisation(
        runtime, world.a.id, 70, (date(2026, 1, 1), date(2026, 10, 31)), ApplicationState.EXPIRED
    )
    outcome = run_month(runtime.db, NOVEMBER)
    assert len(outcome.created) == 2
    invoice, lines = lines_of(runtime, world.a.id)
    (line,) = [x for x in lines if x.kind == LineKind.CROSS_BORDER_MBPS]
    assert not [x for x in lines if x.kind == LineKind.CROSS_BORDER]
    price = Decimal("25.00")
    expected = money.fen(20 * price * 15 / 30) + money.fen(10 * price * 10 / 30)
    assert line.amount == expected == Decimal("333.33")
    assert line.quantity == Decimal("13.333333")  # 20 × 15/30 + 10 × 10/30 Mbit/s-months
    assert (line.unit, line.unit_price, line.tax_code) == (
        "Mbit/s-month",
        price,
        plan_body()["cross_border_tax_code"],
    )
    assert line.vat == money.line_vat(line.amount, Decimal("0.06")) == Decimal("20.00")
    assert "20 Mbit/s × 15/30 d" in line.description and "10 Mbit/s × 10/30 d" in line.description
    assert (line.period_start, line.period_end) == (NOVEMBER, date(2026, 12, 1))
    assert line.usage_key == "crossborder:mbps:20261101-20261201"
    assert invoice.subtotal == sum((x.amount for x in lines), Decimal(0))
    assert invoice.vat == sum((x.vat for x in lines), Decimal(0))
    assert invoice.total == invoice.subtotal + invoice.vat
    # The e-fapiao item: quantity × unit price is the line's amount, as the tax system checks.
    with runtime.db.session(write=False) as session:
        (item,) = [
            x
            for x in to_efapiao(session.get_one(Invoice, invoice.id))["items"]
            if x["unit"] == "Mbit/s-month"
        ]
    assert (item["quantity"], item["amount"], item["tax"]) == ("13.333333", "333.33", "20.00")
    assert money.fen(Decimal(item["quantity"]) * Decimal(item["unit_price"])) == line.amount
    assert item["tax_classification_code"] == plan_body()["cross_border_tax_code"]
    # tenant B has no authorisation: no cross-border line at all
    _inv_b, lines_b = lines_of(runtime, world.b.id)
    assert lines_b and not [
        x for x in lines_b if x.kind in (LineKind.CROSS_BORDER_MBPS, LineKind.CROSS_BORDER)
    ]
    assert run_month(runtime.db, NOVEMBER).created == []


@both_stores
def test_a_revoked_authorisation_is_billed_until_the_day_it_was_revoked(
    world: World, runtime: Runtime
) -> None:
    plan = add_plan(runtime, **MBPS_PLAN)
    subscribe(runtime, world.a.id, plan, date(2026, 10, 1))
    # revoked at 01:30 on 11 November Asia/Shanghai (17:30 UTC the day before): 1..11 November
    revoked = datetime(2026, 11, 10, 17, 30, tzinfo=UTC)
    authorisation(
        runtime, world.a.id, 30, (date(2026, 10, 1), date(2027, 3, 31)),
        ApplicationState.REVOKED, decided_at=revoked,
    )  # fmt: skip
    # revoked before the month began: nothing in November
    authorisation(
        runtime, world.a.id, 40, (date(2026, 9, 1), date(2027, 3, 31)),
        ApplicationState.REVOKED, decided_at=datetime(2026, 10, 20, 4, 0, tzinfo=UTC),
    )  # fmt: skip
    run_month(runtime.db, NOVEMBER)
    _invoice, lines = lines_of(runtime, world.a.id)
    (line,) = [x for x in lines if x.kind == LineKind.CROSS_BORDER_MBPS]
    assert line.amount == money.fen(30 * Decimal("25.00") * 11 / 30) == Decimal("275.00")
    assert "30 Mbit/s × 11/30 d" in line.description and "40 Mbit/s" not in line.description


@both_stores
def test_a_whole_month_and_a_plan_change_mid_month(world: World, runtime: Runtime) -> None:
    """A whole month bills m × price exactly; a switch to a per-GB plan on the 11th bills the
    first 10 days only (the line of the per-GB segment comes from the ledger, none here)."""
    mbps = add_plan(runtime, "Mbit/s", **MBPS_PLAN)
    per_gb = add_plan(runtime, "GB")
    subscribe(runtime, world.a.id, mbps, date(2026, 10, 1))
    subscribe(runtime, world.b.id, mbps, date(2026, 10, 1))
    subscribe(runtime, world.b.id, per_gb, date(2026, 11, 11))
    for tenant in (world.a.id, world.b.id):
        authorisation(runtime, tenant, 7, (date(2026, 1, 1), date(2027, 1, 1)))
    run_month(runtime.db, NOVEMBER)
    _inv, lines = lines_of(runtime, world.a.id)
    (line,) = [x for x in lines if x.kind == LineKind.CROSS_BORDER_MBPS]
    assert (line.quantity, line.amount) == (Decimal(7), Decimal("175.00"))
    _inv, lines = lines_of(runtime, world.b.id)
    (line,) = [x for x in lines if x.kind == LineKind.CROSS_BORDER_MBPS]
    assert (line.period_start, line.period_end) == (NOVEMBER, date(2026, 11, 11))
    assert line.amount == money.fen(7 * Decimal(25) * 10 / 30) == Decimal("58.33")


def _plan(**kw: Any) -> Plan:
    return Plan(
        name="p", vat_rate=Decimal("0.06"), cross_border_tax_code="2", traffic_tax_code="1",
        included_traffic_gb=0, traffic_price_per_gb=Decimal(0), **kw,
    )  # fmt: skip


def test_a_plan_per_mbps_has_no_per_gb_line_and_a_gb_plan_no_mbps_line() -> None:
    used = {
        "rx_bytes": 0,
        "tx_bytes": 0,
        "cross_border_rx_bytes": 10**9,
        "cross_border_tx_bytes": 0,
    }
    mbps = _plan(cross_border_basis="mbps", cross_border_price_per_gb=Decimal(0),
                 cross_border_price_per_mbps=Decimal(9))  # fmt: skip
    seg = Segment(mbps, NOVEMBER, date(2026, 12, 1))
    assert price_traffic(NOVEMBER, seg, used) == []
    gb = _plan(cross_border_basis="gb", cross_border_price_per_gb=Decimal(40),
               cross_border_price_per_mbps=Decimal(0))  # fmt: skip
    (line,) = price_traffic(NOVEMBER, Segment(gb, NOVEMBER, date(2026, 12, 1)), used)
    assert line.kind == LineKind.CROSS_BORDER
    assert price_committed_mbps(NOVEMBER, Segment(gb, NOVEMBER, date(2026, 12, 1)), []) == []


@given(
    st.integers(1, 10_000),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999.99"), places=2),
    st.lists(st.integers(1, 30), min_size=1, max_size=6, unique=True),
)
def test_any_split_of_an_authorisation_sums_to_its_whole(
    mbps: int, price: Decimal, cuts: list[int]
) -> None:
    """Proration telescopes: an authorisation billed in pieces (plan changes on any days) sums
    to the month's m × price; each piece's VAT is per line and the total is lines + VAT."""
    plan = _plan(cross_border_basis="mbps", cross_border_price_per_gb=Decimal(0),
                 cross_border_price_per_mbps=price)  # fmt: skip
    days = sorted({0, 30, *cuts})
    pieces = []
    for a, b in itertools.pairwise(days):
        start = date(2026, 11, a + 1)
        end = date(2026, 12, 1) if b == 30 else date(2026, 11, b + 1)
        seg = Segment(plan, start, end)
        pieces.extend(price_committed_mbps(NOVEMBER, seg, [Committed(mbps, start, end)]))
    assert sum((p.amount for p in pieces), Decimal(0)) == money.fen(mbps * price)
    subtotal, vat, total = money.totals([(p.amount, p.vat) for p in pieces])
    assert vat == sum((money.line_vat(p.amount, Decimal("0.06")) for p in pieces), Decimal(0))
    assert total == subtotal + vat


@both_stores
def test_plan_basis_is_explicit_and_refusals_are_field_keyed(world: World) -> None:
    made = call(world, "POST", "/billing/plans", "billing_clerk", plan_body("M", **MBPS_PLAN))
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["cross_border_basis"], body["cross_border_price_per_mbps"]) == ("mbps", "25.00")
    default = call(world, "POST", "/billing/plans", "billing_clerk", plan_body("G"))
    assert default.status_code == 201 and default.json()["cross_border_basis"] == "gb"

    def refused(body: dict[str, Any], path: str = "/billing/plans", method: str = "POST") -> Any:
        answer = call(world, method, path, "billing_clerk", body)
        assert answer.status_code == 422, answer.text
        return answer.json()["error"]["fields"]

    # per GB (the default basis) with a price per Mbit/s: which price is meant?
    fields = refused(plan_body("X", cross_border_price_per_mbps="25.00"))
    assert set(fields) == {"cross_border_price_per_mbps"}
    fields = refused(plan_body("X", cross_border_basis="mbps", cross_border_price_per_mbps="5"))
    assert set(fields) == {"cross_border_price_per_gb"}  # plan_body's 40.00 per GB
    assert "cross_border_basis" in refused(plan_body("X", cross_border_basis="tb"))
    assert "cross_border_price_per_mbps" in refused(
        plan_body("X", **{**MBPS_PLAN, "cross_border_price_per_mbps": "1.001"})
    )
    assert "cross_border_price_per_mbps" in refused(
        plan_body("X", **{**MBPS_PLAN, "cross_border_price_per_mbps": "-1"})
    )
    # an update is checked against the plan as it would be
    gb_plan = f"/billing/plans/{default.json()['id']}"
    assert set(refused({"cross_border_basis": "mbps"}, gb_plan, "PATCH")) == {
        "cross_border_price_per_gb"
    }
    changed = call(
        world, "PATCH", gb_plan, "billing_clerk",
        {"cross_border_basis": "mbps", "cross_border_price_per_gb": "0",
         "cross_border_price_per_mbps": "30.00"},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["cross_border_basis"] == "mbps"
    assert "cross_border_basis" in refused({"cross_border_basis": None}, gb_plan, "PATCH")
