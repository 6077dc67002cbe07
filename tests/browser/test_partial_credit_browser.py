"""A partial credit note (红字) through the invoice page in Debian's Chromium, in English and in
简体中文: the per-line form, an over-credit refused next to its line's field, the credit note
made, the invoice showing what is credited and outstanding, and the credit note naming the
corrected lines. Screenshots kept; no missing glyphs, console or CSP errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, expect

from tests.support.billing import TAX_CODE, add_tenants
from tests.support.browser import DESKTOP, serve, shoot, watch
from tests.support.world import PASSWORD, make_user
from tongdao.billing import money
from tongdao.billing.models import Invoice, InvoiceKind, InvoiceLine, InvoiceState
from tongdao.billing.service import take_number

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

CLERK = "clerk@operator.example"


def two_line_invoice(runtime: Any, tenant_id: uuid.UUID) -> uuid.UUID:
    """An issued invoice: base fee 100.00 and 3 seats at 35.50 (6% VAT per line)."""
    days = {"period_start": date(2026, 11, 1), "period_end": date(2026, 12, 1)}
    lines = [
        InvoiceLine(tenant_id=tenant_id, position=1, kind="base", description="base fee",
                    tax_code=TAX_CODE, unit="month", quantity=Decimal(1),
                    unit_price=Decimal("100.00"), amount=Decimal("100.00"),
                    vat_rate=Decimal("0.06"), vat=Decimal("6.00"), **days),
        InvoiceLine(tenant_id=tenant_id, position=2, kind="seats", description="seats",
                    tax_code=TAX_CODE, unit="seat", quantity=Decimal(3),
                    unit_price=Decimal("35.50"), amount=Decimal("106.50"),
                    vat_rate=Decimal("0.06"), vat=Decimal("6.39"), **days),
    ]  # fmt: skip
    subtotal, vat, total = money.totals([(x.amount, x.vat) for x in lines])
    with runtime.db.session() as session:
        number = take_number(session, InvoiceKind.INVOICE)
        inv = Invoice(
            tenant_id=tenant_id, kind=InvoiceKind.INVOICE, number=number,
            dedupe_key=f"test:{number}", month="2026-11", state=InvoiceState.ISSUED,
            subtotal=subtotal, vat=vat, total=total, amount_paid=Decimal("0.00"),
            buyer_name="Buyer", buyer_tax_id="91110000802100433B",
            issued_on=date(2026, 12, 1), due_on=date(2026, 12, 31), lines=lines,
        )  # fmt: skip
        session.add(inv)
        session.commit()
        return inv.id


@pytest.fixture
def live(app: FastAPI) -> Iterator[tuple[str, str]]:
    runtime = app.state.runtime
    make_user(runtime, CLERK, ["billing_clerk"])
    tenant = add_tenants(runtime, 1)[0]
    invoice_id = two_line_invoice(runtime, tenant)
    with serve(app) as url:
        yield url, f"/console/billing/tenants/{tenant}/invoices/{invoice_id}"


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_a_partial_credit_note(browser: Browser, live: tuple[str, str], language: str) -> None:
    url, path = live
    zh = language == "zh-CN"
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{url}/console/sign-in")
    page.locator("#f-email").fill(CLERK)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name="登录" if zh else "Sign in").click()
    expect(page).to_have_url(f"{url}/console/home")
    page.goto(url + path)
    main = page.locator("main")
    make = "开具红字发票" if zh else "Make the credit note"

    page.locator("#f-credit_2").fill("106.51")
    page.locator("#f-credit-reason").fill("一个席位多计" if zh else "one seat too many")
    page.locator("#f-credit_2").scroll_into_view_if_needed()
    page.get_by_role("button", name=make).click()
    expect(page.locator("#f-credit_2-error")).to_contain_text("106.50")
    expect(page.locator("#f-credit_2")).to_have_value("106.51")
    shoot(page, f"billing-credit-refused-{language}")

    page.locator("#f-credit_2").fill("35.50")
    page.get_by_role("button", name=make).click()
    expect(page.locator(".notice")).to_contain_text("红字" if zh else "credit note")
    expect(main).to_contain_text("CN00000001")
    expect(main).to_contain_text("¥37.63")  # credited: 35.50 + 2.13 VAT
    shoot(page, f"billing-credit-partial-{language}")

    # A line credited by quantity: one more of the three seats.
    expect(page.locator("label[for=f-credit_qty_2]")).to_contain_text(
        "或数量" if zh else "or quantity"
    )
    page.locator("#f-credit_qty_2").fill("1")
    page.locator("#f-credit-reason").fill("又一个席位" if zh else "another seat")
    page.locator("#f-credit_qty_2").scroll_into_view_if_needed()
    shoot(page, f"billing-credit-quantity-form-{language}")
    page.get_by_role("button", name=make).click()
    expect(main).to_contain_text("CN00000002")
    expect(main).to_contain_text("¥75.26")  # credited: 2 × 37.63

    main.get_by_role("link", name="CN00000001").click()
    expect(main).to_contain_text("INV00000001")
    expect(main).to_contain_text("冲红 INV00000001 第 2 行" if zh else "corrects line 2 of")
    expect(page.locator("#actions-title")).to_have_count(0)  # nothing to do on a credit note
    shoot(page, f"billing-credit-note-{language}")
    assert not problems, problems
    context.close()
