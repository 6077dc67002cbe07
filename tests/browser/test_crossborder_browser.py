"""Cross-border service in Debian's Chromium, in English and in 简体中文: the tenant admin
applies (a form, two documents uploaded with the plain file form, submit), the compliance
officer opens the queue, takes the application into review and records the carrier's
approval; the tenant admin then sees the path abroad open. Every main page is kept as a
screenshot (the tenant's page also at phone width, which must not scroll sideways) and no
console or CSP error may appear."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_network_browser import _no_sideways_scroll
from tests.support.browser import DESKTOP, PHONE, shoot, watch
from tests.support.world import PASSWORD, World
from tests.web.test_crossborder_pages import link, overseas_site
from tongdao.billing.money import shanghai_today
from tongdao.testing import crossborder

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

TEXT = {
    "en": {
        "email": "E-mail",
        "password": "Password",
        "sign_in": "Sign in",
        "service": "Cross-border service",
        "queue": "Cross-border applications",
        "detail": "Cross-border application",
        "none": "No application yet",
        "authorised": "Authorised: your path abroad is open.",
        "approved": "Approved",
    },
    "zh-CN": {
        "email": "邮箱",
        "password": "密码",
        "sign_in": "登录",
        "service": "跨境服务",
        "queue": "跨境申请",
        "detail": "跨境申请",
        "none": "尚未申请",
        "authorised": "已授权：您的境外通道已开通。",
        "approved": "已批准",
    },
}


def sign_in(browser: Browser, live: str, email: str, language: str) -> tuple[Page, list[str]]:
    t = TEXT[language]
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    page.get_by_label(t["email"], exact=True).fill(email)
    page.get_by_label(t["password"], exact=True).fill(PASSWORD)
    page.get_by_role("button", name=t["sign_in"]).click()
    expect(page).to_have_url(f"{live}/console/home")
    return page, problems


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_apply_then_the_officer_approves(
    browser: Browser, live: str, world: World, language: str, tmp_path: Path
) -> None:
    t = TEXT[language]
    site = overseas_site(world)
    link_id = link(world)
    licence, letter = tmp_path / "licence.png", tmp_path / "letter.pdf"
    licence.write_bytes(crossborder.sample_png())
    letter.write_bytes(crossborder.sample_pdf())

    page, problems = sign_in(browser, live, "tenant_admin@a.example", language)
    page.get_by_role("navigation").get_by_role("link", name=t["service"]).click()
    expect(page).to_have_url(f"{live}/console/crossborder")
    expect(page.get_by_role("heading", level=1)).to_have_text(t["service"])
    expect(page.locator(".xb-status")).to_contain_text(t["none"])
    shoot(page, f"crossborder-index-{language}")
    page.locator("#f-site_ids").select_option(site["id"])
    page.locator("#f-bandwidth_mbps").fill("20")
    page.locator("#f-headcount").fill("40")
    page.locator("#f-manager_name").fill("李娜" if language == "zh-CN" else "Li Na")
    page.locator("#f-manager_phone").fill("+8613800138000")
    page.locator("#f-manager_email").fill("it@a.example")
    page.locator("#f-term_start").fill("2026-01-01")
    page.locator("#f-term_end").fill("2030-12-31")
    # Without the undertaking: refused next to the box.
    page.locator("form[action='/console/crossborder'] button[type=submit]").click()
    expect(page.locator("#f-internal_use_only-error")).not_to_be_empty()
    shoot(page, f"crossborder-refused-{language}")
    page.locator("#f-internal_use_only").check()
    page.locator("form[action='/console/crossborder'] button[type=submit]").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["detail"])
    for kind, path in (("business_licence", licence), ("commitment_letter", letter)):
        page.locator("#f-kind").select_option(kind)
        page.locator("#f-file").set_input_files(str(path))
        page.locator("form[enctype='multipart/form-data'] button[type=submit]").click()
        expect(page.get_by_role("status")).to_be_visible()
    expect(page.locator("ul.docs li")).to_have_count(2)
    shoot(page, f"crossborder-documents-{language}")
    page.locator("form[action$='/submit'] button").click()
    expect(page.get_by_role("status")).to_be_visible()
    app_path = page.url.split("?")[0]

    officer, officer_problems = sign_in(
        browser, live, "compliance_officer@operator.example", language
    )
    officer.get_by_role("navigation").get_by_role("link", name=t["queue"]).click()
    expect(officer).to_have_url(f"{live}/console/crossborder-queue")
    expect(officer.locator("table")).to_contain_text("20 Mbit/s")
    shoot(officer, f"crossborder-queue-{language}")
    officer.locator("table a").first.click()
    officer.locator("form[action$='/review'] button").click()
    expect(officer.get_by_role("status")).to_be_visible()
    today = shanghai_today(world.runtime.clock())
    officer.locator("#f-approval_ref").fill("CU-XB-2026-0001")
    officer.locator("#f-link_id").select_option(link_id)
    officer.locator("#f-approved_mbps").fill("20")
    officer.locator("#f-valid_from").fill(today.isoformat())
    officer.locator("#f-valid_to").fill((today + timedelta(days=365)).isoformat())
    shoot(officer, f"crossborder-decide-{language}")
    officer.locator("form[action$='/approve'] button").click()
    expect(officer.get_by_role("status")).to_be_visible()
    expect(officer.locator(".lede")).to_contain_text(t["approved"])
    shoot(officer, f"crossborder-approved-{language}")
    assert officer.url.split("?")[0] == app_path

    page.goto(f"{live}/console/crossborder")
    expect(page.locator(".xb-status")).to_contain_text(t["authorised"])
    shoot(page, f"crossborder-authorised-{language}")
    page.set_viewport_size(PHONE)
    for path, name in (("/console/crossborder", "index"), (app_path.removeprefix(live), "app")):
        page.goto(f"{live}{path}")
        _no_sideways_scroll(page)
        shoot(page, f"crossborder-{name}-phone-{language}")
    assert problems == [] and officer_problems == []
