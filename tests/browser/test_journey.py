"""The whole journey of issue 11 in Debian's Chromium against a real server, once in English
and once in 简体中文.

A fresh control plane (uvicorn on loopback, its own store, mail through a real aiosmtpd relay
on loopback) and two network namespaces joined by a veth wire (the PoP ``198.51.100.1`` and a
client ``198.51.100.2``). Every step is done in the browser, by the persona whose job it is:

1. first run: the setup page, with the one-time code the server printed in its log;
2. the operator admin sets the outgoing mail (the SMTP relay) and is refused giving the
   compliance officer role (separate duties); the first officer is made with ``tongdao admin
   bootstrap --role compliance_officer`` on the server's host, as the README says, and signs in;
3. the compliance officer records the licence and the shareholders;
4. the operator admin creates a PoP and issues an enrolment token; the command shown on the
   page is run as shown (only ``--netns`` and a temporary ``--state-dir`` added) and the
   gateway agent enrols and starts wireguard-go in the PoP namespace;
5. the operator admin creates the tenant and invites its first tenant admin (mail);
6. the tenant admin declares the HQ network (a site) and records their own identity;
7. the compliance officer vets, approves and activates the tenant, approves the HQ network and
   verifies the tenant admin's identity;
8. the tenant admin invites an employee (mail), records and verifies their identity and writes
   an access rule with the editor;
9. the employee registers the company's first device: the key pair is made in the page, which
   waits (saying so) until the gateway agent has set the company's tunnel up and published its
   key, then completes the configuration; the downloaded file's
   private key gives, by ``wg pubkey``, the public key the server stored, and the QR code,
   decoded by ``zbarimg``, is the file; the file brings a stock client (wireguard-go + ``wg
   setconf`` + ``ip``, as wg-quick does) up in the client namespace; it handshakes with the
   PoP and the device shows online on the employee's and the tenant admin's pages.

Refusals on the way: an employee opening another person's device page and a tenant admin
opening another tenant's page get 404; a form posted without its CSRF token gets 403.
Screenshots of every main page are kept (``shoot``: no missing-glyph boxes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from tests.conftest import TEST_DATA_KEY, make_settings, need
from tests.support.browser import DESKTOP, PHONE, artefacts, shoot, watch
from tests.support.privacy import resident_id
from tests.support.smtp import SmtpServer
from tests.support.world import PASSWORD, uscc_for
from tongdao.api.app import create_app
from tongdao.network.models import Device, PopTenantInterface
from tongdao.runtime import Runtime
from tongdao.testing import netns
from tongdao.web.i18n import Locale

pytestmark = [pytest.mark.browser, pytest.mark.root]
expect.set_options(timeout=20_000)

ROOT = Path(__file__).resolve().parents[2]
POP_ADDRESS = "198.51.100.1"
CLIENT_ADDRESS = "198.51.100.2"
HQ_PREFIX = "203.0.113.0/24"
SETUP_CODE = re.compile(r"setup code: ([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})")
ONLINE_WAIT = 120.0  # the agent reports every 30 s; a report after the handshake says online


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        need(f"{name} (Debian {package})")
        raise AssertionError("unreachable")  # pragma: no cover
    return found


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    if os.geteuid() != 0:
        need("root")
    for name, package in (
        ("wireguard-go", "wireguard-go"),
        ("wg", "wireguard-tools"),
        ("nft", "nftables"),
        ("ip", "iproute2"),
        ("zbarimg", "zbar-tools"),
    ):
        _tool(name, package)
    if not Path("/dev/net/tun").exists():
        need("/dev/net/tun")
    if not (ROOT / ".venv" / "bin" / "tongdao").exists():
        need(".venv/bin/tongdao (make venv)")


class CodeCatcher(logging.Handler):
    """The server's log lines, for the one-time setup code it prints."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def code(self) -> str:
        for line in self.lines:
            found = SETUP_CODE.search(line)
            if found:
                return found.group(1)
        raise AssertionError(f"the server printed no setup code: {self.lines}")


