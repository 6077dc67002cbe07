"""The tenant admin's network journey in Debian's Chromium, in English and in 简体中文.

Sign in → add a site with its network → issue the connector's enrolment token (the command is
shown) → (the compliance officer approves the network) → write an access rule with the editor:
a bad port range is refused next to the ports field, Preview says in plain words what the rule
allows, Save stores it → usage of the month as tables and a chart. Every main page is kept as a
screenshot (some at phone width, which must not scroll sideways) and no console or CSP error
may appear.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import DESKTOP, PHONE, shoot, watch
from tests.support.world import PASSWORD, World
from tests.web.test_network_pages import SITE_PREFIX, usage_world

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

TEXT = {
    "en": {
        "email": "E-mail",
        "password": "Password",
        "sign_in": "Sign in",
        "sites": "Sites",
        "name": "Name",
        "country": "Country",
        "prefixes": "Networks at the site",
        "add_site": "Add the site",
        "issue": "Issue an enrolment token",
        "policy": "Access policy",
        "new_rule": "New access rule",
        "groups": "Groups",
        "ports": "Ports",
        "preview": "Preview",
        "save": "Save",
        "allows": "Members of group Engineering may reach 198.51.100.0/24 at site Shanghai "
        "office on TCP ports 22, 443.",
        "usage": "Usage",
        "month": "Month",
        "show": "Show",
        "site": "Shanghai office",
        "rule": "Engineering to Shanghai",
    },
    "zh-CN": {
        "email": "邮箱",
        "password": "密码",
        "sign_in": "登录",
        "sites": "站点",
        "name": "名称",
        "country": "国家或地区",
        "prefixes": "站点网段",
        "add_site": "添加站点",
        "issue": "签发注册令牌",
        "policy": "访问策略",
        "new_rule": "新建访问规则",
        "groups": "用户组",
        "ports": "端口",
        "preview": "预览",
        "save": "保存",
        "allows": "“研发部”组的成员可以访问站点“上海办公室”的 198.51.100.0/24，"
        "使用 TCP 端口 22, 443。",
        "usage": "用量",
        "month": "月份",
        "show": "显示",
        "site": "上海办公室",
        "rule": "研发部访问上海",
    },
}


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
          && e.parentElement.getBoundingClientRect().right <= window.innerWidth + 1)
        .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id + ' '
          + e.parentElement.tagName + '.' + e.parentElement.className)"""
    )
    assert width <= PHONE["width"], (
        f"{page.url} scrolls sideways at phone width ({width}px): {wide}"
    )


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_tenant_admins_sites_policy_and_usage_journey(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = TEXT[language]
    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live}/console/sign-in")
    page.get_by_label(t["email"], exact=True).fill("tenant_admin@a.example")
    page.get_by_label(t["password"], exact=True).fill(PASSWORD)
    page.get_by_role("button", name=t["sign_in"]).click()
    expect(page).to_have_url(f"{live}/console/home")

    # Sites: add one with its network.
    page.get_by_role("navigation").get_by_role("link", name=t["sites"]).click()
    expect(page).to_have_url(f"{live}/console/sites")
    expect(page.get_by_role("heading", level=1)).to_have_text(t["sites"])
    shoot(page, f"network-sites-empty-{language}")
    page.get_by_label(t["name"], exact=True).fill(t["site"])
    page.get_by_label(t["country"]).fill("CN")
    page.get_by_label(t["prefixes"]).fill(SITE_PREFIX)
    page.get_by_role("button", name=t["add_site"]).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(t["site"])
    expect(page.get_by_role("status")).to_be_visible()
    page.get_by_role("link", name=t["sites"], exact=True).first.click()
    expect(page.locator("table")).to_contain_text(SITE_PREFIX)
    shoot(page, f"network-sites-{language}")
    page.get_by_role("link", name=t["site"]).click()
    page.get_by_role("button", name=t["issue"]).click()
    command = page.locator("#connector-command")
    expect(command).to_contain_text("tongdao connector run --server ")
    expect(command).to_contain_text("--token tde_")
    shoot(page, f"network-site-enrolment-{language}")
    site = next(
        s
        for s in world.client.get(
            f"/api/v1/tenants/{world.a.id}/sites", headers=world.a.admin.headers
        ).json()["data"]
        if s["name"] == t["site"]
    )
    world.approve_site(site)  # the compliance officer's part of the journey
    group = world.client.post(
        f"/api/v1/tenants/{world.a.id}/groups",
        json={"name": "Engineering" if language == "en" else "研发部"},
        headers=world.a.admin.headers,
    )
    assert group.status_code == 201, group.text

    # Access policy: a refusal next to its field, a preview in words, then save.
    page.get_by_role("navigation").get_by_role("link", name=t["policy"]).click()
    shoot(page, f"network-policies-empty-{language}")
    page.get_by_role("link", name=t["new_rule"]).click()
    page.get_by_label(t["name"], exact=True).fill(t["rule"])
    page.locator('[id="f-rules.0.groups"]').select_option(label=group.json()["name"])
    page.get_by_role("checkbox", name=SITE_PREFIX).check()
    page.locator('[id="f-rules.0.protocol"]').select_option("tcp")
    page.get_by_label(t["ports"]).fill("22, 70000")
    page.get_by_role("button", name=t["preview"], exact=True).click()
    expect(page.locator('[id="f-rules.0.ports-error"]')).to_contain_text("65535")
    expect(page.locator('[id="f-rules.0.ports"]')).to_have_attribute("aria-invalid", "true")
    shoot(page, f"network-policy-refused-{language}")
    page.get_by_label(t["ports"]).fill("22, 443")
    page.get_by_label(t["ports"]).press("Enter")  # Enter previews: it never saves
    expect(page.locator(".preview")).to_be_visible()
    expect(page.locator(".preview")).to_contain_text(t["allows"])
    shoot(page, f"network-policy-preview-{language}")
    stored = world.client.get(
        f"/api/v1/tenants/{world.a.id}/policies", headers=world.a.admin.headers
    ).json()
    assert stored["count"] == 0  # a preview saves nothing
    page.get_by_role("button", name=t["save"], exact=True).click()
    expect(page).to_have_url(f"{live}/console/policies?done=created")
    expect(page.locator("ul.sentences")).to_contain_text(t["allows"])
    shoot(page, f"network-policies-{language}")
    (policy,) = world.client.get(
        f"/api/v1/tenants/{world.a.id}/policies", headers=world.a.admin.headers
    ).json()["data"]
    assert policy["rules"][0]["ports"] == ["22", "443"]

    # Usage of December (Asia/Shanghai) with its chart.
    usage_world(world, site)
    page.get_by_role("navigation").get_by_role("link", name=t["usage"], exact=True).click()
    page.get_by_label(t["month"], exact=True).fill("2026-12")
    page.get_by_role("button", name=t["show"]).click()
    expect(page).to_have_url(f"{live}/console/usage?month=2026-12")
    expect(page.locator('.chart[data-series="sites"].drawn canvas')).to_be_visible()
    expect(page.locator('.chart[data-series="users"].drawn canvas')).to_be_visible()
    expect(page.locator("#usage-users")).to_contain_text("1,007")
    shoot(page, f"network-usage-{language}")

    # Phone width: the main pages fit.
    page.set_viewport_size(PHONE)
    for path, name in (
        ("/console/usage?month=2026-12", "usage"),
        (f"/console/sites/{site['id']}", "site"),
        (f"/console/policies/{policy['id']}", "policy"),
    ):
        page.goto(f"{live}{path}")
        _no_sideways_scroll(page)
        shoot(page, f"network-{name}-phone-{language}")
    assert problems == []
    context.close()


def test_the_usage_page_works_without_script(browser: Browser, live: str, world: World) -> None:
    """The table carries the numbers: with JavaScript off they are all there."""
    usage_world(world)
    context = browser.new_context(locale="en", viewport=DESKTOP, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live}/console/sign-in")
    page.get_by_label("E-mail", exact=True).fill("tenant_admin@a.example")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live}/console/usage?month=2026-12")
    expect(page.locator("#usage-users")).to_contain_text("1,007")
    expect(page.locator("#usage-sites")).to_contain_text("1,099,511,627,776")
    shoot(page, "network-usage-no-script-en")
    context.close()
