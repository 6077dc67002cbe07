"""The console's frame in Debian's Chromium: first-run setup, sign-in, language, phone width."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import DESKTOP, PHONE, missing_glyphs, shoot, watch
from tests.support.world import PASSWORD

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)


def _page(browser: Browser, locale: str, viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(locale=locale, viewport=viewport)  # type: ignore[arg-type]
    return context.new_page()


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_first_run_setup_then_sign_in_in_each_language(
    browser: Browser, live: str, app: FastAPI, language: str
) -> None:
    page = _page(browser, language)
    problems = watch(page)
    zh = language == "zh-CN"
    answer = page.goto(f"{live}/")
    assert answer is not None
    assert page.url.endswith("/console/setup")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if zh else "en")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "初始化通道" if zh else "Set up Tongdao"
    )
    shoot(page, f"setup-{language}")
    code = app.state.first_run.code()
    page.get_by_label("初始化码" if zh else "Setup code").fill("WRONG-CODE-0000")
    page.get_by_label("您的邮箱" if zh else "Your e-mail").fill("root@operator.example")
    page.get_by_label("您的姓名" if zh else "Your name").fill("李运营" if zh else "Ops Root")
    page.get_by_label("密码", exact=True).or_(page.get_by_label("Password", exact=True)).fill(
        PASSWORD
    )
    page.get_by_label("再次输入密码" if zh else "Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="创建运营管理员" if zh else "Create the operator admin").click()
    # The refusal is next to its field and the field says it is invalid.
    error = page.locator("#f-setup_code-error")
    expect(error).to_contain_text("初始化码" if zh else "setup code")
    expect(page.locator("#f-setup_code")).to_have_attribute("aria-invalid", "true")
    shoot(page, f"setup-refused-{language}")
    page.get_by_label("初始化码" if zh else "Setup code").fill(code)
    page.get_by_label("密码", exact=True).or_(page.get_by_label("Password", exact=True)).fill(
        PASSWORD
    )
    page.get_by_label("再次输入密码" if zh else "Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="创建运营管理员" if zh else "Create the operator admin").click()
    expect(page).to_have_url(f"{live}/console/sign-in?done=setup")
    page.get_by_label("邮箱" if zh else "E-mail", exact=True).fill("root@operator.example")
    page.get_by_label("密码" if zh else "Password", exact=True).fill(PASSWORD)
    shoot(page, f"sign-in-{language}")
    page.get_by_role("button", name="登录" if zh else "Sign in").click()
    expect(page).to_have_url(f"{live}/console/home")
    expect(page.get_by_role("heading", level=1)).to_contain_text("李运营" if zh else "Ops Root")
    shoot(page, f"home-{language}")
    # Switch language from the page itself; the choice is the person's from now on.
    page.get_by_role("button", name="English" if zh else "简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "en" if zh else "zh-CN")
    expect(page).to_have_url(f"{live}/console/home")
    page.get_by_role("button", name="Sign out" if zh else "退出登录").click()
    expect(page).to_have_url(f"{live}/console/sign-in?done=signed-out")
    assert problems == []


def test_the_sign_in_page_works_at_phone_width_and_by_keyboard(
    browser: Browser, live: str, app: FastAPI
) -> None:
    from tests.support.world import make_user

    make_user(app.state.runtime, "keys@operator.example", ["auditor"])
    page = _page(browser, "zh-CN", PHONE)
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at phone width ({width}px)"
    shoot(page, "sign-in-phone-zh-CN")
    # Keyboard only: Tab to the e-mail field, type, Tab to the password, Enter submits.
    page.locator("#f-email").focus()
    page.keyboard.type("keys@operator.example")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live}/console/home")
    assert problems == []


def test_the_missing_glyph_check_finds_a_box(browser: Browser, live: str) -> None:
    page = _page(browser, "en")
    page.goto(f"{live}/console/sign-in")
    assert missing_glyphs(page) == []
    page.evaluate("document.querySelector('h1').textContent = '登录 \\u{F0001}'")
    assert missing_glyphs(page) == ["\U000f0001"]


def test_the_home_pages_two_columns_of_work_start_level(
    browser: Browser, live: str, app: FastAPI
) -> None:
    """Found trying the console: the second column of "Your work" sat a few pixels above the
    first (a list item's top margin is dropped at a column break)."""
    from tests.support.world import make_user

    make_user(app.state.runtime, "level@operator.example", ["operator_admin"])
    page = _page(browser, "en")
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill("level@operator.example")
    page.locator("#f-password").fill(PASSWORD)
    page.locator("#f-password").press("Enter")
    expect(page).to_have_url(f"{live}/console/home")
    boxes = page.evaluate(
        "() => [...document.querySelectorAll('.jobs li')].map(li => {"
        " const r = li.getBoundingClientRect(); return [Math.round(r.left), r.top]; })"
    )
    columns: dict[int, float] = {}
    for left, top in boxes:
        columns.setdefault(left, top)
    assert len(columns) == 2, boxes
    first, second = columns.values()
    assert abs(first - second) < 0.5, boxes
