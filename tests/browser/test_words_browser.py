"""Field names and provinces inside refusals, read in Debian's Chromium in 简体中文 and English.

A tenant admin verifies an employee whose identity is not recorded yet: the refusal names the
missing fields by their labels (never ``legal_name``); a compliance officer records a Shanghai
licence for Guangdong: the refusal next to the provinces names 上海市 (never ``Shanghai``) in
简体中文. Screenshots (one at phone width) are kept with no missing-glyph boxes and no console
errors."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import DESKTOP, PHONE, shoot, watch
from tests.support.world import PASSWORD, World

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

TEXT = {
    "en": {
        "verify": "I checked the documents: verify",
        "incomplete": "the real identity is incomplete (legal name, ID type, ID number, mobile "
        "missing)",
        "number": "Licence number",
        "codes": "Service codes",
        "authority": "Issuing authority",
        "provinces": "Provinces covered",
        "from": "Valid from",
        "to": "Valid to",
        "record": "Record the licence",
        "province_error": "a licence numbered 沪… is issued in Shanghai and covers Shanghai (31) "
        "only",
    },
    "zh-CN": {
        "verify": "我已查验证件：核验通过",
        "incomplete": "实名信息不完整（缺少法定姓名、证件类型、证件号码、手机号码）",
        "number": "许可证编号",
        "codes": "业务代码",
        "authority": "发证机关",
        "provinces": "覆盖省份",
        "from": "生效日期",
        "to": "到期日期",
        "record": "登记许可证",
        "province_error": "编号以“沪”开头的许可证在上海市颁发，仅覆盖上海市（31）",
    },
}


def _page(browser: Browser, locale: str, viewport: dict[str, int] = DESKTOP) -> Page:
    return browser.new_context(locale=locale, viewport=viewport).new_page()  # type: ignore[arg-type]


def sign_in(page: Page, live: str, email: str) -> None:
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill(email)
    page.locator("#f-password").fill(PASSWORD)
    page.locator("#f-password").press("Enter")
    expect(page).to_have_url(f"{live}/console/home")


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_refusals_name_fields_and_provinces_in_the_readers_language(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = TEXT[language]
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/users",
        json={"email": "chen.jie@a.example", "display_name": "陈杰 Chen Jie"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    user_id = resp.json()["id"]

    page = _page(browser, language)
    problems = watch(page)
    sign_in(page, live, "tenant_admin@a.example")
    page.goto(f"{live}/console/users/{user_id}")
    page.get_by_role("button", name=t["verify"]).click()
    error = page.locator("#f-verification-error")
    expect(error).to_contain_text(t["incomplete"])
    for key in ("legal_name", "id_type", "id_number"):
        expect(error).not_to_contain_text(key)
    shoot(page, f"words-identity-refused-{language}")

    officer = _page(browser, language)
    officer_problems = watch(officer)
    sign_in(officer, live, "compliance_officer@operator.example")
    officer.goto(f"{live}/console/compliance/licences")
    officer.get_by_label(t["number"]).fill("沪B1-20260042")
    officer.get_by_label(t["codes"]).fill("B13")
    officer.get_by_label(t["authority"]).fill("上海市通信管理局")
    officer.get_by_label(t["provinces"]).select_option("44")
    officer.get_by_label(t["from"]).fill("2026-01-01")
    officer.get_by_label(t["to"]).fill("2030-12-31")
    officer.get_by_role("button", name=t["record"]).click()
    expect(officer.locator("#f-provinces-error")).to_have_text(t["province_error"])
    if language == "zh-CN":
        expect(officer.get_by_label(t["provinces"])).to_contain_text("广东省（44）")
    officer.locator("#f-provinces-error").scroll_into_view_if_needed()
    shoot(officer, f"words-licence-refused-{language}")

    # The same refusal at phone width.
    phone = _page(browser, language, PHONE)
    phone_problems = watch(phone)
    sign_in(phone, live, "tenant_admin@a.example")
    phone.goto(f"{live}/console/users/{user_id}")
    phone.get_by_role("button", name=t["verify"]).click()
    expect(phone.locator("#f-verification-error")).to_contain_text(t["incomplete"])
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"scrolls sideways ({width}px)"
    shoot(phone, f"words-identity-refused-phone-{language}")
    assert problems == [] and officer_problems == [] and phone_problems == []
