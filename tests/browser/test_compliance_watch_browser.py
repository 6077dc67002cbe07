"""The scheduled compliance check in Debian's Chromium, in English and 简体中文: a foreign
majority found by the check shows on the compliance dashboard with its countdown and first
among the operations dashboard's alerts; the officer sets the grace period by keyboard (a value
over 30 refused next to the field). Screenshots at desktop and phone width."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, expect

from tests.api.test_compliance_watch import foreign_majority
from tests.api.test_gateway import activate
from tests.browser.test_compliance_browser import _page, no_sideways_scroll, sign_in
from tests.support.browser import PHONE, shoot, watch
from tests.support.world import World
from tongdao.compliance import watch as compliance_watch

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

TEXT = {
    "en": {
        "section": "Scheduled compliance check",
        "grace": "Grace period (days)",
        "save": "Save the grace period",
        "saved": "The grace period is saved; open deadlines follow it.",
        "suspended_in": "Tenants in service are suspended on",
        "open": "Open the compliance dashboard",
    },
    "zh-CN": {
        "section": "定时合规检查",
        "grace": "宽限期（天）",
        "save": "保存宽限期",
        "saved": "宽限期已保存；未到期的期限随之调整。",
        "suspended_in": "服务中的租户将于",
        "open": "打开合规看板",
    },
}


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_officer_sees_the_breach_and_sets_the_grace_period(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = TEXT[language]
    activate(world, world.a.id)
    foreign_majority(world)
    compliance_watch.check(world.runtime, datetime.now(UTC))

    page = _page(browser, language)
    problems = watch(page)
    sign_in(page, live, "compliance_officer@operator.example")
    page.goto(f"{live}/console/compliance/dashboard")
    section = page.locator("#watch")
    expect(section.get_by_role("heading", level=2)).to_have_text(t["section"])
    expect(section.locator(".countdown")).to_contain_text(t["suspended_in"])
    expect(section).to_contain_text("ownership.foreign_cap")
    shoot(page, f"compliance-watch-dashboard-{language}")

    field = page.get_by_label(t["grace"])
    field.fill("31")
    field.press("Enter")
    expect(page.locator("#f-grace_days-error")).to_contain_text("30")
    expect(page.locator("#f-grace_days")).to_have_attribute("aria-invalid", "true")
    shoot(page, f"compliance-watch-refused-{language}")
    page.get_by_label(t["grace"]).fill("14")
    page.get_by_role("button", name=t["save"]).click()
    expect(page.get_by_role("status")).to_have_text(t["saved"])
    got = world.client.get("/api/v1/operator/compliance/watch", headers=world.admin.headers)
    assert got.json()["grace_days"] == 14

    admin = _page(browser, language)
    admin_problems = watch(admin)
    sign_in(admin, live, "operator_admin@operator.example")
    admin.goto(f"{live}/console/operator")
    first = admin.locator("ul.alerts li").first
    expect(first).to_contain_text("ownership.foreign_cap")
    shoot(admin, f"compliance-watch-operations-{language}")
    first.get_by_role("link", name=t["open"]).click()
    expect(admin.locator("#watch")).to_be_visible()

    phone = _page(browser, language, PHONE)
    phone_problems = watch(phone)
    sign_in(phone, live, "compliance_officer@operator.example")
    phone.goto(f"{live}/console/compliance/dashboard")
    expect(phone.locator("#watch .countdown")).to_be_visible()
    no_sideways_scroll(phone)
    shoot(phone, f"compliance-watch-dashboard-phone-{language}")
    assert problems == [] and admin_problems == [] and phone_problems == []