@dataclass
class Server:
    url: str
    runtime: Runtime
    log: CodeCatcher


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[Server]:
    """A fresh control plane (no operator admin yet) on a real uvicorn, lifespan on (the mail
    sender runs, the setup code is printed); its public URL is the one it serves on, so the
    links in its mail and the command on the PoP page point at it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(tmp_path / "data", store_url, public_url=url, port=port)
    runtime = Runtime.from_settings(settings)
    app = create_app(runtime)
    catcher = CodeCatcher()
    setup_log = logging.getLogger("tongdao.setup")
    setup_log.addHandler(catcher)
    uv = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws="none", lifespan="on", timeout_keep_alive=30)
    )
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Server(url, runtime, catcher)
    finally:
        uv.should_exit = True
        thread.join(20)
        sock.close()
        setup_log.removeHandler(catcher)
        runtime.db.dispose()


@dataclass
class Net:
    topology: netns.Topology
    pop_ns: str
    client_ns: str
    port_min: int
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _free_port_block() -> int:
    """The first of ten UDP ports whose ``wgt<port>`` names no daemon or socket uses."""
    from tongdao.agent.engine import SOCKET_DIR, wireguard_go_pids

    for _ in range(50):
        base = 42000 + secrets.randbelow(700) * 10
        names = [f"wgt{p}" for p in range(base, base + 10)]
        if not any((SOCKET_DIR / f"{n}.sock").exists() or wireguard_go_pids(n) for n in names):
            return base
    raise AssertionError("no free block of wgt<port> names")


@pytest.fixture
def net() -> Iterator[Net]:
    """The PoP's and the client's namespaces and the wire between them; on the way out (also
    after a failure) the agents are stopped, and every process, wireguard-go daemon, socket
    and namespace is gone."""
    with netns.Topology() as topology:
        pop_ns = topology.namespace()
        client_ns = topology.namespace()
        pop_end, client_end = topology.veth(pop_ns, client_ns)
        netns.add_address(pop_ns, pop_end, f"{POP_ADDRESS}/24")
        netns.add_address(client_ns, client_end, f"{CLIENT_ADDRESS}/24")
        base = _free_port_block()
        for port in range(base, base + 10):
            topology.track(f"wgt{port}")
        found = Net(topology, pop_ns, client_ns, base)
        try:
            yield found
        finally:
            for agent in found.agents:
                _stop_group(agent)
        interfaces = list(topology.interfaces)
        namespaces = list(topology.namespaces)
    assert netns.leftovers(namespaces, interfaces) == []


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(step)


# --- the browser side ------------------------------------------------------------------------
class Person:
    """One persona's browser context in the test's language."""

    def __init__(self, browser: Browser, live: str, language: str, who: str) -> None:
        self.live = live
        self.language = language
        self.who = who
        self.zh = language == "zh-CN"
        self.locale = Locale("zh_CN" if self.zh else "en")
        self.context: BrowserContext = browser.new_context(
            locale=language,
            viewport=DESKTOP,  # type: ignore[arg-type]
            accept_downloads=True,
        )
        self.page: Page = self.context.new_page()
        self.problems = watch(self.page)

    def t(self, message: str) -> str:
        """The page's text for a catalogue message in this person's language."""
        return self.locale.gettext(message)

    def go(self, path: str) -> None:
        answer = self.page.goto(self.live + path)
        assert answer is not None and answer.status == 200, (path, answer and answer.status)

    def click(self, button: str, exact: bool = True) -> None:
        self.page.get_by_role("button", name=self.t(button), exact=exact).click()

    def shoot(self, name: str) -> None:
        shoot(self.page, f"journey-{name}-{self.language}")

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        self.go("/console/sign-in")
        self.page.locator("#f-email").fill(email)
        self.page.locator("#f-password").fill(password)
        self.click("Sign in")
        expect(self.page).to_have_url(f"{self.live}/console/home")

    def choose_password(self, link: str) -> None:
        """Open an invitation's link and choose the password."""
        assert link.startswith(self.live + "/console/password/reset?token="), link
        self.page.goto(link)
        expect(self.page.get_by_role("heading", level=1)).to_have_text(self.t("Choose a password"))
        self.page.locator("#f-new_password").fill(PASSWORD)
        self.page.locator("#f-confirm_password").fill(PASSWORD)
        self.click("Set password")
        expect(self.page.get_by_role("status")).to_be_visible()

    def notice(self) -> None:
        expect(self.page.get_by_role("status").first).to_be_visible()

    def close(self) -> None:
        assert self.problems == [], (self.who, self.problems)
        self.context.close()


