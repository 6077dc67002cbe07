"""The tenant admin's people pages in Debian's Chromium, once in English and once in 简体中文.

The journey: the tenant admin signs in, invites an employee by e-mail (read from a real SMTP
server on loopback), the invitee opens the mailed link and chooses a password, the admin
records and verifies the employee's identity, makes a group with the employee in it, then
opens the devices list (presence and bytes from a gateway's real usage report) and revokes a
device. Every main page is kept as a screenshot in both languages, two at phone width.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from tests.api.test_gateway import state
from tests.api.test_mail_reset import NEW_PASSWORD, login, use_relay
from tests.api.test_usage import REPORTS, peer, report, serving_gateway
from tests.support.browser import DESKTOP, PHONE, serve, shoot, watch
from tests.support.privacy import resident_id
from tests.support.smtp import SmtpServer
from tests.support.world import PASSWORD, World
from tongdao.testing.keys import public_key

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)
API = "/api/v1"


@pytest.fixture
def live(world: World, app: FastAPI) -> Iterator[str]:
    # The world's TestClient already ran the app's start-up (mail sender and all).
    with serve(app, lifespan="off") as url:
        yield url


def _page(browser: Browser, locale: str, viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(locale=locale, viewport=viewport)  # type: ignore[arg-type]
    return context.new_page()


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways at phone width ({width}px)"


def _device_with_traffic(world: World) -> dict[str, Any]:
    """A device of tenant A's employee that a gateway reported connected, with 5 MiB moved."""
    _pop, gw = serving_gateway(world)
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "ThinkPad X1", "public_key": public_key()},
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 201, resp.text
    device: dict[str, Any] = resp.json()
    state(world, gw)
    handshake = datetime.now(UTC) - timedelta(seconds=70)
    rows = [
        peer(
            world.a.id,
            device["id"],
            4 << 20,
            1 << 20,
            key=device["public_key"],
            handshake=handshake,
        )
    ]
    sent = world.client.post(REPORTS, json=report(1, rows), headers=gw)
    assert sent.status_code == 200 and sent.json()["stored"] == 1, sent.text
    return device


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_a_tenant_admins_people_journey(
    browser: Browser, live: str, world: World, smtp: SmtpServer, language: str
) -> None:
    zh = language == "zh-CN"

    def t(english: str, chinese: str) -> str:
        return chinese if zh else english

    use_relay(world, smtp.port)
    device = _device_with_traffic(world)
    page = _page(browser, language)
    problems = watch(page)
    # Sign in as tenant A's admin.
    page.goto(f"{live}/console/sign-in")
    page.get_by_label(t("E-mail", "邮箱"), exact=True).fill("tenant_admin@a.example")
    page.get_by_label(t("Password", "密码"), exact=True).fill(PASSWORD)
    page.get_by_role("button", name=t("Sign in", "登录")).click()
    expect(page).to_have_url(f"{live}/console/home")
    # Users, from the menu.
    page.get_by_role("navigation", name=t("Main", "主导航")).get_by_role(
        "link", name=t("Users", "用户"), exact=True
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t("Users", "用户"))
    expect(page.locator("html")).to_have_attribute("lang", language)
    shoot(page, f"people-users-{language}")
    # Invite an employee.
    page.get_by_role("link", name=t("Invite a user", "邀请用户")).click()
    email = f"new.hire.{language.lower()}@a.example"
    page.get_by_label(t("E-mail", "邮箱"), exact=True).fill("not an address")
    page.get_by_label(t("Full name", "姓名")).fill(t("Wang Fang", "王芳"))
    page.get_by_role("button", name=t("Send the invitation", "发送邀请")).click()
    expect(page.locator("#f-email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-email-error")).not_to_be_empty()
    shoot(page, f"people-invite-refused-{language}")
    page.get_by_label(t("E-mail", "邮箱"), exact=True).fill(email)
    page.get_by_role("button", name=t("Send the invitation", "发送邀请")).click()
    expect(page.get_by_role("status")).to_contain_text(
        t("The invitation is on its way", "邀请邮件已发出")
    )
    user_url = page.url.split("?")[0]
    # The invitee reads the mail and chooses a password on the link's page.
    got = smtp.wait_for(email)
    invitee = _page(browser, language)
    invitee_problems = watch(invitee)
    invitee.goto(f"{live}/console/password/reset?token={got.token}")
    expect(invitee.get_by_role("heading", level=1)).to_have_text(t("Choose a password", "设置密码"))
    invitee.get_by_label(t("New password", "新密码")).fill(NEW_PASSWORD)
    invitee.get_by_label(t("Repeat it", "再次输入")).fill(NEW_PASSWORD)
    invitee.get_by_role("button", name=t("Set password", "设置密码")).click()
    expect(invitee.get_by_role("status")).to_contain_text(t("Your password is set", "密码已设置"))
    shoot(invitee, f"people-invitee-password-set-{language}")
    assert login(world.client, email, NEW_PASSWORD).status_code == 200
    assert invitee_problems == []
    invitee.context.close()
    # Verifying before the identity is recorded: the service refuses, the page says why next
    # to the fields that are missing.
    page.get_by_role(
        "button", name=t("I checked the documents: verify", "我已查验证件：核验通过")
    ).click()
    expect(page.locator("#f-verification-error")).to_contain_text("identity.real_name")
    expect(page.locator("#f-legal_name-error")).to_have_text(
        t("record it before the identity is verified", "核验身份前请先登记此项")
    )
    shoot(page, f"people-user-refused-{language}")
    # Record the employee's identity, then verify it.
    page.get_by_label(t("Legal name", "法定姓名")).fill("王芳")
    page.get_by_label(t("ID type", "证件类型")).select_option("prc_resident_id")
    number = resident_id(7 if zh else 8)
    page.get_by_label(t("ID number", "证件号码")).fill(number)
    page.get_by_label(t("Mobile", "手机号码")).fill("+8613800138000")
    page.get_by_role("button", name=t("Save the identity", "保存实名信息")).click()
    expect(page.get_by_role("status")).to_contain_text(t("The identity is saved", "身份信息已保存"))
    assert number not in page.content()
    page.get_by_role(
        "button", name=t("I checked the documents: verify", "我已查验证件：核验通过")
    ).click()
    expect(page.get_by_role("status")).to_contain_text(t("The identity is verified", "身份已核验"))
    shoot(page, f"people-user-{language}")
    # A group with the new employee in it.
    page.goto(f"{live}/console/groups")
    name = t("Finance", "财务部")
    page.get_by_label(t("Name", "名称"), exact=True).last.fill(name)
    page.get_by_role("button", name=t("Create the group", "创建用户组")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    page.get_by_label(t("Add a member", "添加成员")).select_option(
        label=f"{t('Wang Fang', '王芳')} <{email}>"
    )
    page.get_by_role("button", name=t("Add", "添加"), exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(t("The members are saved", "成员已保存"))
    expect(page.get_by_role("cell", name=email)).to_be_visible()
    shoot(page, f"people-group-{language}")
    page.goto(f"{live}/console/groups")
    shoot(page, f"people-groups-{language}")
    page.goto(user_url)
    expect(page.get_by_label(name)).to_be_checked()
    # Devices: presence and bytes, then revoke one.
    page.get_by_role("navigation", name=t("Main", "主导航")).get_by_role(
        "link", name=t("Devices", "设备"), exact=True
    ).click()
    row = page.get_by_role("row").filter(has_text="ThinkPad X1")
    expect(row).to_contain_text(t("online", "在线"))
    expect(row).to_contain_text("5 MiB")
    expect(row).to_contain_text(t("(Asia/Shanghai)", "（北京时间）"))
    shoot(page, f"people-devices-{language}")
    row.get_by_role("link", name="ThinkPad X1").click()
    shoot(page, f"people-device-{language}")
    page.get_by_role("button", name=t("Revoke this device", "吊销此设备")).click()
    expect(page.get_by_role("status")).to_contain_text(t("The device is revoked", "设备已吊销"))
    api = world.client.get(
        f"{API}/tenants/{world.a.id}/devices/{device['id']}", headers=world.a.admin.headers
    ).json()
    assert api["state"] == "revoked"
    # Another tenant's user: the 404 page.
    answer = page.goto(f"{live}/console/users/{world.b.employee.user_id}")
    assert answer is not None and answer.status == 404
    assert problems == []


def test_the_people_lists_work_at_phone_width_and_by_keyboard(
    browser: Browser, live: str, world: World
) -> None:
    _device_with_traffic(world)
    page = _page(browser, "zh-CN", PHONE)
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").focus()
    page.keyboard.type("tenant_admin@a.example")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live}/console/home")
    for path, name in (
        ("/console/users", "people-users-phone-zh-CN"),
        ("/console/devices", "people-devices-phone-zh-CN"),
        (f"/console/users/{world.a.employee.user_id}", "people-user-phone-zh-CN"),
    ):
        page.goto(f"{live}{path}")
        _no_sideways_scroll(page)
        shoot(page, name)
    # Filter by keyboard: type in the search field and press Enter.
    page.goto(f"{live}/console/users")
    page.get_by_label("姓名或邮箱").focus()
    page.keyboard.type("employee")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live}/console/users?q=employee&role=&state=&verified=")
    expect(page.get_by_role("link", name="employee", exact=True)).to_be_visible()
    assert problems == []
