"""Partial credit notes (tongdao.billing.service.plan_credit, money.credit_vat): any sequence
of partial credits never credits more than the invoice, line by line and in total, and the
credits plus what remains give the invoice's total to the fen."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tongdao.billing import money
from tongdao.billing.models import InvoiceLine
from tongdao.billing.service import Credited, CreditRequest, plan_credit
from tongdao.errors import DomainError

rates = st.sampled_from([Decimal("0.06"), Decimal("0.09"), Decimal("0.13"), Decimal("0")])
cents = st.integers(min_value=1, max_value=10_000_00)
quantities = st.integers(min_value=1, max_value=50)


def make_line(position: int, cents_: int, qty: int, rate: Decimal) -> InvoiceLine:
    amount = Decimal(cents_) / 100
    return InvoiceLine(
        id=uuid.uuid4(), tenant_id=uuid.uuid4(), position=position, kind="base",
        description="x", tax_code="1" * 19, unit="seat", quantity=Decimal(qty),
        unit_price=money.fen(amount / qty), period_start=date(2026, 11, 1),
        period_end=date(2026, 12, 1), amount=amount, vat_rate=rate,
        vat=money.line_vat(amount, rate),
    )  # fmt: skip


lines_st = st.lists(st.tuples(cents, quantities, rates), min_size=1, max_size=5)
# One request: (line index, amount in fen or a quantity, which of the two)
requests_st = st.lists(
    st.tuples(st.integers(0, 4), st.integers(1, 10_000_00), st.booleans()), max_size=25
)


@settings(max_examples=300, deadline=None)
@given(lines_st, requests_st)
def test_partial_credits_never_exceed_the_invoice(
    spec: list[tuple[int, int, Decimal]], steps: list[tuple[int, int, bool]]
) -> None:
    lines = [make_line(i + 1, c, q, r) for i, (c, q, r) in enumerate(spec)]
    _, _, total = money.totals([(x.amount, x.vat) for x in lines])
    credited: dict[int, Credited] = {}
    notes: list[Decimal] = []

    def apply(requests: list[CreditRequest]) -> None:
        try:
            plan = plan_credit(lines, credited, requests)
        except DomainError:
            return  # refused: nothing credited
        for c in plan:
            had = credited.get(c.line.position, Credited())
            credited[c.line.position] = Credited(
                had.amount + c.amount, had.vat + c.vat, had.quantity + c.quantity
            )
            assert c.amount > 0 and c.vat >= 0
        notes.append(money.totals([(c.amount, c.vat) for c in plan])[2])

    for index, value, by_quantity in steps:
        line = lines[index % len(lines)]
        if by_quantity:
            qty = Decimal(value % 60) / 2  # halves, sometimes 0 or more than the line
            apply([CreditRequest(line.id, quantity=qty)])
        else:
            apply([CreditRequest(line.id, amount=Decimal(value) / 100)])
        for x in lines:
            got = credited.get(x.position, Credited())
            assert got.amount <= x.amount and got.vat <= x.vat and got.quantity <= x.quantity
        assert sum(notes, money.ZERO) <= total

    # Crediting what remains of every line makes the credits the invoice's total, to the fen.
    remaining = [
        CreditRequest(x.id, amount=x.amount - credited.get(x.position, Credited()).amount)
        for x in lines
        if x.amount - credited.get(x.position, Credited()).amount > 0
    ]
    if remaining:
        apply(remaining)
    assert sum(notes, money.ZERO) == total
    for x in lines:
        assert (credited[x.position].amount, credited[x.position].vat) == (x.amount, x.vat)
