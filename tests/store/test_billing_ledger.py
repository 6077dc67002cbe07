"""The monthly run's traffic and cross-border lines come from the usage ledger: the lines'
quantities are what the ledger holds for the tenant's Asia/Shanghai month, on both stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select

from tests.api.test_gateway import device, state
from tests.api.test_usage import REPORTS, enrolled_days_ago, serving_gateway
from tests.api.test_usage_ledger import report_at, series, xpeer
from tests.conftest import both_stores
from tests.support.billing import add_plan, subscribe
from tests.support.world import World
from tongdao.billing import money
from tongdao.billing.models import Invoice, InvoiceLine, LineKind
from tongdao.billing.service import run_month
from tongdao.runtime import Runtime

GB = 10**9


@both_stores
def test_traffic_lines_equal_the_ledgers_month(world: World, runtime: Runtime) -> None:
    plan = add_plan(
        runtime,
        included_traffic_gb=1,
        traffic_price_per_gb="8.00",
        cross_border_price_per_gb="40.00",
    )
    today = money.shanghai_today(datetime.now(UTC))
    month = money.previous_month(today.replace(day=1))
    subscribe(runtime, world.a.id, plan, month)
    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    enrolled_days_ago(runtime, 45)
    start, end = money.month_bounds_utc(month)
    reports = [
        # the month's first instant exactly: the period ends in the month before, not billed
        report_at(1, start, [xpeer(world.a.id, dev, 9 * GB, 0, 0, 0)]),
        report_at(2, start + timedelta(days=3), [xpeer(world.a.id, dev, 2 * GB, GB, GB // 2, 0)]),
        report_at(
            3,
            start + timedelta(days=9),
            [xpeer(world.a.id, dev, 1_234_567_891, 7, 234_567_891, 7)],
        ),
        # a period over the month's end: counted in the next month
        report_at(4, end + timedelta(seconds=5), [xpeer(world.a.id, dev, 5 * GB, 0, 0, 0)]),
    ]
    for body in reports:
        answer = world.client.post(REPORTS, json=body, headers=gw).json()
        assert answer["stored"] == 1, answer
    outcome = run_month(runtime.db, month)
    assert len(outcome.created) == 1
    got = series(
        world,
        world.a.admin.headers,
        f"/tenants/{world.a.id}",
        granularity="month",
        since=str(month),
        until=str(money.next_month(month) - timedelta(days=1)),
    )
    (point,) = got["points"]
    assert point["period"] == f"{month:%Y-%m}"
    domestic = point["domestic_rx_bytes"] + point["domestic_tx_bytes"]
    cross = point["cross_border_rx_bytes"] + point["cross_border_tx_bytes"]
    assert (domestic, cross) == (3_500_000_000, GB // 2 + 234_567_898)
    with runtime.db.session(write=False) as session:
        invoice = session.scalars(select(Invoice).where(Invoice.tenant_id == world.a.id)).one()
        lines = {
            line.kind: line
            for line in session.scalars(
                select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)
            )
        }
    traffic, xborder = lines[LineKind.TRAFFIC], lines[LineKind.CROSS_BORDER]
    assert traffic.quantity == Decimal(domestic) / GB - 1  # 1 GB included
    assert traffic.amount == money.fen(traffic.quantity * Decimal("8.00")) == Decimal("20.00")
    # GB to six places (the quantity column's scale), half up: 0.734567898 → 0.734568
    assert xborder.quantity == (Decimal(cross) / GB).quantize(Decimal("0.000001"), ROUND_HALF_UP)
    assert xborder.quantity == Decimal("0.734568")
    assert xborder.amount == money.fen(xborder.quantity * Decimal("40.00"))
    assert xborder.vat == money.line_vat(xborder.amount, Decimal("0.06"))
    assert traffic.usage_key == f"ledger:domestic:{month:%Y%m%d}-{money.next_month(month):%Y%m%d}"
    assert (traffic.unit, traffic.period_start, traffic.period_end) == (
        "GB",
        month,
        money.next_month(month),
    )
    # Running the month again changes nothing.
    assert run_month(runtime.db, month).created == []


def test_included_traffic_is_prorated_for_part_of_a_month() -> None:
    from tongdao.billing.models import Plan
    from tongdao.billing.service import Segment, price_traffic

    plan = Plan(
        name="p", included_traffic_gb=30, traffic_price_per_gb=Decimal("2.00"),
        cross_border_price_per_gb=Decimal("0.00"), vat_rate=Decimal("0.06"),
        traffic_tax_code="1", cross_border_tax_code="2",
    )  # fmt: skip
    month = date(2026, 11, 1)
    seg = Segment(plan, date(2026, 11, 21), date(2026, 12, 1))  # 10 of 30 days: 10 GB included
    (line,) = price_traffic(
        month,
        seg,
        {
            "rx_bytes": 12 * GB,
            "tx_bytes": 3 * GB,
            "cross_border_rx_bytes": 0,
            "cross_border_tx_bytes": GB,
        },
    )
    assert (line.kind, line.quantity, line.amount) == (
        LineKind.TRAFFIC,
        Decimal(4),
        Decimal("8.00"),
    )