def _wg_pubkey(private_key: str) -> str:
    done = subprocess.run(
        ["wg", "pubkey"], input=private_key + "\n", capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _zbar(png: Path) -> str:
    done = subprocess.run(
        ["zbarimg", "--raw", "-q", "-Sbinary", str(png)], capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


def _published(server: Server, tenant_id: str) -> bool:
    """Whether a gateway published the tenant's interface key."""
    with server.runtime.db.session() as session:
        key = session.scalar(
            select(PopTenantInterface.public_key).where(
                PopTenantInterface.tenant_id == uuid.UUID(tenant_id)
            )
        )
        return key is not None


def _id_in(url: str, prefix: str) -> str:
    found = re.search(prefix + r"/([0-9a-f-]{36})", url)
    assert found, url
    return found.group(1)


def _register_device(person: Person, name: str) -> tuple[str, Page]:
    """Register a device on the person's 'my devices' page; its page's path."""
    page = person.page
    person.go("/console/my/devices")
    page.get_by_role("link", name=person.t("Register a device")).first.click()
    expect(page).to_have_url(f"{person.live}/console/my/devices/new")
    # The page's script makes the key pair: once it runs, the public-key field is hidden.
    expect(page.locator("#public-key-field")).to_be_hidden()
    page.locator("#f-name").fill(name)
    person.click("Register the device")
    expect(page.locator("#result")).to_be_visible()
    href = page.locator("#device-link").get_attribute("href")
    assert href and href.startswith("/console/my/devices/"), href
    return href, page


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_whole_journey_in_a_real_browser(
    browser: Browser,
    server: Server,
    smtp: SmtpServer,
    net: Net,
    tmp_path: Path,
    language: str,
) -> None:
    started = time.monotonic()
    live = server.url
    zh = language == "zh-CN"
    people: list[Person] = []

    def person(who: str) -> Person:
        found = Person(browser, live, language, who)
        people.append(found)
        return found

    # 1. First run: the setup page, with the code the server printed.
    admin = person("operator admin")
    page = admin.page
    page.goto(f"{live}/")
    expect(page).to_have_url(f"{live}/console/setup")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if zh else "en")
    admin.shoot("setup")
    page.locator("#f-setup_code").fill(server.log.code())
    page.locator("#f-email").fill("noc@operator.example")
    page.locator("#f-display_name").fill("运营管理员" if zh else "Ops Admin")
    page.locator("#f-password").fill(PASSWORD)
    page.locator("#f-confirm_password").fill(PASSWORD)
    admin.click("Create the operator admin")
    expect(page).to_have_url(f"{live}/console/sign-in?done=setup")
    admin.sign_in("noc@operator.example")

    # 2. Outgoing mail through the relay on loopback, then the compliance officer's invitation.
    page.get_by_role("navigation", name=admin.t("Main")).get_by_role(
        "link", name=admin.t("Operations")
    ).click()
    expect(page).to_have_url(f"{live}/console/operator")
    admin.shoot("operator-dashboard-empty")
    page.locator("main nav").get_by_role("link", name=admin.t("Outgoing mail")).click()
    expect(page).to_have_url(f"{live}/console/operator/mail")
    admin.shoot("mail-unset")
    page.locator("#f-host").fill("127.0.0.1")
    page.locator("#f-port").fill(str(smtp.port))
    page.locator("#f-security").select_option("none")
    page.locator("#f-sender").fill("noreply@operator.example")
    admin.click("Save the mail settings")
    expect(page).to_have_url(f"{live}/console/operator/mail?done=saved")
    expect(page.locator("#mail-delivery")).to_have_text(admin.t("through the SMTP relay below"))
    admin.shoot("mail")
    admin.go("/console/operator/staff")
    page.locator("#f-email").fill("officer@operator.example")
    page.locator("#f-display_name").fill("合规李" if zh else "Officer Li")
    page.get_by_label(admin.t("compliance officer"), exact=True).check()
    admin.click("Send the invitation")
    # Separate duties: the admin cannot give the officer role (refused next to the roles);
    # the first officer is made on the server's host, as the README's quick start does.
    expect(page.locator("#f-roles-error, [role=alert]").first).to_be_visible()
    admin.shoot("staff-officer-refused")
    made = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "tongdao"), "admin", "bootstrap",
         "--role", "compliance_officer", "--email", "officer@operator.example",
         "--display-name", "合规李" if zh else "Officer Li", "--password-stdin",
         "--database-url", server.runtime.settings.database_url,
         "--data-dir", str(server.runtime.settings.data_dir)],
        input=PASSWORD + "\n", text=True, capture_output=True, timeout=60,
        env=dict(os.environ, TONGDAO_DATA_KEY=TEST_DATA_KEY),
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    officer = person("compliance officer")
    officer.sign_in("officer@operator.example")

    # 3. The licence and the shareholder register.
    opage = officer.page
    officer.go("/console/compliance/licences")
    today = datetime.now(UTC).date()
    opage.locator("#f-number").fill("B1-20260001")
    opage.locator("#f-service_codes").fill("B13")
    opage.locator("#f-issuing_authority").fill("工业和信息化部")
    opage.locator("#f-provinces").select_option("*")
    opage.locator("#f-valid_from").fill(today.isoformat())
    opage.locator("#f-valid_to").fill((today + timedelta(days=365)).isoformat())
    officer.click("Record the licence")
    officer.notice()
    for holder, foreign, stake in (
        ("通道控股（北京）有限公司", "no", "51"),
        ("Example Telecom Ltd", "yes", "49"),
    ):
        opage.locator("#f-name").fill(holder)
        opage.locator("#f-foreign").select_option(foreign)
        opage.locator("#f-stake_percent").fill(stake)
        officer.click("Record the shareholder")
        officer.notice()
    officer.go("/console/compliance/licences")
    expect(opage.locator("main")).to_contain_text("Example Telecom Ltd")
    officer.shoot("licences")

    # 4. The PoP, its enrolment token, and the gateway agent run with the command shown.
    admin.go("/console/operator/pops")
    page.locator("#f-name").fill("cn-bj-1")
    page.locator("#f-region").fill("CN-BJ")
    page.locator("#f-country").fill("CN")
    page.locator("#f-endpoint_host").fill(POP_ADDRESS)
    page.locator("#f-port_min").fill(str(net.port_min))
    page.locator("#f-port_max").fill(str(net.port_min + 9))
    admin.click("Create the PoP")
    expect(page).to_have_url(re.compile(r"/console/operator/pops/[0-9a-f-]+\?done=created$"))
    pop_path = page.url.split("?")[0].removeprefix(live)
    admin.click("Issue an enrolment token")
    command = page.locator("#enrol-command").inner_text().strip()
    admin.shoot("pop-enrolment")
    argv = shlex.split(command)
    assert argv[:5] == ["tongdao", "gateway", "run", "--server", live], command
    at = argv.index("--state-dir")
    state_dir = tmp_path / "gateway"
    argv[at + 1] = str(state_dir)  # adapted: a temporary state directory ...
    argv += ["--netns", net.pop_ns]  # ... and the PoP's namespace
    gateway_log = tmp_path / "gateway.log"
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    with gateway_log.open("wb") as out:
        net.agents.append(
            subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        )
    hostname = socket.gethostname()

    def gateway_listed() -> bool:
        assert net.agents[0].poll() is None, gateway_log.read_text(errors="replace")
        admin.go(pop_path)
        return hostname in page.locator("main").inner_text()

    _wait(gateway_listed, 60, "the gateway to enrol", step=1.0)
    admin.shoot("pop")

    # 5. The tenant, and its first tenant admin invited from the tenant's page; a second
    # tenant for the refusals at the end.
    def new_tenant(name_en: str, name_zh: str, n: int) -> str:
        admin.go("/console/operator/tenants")
        page.locator("#f-name_en").fill(name_en)
        page.locator("#f-name_zh").fill(name_zh)
        page.locator("#f-uscc").fill(uscc_for(n, "440300"))
        admin.click("Create the tenant")
        expect(page).to_have_url(re.compile(r"/console/operator/tenants/[0-9a-f-]+\?done="))
        return _id_in(page.url, "/tenants")

    tenant_id = new_tenant("Example Trading (Shenzhen)", "深圳示例贸易", 101)
    admin.shoot("tenant")
    page.locator("#f-email").fill("it@trading.example")
    page.locator("#f-display_name").fill("王管理" if zh else "Wang Admin")
    expect(page.get_by_label(admin.t("Tenant admin"), exact=True)).to_be_checked()
    admin.click("Send the invitation")
    expect(page).to_have_url(f"{live}/console/operator/tenants/{tenant_id}?done=invited")
    admin.shoot("tenant-invited")
    other_tenant = new_tenant("Other Works (Shenzhen)", "深圳其他工坊", 102)
    tenant_admin = person("tenant admin")
    tenant_admin.choose_password(smtp.wait_for("it@trading.example", timeout=30).link)
    tenant_admin.sign_in("it@trading.example")

    # 6. The tenant admin declares the HQ network and records their own identity.
    tpage = tenant_admin.page
    tenant_admin.go("/console/sites")
    tpage.locator("#f-name").fill("总部" if zh else "Head office")
    tpage.locator("#f-country").fill("CN")
    tpage.locator("#f-purpose").select_option("hq")
    tpage.locator("#f-prefixes").fill(HQ_PREFIX)
    tenant_admin.click("Add the site")
    tenant_admin.notice()
    tenant_admin.shoot("site")
    tenant_admin.go("/console/users")
    tpage.locator("main").get_by_role("link", name="王管理" if zh else "Wang Admin").click()
    admin_user_id = _id_in(tpage.url, "/users")
    tpage.locator("#f-legal_name").fill("王管理")
    tpage.locator("#f-id_type").select_option("prc_resident_id")
    tpage.locator("#f-id_number").fill(resident_id(11 if zh else 12))
    tpage.locator("#f-mobile").fill("+8613800138001")
    tenant_admin.click("Save the identity")
    tenant_admin.notice()
    tenant_admin.shoot("own-user")

    # 7. The compliance officer: vet, approve and activate; the HQ network; the identity.
    officer.go("/console/compliance")
    officer.shoot("queue")
    opage.get_by_role("link", name="深圳示例贸易" if zh else "Example Trading (Shenzhen)").click()
    officer.shoot("vetting")
    for move in ("Start the review", "Approve", "Activate the service"):
        officer.click(move)
        officer.notice()
    expect(opage.locator("main")).to_contain_text(officer.locale.state("active"))
    officer.go("/console/compliance")
    opage.get_by_role("link", name=officer.t("Declared networks awaiting approval")).click()
    opage.get_by_role("link", name=HQ_PREFIX).click()
    officer.shoot("network")
    officer.click("Approve the network")
    officer.notice()
    officer.go("/console/compliance")
    opage.get_by_role("link", name=officer.t("Identities awaiting verification")).click()
    opage.get_by_role("link", name="王管理" if zh else "Wang Admin").click()
    officer.shoot("identity")
    officer.click("Verify the identity")
    officer.notice()
    officer.go("/console/compliance/dashboard")
    officer.shoot("compliance-dashboard")

    # 8. The tenant admin: the employee's invitation and identity, the access rule, a device.
    tenant_admin.go("/console/users/new")
    tpage.locator("#f-email").fill("li.na@trading.example")
    tpage.locator("#f-display_name").fill("李娜" if zh else "Li Na")
    tenant_admin.click("Send the invitation")
    tenant_admin.notice()
    employee_id = _id_in(tpage.url, "/users")
    employee = person("employee")
    employee.choose_password(smtp.wait_for("li.na@trading.example", timeout=30).link)
    tpage.locator("#f-legal_name").fill("李娜")
    tpage.locator("#f-id_type").select_option("prc_resident_id")
    tpage.locator("#f-id_number").fill(resident_id(21 if zh else 22))
    tpage.locator("#f-mobile").fill("+8613800138000")
    tenant_admin.click("Save the identity")
    tenant_admin.notice()
    tenant_admin.click("I checked the documents: verify")
    expect(tpage.get_by_role("status")).to_contain_text(
        tenant_admin.t("The identity is verified; the person's waiting devices are active.")
    )
    tenant_admin.shoot("employee")
    tenant_admin.go("/console/policies/new")
    tpage.locator("#f-name").fill("员工访问总部" if zh else "Staff to head office")
    tpage.locator('[id="f-rules.0.users"]').select_option(employee_id)
    tpage.get_by_role("checkbox", name=HQ_PREFIX).check()
    tenant_admin.click("Preview")
    expect(tpage.locator(".preview")).to_contain_text(HQ_PREFIX)
    tenant_admin.shoot("policy-preview")
    tenant_admin.click("Save")
    expect(tpage).to_have_url(f"{live}/console/policies?done=created")
    tenant_admin.shoot("policies")

    # 9. The employee registers the company's first device in the browser and connects with
    # it. The gateway has not set the company's tunnel up yet (no device made the PoP serve
    # the tenant): the page says so, keeps the key, and completes the configuration once the
    # gateway agent has published the tenant's interface key.
    employee.sign_in("li.na@trading.example")
    epage = employee.page
    device_name = "工作笔记本" if zh else "Work laptop"
    assert not _published(server, tenant_id)
    answers: list[int] = []
    epage.on(
        "response",
        lambda r: answers.append(r.status) if r.url.endswith("/wireguard.conf") else None,
    )
    device_path, _ = _register_device(employee, device_name)
    qr = epage.locator("#config-qr svg")
    expect(qr).to_be_visible(timeout=90_000)
    assert _published(server, tenant_id)
    assert answers[0] == 409 and answers[-1] == 200, answers  # it waited, then got it
    employee.shoot("device-config")
    with epage.expect_download() as info:
        employee.click("Download the configuration")
    config = Path(info.value.path()).read_text(encoding="utf-8")
    private = re.search(r"^PrivateKey = (\S+)$", config, re.M)
    assert private, config
    device_id = device_path.rsplit("/", 1)[-1]
    with server.runtime.db.session() as session:
        stored = session.scalar(select(Device.public_key).where(Device.id == uuid.UUID(device_id)))
    assert _wg_pubkey(private.group(1)) == stored
    png = artefacts() / f"journey-device-qr-{language}.png"
    qr.screenshot(path=str(png))
    assert _zbar(png) == config
    (artefacts() / f"journey-device-{language}.conf.txt").write_text(
        config.replace(private.group(1), "<private key>"), encoding="utf-8"
    )
    endpoint = re.search(r"^Endpoint = (\S+):(\d+)$", config, re.M)
    assert endpoint and endpoint.group(1) == POP_ADDRESS, config
    endpoint_port = int(endpoint.group(2))
    assert net.port_min <= endpoint_port <= net.port_min + 9, config
    # The stock client: wg-quick, with the file as downloaded (it runs wireguard-go when the
    # kernel has no WireGuard module); the interface is named after the file.
    client_if = net.topology.wg_ifname()
    conf = tmp_path / f"{client_if}.conf"
    conf.write_text(config, encoding="utf-8")
    conf.chmod(0o600)
    up = netns.run(["wg-quick", "up", str(conf)], netns=net.client_ns, check=False, timeout=30)
    assert up.returncode == 0, up.stderr
    pop_if = f"wgt{endpoint_port}"
    pop_tunnel = (
        netns.run(["ip", "-n", net.pop_ns, "-4", "-brief", "address", "show", "dev", pop_if])
        .stdout.split()[2]
        .split("/")[0]
    )
    assert netns.ping(net.client_ns, pop_tunnel, count=1, wait=2.0, tries=10), "no reply"
    _, peers = netns.wg_dump(net.client_ns, client_if)
    assert all(int(row[3]) > 0 for row in peers.values()), peers  # latest handshake

    def online() -> bool:
        netns.ping(net.client_ns, pop_tunnel, count=1, wait=1.0, tries=1)  # keep it active
        employee.go(device_path)
        return epage.locator(".conn .state-active").count() > 0

    _wait(online, ONLINE_WAIT, "the device to show online", step=3.0)
    expect(epage.locator(".conn .state-active")).to_have_text(employee.locale.state("online"))
    employee.shoot("device-online")
    employee.go("/console/my/devices")
    employee.shoot("my-devices")
    tenant_admin.go("/console/devices")
    row = tpage.get_by_role("row").filter(has_text=device_name)
    expect(row).to_contain_text(tenant_admin.locale.state("online"))
    tenant_admin.shoot("devices")
    admin_device, _ = _register_device(tenant_admin, "管理员笔记本" if zh else "Admin laptop")
    expect(tpage.locator("#config-qr svg")).to_be_visible()
    admin.go("/console/operator")
    expect(page.locator(".state-online").first).to_be_visible()
    admin.shoot("operator-dashboard")

    # Refusals: another person's device, another tenant's page, a form without its token.
    answer = epage.goto(live + admin_device)
    assert answer is not None and answer.status == 404
    answer = tpage.goto(f"{live}/console/operator/tenants/{other_tenant}")
    assert answer is not None and answer.status == 404
    tenant_admin.go(f"/console/users/{admin_user_id}")
    forged = tpage.request.post(
        f"{live}/console/users",
        form={"email": "intruder@trading.example", "display_name": "Intruder"},
        max_redirects=0,
    )
    assert forged.status == 403, forged.status
    tenant_admin.go("/console/users?q=intruder")
    expect(tpage.get_by_role("link", name="Intruder")).to_have_count(0)

    # Phone width: the employee's and the tenant admin's main pages.
    for who, paths in (
        (employee, ("/console/my/devices", device_path)),
        (tenant_admin, ("/console/devices", "/console/users")),
    ):
        who.page.set_viewport_size(PHONE)
        for path in paths:
            who.go(path)
            width = who.page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} scrolls sideways ({width}px)"
        who.shoot(f"{who.who.replace(' ', '-')}-phone")
    for found in people:
        found.close()
    print(f"journey ({language}) took {time.monotonic() - started:.1f} s")
