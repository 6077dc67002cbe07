"""Usage over time in Debian's Chromium: the tenant admin opens it from the menu and sees the
month's chart and table, in English and in 简体中文; the employee sees their own devices';
the page fits a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.test_network_browser import _no_sideways_scroll
from tests.support.browser import DESKTOP, PHONE, shoot, watch
from tests.support.world import PASSWORD, World
from tests.web.test_ledger_pages import ledger_world

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

TEXT = {
    "en": {"email": "E-mail", "password": "Password", "sign_in": "Sign in",
           "menu": "Usage over time", "month": "Month", "show": "Show"},
    "zh-CN": {"email": "邮箱", "password": "密码", "sign_in": "登录",
              "menu": "用量趋势", "month": "月份", "show": "显示"},
}  # fmt: skip


def _sign_in(browser: Browser, live: str, language: str, email: str):  # type: ignore[no-untyped-def]
    t = TEXT[language]
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    page.get_by_label(t["email"], exact=True).fill(email)
    page.get_by_label(t["password"], exact=True).fill(PASSWORD)
    page.get_by_role("button", name=t["sign_in"]).click()
    expect(page).to_have_url(f"{live}/console/home")
    return context, page, problems


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_admin_reads_the_months_usage_over_time(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = TEXT[language]
    made = ledger_world(world)
    context, page, problems = _sign_in(browser, live, language, "tenant_admin@a.example")
    page.get_by_role("navigation").get_by_role("link", name=t["menu"]).click()
    expect(page).to_have_url(f"{live}/console/usage-trend")
    expect(page.get_by_role("heading", level=1)).to_have_text(t["menu"])
    page.get_by_label(t["month"], exact=True).fill(made["month"])
    page.get_by_role("button", name=t["show"]).click()
    expect(page).to_have_url(f"{live}/console/usage-trend?month={made['month']}")
    expect(page.locator("#trend-chart.drawn canvas")).to_be_visible()
    expect(page.locator(f'#trend-days tr[data-day="{made["day"]}"]')).to_be_visible()
    shoot(page, f"ledger-trend-{language}")
    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("#trend-chart.drawn canvas")).to_be_visible()
    _no_sideways_scroll(page)
    shoot(page, f"ledger-trend-phone-{language}")
    assert problems == []
    context.close()


def test_the_employee_sees_their_own_devices(browser: Browser, live: str, world: World) -> None:
    made = ledger_world(world)
    context, page, problems = _sign_in(browser, live, "zh-CN", "employee@a.example")
    page.goto(f"{live}/console/usage-trend?month={made['month']}")
    row = page.locator(f'#trend-days tr[data-day="{made["day"]}"] td').first
    expect(row).to_have_attribute("data-bytes", "2500")
    shoot(page, "ledger-trend-employee-zh-CN")
    assert problems == []
    context.close()
