"""An employee's own pages in Debian's Chromium: register a device, account, privacy.

The device's key pair is made by the page (WebCrypto X25519). Checked independently: the
downloaded file's PrivateKey gives, through ``wg pubkey`` (wireguard-tools), the public key the
server stored; the QR code drawn on the page, decoded by ``zbarimg`` (zbar-tools), is the
downloaded file byte for byte; and no request the page made carried the private key.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, Request, expect

from tests.api.test_gateway import activate, enrol, make_pop, state
from tests.conftest import need
from tests.support.browser import DESKTOP, PHONE, artefacts, serve, shoot, watch
from tests.support.privacy import publish_notice
from tests.support.world import PASSWORD, World
from tests.web.test_me_pages import serve_tenant_a
from tongdao.testing.keys import public_key

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)

EMPLOYEE_EMAIL = "employee@a.example"


@pytest.fixture
def live(app: FastAPI, world: World) -> Iterator[str]:
    # The world's TestClient runs the app's lifespan already; uvicorn serves the same app.
    with serve(app, lifespan="off") as url:
        yield url


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        need(f"{name} (Debian {package})")
        raise AssertionError("unreachable")  # pragma: no cover
    return found


def wg_pubkey(private_key: str) -> str:
    done = subprocess.run(
        [tool("wg", "wireguard-tools"), "pubkey"],
        input=private_key + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.strip()


def zbar(png: Path) -> str:
    """The QR code's bytes as an independent decoder reads them, taken as UTF-8 (``-Sbinary``:
    without it zbar guesses a legacy encoding for the Chinese in a device's name)."""
    done = subprocess.run(
        [tool("zbarimg", "zbar-tools"), "--raw", "-q", "-Sbinary", str(png)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout.decode("utf-8")


class Recorder:
    """Every request the page makes: its URL, headers and body."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("request", self.record)

    def record(self, request: Request) -> None:
        body = request.post_data_buffer or b""
        self.seen.append(
            f"{request.method} {request.url}\n{json.dumps(request.headers)}\n"
            + body.decode("utf-8", errors="replace")
        )

    def carrying(self, secret: str) -> list[str]:
        forms = {secret, secret.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")}
        return [entry for entry in self.seen if any(form in entry for form in forms)]


def sign_in(page: Page, live: str, zh: bool) -> None:
    page.goto(f"{live}/console/sign-in")
    page.get_by_label("邮箱" if zh else "E-mail", exact=True).fill(EMPLOYEE_EMAIL)
    page.get_by_label("密码" if zh else "Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="登录" if zh else "Sign in").click()
    expect(page).to_have_url(f"{live}/console/home")


def menu(page: Page, zh: bool, label: str) -> None:
    nav = page.get_by_role("navigation", name="主导航" if zh else "Main")
    nav.get_by_role("link", name=label).click()


def server_key(world: World, name: str) -> dict[str, Any]:
    resp = world.client.get(
        f"/api/v1/tenants/{world.a.id}/devices", headers=world.a.employee.headers
    )
    assert resp.status_code == 200, resp.text
    found = [d for d in resp.json()["data"] if d["name"] == name]
    assert len(found) == 1, found
    device: dict[str, Any] = found[0]
    return device


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_an_employee_registers_a_device_in_the_browser(
    browser: Browser, live: str, world: World, language: str
) -> None:
    zh = language == "zh-CN"
    pop_key = serve_tenant_a(world)
    context = browser.new_context(locale=language, viewport=DESKTOP, accept_downloads=True)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    requests = Recorder(page)
    sign_in(page, live, zh)

    menu(page, zh, "我的设备" if zh else "My devices")
    expect(page.get_by_role("heading", level=1)).to_have_text("我的设备" if zh else "My devices")
    expect(page.locator("p.empty")).to_be_visible()
    shoot(page, f"me-devices-empty-{language}")
    page.get_by_role("link", name="注册设备" if zh else "Register a device").click()
    expect(page).to_have_url(f"{live}/console/my/devices/new")
    # With script the page makes the key: the public-key field is not asked for.
    expect(page.locator("#public-key-field")).to_be_hidden()
    shoot(page, f"me-device-new-{language}")

    name = "工作笔记本" if zh else "Work laptop"
    page.get_by_label("名称" if zh else "Name", exact=True).fill(name)
    page.get_by_role("button", name="注册设备" if zh else "Register the device").click()
    expect(page.locator("#result")).to_be_visible()
    qr = page.locator("#config-qr svg")
    expect(qr).to_be_visible()
    expect(page.locator("#config-error")).to_be_hidden()
    shoot(page, f"me-device-config-{language}")

    with page.expect_download() as download_info:
        page.get_by_role(
            "button", name="下载配置文件" if zh else "Download the configuration"
        ).click()
    download = download_info.value
    expected = r"tongdao-[0-9a-f]{8}\.conf" if zh else r"tongdao-Work-laptop\.conf"
    assert re.fullmatch(expected, download.suggested_filename), download.suggested_filename
    config = Path(download.path()).read_text(encoding="utf-8")
    kept = artefacts() / f"me-device-{language}.conf.txt"
    private = re.search(r"^PrivateKey = (\S+)$", config, re.M)
    assert private, config
    private_key = private.group(1)
    # The private key gives, by an independent tool, the public key the server stored.
    device = server_key(world, name)
    assert wg_pubkey(private_key) == device["public_key"]
    assert f"PublicKey = {pop_key}" in config
    assert "# PrivateKey" not in config  # the placeholder was replaced
    # The QR code is the file, as an independent decoder reads it.
    png = artefacts() / f"me-device-qr-{language}.png"
    qr.screenshot(path=str(png))
    assert zbar(png) == config
    kept.write_text(config.replace(private_key, "<private key>"), encoding="utf-8")
    # Only the public key went to the server; the private key was in no request at all.
    assert requests.carrying(device["public_key"]), "the public key was posted"
    assert requests.carrying(private_key) == []

    page.get_by_role("link", name="查看设备" if zh else "Go to the device").click()
    expect(page.locator("#device-public-key")).to_have_text(device["public_key"])
    shoot(page, f"me-device-{language}")
    page.get_by_role("button", name="吊销此设备" if zh else "Revoke this device").click()
    expect(page.locator("p.notice")).to_contain_text("已吊销" if zh else "revoked")
    assert server_key(world, name)["state"] == "revoked"
    assert requests.carrying(private_key) == []
    assert problems == []
    context.close()


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_an_employee_sets_up_totp_and_consents_in_the_browser(
    browser: Browser, live: str, world: World, language: str
) -> None:
    zh = language == "zh-CN"
    notice = publish_notice(world.client, world.admin.headers)
    context = browser.new_context(locale=language, viewport=DESKTOP, accept_downloads=True)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live, zh)

    page.locator("a.account").click()
    expect(page).to_have_url(f"{live}/console/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("您的账户" if zh else "Your account")
    shoot(page, f"me-account-{language}")
    page.get_by_role(
        "button", name="设置身份验证器应用" if zh else "Set up an authenticator app"
    ).click()
    qr = page.locator("#totp-qr svg")
    expect(qr).to_be_visible()
    uri = page.locator("#totp-qr").get_attribute("data-otpauth")
    assert uri and uri.startswith("otpauth://totp/")
    png = artefacts() / f"me-totp-qr-{language}.png"
    qr.screenshot(path=str(png))
    assert zbar(png) == uri
    secret = page.locator("#totp-secret").inner_text()
    assert f"secret={secret}" in uri
    shoot(page, f"me-account-totp-{language}")
    page.locator("#f-on-code").fill(pyotp.TOTP(secret).now())
    page.locator("#f-on-current_password").fill(PASSWORD)
    page.get_by_role(
        "button", name="启用身份验证器应用" if zh else "Turn the authenticator app on"
    ).click()
    expect(page.locator("p.notice")).to_contain_text("已启用" if zh else "is on")
    me = world.client.get("/api/v1/auth/me", headers=world.a.employee.headers).json()
    assert me["totp_enabled"] is True

    menu(page, zh, "我的隐私" if zh else "My privacy")
    expect(page.get_by_text(notice["title"])).to_be_visible()
    page.get_by_role(
        "button", name="我已阅读并接受此声明" if zh else "I have read the notice and accept it"
    ).click()
    expect(page.locator("p.notice")).to_contain_text("已接受" if zh else "accepted")
    page.get_by_role(
        "button", name="我同意向境外传输" if zh else "I consent to the transfer abroad"
    ).click()
    expect(page.locator("p.notice")).to_contain_text("境外" if zh else "abroad")
    shoot(page, f"me-privacy-{language}")
    consents = world.client.get(
        f"/api/v1/tenants/{world.a.id}/users/{world.a.employee.user_id}/consents",
        headers=world.operators["compliance_officer"].headers,
    ).json()["data"]
    assert {(c["kind"], c["method"], c["given_via"]) for c in consents} == {
        ("notice", "self", "session"),
        ("transfer_abroad", "self", "session"),
    }
    with page.expect_download() as download_info:
        page.get_by_role(
            "link", name="下载我的个人信息" if zh else "Download my personal data"
        ).click()
    export = json.loads(Path(download_info.value.path()).read_text(encoding="utf-8"))
    assert export["user_id"] == str(world.a.employee.user_id)
    assert len(export["consents"]) == 2
    assert problems == []
    context.close()


def test_the_me_pages_at_phone_width(browser: Browser, live: str, world: World) -> None:
    context = browser.new_context(locale="zh-CN", viewport=PHONE)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    sign_in(page, live, True)
    world.client.post(
        f"/api/v1/tenants/{world.a.id}/devices",
        json={"name": "手机", "public_key": public_key()},
        headers=world.a.employee.headers,
    )
    for path, name in (
        ("/console/my/devices", "me-devices-phone-zh-CN"),
        ("/console/my/devices/new", "me-device-new-phone-zh-CN"),
        ("/console/account", "me-account-phone-zh-CN"),
        ("/console/my/privacy", "me-privacy-phone-zh-CN"),
    ):
        page.goto(f"{live}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} scrolls sideways at phone width ({width}px)"
        shoot(page, name)
    # The configuration's QR code fits a phone's width too (and still decodes).
    serve_tenant_a(world)
    page.goto(f"{live}/console/my/devices/new")
    # By keyboard: type the name, Enter submits (the page's script makes the key).
    page.get_by_label("名称", exact=True).focus()
    page.keyboard.type("平板")
    page.keyboard.press("Enter")
    qr = page.locator("#config-qr svg")
    expect(qr).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the configuration scrolls sideways ({width}px)"
    shoot(page, "me-device-config-phone-zh-CN")
    png = artefacts() / "me-device-qr-phone-zh-CN.png"
    qr.screenshot(path=str(png))
    assert "[Interface]" in zbar(png)
    assert problems == []
    context.close()


# --- s18-notice: a company's first device, before the gateway has set the company up ---------
def gateway_without_tenant_a(world: World) -> dict[str, str]:
    """An active PoP with an enrolled gateway (its real credential), tenant A active and without
    a device: the gateway has not set tenant A up, so no interface key is published for it."""
    pop = make_pop(world, "bj")
    gateway = enrol(world, pop)
    activate(world, world.a.id)
    assert all(t.tenant_id != world.a.id for t in state(world, gateway).tenants)
    return gateway


def gateway_sets_tenant_a_up(world: World, gateway: dict[str, str]) -> str:
    """What the gateway agent does on its next poll, through the same server path: read the
    desired state (which now sets tenant A up, its key not yet known), make the interface's
    key pair and publish the public key (``PUT /gateway/interfaces/{tenant}``)."""
    tenants = [t for t in state(world, gateway).tenants if t.tenant_id == world.a.id]
    assert len(tenants) == 1 and tenants[0].public_key is None, tenants
    key = public_key()
    resp = world.client.put(
        f"/api/v1/gateway/interfaces/{world.a.id}", json={"public_key": key}, headers=gateway
    )
    assert resp.status_code == 204, resp.text
    return key


def config_asked(page: Page, status: int) -> None:
    """Wait for the page's next request for the configuration that answers ``status``."""
    page.wait_for_event(
        "response",
        predicate=lambda r: r.url.endswith("/wireguard.conf") and r.status == status,
        timeout=30_000,
    )


def take_config(
    page: Page, zh: bool, world: World, name: str, pop_key: str, label: str
) -> tuple[str, str]:
    """Download the assembled configuration; check its key by ``wg pubkey`` and its QR code by
    ``zbarimg``. (The configuration, its private key.)"""
    with page.expect_download() as download_info:
        page.get_by_role(
            "button", name="下载配置文件" if zh else "Download the configuration"
        ).click()
    config = Path(download_info.value.path()).read_text(encoding="utf-8")
    private = re.search(r"^PrivateKey = (\S+)$", config, re.M)
    assert private, config
    assert wg_pubkey(private.group(1)) == server_key(world, name)["public_key"]
    assert f"PublicKey = {pop_key}" in config
    png = artefacts() / f"me-first-device-qr-{label}.png"
    page.locator("#config-qr svg").screenshot(path=str(png))
    assert zbar(png) == config
    return config, private.group(1)


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_a_first_device_waits_for_the_gateway_then_gets_its_config(
    browser: Browser, live: str, world: World, language: str
) -> None:
    zh = language == "zh-CN"
    gateway = gateway_without_tenant_a(world)
    context = browser.new_context(locale=language, viewport=PHONE, accept_downloads=True)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    requests = Recorder(page)
    sign_in(page, live, zh)
    page.goto(f"{live}/console/my/devices/new")
    name = "第一台笔记本" if zh else "First laptop"
    page.get_by_label("名称" if zh else "Name", exact=True).fill(name)
    page.get_by_role("button", name="注册设备" if zh else "Register the device").click()
    # The page says what is happening, keeps the key and asks again by itself.
    waiting = page.locator("#config-waiting")
    expect(waiting).to_be_visible()
    expect(page.locator("#waiting-text")).to_contain_text(
        "网络网关" if zh else "network gateway is now setting up your company's tunnel"
    )
    expect(page.locator("#waiting-keep-open")).to_contain_text(
        "请勿关闭此页面" if zh else "Keep this page open"
    )
    expect(page.locator("#download-key")).to_be_hidden()
    expect(page.locator("#config-error")).to_be_hidden()
    config_asked(page, 409)  # a second request, made by the page on its own
    expect(page.locator("#waiting-progress")).not_to_be_empty()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the waiting page scrolls sideways ({width}px)"
    shoot(page, f"me-first-device-waiting-phone-{language}")
    page.set_viewport_size(DESKTOP)
    shoot(page, f"me-first-device-waiting-{language}")

    # The gateway sets the company up partway through; the page completes the configuration.
    pop_key = gateway_sets_tenant_a_up(world, gateway)
    published = time.monotonic()
    expect(page.locator("#config-qr svg")).to_be_visible(timeout=30_000)
    took = time.monotonic() - published
    print(f"first device ({language}): configuration shown {took:.1f} s after the key")
    expect(waiting).to_be_hidden()
    expect(page.locator("#config-ready")).to_be_visible()
    expect(page.locator("#download-key")).to_be_hidden()
    shoot(page, f"me-first-device-ready-{language}")
    _config, private_key = take_config(page, zh, world, name, pop_key, language)
    # The private key survived the wait in the page only: no request ever carried it.
    assert requests.carrying(private_key) == []
    assert problems == []
    context.close()


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_a_wait_past_its_bound_says_what_to_do_and_can_check_again(
    browser: Browser, live: str, world: World, language: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tongdao.web.pages import me as me_pages

    monkeypatch.setattr(me_pages, "CONFIG_POLL_SECONDS", 1)
    monkeypatch.setattr(me_pages, "CONFIG_WAIT_SECONDS", 4)
    zh = language == "zh-CN"
    gateway = gateway_without_tenant_a(world)
    context = browser.new_context(locale=language, viewport=DESKTOP, accept_downloads=True)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    requests = Recorder(page)
    sign_in(page, live, zh)
    page.goto(f"{live}/console/my/devices/new")
    name = "平板" if zh else "Tablet"
    page.get_by_label("名称" if zh else "Name", exact=True).fill(name)
    started = time.monotonic()
    page.get_by_role("button", name="注册设备" if zh else "Register the device").click()
    expect(page.locator("#config-waiting")).to_be_visible()
    timeout = page.locator("#config-timeout")
    expect(timeout).to_be_visible(timeout=20_000)
    waited = time.monotonic() - started
    assert 4 <= waited <= 10, waited  # the bound (4 s): the last check falls on it
    expect(page.locator("#config-waiting")).to_be_hidden()
    asked = [s for s in requests.seen if "/wireguard.conf" in s.splitlines()[0]]
    assert 2 <= len(asked) <= 6, len(asked)  # bounded: no request after the wait ended
    page.wait_for_timeout(2500)
    assert len([s for s in requests.seen if "/wireguard.conf" in s.splitlines()[0]]) == len(asked)
    expect(page.locator("#download-key")).to_be_visible()
    shoot(page, f"me-first-device-timeout-{language}")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="下载私钥" if zh else "Download the private key").click()
    kept = Path(download_info.value.path()).read_text(encoding="utf-8").strip()
    assert wg_pubkey(kept) == server_key(world, name)["public_key"]

    # The gateway comes back; "Check again" gets the configuration with the same key.
    pop_key = gateway_sets_tenant_a_up(world, gateway)
    page.get_by_role("button", name="再次检查" if zh else "Check again").click()
    expect(page.locator("#config-qr svg")).to_be_visible(timeout=20_000)
    expect(timeout).to_be_hidden()
    _config, private_key = take_config(page, zh, world, name, pop_key, f"again-{language}")
    assert private_key == kept
    assert requests.carrying(private_key) == []
    assert problems == []
    context.close()


# --- end of s18-notice ---------------------------------------------------------------------
