"""Security keys in Debian's Chromium with its virtual authenticator (CDP ``WebAuthn`` domain:
CTAP2, internal transport, resident keys, user verification): a staff member adds a passkey on
their own page and signs in with it after the password; a response checked against another
origin is refused; the pages in English and 简体中文.

The console is opened at ``http://localhost:<port>``: WebAuthn needs a secure context with a
host name, and ``localhost`` is one (an IP address is not a valid RP id)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, CDPSession, Page, expect
from sqlalchemy import select

from tests.support.browser import DESKTOP, serve, shoot, watch
from tests.support.world import PASSWORD, World
from tongdao.audit.models import AuditEvent

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)

EMAIL = "compliance_officer@operator.example"


@pytest.fixture
def live(app: FastAPI, world: World) -> Iterator[str]:
    with serve(app, lifespan="off") as url:
        port = url.rsplit(":", 1)[1]
        origin = f"http://localhost:{port}"
        settings = world.runtime.settings
        settings.webauthn_rp_id = "localhost"
        settings.webauthn_origin = origin
        yield origin


def virtual_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, str(added["authenticatorId"])


def password_step(page: Page, live: str) -> None:
    page.goto(f"{live}/console/sign-in")
    page.get_by_label("E-mail", exact=True).fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def audit(world: World, action: str) -> list[dict[str, Any]]:
    with world.runtime.db.session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
        return [dict(row.after or {}) for row in rows]


def test_passkey_registered_and_signed_in_with(browser: Browser, live: str, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    page = context.new_page()
    problems = watch(page)
    cdp, authenticator = virtual_authenticator(page)

    # Signed in with the password alone (no key yet), the person adds a passkey.
    password_step(page, live)
    expect(page).to_have_url(f"{live}/console/home")
    page.goto(f"{live}/console/account")
    page.get_by_role("link", name="Manage your security keys").click()
    expect(page.locator("#no-keys")).to_be_visible()
    page.get_by_label("Name of the key", exact=True).fill("Laptop passkey")
    page.locator("#f-key-current_password").fill(PASSWORD)
    page.get_by_role("button", name="Add a key").click()
    expect(page).to_have_url(f"{live}/console/account/keys?done=added")
    expect(page.get_by_role("cell", name="Laptop passkey", exact=True)).to_be_visible()
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]
    shoot(page, "webauthn-keys-en")
    page.goto(f"{live}/console/second-factors")
    expect(page.get_by_role("heading", name="Second factors for staff")).to_be_visible()
    shoot(page, "webauthn-staff-rule-en")

    # Signing in again: the password, then the key.
    page.get_by_role("button", name="Sign out").click()
    password_step(page, live)
    expect(page.get_by_role("heading", name="Use your security key")).to_be_visible()
    shoot(page, "webauthn-sign-in-key-en")
    page.get_by_role("button", name="Use my security key").click()
    expect(page).to_have_url(f"{live}/console/home")
    used = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert used["credentials"][0]["signCount"] >= 1
    assert {"second_factor": "webauthn"} in audit(world, "login")

    # The server checks the origin the browser signed: one it does not serve is refused.
    page.get_by_role("button", name="Sign out").click()
    password_step(page, live)
    settings = world.runtime.settings
    real_origin = settings.webauthn_origin
    settings.webauthn_origin = "https://console.elsewhere.example"
    try:
        page.get_by_role("button", name="Use my security key").click()
        expect(page.locator("#form-error")).to_contain_text("did not confirm the sign-in")
    finally:
        settings.webauthn_origin = real_origin
    assert any("origin" in str(a.get("reason", "")).lower() for a in audit(world, "login_failed"))
    assert problems == [], problems
    context.close()


def test_pages_in_chinese(browser: Browser, live: str, world: World) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    problems = watch(page)
    virtual_authenticator(page)
    page.goto(f"{live}/console/sign-in")
    page.get_by_label("邮箱", exact=True).fill(EMAIL)
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(f"{live}/console/home")
    page.goto(f"{live}/console/account/keys")
    page.get_by_label("密钥名称", exact=True).fill("笔记本电脑")
    page.locator("#f-key-current_password").fill(PASSWORD)
    page.get_by_role("button", name="添加密钥").click()
    expect(page.get_by_role("cell", name="笔记本电脑", exact=True)).to_be_visible()
    shoot(page, "webauthn-keys-zh")
    page.goto(f"{live}/console/second-factors")
    expect(page.get_by_role("heading", name="员工的第二因素")).to_be_visible()
    shoot(page, "webauthn-staff-rule-zh")
    page.get_by_role("button", name="退出登录").click()
    page.get_by_label("邮箱", exact=True).fill(EMAIL)
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="使用您的安全密钥")).to_be_visible()
    shoot(page, "webauthn-sign-in-key-zh")
    page.get_by_role("button", name="使用我的安全密钥").click()
    expect(page).to_have_url(f"{live}/console/home")
    assert problems == [], problems
    context.close()
