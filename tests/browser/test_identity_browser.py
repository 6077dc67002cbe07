"""A tenant admin in Debian's Chromium, in both languages: makes a SCIM token (shown once; it
then works against /scim/v2), revokes it, and sets the device lifetime."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, expect

from tests.support.browser import DESKTOP, serve, shoot, watch
from tests.support.world import PASSWORD, World

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)

T = {
    "sign_in": ("Sign in", "登录"),
    "nav": ("Provisioning and devices", "用户开通与设备"),
    "make": ("Make the token", "生成令牌"),
    "once": ("Copy this now: the token is shown only once.", None),
    "revoke": ("Revoke", "吊销"),
    "save": ("Save the device lifetime", "保存设备有效期"),
    "saved": ("The device lifetime was saved.", "设备有效期已保存。"),
}


@pytest.fixture
def live(app: FastAPI, world: World) -> Iterator[str]:
    with serve(app, lifespan="off") as url:
        yield url


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_tenant_admin_makes_a_scim_token_and_sets_the_device_lifetime(
    browser: Browser, live: str, world: World, language: str
) -> None:
    zh = language == "zh-CN"

    def t(key: str) -> str:
        en, cn = T[key]
        return (cn or en) if zh else en

    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill("tenant_admin@a.example")
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name=t("sign_in")).click()
    expect(page).to_have_url(f"{live}/console/home")
    page.locator("header nav").get_by_role("link", name=t("nav")).click()
    expect(page).to_have_url(f"{live}/console/identity/tenants/{world.a.id}")
    expect(page.locator("main")).to_contain_text(f"{live}/scim/v2")

    page.locator("#f-name").fill("Entra ID")
    page.get_by_role("button", name=t("make")).click()
    secret = page.locator("#scim-secret").inner_text().strip()
    assert secret.startswith("tdscim_")
    shoot(page, f"identity-token-made-{language}")
    answer = httpx.get(f"{live}/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200 and answer.json()["totalResults"] == 2

    page.locator("#f-days").fill("30")
    page.get_by_role("button", name=t("save")).click()
    expect(page.locator("main")).to_contain_text(t("saved"))
    expect(page.locator("#f-days")).to_have_value("30")
    page.get_by_role("button", name=t("revoke")).click()
    shoot(page, f"identity-lifetime-set-{language}")
    answer = httpx.get(f"{live}/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 401
    assert problems == []
    context.close()
