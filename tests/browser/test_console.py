"""The web console in a real browser: Debian's Chromium driven by Playwright against uvicorn.

The server is the ``app`` fixture (fresh SQLite store) served by a real uvicorn on a free
loopback port, so the console's fetch() calls, CSP and static routes are exercised end to end.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import need
from tests.support.world import PASSWORD, USCC_C, World, make_user
from tongdao.runtime import Runtime
from tongdao.testing.keys import keypair

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/console.png")
expect.set_options(timeout=10_000)


@dataclass
class Live:
    url: str
    world: World


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        need("Chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def live(app: FastAPI, runtime: Runtime) -> Iterator[Live]:
    world = World.build(runtime, TestClient(app))
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", world)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        # 4xx answers the console expects (401, 409, 422) are logged by Chromium as
        # "Failed to load resource"; anything else (a CSP refusal, a script error) is a bug.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            problems.append(msg.text)

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    try:
        yield pg
    finally:
        context.close()
    assert problems == []


def login(page: Page, live: Live, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{live.url}/console/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-email")).to_have_text(email)


def test_console_is_served_with_a_self_only_csp(live: Live, page: Page) -> None:
    resp = page.goto(f"{live.url}/")
    assert resp is not None and resp.ok
    assert page.url.endswith("/console/")
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    meta = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    assert meta is not None and "default-src 'self'" in meta
    js = page.request.get(f"{live.url}/console/static/console.js")
    assert js.ok and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML =" not in js.text()
    assert page.request.get(f"{live.url}/console/static/..%2Fweb%2Froutes.py").status == 404
    expect(page.get_by_role("heading", name="Tongdao")).to_be_visible()


def test_wrong_password_shows_the_api_error(live: Live, page: Page) -> None:
    page.goto(f"{live.url}/console/")
    page.get_by_label("Email").fill("operator_admin@operator.example")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("email, password or TOTP code is wrong")
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#topbar")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_validation_errors_sit_under_their_inputs(live: Live, page: Page) -> None:
    page.goto(f"{live.url}/console/")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-email-error")).to_contain_text("at least 3 characters")
    expect(page.locator("#login-password-error")).not_to_be_empty()
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")


def test_operator_admin_lists_and_creates_tenants(live: Live, page: Page) -> None:
    login(page, live, "operator_admin@operator.example")
    expect(page.locator("#me-roles")).to_contain_text("Operator admin")
    nav = page.get_by_role("navigation")
    for name in ("Tenants", "PoPs", "Audit"):
        expect(nav.get_by_role("link", name=name)).to_be_visible()
    expect(nav.get_by_role("link", name="Devices")).to_have_count(0)

    tenants = page.locator('[data-view="tenants"] table')
    expect(tenants).to_contain_text("Tenant A")
    expect(tenants).to_contain_text("租户B")
    expect(tenants).to_contain_text("91110000802100433B")
    expect(tenants).to_contain_text("100.64.")

    form = page.locator("#tenant-form")
    form.get_by_label("Name (English)").fill("Acme Shanghai")
    form.get_by_label("Name (Chinese)").fill("艾克米（上海）有限公司")
    form.get_by_label("USCC").fill("123")
    form.get_by_role("button", name="Create tenant").click()
    expect(page.locator("#tenant-uscc-error")).to_contain_text("18 characters")
    expect(form.get_by_label("USCC")).to_have_attribute("aria-invalid", "true")
    expect(tenants.locator("tbody tr")).to_have_count(2)

    form.get_by_label("USCC").fill(USCC_C)
    form.get_by_role("button", name="Create tenant").click()
    expect(tenants.locator("tbody tr")).to_have_count(3)
    expect(tenants).to_contain_text("艾克米（上海）有限公司")
    expect(page.locator("#tenant-uscc-error")).to_be_empty()
    expect(page.locator("#page-status")).to_contain_text("Acme Shanghai")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    nav.get_by_role("link", name="PoPs").click()
    expect(page.get_by_role("heading", name="PoPs")).to_be_visible()
    expect(page.locator('[data-view="pops"]')).to_contain_text("No PoPs yet")

    nav.get_by_role("link", name="Audit").click()
    first = page.locator('[data-view="audit"] tbody tr').first
    expect(first).to_contain_text("create")
    expect(first).to_contain_text("tenant")
    expect(first).to_contain_text("operator_admin@operator.example")


def test_api_data_is_rendered_as_text_never_markup(live: Live, page: Page) -> None:
    hostile = '<img src=x onerror="document.title=1">'
    resp = live.world.client.post(
        "/api/v1/tenants",
        json={"name_en": hostile, "name_zh": "<b>粗</b>", "uscc": USCC_C},
        headers=live.world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    login(page, live, "operator_admin@operator.example")
    table = page.locator('[data-view="tenants"] table')
    expect(table.get_by_role("cell", name=hostile)).to_be_visible()
    expect(table.locator("img")).to_have_count(0)
    expect(table.locator("b")).to_have_count(0)


def test_read_only_operator_has_no_tenant_form(live: Live, page: Page) -> None:
    login(page, live, "billing_clerk@operator.example")
    expect(page.locator('[data-view="tenants"] table')).to_contain_text("Tenant A")
    expect(page.locator("#tenant-form")).to_be_hidden()
    expect(page.get_by_role("navigation").get_by_role("link", name="Audit")).to_have_count(0)


def test_employee_registers_a_device_and_logs_out(live: Live, page: Page) -> None:
    login(page, live, "employee@a.example")
    expect(page.locator("#me-roles")).to_contain_text("Employee")
    expect(page.locator("#me-tenant")).to_contain_text("租户A")
    nav = page.get_by_role("navigation")
    expect(nav.get_by_role("link", name="Devices")).to_be_visible()
    for hidden in ("Tenants", "Users", "PoPs", "Audit"):
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    view = page.locator('[data-view="devices"]')
    expect(view).to_contain_text("No devices yet")
    expect(view).to_contain_text("private key never leaves the device")

    form = page.locator("#device-form")
    form.get_by_label("Device name").fill("not a key")
    form.get_by_label("WireGuard public key").fill("abc")
    form.get_by_role("button", name="Register device").click()
    expect(page.locator("#device-key-error")).not_to_be_empty()

    _private, public = keypair()
    form.get_by_label("Device name").fill("王的笔记本 laptop")
    form.get_by_label("WireGuard public key").fill(public)
    form.get_by_role("button", name="Register device").click()
    row = view.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("王的笔记本 laptop")
    expect(row).to_contain_text(public)
    expect(row).to_contain_text("active")

    row.get_by_role("button", name="Download configuration").click()
    status = view.locator("[data-device-status]")
    expect(status).to_contain_text("no PoP has yet published a WireGuard key")

    # A reload keeps the session (sessionStorage), logout ends it.
    page.reload()
    expect(page.locator("#me-email")).to_have_text("employee@a.example")
    assert page.evaluate("Object.keys(localStorage).length") == 0
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#topbar")).to_be_hidden()
    expect(page.locator("#page-status")).to_contain_text("signed out")
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.locator("#login-view")).to_be_visible()


def test_config_downloads_once_a_pop_serves_the_tenant(live: Live, page: Page) -> None:
    w = live.world
    pop = w.client.post(
        "/api/v1/pops",
        json={"name": "bj-1", "region": "CN-BJ", "country": "CN", "endpoint_host": "vpn.example"},
        headers=w.admin.headers,
    )
    assert pop.status_code == 201, pop.text
    published = w.client.put(
        f"/api/v1/pops/{pop.json()['id']}/interfaces/{w.a.id}",
        json={"public_key": keypair()[1]},
        headers=w.admin.headers,
    )
    assert published.status_code == 200, published.text
    _private, public = keypair()
    login(page, live, "employee@a.example")
    form = page.locator("#device-form")
    form.get_by_label("Device name").fill("phone")
    form.get_by_label("WireGuard public key").fill(public)
    form.get_by_role("button", name="Register device").click()
    row = page.locator('[data-view="devices"] tbody tr')
    expect(row).to_have_count(1)
    with page.expect_download() as info:
        row.get_by_role("button", name="Download configuration").click()
    download = info.value
    assert download.suggested_filename == "tongdao-phone.conf"
    text = Path(download.path()).read_text(encoding="utf-8")
    assert "[Interface]" in text and "vpn.example" in text
    assert _private not in text


def test_tenant_admin_sees_users_and_all_devices(live: Live, page: Page) -> None:
    w = live.world
    resp = w.client.post(
        f"/api/v1/tenants/{w.a.id}/devices",
        json={"name": "employee-laptop", "public_key": keypair()[1]},
        headers=w.a.employee.headers,
    )
    assert resp.status_code == 201, resp.text
    login(page, live, "tenant_admin@a.example")
    devices = page.locator('[data-view="devices"] table')
    expect(devices).to_contain_text("employee-laptop")
    expect(devices).to_contain_text("employee@a.example")
    page.get_by_role("navigation").get_by_role("link", name="Users").click()
    users = page.locator('[data-view="users"] table')
    expect(users).to_contain_text("tenant_admin@a.example")
    expect(users).to_contain_text("employee@a.example")
    expect(users).not_to_contain_text("@b.example")
    page.get_by_role("navigation").get_by_role("link", name="Audit").click()
    expect(page.locator('[data-view="audit"] tbody tr').first).to_be_visible()


def test_totp_code_field_is_always_offered(live: Live, page: Page) -> None:
    """A missing code is answered like a wrong password (no confirmation of the password), so
    the console offers the code field from the start instead of waiting to be asked."""
    w = live.world
    _uid, token = make_user(w.runtime, "totp@operator.example", ["auditor"])
    headers = {"Authorization": f"Bearer {token}"}
    setup = w.client.post("/api/v1/auth/totp", headers=headers)
    assert setup.status_code in (200, 201), setup.text
    totp = pyotp.TOTP(setup.json()["secret"])
    confirmed = w.client.post(
        "/api/v1/auth/totp/confirm",
        json={"code": totp.now(), "current_password": PASSWORD},
        headers=headers,
    )
    assert confirmed.status_code < 300, confirmed.text

    page.goto(f"{live.url}/console/")
    code = page.get_by_label("Authenticator code")
    expect(code).to_be_visible()
    page.get_by_label("Email").fill("totp@operator.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-form [data-form-error]")).to_contain_text(
        "email, password or TOTP code is wrong"
    )
    page.get_by_label("Password").fill(PASSWORD)
    code.fill(totp.at(time.time() + 30))  # the enrolment's code is spent: the next one
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-email")).to_have_text("totp@operator.example")
    expect(page.locator("#me-roles")).to_contain_text(re.compile("Auditor"))


def test_licence_warnings_on_the_operator_dashboard(live: Live, page: Page) -> None:
    from datetime import timedelta

    from tongdao.clock import utcnow
    from tongdao.compliance.licensing import china_today

    end = china_today(utcnow()) + timedelta(days=20)
    resp = live.world.client.post(
        "/api/v1/operator/licences",
        json={
            "number": "京B2-20210042",
            "service_codes": ["B21"],
            "issuing_authority": "北京市通信管理局",
            "provinces": ["11"],
            "valid_from": (end - timedelta(days=1500)).isoformat(),
            "valid_to": end.isoformat(),
        },
        headers=live.world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    login(page, live, "compliance_officer@operator.example")
    page.get_by_role("navigation").get_by_role("link", name="Licences").click()
    view = page.locator('[data-view="licences"]')
    expect(view.get_by_role("status").first).to_contain_text("京B2-20210042")
    expect(view.get_by_role("status").first).to_contain_text("in 20 days")
    expect(view.locator("table")).to_contain_text("30-day warning")
    expect(view.locator("table")).to_contain_text("nationwide")
    expect(view).to_contain_text("49.00% foreign (cap: at most 50%)")


def test_forgot_password_in_the_browser(live: Live, page: Page, tmp_path: Path) -> None:
    """The sign-in page's link, the mailed link (from the development outbox), the plain form
    that chooses the password under the strict CSP, and signing in with it."""
    from tongdao.mail.sender import mailer_of
    from tongdao.testing.outbox import link_token

    email = "employee@a.example"
    page.goto(f"{live.url}/console/")
    page.get_by_role("link", name=re.compile("Forgot your password")).click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name=re.compile("Send the link")).click()
    expect(page.get_by_role("status")).to_contain_text("If an account uses this address")
    assert mailer_of(live.world.runtime).wait_idle(15)
    token = link_token(tmp_path / "outbox", email)
    page.goto(f"{live.url}/console/password/reset?token={token}")
    new_password = "chosen in the browser 1234"
    page.get_by_label("New password").fill(new_password)
    page.get_by_label("Repeat it").fill(new_password)
    page.get_by_role("button", name=re.compile("Set password")).click()
    expect(page.get_by_role("status")).to_contain_text("Your password is set")
    login(page, live, email, new_password)
