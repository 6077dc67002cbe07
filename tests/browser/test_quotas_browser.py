"""Quotas in Debian's Chromium, once in English and once in 简体中文: the billing clerk sets a
tenant's limits from the Quotas menu; the tenant's admin opens their tenant's quotas and sets
an employee's cap within them (at phone width too). Every main page is kept as a screenshot,
with no missing glyphs, no sideways scroll and no console or CSP errors."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from tests.support.billing import add_tenants
from tests.support.browser import DESKTOP, PHONE, serve, shoot, watch
from tests.support.world import PASSWORD, make_user

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

T = {
    "quotas": ("Quotas", "流量配额"),
    "open": ("Open", "打开"),
    "save": ("Save the limits", "保存限额"),
    "saved": ("The limits were saved", "限额已保存"),
    "sign_in": ("Sign in", "登录"),
}
CLERK = "clerk@operator.example"
ADMIN = "admin@billed500.example"
EMPLOYEE = "staff@billed500.example"


def _t(key: str, zh: bool) -> str:
    return T[key][1 if zh else 0]


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    runtime = app.state.runtime
    make_user(runtime, CLERK, ["billing_clerk"])
    (tenant,) = add_tenants(runtime, 1)
    make_user(runtime, ADMIN, ["tenant_admin"], tenant)
    make_user(runtime, EMPLOYEE, ["employee"], tenant)
    with serve(app) as url:
        yield url


def _sign_in(page: Page, live: str, email: str, zh: bool) -> None:
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill(email)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name=_t("sign_in", zh)).click()
    expect(page).to_have_url(f"{live}/console/home")


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_clerk_and_tenant_admin_set_limits(browser: Browser, live: str, language: str) -> None:
    zh = language == "zh-CN"
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    _sign_in(page, live, CLERK, zh)
    page.locator("header nav").get_by_role("link", name=_t("quotas", zh)).click()
    expect(page).to_have_url(f"{live}/console/quotas")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if zh else "en")
    shoot(page, f"quotas-overview-{language}")
    page.locator("#f-tenant").select_option(label="Billed 500")
    page.locator("main").get_by_role("button", name=_t("open", zh), exact=True).click()
    expect(page).to_have_url(re.compile(r"/console/quotas/tenants/[0-9a-f-]+$"))
    page.locator("#f-tenant_cap_mb").fill("50000")
    page.locator("#f-user_cap_mb").fill("2000")
    page.locator("#f-user_rate_mbps").fill("20")
    page.get_by_role("button", name=_t("save", zh)).click()
    expect(page.locator(".notice")).to_contain_text(_t("saved", zh))
    shoot(page, f"quotas-tenant-clerk-{language}")
    context.close()

    context = browser.new_context(locale=language, viewport=PHONE)  # type: ignore[arg-type]
    page = context.new_page()
    admin_problems = watch(page)
    _sign_in(page, live, ADMIN, zh)
    page.goto(f"{live}/console/quotas")
    expect(page).to_have_url(re.compile(r"/console/quotas/tenants/[0-9a-f-]+$"))
    shoot(page, f"quotas-tenant-admin-phone-{language}")
    page.locator("main").get_by_role("link", name=EMPLOYEE).click()
    page.locator("#f-cap_mb").fill("5000")  # above the tenant's 2,000 MB per user: refused
    page.get_by_role("button", name=_t("save", zh)).click()
    expect(page.locator("#f-cap_mb-error")).not_to_be_empty()
    page.locator("#f-cap_mb").fill("1500")
    page.locator("#f-rate_mbps").fill("10")
    page.get_by_role("button", name=_t("save", zh)).click()
    expect(page.locator(".notice")).to_contain_text(_t("saved", zh))
    shoot(page, f"quotas-user-phone-{language}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways ({width}px)"
    context.close()
    assert problems == [] and admin_problems == [], (problems, admin_problems)
