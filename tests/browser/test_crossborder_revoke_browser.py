"""The compliance officer revokes a cross-border authorisation in Debian's Chromium, in English
and in 简体中文: the revoke card on the approved application, the reason refused empty next to
its field, the revoked application, and the tenant admin's page telling why the path is closed.
Each step is kept as a screenshot; no console or CSP error may appear."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.test_crossborder_browser import sign_in
from tests.support.browser import shoot
from tests.support.world import World
from tests.web.test_crossborder_fixes_pages import approved_application

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

TEXT = {
    "en": {"revoked": "Revoked", "tenant": "Revoked: see the reason"},
    "zh-CN": {"revoked": "已撤销", "tenant": "已撤销：原因见申请"},
}


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_officer_revokes_an_authorisation(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = TEXT[language]
    detail = approved_application(world)
    officer, problems = sign_in(browser, live, "compliance_officer@operator.example", language)
    officer.goto(f"{live}{detail}")
    card = officer.locator("section[aria-labelledby='revoke-title']")
    expect(card).to_be_visible()
    shoot(officer, f"crossborder-revoke-{language}")
    card.locator("button[type=submit]").click()
    expect(officer.locator("#f-reason-error")).not_to_be_empty()
    shoot(officer, f"crossborder-revoke-refused-{language}")
    reason = "承运商撤回批准" if language == "zh-CN" else "The carrier withdrew its approval"
    officer.locator("section[aria-labelledby='revoke-title'] #f-reason").fill(reason)
    officer.locator("section[aria-labelledby='revoke-title'] button[type=submit]").click()
    expect(officer.get_by_role("status")).to_be_visible()
    expect(officer.locator(".lede")).to_contain_text(t["revoked"])
    expect(officer.locator("main")).to_contain_text(reason)
    shoot(officer, f"crossborder-revoked-{language}")

    page, tenant_problems = sign_in(browser, live, "tenant_admin@a.example", language)
    page.goto(f"{live}/console/crossborder")
    expect(page.locator(".xb-status")).to_contain_text(t["tenant"])
    shoot(page, f"crossborder-revoked-tenant-{language}")
    assert problems == [] and tenant_problems == []
