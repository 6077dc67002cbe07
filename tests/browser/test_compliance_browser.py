"""The compliance officer's and the auditor's jobs in Debian's Chromium, in English and in
简体中文: vet and approve a tenant, approve its declared network, verify a tenant admin's
identity, record a licence; read the audit log with a filter and a diff, verify the chain,
download the regulator export. Screenshots of every page in both languages (the queue and
the log also at phone width) are kept, with no missing-glyph boxes and no console errors."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.api.test_gateway import make_site
from tests.support.browser import DESKTOP, PHONE, shoot, watch
from tests.support.privacy import identity_body
from tests.support.world import PASSWORD, World

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

TEXT = {
    "en": {
        "queue": "Work queue",
        "networks": "Declared networks awaiting approval",
        "identities": "Identities awaiting verification",
        "review": "Start the review",
        "approve": "Approve",
        "reject": "Reject",
        "reason": "Reason",
        "approved": "The tenant is approved.",
        "approve_net": "Approve the network",
        "net_done": "The network is approved",
        "verify": "Verify the identity",
        "verified": "The identity is verified",
        "licences": "Licences and shareholders",
        "number": "Licence number",
        "codes": "Service codes",
        "authority": "Issuing authority",
        "provinces": "Provinces covered",
        "from": "Valid from",
        "to": "Valid to",
        "record": "Record the licence",
        "recorded": "The licence is recorded.",
        "dashboard": "Compliance dashboard",
        "audit": "Audit log",
        "action": "Action",
        "filter": "Filter",
        "machine": "Include machine records",
        "verify_tab": "Chain verification",
        "verify_chain": "Verify the chain",
        "intact": "The chain is intact.",
        "export_tab": "Regulator export",
        "download": "Download the export",
        "rejection_error": "give the reason for the rejection",
    },
    "zh-CN": {
        "queue": "工作队列",
        "networks": "待审批的申报网络",
        "identities": "待核验的身份",
        "review": "开始审核",
        "approve": "批准",
        "reject": "拒绝",
        "reason": "原因",
        "approved": "该租户已获批准。",
        "approve_net": "批准该网络",
        "net_done": "该网络已获批准",
        "verify": "核验身份",
        "verified": "身份已核验",
        "licences": "许可证与股东",
        "number": "许可证编号",
        "codes": "业务代码",
        "authority": "发证机关",
        "provinces": "覆盖省份",
        "from": "生效日期",
        "to": "到期日期",
        "record": "登记许可证",
        "recorded": "许可证已登记。",
        "dashboard": "合规概览",
        "audit": "审计日志",
        "action": "操作",
        "filter": "筛选",
        "machine": "包含机器记录",
        "verify_tab": "哈希链校验",
        "verify_chain": "校验哈希链",
        "intact": "哈希链完整，未被篡改。",
        "export_tab": "监管导出",
        "download": "下载导出文件",
        "rejection_error": "请填写驳回理由",
    },
}


def _page(browser: Browser, locale: str, viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(
        locale=locale,
        viewport=viewport,  # type: ignore[arg-type]
        accept_downloads=True,
    )
    return context.new_page()


def sign_in(page: Page, live: str, email: str) -> None:
    page.goto(f"{live}/console/sign-in")
    page.locator("#f-email").fill(email)
    page.locator("#f-password").fill(PASSWORD)
    page.locator("#f-password").press("Enter")
    expect(page).to_have_url(f"{live}/console/home")


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None
    assert width <= viewport["width"], f"{page.url} scrolls sideways ({width}px)"


def api(world: World, path: str) -> dict[str, Any]:
    resp = world.client.get(f"/api/v1{path}", headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def second_admin(world: World) -> str:
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/users",
        json={
            "email": "second-admin@a.example",
            "display_name": "王二 Second Admin",
            "roles": ["tenant_admin"],
            **identity_body(),
        },
        headers=world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_compliance_officer_works_the_queue(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = TEXT[language]
    site = make_site(world, ["198.51.100.0/24"])
    admin_id = second_admin(world)
    page = _page(browser, language)
    problems = watch(page)
    sign_in(page, live, "compliance_officer@operator.example")
    page.get_by_role("navigation", name="Main" if language == "en" else "主导航").get_by_role(
        "link", name=t["queue"]
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["queue"])
    shoot(page, f"compliance-queue-{language}")

    # Vet tenant B (Shenzhen): start the review, a rejection without a reason is refused
    # next to its field, then approve.
    page.get_by_role("link", name="租户B" if language == "zh-CN" else "Tenant B").click()
    shoot(page, f"compliance-tenant-{language}")
    page.get_by_role("button", name=t["review"]).click()
    page.get_by_role("button", name=t["reject"], exact=True).click()
    expect(page.locator("#f-state_reason-error")).to_have_text(t["rejection_error"])
    expect(page.locator("#f-state_reason")).to_have_attribute("aria-invalid", "true")
    shoot(page, f"compliance-tenant-refused-{language}")
    page.get_by_role("button", name=t["approve"], exact=True).click()
    expect(page.get_by_role("status")).to_have_text(t["approved"])
    assert api(world, f"/tenants/{world.b.id}")["state"] == "approved"

    # The declared network of tenant A's site.
    page.get_by_role("link", name=t["queue"]).first.click()
    page.get_by_role("link", name=t["networks"]).click()
    page.get_by_role("link", name="198.51.100.0/24").click()
    shoot(page, f"compliance-network-{language}")
    page.get_by_role("button", name=t["approve_net"]).click()
    expect(page.get_by_role("status")).to_contain_text(t["net_done"])
    decl = site["declarations"][0]["id"]
    assert api(world, f"/declarations/{decl}")["state"] == "approved"

    # The new tenant admin's identity.
    page.get_by_role("link", name=t["queue"]).first.click()
    page.get_by_role("link", name=t["identities"]).click()
    page.get_by_role("link", name="王二 Second Admin").click()
    shoot(page, f"compliance-identity-{language}")
    page.get_by_role("button", name=t["verify"]).click()
    expect(page.get_by_role("status")).to_contain_text(t["verified"])
    assert api(world, f"/tenants/{world.a.id}/users/{admin_id}")["identity_verified_at"]

    # A licence, by keyboard where a person would use it.
    page.get_by_role("link", name=t["licences"]).first.click()
    page.get_by_label(t["number"]).fill("沪B1-20260042")
    page.get_by_label(t["codes"]).fill("B13")
    page.get_by_label(t["authority"]).fill("上海市通信管理局")
    page.get_by_label(t["provinces"]).select_option("31")
    page.get_by_label(t["from"]).fill("2026-01-01")
    page.get_by_label(t["to"]).fill("2030-12-31")
    page.get_by_role("button", name=t["record"]).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(t["recorded"])
    numbers = [lic["number"] for lic in api(world, "/operator/licences")["data"]]
    assert "沪B1-20260042" in numbers
    shoot(page, f"compliance-licences-{language}")
    page.get_by_role("link", name=t["dashboard"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["dashboard"])
    shoot(page, f"compliance-dashboard-{language}")

    # At phone width the queue and a tenant page fit.
    phone = _page(browser, language, PHONE)
    phone_problems = watch(phone)
    sign_in(phone, live, "compliance_officer@operator.example")
    for path, name in (
        ("/console/compliance", "queue"),
        (f"/console/compliance/tenants/{world.a.id}", "tenant"),
        ("/console/compliance/licences", "licences"),
    ):
        phone.goto(live + path)
        no_sideways_scroll(phone)
        shoot(phone, f"compliance-{name}-phone-{language}")
    assert problems == [] and phone_problems == []


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_auditor_reads_verifies_and_exports(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = TEXT[language]
    resp = world.client.patch(
        f"/api/v1/tenants/{world.b.id}",
        json={"contact_name": "王经理"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200
    page = _page(browser, language)
    problems = watch(page)
    sign_in(page, live, "auditor@operator.example")
    page.get_by_role("link", name=t["audit"]).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["audit"])
    shoot(page, f"audit-log-{language}")
    # Filter by action, with the keyboard: type and press Enter in the field.
    field = page.locator("#f-action")
    expect(field).to_have_accessible_name(re.compile(t["action"]))
    field.fill("update")
    field.press("Enter")
    expect(page).to_have_url(re.compile(r"action=update"))
    actions = page.locator(".event-action").all_text_contents()
    assert actions and set(actions) == {"update"}
    first = page.locator(".event details").first
    first.locator("summary").click()
    expect(first.locator("td.added").first).to_be_visible()
    expect(page.locator(".event").first).to_contain_text("王经理")
    shoot(page, f"audit-log-filtered-{language}")
    assert page.get_by_label(t["machine"]).is_checked() is False

    page.get_by_role("link", name=t["verify_tab"]).click()
    page.get_by_role("button", name=t["verify_chain"]).click()
    expect(page.locator("#verdict")).to_contain_text(t["intact"])
    shoot(page, f"audit-verify-{language}")

    page.get_by_role("link", name=t["export_tab"]).click()
    page.locator("#f-format").select_option("jsonl")
    page.locator("#f-tenant").select_option(str(world.b.id))
    shoot(page, f"audit-export-{language}")
    with page.expect_download() as info:
        page.get_by_role("button", name=t["download"]).click()
    download = info.value
    assert download.suggested_filename.startswith("tongdao-audit-")
    data = Path(download.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        lines = archive.read("records.jsonl").decode().splitlines()
    assert manifest["filters"]["tenant_id"] == str(world.b.id)
    assert {json.loads(line)["tenant_id"] for line in lines} == {str(world.b.id)}

    phone = _page(browser, language, PHONE)
    phone_problems = watch(phone)
    sign_in(phone, live, "auditor@operator.example")
    phone.goto(f"{live}/console/audit?object_type=tenant")
    phone.locator(".event details summary").first.click()
    no_sideways_scroll(phone)
    shoot(phone, f"audit-log-phone-{language}")
    assert problems == [] and phone_problems == []


# --- s18-notice: publishing the privacy notice ---------------------------------------------
NOTICE_TEXT = {
    "en": {
        "operations": "Operations",
        "publish_link": "Publish the privacy notice",
        "menu": "Privacy notices",
        "version": "Version",
        "title": "Title",
        "text": "The notice",
        "abroad": "Statement for the consent to transfer abroad",
        "fresh": "Ask everyone for fresh consent",
        "publish": "Publish this version",
        "published": "Consents to earlier versions have lapsed",
        "new_version": "Publish a new version",
        "published_plain": "consents to earlier versions still count",
    },
    "zh-CN": {
        "operations": "运营",
        "publish_link": "发布隐私声明",
        "menu": "隐私声明",
        "version": "版本",
        "title": "标题",
        "text": "告知内容",
        "abroad": "出境单独同意说明",
        "fresh": "要求所有人重新同意",
        "publish": "发布此版本",
        "published": "此前版本的同意均已失效",
        "new_version": "发布新版本",
        "published_plain": "此前版本的同意仍然有效",
    },
}


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_operator_admin_publishes_the_privacy_notice(
    browser: Browser, live: str, world: World, language: str
) -> None:
    t = NOTICE_TEXT[language]
    zh = language == "zh-CN"
    page = _page(browser, language)
    problems = watch(page)
    sign_in(page, live, "operator_admin@operator.example")
    # A fresh install: the operations dashboard says the notice is missing and leads to it.
    page.get_by_role("navigation", name="主导航" if zh else "Main").get_by_role(
        "link", name=t["operations"]
    ).click()
    alert = page.locator(".alert-privacy_notice")
    expect(alert).to_be_visible()
    page.get_by_role("navigation", name="主导航" if zh else "Main").get_by_role(
        "link", name=t["menu"]
    ).click()
    expect(page.locator("#no-notice")).to_be_visible()
    shoot(page, f"notices-none-{language}")
    page.get_by_role("link", name=t["publish_link"]).first.click()
    expect(page).to_have_url(f"{live}/console/privacy-notices/new")
    fresh = page.get_by_label(t["fresh"])
    expect(fresh).to_be_checked()
    expect(page.locator("#reconsent-warning")).to_be_visible()
    shoot(page, f"notice-new-{language}")

    title = "个人信息处理告知书" if zh else "Personal information notice"
    page.get_by_label(t["version"], exact=True).fill("2026 first")
    page.get_by_label(t["title"], exact=True).fill(title)
    page.get_by_label(t["text"], exact=True).fill(
        "通道为您提供远程接入服务。\n我们处理您的姓名、证件号码和手机号码。"
        if zh
        else "Tongdao provides your remote access.\nWe process your name, ID and mobile."
    )
    page.get_by_label(t["abroad"], exact=True).fill(
        "境外接收方：贵公司总部（privacy@hq.example）。"
        if zh
        else "Recipient abroad: your company's head office (privacy@hq.example)."
    )
    page.get_by_role("button", name=t["publish"]).click()
    # Refused next to the field; what was typed stays.
    version = page.get_by_label(t["version"], exact=True)
    expect(version).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-version-error")).not_to_be_empty()
    expect(page.get_by_label(t["title"], exact=True)).to_have_value(title)
    assert api(world, "/privacy-notices")["data"] == []
    shoot(page, f"notice-new-refused-{language}")
    version.fill("2026-01")
    page.get_by_role("button", name=t["publish"]).click()
    expect(page).to_have_url(f"{live}/console/privacy-notices?done=published-reconsent")
    expect(page.get_by_role("status")).to_contain_text(t["published"])
    current = api(world, "/privacy-notices/current")
    assert current["version"] == "2026-01" and current["title"] == title
    assert current["reconsent_required"] is True
    shoot(page, f"notices-{language}")

    # A second version without fresh consent, then one version's page.
    page.get_by_role("link", name=t["new_version"]).click()
    expect(page.get_by_label(t["title"], exact=True)).to_have_value(title)  # starts from it
    page.get_by_label(t["version"], exact=True).fill("2026-02")
    page.get_by_label(t["fresh"]).uncheck()
    page.get_by_role("button", name=t["publish"]).click()
    expect(page.get_by_role("status")).to_contain_text(t["published_plain"])
    assert api(world, "/privacy-notices/current")["reconsent_required"] is False
    page.get_by_role("link", name="2026-01", exact=True).click()
    expect(page.locator("#notice-text")).to_contain_text("手机号码" if zh else "mobile")
    expect(page.locator("#abroad-text")).to_contain_text("privacy@hq.example")
    shoot(page, f"notice-{language}")

    # Phone width: the list and the form, no sideways scroll.
    page.set_viewport_size(PHONE)
    for path, name in (
        ("/console/privacy-notices", "notices-phone"),
        ("/console/privacy-notices/new", "notice-new-phone"),
    ):
        page.goto(f"{live}{path}")
        no_sideways_scroll(page)
        shoot(page, f"{name}-{language}")
    assert problems == []
    page.context.close()


# --- end of s18-notice ---------------------------------------------------------------------
