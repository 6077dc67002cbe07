"""The billing clerk's month in Debian's Chromium, once in English and once in 简体中文: create a
plan, subscribe a tenant to it, run the month, issue the invoice, open its PDF, record the
payment. Every main page is kept as a screenshot (desktop, and the invoice and overview at
phone width), with no missing glyphs, no sideways scroll and no console or CSP errors."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect
from pypdf import PdfReader

from tests.support.billing import TAX_CODE, add_tenants
from tests.support.browser import DESKTOP, PHONE, serve, shoot, watch
from tests.support.world import PASSWORD, make_user

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

T = {
    "billing": ("Billing", "计费"),
    "plans": ("Plans", "套餐"),
    "create_plan": ("Create the plan", "创建套餐"),
    "plan_created": ("The plan is created", "套餐已创建"),
    "overview": ("Overview", "概览"),
    "open": ("Open", "打开"),
    "subscribe": ("Save the subscription", "保存订阅"),
    "subscribed": ("The subscription is saved", "订阅已保存"),
    "monthly_run": ("Monthly run", "月度出账"),
    "run": ("Run billing", "运行出账"),
    "made": ("1 invoice made", "生成 1 张发票"),
    "drafts": ("The month's draft invoices", "当月的草稿发票"),
    "issue": ("Issue the invoice", "开具发票"),
    "issued": ("The invoice is issued", "发票已开具"),
    "record": ("Record the payment", "登记收款"),
    "recorded": ("The payment is recorded", "收款已登记"),
    "paid": ("paid", "已付清"),
    "sign_in": ("Sign in", "登录"),
}
CLERK = "clerk@operator.example"
AUDITOR = "auditor@operator.example"


def _t(key: str, zh: bool) -> str:
    return T[key][1 if zh else 0]


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    runtime = app.state.runtime
    make_user(runtime, CLERK, ["billing_clerk"])
    make_user(runtime, AUDITOR, ["auditor"])
    add_tenants(runtime, 1)  # "Billed 500"
    with serve(app) as url:
        yield url


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways at phone width ({width}px)"


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_billing_clerks_month(browser: Browser, live: str, language: str) -> None:
    zh = language == "zh-CN"
    context = browser.new_context(locale=language, viewport=DESKTOP, accept_downloads=True)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill(CLERK)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name=_t("sign_in", zh)).click()
    expect(page).to_have_url(f"{live}/console/home")
    main = page.locator("main")

    page.locator("header nav").get_by_role("link", name=_t("billing", zh)).click()
    expect(page).to_have_url(f"{live}/console/billing")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if zh else "en")
    expect(page.get_by_role("heading", level=1)).to_have_text(_t("billing", zh))
    shoot(page, f"billing-overview-empty-{language}")

    # A plan.
    main.get_by_role("link", name=_t("plans", zh), exact=True).click()
    page.locator("#f-name").fill("Remote 50")
    page.locator("#f-name_zh").fill("远程办公 50 人版")
    page.locator("#f-base_fee").fill("1000.00")
    page.locator("#f-site_price").fill("300.00")
    for item in ("base", "seat", "site", "traffic", "cross_border"):
        page.locator(f"#f-{item}_tax_code").fill(TAX_CODE)
    shoot(page, f"billing-plans-form-{language}")
    page.get_by_role("button", name=_t("create_plan", zh)).click()
    expect(page).to_have_url(re.compile(r"/console/billing/plans/[0-9a-f-]+\?done=created$"))
    expect(page.locator(".notice")).to_contain_text(_t("plan_created", zh))
    shoot(page, f"billing-plan-{language}")

    # Tenant "Billed 500" on it from November.
    main.get_by_role("link", name=_t("overview", zh), exact=True).click()
    page.locator("#f-tenant").select_option(label="Billed 500")
    main.get_by_role("button", name=_t("open", zh), exact=True).click()
    expect(page).to_have_url(re.compile(r"/console/billing/tenants/[0-9a-f-]+$"))
    page.locator("#f-plan_id").select_option(label="远程办公 50 人版" if zh else "Remote 50")
    page.locator("#f-starts_on").fill("2026-11-01")
    page.get_by_role("button", name=_t("subscribe", zh)).click()
    expect(page.locator(".notice")).to_contain_text(_t("subscribed", zh))
    shoot(page, f"billing-tenant-{language}")

    # The month.
    main.get_by_role("link", name=_t("monthly_run", zh), exact=True).click()
    page.locator("#f-month").fill("2026-11")
    page.get_by_role("button", name=_t("run", zh)).click()
    expect(main.locator(".outcome")).to_contain_text(_t("made", zh))
    shoot(page, f"billing-run-{language}")

    # The invoice: issue it, open its PDF, record the payment.
    main.get_by_role("link", name=_t("drafts", zh)).click()
    main.get_by_role("link", name="INV00000001").click()
    expect(page).to_have_url(
        re.compile(r"/console/billing/tenants/[0-9a-f-]+/invoices/[0-9a-f-]+$")
    )
    expect(main).to_contain_text("¥1,060.00")
    # Its history: made by the run, one record with its lines.
    made = r"月度出账生成 · 含 \d+ 行明细" if zh else r"made by the monthly run · with \d+ lines?"
    expect(main.locator("section[aria-labelledby=history-title]")).to_contain_text(re.compile(made))
    shoot(page, f"billing-invoice-draft-{language}")
    page.get_by_role("button", name=_t("issue", zh)).click()
    expect(page.locator(".notice")).to_contain_text(_t("issued", zh))

    with page.expect_download() as download:
        main.get_by_role("link", name="PDF", exact=True).click()
    saved = download.value.path()
    data = saved.read_bytes()
    assert data.startswith(b"%PDF")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert "INV00000001" in text and "1,060.00" in text

    page.locator("#f-amount").fill("1060.00")
    page.locator("#f-received_on").fill("2026-12-05")
    page.locator("#f-reference").fill("BOC 20261205-01")
    page.get_by_role("button", name=_t("record", zh)).click()
    expect(page.locator(".notice")).to_contain_text(_t("recorded", zh))
    expect(main.locator(".facts .state").first).to_have_text(_t("paid", zh))
    shoot(page, f"billing-invoice-paid-{language}")
    invoice_url = page.url.split("?")[0]

    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.goto(invoice_url)
    _no_sideways_scroll(page)
    shoot(page, f"billing-invoice-phone-{language}")
    page.goto(f"{live}/console/billing/payments")
    _no_sideways_scroll(page)
    shoot(page, f"billing-payments-phone-{language}")
    page.goto(f"{live}/console/billing")
    _no_sideways_scroll(page)
    shoot(page, f"billing-overview-phone-{language}")
    assert not problems, problems
    context.close()

    # The audit log: the run's one record of the invoice, its lines in it.
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill(AUDITOR)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name=_t("sign_in", zh)).click()
    expect(page).to_have_url(f"{live}/console/home")
    page.goto(f"{live}/console/audit?action=billing_invoice_made")
    record = page.locator("li.event").first
    expect(record).to_contain_text("billing_invoice_made")
    record.locator("details summary").click()
    expect(record.locator("table.diff")).to_contain_text("lines[1]")
    shoot(page, f"billing-audit-invoice-made-{language}")
    assert not problems, problems
    context.close()
