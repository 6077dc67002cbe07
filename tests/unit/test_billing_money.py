"""The money rule (tongdao.billing.money): per-line VAT half up to the fen, totals as sums of
lines, and proration by day that sums to the month over any split."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongdao.billing import money
from tongdao.billing.models import Plan
from tongdao.billing.service import Segment, price_segment

amounts = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("9999999.99"), places=2, allow_nan=False
)
rates = st.sampled_from([Decimal("0.06"), Decimal("0.09"), Decimal("0.13"), Decimal("0")])


@pytest.mark.parametrize(
    ("amount", "vat"),
    [
        (Decimal("0.25"), Decimal("0.02")),  # 0.015 rounds half up, not to even
        (Decimal("0.75"), Decimal("0.05")),  # 0.045 → 0.05
        (Decimal("0.08"), Decimal("0.00")),  # 0.0048
        (Decimal("100.00"), Decimal("6.00")),
        (Decimal("-0.25"), Decimal("-0.02")),  # a credit note's line mirrors the invoice's
    ],
)
def test_line_vat_rounds_half_up_to_the_fen(amount: Decimal, vat: Decimal) -> None:
    assert money.line_vat(amount, Decimal("0.06")) == vat


@given(st.lists(st.tuples(amounts, rates), min_size=1, max_size=30))
def test_total_is_sum_of_lines_plus_sum_of_line_vat(lines: list[tuple[Decimal, Decimal]]) -> None:
    priced = [(a, money.line_vat(a, r)) for a, r in lines]
    subtotal, vat, total = money.totals(priced)
    assert subtotal == sum(a for a, _ in lines)
    assert vat == sum(money.fen(a * r) for a, r in lines)
    assert total == subtotal + vat
    assert total.as_tuple().exponent == -2


@given(
    amounts,
    st.sampled_from([28, 29, 30, 31]),
    st.lists(st.integers(min_value=0, max_value=31), max_size=8),
)
def test_proration_over_any_split_sums_to_the_month(
    monthly: Decimal, n: int, cuts: list[int]
) -> None:
    points = sorted({0, n, *(c for c in cuts if c <= n)})
    parts = [money.prorate(monthly, a, b, n) for a, b in itertools.pairwise(points)]
    assert sum(parts, Decimal("0.00")) == monthly
    assert all(p >= 0 for p in parts)


def test_a_whole_month_is_the_monthly_amount_and_half_is_about_half() -> None:
    assert money.prorate(Decimal("100.00"), 0, 30, 30) == Decimal("100.00")
    assert money.prorate(Decimal("100.00"), 0, 15, 30) == Decimal("50.00")
    assert money.prorate(Decimal("100.00"), 0, 1, 31) == Decimal("3.23")
    with pytest.raises(ValueError, match="outside a month"):
        money.prorate(Decimal("1"), 3, 2, 30)


def test_months_are_asia_shanghai() -> None:
    start, end = money.month_bounds_utc(date(2026, 11, 1))
    assert start.isoformat() == "2026-10-31T16:00:00+00:00"
    assert end.isoformat() == "2026-11-30T16:00:00+00:00"
    assert money.parse_month("2026-02") == date(2026, 2, 1)
    for bad in ("2026-13", "26-01", "2026-1", "2026-01-01"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            money.parse_month(bad)
    for far in ("0001-01", "1999-12", "9999-12"):  # would overflow the instants: refused
        with pytest.raises(ValueError, match="between"):
            money.parse_month(far)


def _plan() -> Plan:
    return Plan(
        name="Remote 50",
        vat_rate=Decimal("0.06"),
        base_fee=Decimal("1000.00"),
        seat_price=Decimal("35.50"),
        seat_basis="account",
        site_price=Decimal("300.00"),
        base_tax_code="3040201000000000000",
        seat_tax_code="3040201000000000001",
        site_tax_code="3040201000000000002",
        traffic_tax_code="3040201000000000003",
        cross_border_tax_code="3040201000000000004",
    )


@given(st.integers(min_value=1, max_value=29), st.integers(0, 500), st.integers(0, 20))
def test_a_plan_change_mid_month_sums_to_the_whole_month(day: int, seats: int, sites: int) -> None:
    month = date(2026, 11, 1)
    plan = _plan()
    whole = price_segment(month, Segment(plan, month, date(2026, 12, 1)), seats, sites)
    cut = date(2026, 11, day + 1)
    split = price_segment(month, Segment(plan, month, cut), seats, sites) + price_segment(
        month, Segment(plan, cut, date(2026, 12, 1)), seats, sites
    )
    for kind in ("base", "seats", "sites"):
        assert sum(x.amount for x in whole if x.kind == kind) == sum(
            x.amount for x in split if x.kind == kind
        )
    for line in whole + split:
        assert line.vat == money.line_vat(line.amount, Decimal("0.06"))
        assert line.tax_code.startswith("30402010")
