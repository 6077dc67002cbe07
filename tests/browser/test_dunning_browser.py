"""The billing clerk suspends a tenant for non-payment and lifts it, in Debian's Chromium in
English and 简体中文: the tenant's billing page with its reminders, a refusal next to the
reason, the suspended page. Screenshots kept (desktop and phone width)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, expect
from sqlalchemy import update

from tests.api.test_dunning import at, invoice
from tests.support.billing import add_tenants
from tests.support.browser import DESKTOP, PHONE, serve, shoot, watch
from tests.support.world import PASSWORD, make_user
from tongdao.billing import dunning
from tongdao.tenancy.models import Tenant

pytestmark = pytest.mark.browser
expect.set_options(timeout=10_000)

CLERK = "clerk@operator.example"
T = {
    "sign_in": ("Sign in", "登录"),
    "suspend": ("Suspend the tenant", "对该租户停机"),
    "lift": ("Lift the suspension", "解除停机"),
    "suspended": ("suspended for non-payment; its service has stopped", "已因欠费停机"),
    "lifted": ("The suspension for non-payment is lifted", "欠费停机已解除"),
    "reason": ("Reason", "原因"),
}


@pytest.fixture
def live(app: FastAPI) -> Iterator[tuple[str, Any]]:
    runtime = app.state.runtime
    make_user(runtime, CLERK, ["billing_clerk"])
    (tenant_id,) = add_tenants(runtime, 1)  # "Billed 500"
    with runtime.db.session() as session:  # in service (vetting is tested elsewhere)
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(state="active"))
        session.commit()
    invoice(runtime, tenant_id, date(2026, 11, 30))
    dunning.run_reminders(runtime, at(date(2026, 12, 1)))
    dunning.run_reminders(runtime, at(date(2026, 12, 7)))
    with serve(app) as url:
        yield url, tenant_id


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_clerk_suspends_and_lifts(
    browser: Browser, live: tuple[str, Any], language: str
) -> None:
    url, tenant_id = live
    zh = language == "zh-CN"

    def t(key: str) -> str:
        return T[key][1 if zh else 0]

    context = browser.new_context(locale=language, viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{url}/console/sign-in")
    page.locator("#f-email").fill(CLERK)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name=t("sign_in")).click()
    expect(page).to_have_url(f"{url}/console/home")
    page.goto(f"{url}/console/billing/tenants/{tenant_id}")
    main = page.locator("main")
    expect(main).to_contain_text("¥106.00")
    shoot(page, f"dunning-tenant-{language}")
    # No reason: the message is next to the field.
    page.get_by_role("button", name=t("suspend")).click()
    expect(page.locator("#f-reason-error")).not_to_be_empty()
    shoot(page, f"dunning-suspend-refused-{language}")
    page.locator("#f-reason").fill("INV00000001 unpaid since 2026-11-30")
    page.get_by_role("button", name=t("suspend")).click()
    expect(main).to_contain_text(t("suspended"))
    expect(main).to_contain_text("INV00000001 unpaid since 2026-11-30")
    shoot(page, f"dunning-suspended-{language}")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    shoot(page, f"dunning-suspended-phone-{language}")
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    page.locator("#f-reason").fill("paid, reference 2026120501")
    page.get_by_role("button", name=t("lift")).click()
    expect(main).to_contain_text(t("lifted"))
    shoot(page, f"dunning-lifted-{language}")
    assert problems == []
    context.close()
