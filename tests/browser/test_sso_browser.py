"""Single sign-on in Debian's Chromium, once in English and once in 简体中文: the tenant's
admin sees the identity provider settings; an employee signs in to the console through the
tenant's own OpenID Provider (django-oidc-provider, its own process) end to end; the
compliance officer sees the domain claims. Every page is kept as a screenshot, with no
missing glyphs and no console or CSP errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

import tests.support.browser as browser_support
from tests.conftest import make_settings
from tests.sso.support import connect
from tests.support.browser import DESKTOP, serve, shoot, watch
from tests.support.oidc_provider import OidcProvider
from tests.support.world import PASSWORD, World
from tongdao.config import Settings

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

T = {
    "sso": ("Sign in with SSO", "使用单点登录（SSO）登录"),
    "continue": ("Continue", "继续"),
    "sign_in": ("Sign in", "登录"),
    "title": ("Single sign-on", "单点登录"),
}


def _t(key: str, zh: bool) -> str:
    return T[key][1 if zh else 0]


@pytest.fixture
def port() -> int:
    return browser_support.free_port()


@pytest.fixture
def settings(tmp_path: Path, store_url: str, port: int) -> Settings:
    # The redirect URI registered at the provider is the console's public address.
    return make_settings(tmp_path, store_url, public_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def live(world: World, app: FastAPI, port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(browser_support, "free_port", lambda: port)
    with serve(app) as url:
        yield url


def _password_sign_in(page: Page, live: str, email: str, zh: bool) -> None:
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill(email)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name=_t("sign_in", zh)).click()
    expect(page).to_have_url(f"{live}/console/home")


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_an_employee_signs_in_through_the_tenants_provider(
    browser: Browser, live: str, world: World, oidc_provider: OidcProvider, language: str
) -> None:
    zh = language == "zh-CN"
    suffix = "zh" if zh else "en"
    sso = connect(world, oidc_provider, jit_users=True, groups_claim="groups")
    user = oidc_provider.add_user("li.na@a.example", given_name="Na", family_name="Li")

    admin = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    try:
        page = admin.new_page()
        problems = watch(page)
        _password_sign_in(page, live, "tenant_admin@a.example", zh)
        page.goto(f"{live}/console/sso")
        expect(page).to_have_url(f"{live}/console/sso/tenants/{sso.tenant_id}")
        expect(page.locator("h1")).to_contain_text(_t("title", zh))
        expect(page.locator("#f-issuer")).to_have_value(oidc_provider.issuer)
        expect(page.locator("body")).not_to_contain_text(sso.client.client_secret)
        shoot(page, f"sso-tenant-settings-{suffix}")
        assert not problems, problems
    finally:
        admin.close()

    employee = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    try:
        page = employee.new_page()
        problems = watch(page)
        page.goto(f"{live}/console/sign-in")
        page.get_by_role("link", name=_t("sso", zh)).click()
        expect(page).to_have_url(f"{live}/console/sign-in/sso")
        page.locator("#f-email").fill(user.email)
        shoot(page, f"sso-sign-in-{suffix}")
        page.get_by_role("button", name=_t("continue", zh)).click()
        expect(page.locator("#continue-sso")).to_be_visible()
        shoot(page, f"sso-continue-{suffix}")
        page.locator("#continue-sso").click()
        # The provider's own login form (English: it is the test provider's page).
        page.get_by_label("User name").fill(user.username)
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{live}/console/home")
        expect(page.locator("h1")).to_contain_text("Na Li")
        shoot(page, f"sso-signed-in-{suffix}")
        assert not problems, problems
    finally:
        employee.close()

    officer = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    try:
        page = officer.new_page()
        _password_sign_in(page, live, "compliance_officer@operator.example", zh)
        page.goto(f"{live}/console/sso")
        expect(page.locator("table")).to_contain_text("a.example")
        shoot(page, f"sso-domain-claims-{suffix}")
    finally:
        officer.close()


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_a_throttled_sso_form_says_when_to_try_again(
    browser: Browser, live: str, world: World, oidc_provider: OidcProvider, language: str
) -> None:
    """Past the per-address limit the SSO form answers with the throttle's message (429)."""
    zh = language == "zh-CN"
    connect(world, oidc_provider)
    world.runtime.settings.login_address_max_failures = 1
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        problems = watch(page)
        for _ in range(2):
            page.goto(f"{live}/console/sign-in/sso")
            page.locator("#f-email").fill("employee@a.example")
            page.get_by_role("button", name=_t("continue", zh)).click()
        message = "此地址登录次数过多" if zh else "too many sign-ins from this address"
        expect(page.get_by_text(message)).to_be_visible()
        shoot(page, f"sso-throttled-{'zh' if zh else 'en'}")
        assert problems == [], problems
    finally:
        context.close()
