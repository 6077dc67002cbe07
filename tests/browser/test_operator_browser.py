"""The operator admin's journey in Debian's Chromium, once in English and once in 简体中文:
sign in, open Operations, create a PoP, issue its enrolment token (the agent enrols with the
token the page shows), record a second PoP and a cross-border link (refused without its
approval, then recorded), invite a staff member, create a tenant and move it into review; the
dashboard shows the gateway. Every main page is kept as a screenshot, at desktop and phone
width, with no missing glyphs and no console or CSP errors."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import DESKTOP, PHONE, serve, shoot, watch
from tests.support.world import PASSWORD, make_user, uscc_for
from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.testing import licensed

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

# (English, 简体中文) of what the test reads or clicks.
T = {
    "operations": ("Operations", "运营"),
    "pops": ("PoPs", "接入点"),
    "links": ("Links", "链路"),
    "staff": ("Staff", "员工"),
    "tenants": ("Tenants", "租户"),
    "create_pop": ("Create the PoP", "创建接入点"),
    "issue": ("Issue an enrolment token", "签发注册令牌"),
    "shown_once": ("the token is shown only once", "令牌只显示这一次"),
    "record_link": ("Record the link", "登记链路"),
    "invite": ("Send the invitation", "发送邀请"),
    "invited": ("The invitation is on its way", "邀请邮件已发出"),
    "create_tenant": ("Create the tenant", "创建租户"),
    "start_review": ("Start review", "开始审核"),
    "under_review": ("under review", "审核中"),
    "applied": ("applied", "已申请"),
    "search": ("Search", "搜索"),
    "online": ("online", "在线"),
    "auditor": ("auditor", "审计员"),
    "sign_in": ("Sign in", "登录"),
}


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    runtime = app.state.runtime
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        licensed.seed(session, runtime.clock())
        session.commit()
    make_user(runtime, "noc@operator.example", ["operator_admin"])
    with serve(app) as url:
        yield url


def _t(key: str, zh: bool) -> str:
    return T[key][1 if zh else 0]


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways at phone width ({width}px)"


def _sign_in(browser: Browser, live: str, language: str) -> Page:
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill("noc@operator.example")
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name=_t("sign_in", language == "zh-CN")).click()
    expect(page).to_have_url(f"{live}/console/home")
    return page


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_operator_admins_journey(
    browser: Browser, live: str, app: FastAPI, language: str
) -> None:
    zh = language == "zh-CN"
    page = _sign_in(browser, live, language)
    problems = watch(page)
    main = page.locator("main")

    # The menu entry opens the dashboard.
    page.locator("header nav").get_by_role("link", name=_t("operations", zh)).click()
    expect(page).to_have_url(f"{live}/console/operator")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if zh else "en")
    expect(page.get_by_role("heading", level=1)).to_have_text(_t("operations", zh))
    shoot(page, f"operator-dashboard-empty-{language}")

    # A PoP, created from its form.
    main.get_by_role("link", name=_t("pops", zh), exact=True).first.click()
    expect(page).to_have_url(f"{live}/console/operator/pops")
    page.locator("#f-name").fill("cn-bj-1")
    page.locator("#f-region").fill("CN-BJ")
    page.locator("#f-country").fill("CN")
    page.locator("#f-endpoint_host").fill("pop1.example.net")
    page.get_by_role("button", name=_t("create_pop", zh)).click()
    expect(page).to_have_url(re.compile(r"/console/operator/pops/[0-9a-f-]+\?done=created$"))
    pop_url = page.url.split("?")[0]

    # The enrolment token, shown once with the command to run on the PoP host.
    page.locator("#f-ttl_hours").fill("2")
    page.get_by_role("button", name=_t("issue", zh)).click()
    expect(page.locator("#enrolment")).to_contain_text(_t("shown_once", zh))
    command = page.locator("#enrol-command").inner_text()
    found = re.fullmatch(
        r"tongdao gateway run --server (\S+) --token (tde_\S+) --state-dir /var/lib/tongdao",
        command.strip(),
    )
    assert found, command
    assert found.group(1) == app.state.runtime.settings.link_base_url
    shoot(page, f"operator-pop-enrolment-{language}")
    # The agent's first call with that token (what `tongdao gateway run` does on its first run).
    enrolled = httpx.post(
        f"{live}/api/v1/gateway/enrol",
        json={"token": found.group(2), "hostname": "gw-bj-1"},
        timeout=10,
    )
    assert enrolled.status_code == 201, enrolled.text
    credential = enrolled.json()["credential"]
    # It reports once (an empty report): the dashboard then shows it online.
    now = app.state.runtime.clock()
    report = httpx.post(
        f"{live}/api/v1/gateway/reports",
        json={
            "seq": 1,
            "period_start": now.isoformat(),
            "period_end": now.isoformat(),
            "peers": [],
        },
        headers={"Authorization": f"Bearer {credential}"},
        timeout=10,
    )
    assert report.status_code == 200, report.text
    page.goto(pop_url)
    expect(main).to_contain_text("gw-bj-1")
    expect(page.locator("#enrol-command")).to_have_count(0)  # never shown again
    shoot(page, f"operator-pop-{language}")

    # A second PoP abroad, recorded disabled, and the cross-border link between them.
    page.goto(f"{live}/console/operator/pops")
    page.locator("#f-name").fill("de-fra-1")
    page.locator("#f-region").fill("DE-HE")
    page.locator("#f-country").fill("DE")
    page.locator("#f-endpoint_host").fill("198.51.100.20")
    page.locator("#f-state").select_option("disabled")
    page.get_by_role("button", name=_t("create_pop", zh)).click()
    expect(page).to_have_url(re.compile(r"done=created$"))
    page.goto(f"{live}/console/operator/pops")
    shoot(page, f"operator-pops-{language}")
    main.get_by_role("link", name=_t("links", zh), exact=True).first.click()
    page.locator("#f-name").fill("bj-fra")
    page.locator("#f-pop_a_id").select_option(label="cn-bj-1")
    page.locator("#f-pop_b_id").select_option(label="de-fra-1")
    page.locator("#f-circuit_ref").fill("CT-GLOBAL-42")
    page.locator("#f-capacity_mbps").fill("200")
    page.get_by_role("button", name=_t("record_link", zh)).click()
    expect(page.locator("#f-approval_ref-error")).not_to_be_empty()
    expect(page.locator("#f-approval_ref")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-name")).to_have_value("bj-fra")  # what was entered stays
    shoot(page, f"operator-link-refused-{language}")
    page.locator("#f-approval_ref").fill("MIIT-2026-7")
    page.get_by_role("button", name=_t("record_link", zh)).click()
    expect(page).to_have_url(f"{live}/console/operator/links?done=created")
    expect(page.locator("tbody")).to_contain_text("MIIT-2026-7")
    shoot(page, f"operator-links-{language}")
    page.locator("tbody").get_by_role("link", name="bj-fra").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("bj-fra")
    expect(page.locator("#f-approval_ref")).to_have_value("MIIT-2026-7")
    shoot(page, f"operator-link-{language}")

    # A new staff member, invited by mail with their roles.
    main.get_by_role("link", name=_t("staff", zh), exact=True).first.click()
    page.locator("#f-email").fill(f"audit-{language.lower()}@operator.example")
    page.locator("#f-display_name").fill("审计小王" if zh else "Audit Wang")
    page.get_by_label(_t("auditor", zh), exact=True).check()
    page.get_by_role("button", name=_t("invite", zh)).click()
    expect(page.locator(".notice")).to_contain_text(_t("invited", zh))
    shoot(page, f"operator-staff-member-{language}")
    main.get_by_role("link", name=_t("staff", zh), exact=True).first.click()
    shoot(page, f"operator-staff-{language}")

    # A tenant, created, found by keyboard search, and moved into review.
    main.get_by_role("link", name=_t("tenants", zh), exact=True).first.click()
    page.locator("#f-name_en").fill("Acme Beijing")
    page.locator("#f-name_zh").fill("阿克米北京")
    page.locator("#f-uscc").fill(uscc_for(77))
    page.locator("#f-foreign_invested").check()
    page.locator("#f-foreign_invested_evidence").fill("FIE-2026-1")
    page.get_by_role("button", name=_t("create_tenant", zh)).click()
    expect(page).to_have_url(re.compile(r"/console/operator/tenants/[0-9a-f-]+\?done=created$"))
    # Vetting is the compliance officer's (separation of duties): no review button here.
    expect(page.get_by_role("button", name=_t("start_review", zh))).to_have_count(0)
    expect(page.locator(".facts").first).to_contain_text(_t("applied", zh))
    shoot(page, f"operator-tenant-{language}")
    main.get_by_role("link", name=_t("tenants", zh), exact=True).first.click()
    page.locator("#f-q").focus()
    page.keyboard.type(uscc_for(77))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"q=" + uscc_for(77)))
    expect(page.locator("tbody")).to_contain_text("阿克米北京" if zh else "Acme Beijing")
    shoot(page, f"operator-tenants-{language}")

    # The dashboard now shows the PoP's gateway online.
    main.get_by_role("link", name="总览" if zh else "Dashboard", exact=True).click()
    expect(page).to_have_url(f"{live}/console/operator")
    expect(page.locator(".state-online").first).to_have_text(_t("online", zh))
    shoot(page, f"operator-dashboard-{language}")

    # Phone width: no sideways scroll on the main pages.
    page.set_viewport_size(PHONE)
    for path in ("", "/pops", "/links", "/staff", "/tenants"):
        page.goto(f"{live}/console/operator{path}")
        _no_sideways_scroll(page)
    page.goto(f"{live}/console/operator")
    shoot(page, f"operator-dashboard-phone-{language}")
    page.goto(f"{live}/console/operator/tenants")
    shoot(page, f"operator-tenants-phone-{language}")
    assert problems == []
