"""The tenant's billing page: reminders sent, and the billing clerk's suspension for
non-payment and its lift (a refusal next to the reason, in English and Chinese)."""

from __future__ import annotations

from datetime import date

from tests.api.test_dunning import at, invoice, tenant_state
from tests.api.test_gateway import activate
from tests.conftest import both_stores
from tests.support.console import as_person
from tests.support.world import World
from tests.web.test_billing_pages import _error, _form_error, _zh
from tongdao.billing import dunning

B = "/console/billing"


@both_stores
def test_the_clerk_suspends_and_lifts_on_the_tenant_page(world: World) -> None:
    activate(world, world.a.id)
    clerk = as_person(world, world.operators["billing_clerk"])
    page = f"{B}/tenants/{world.a.id}"
    # No overdue invoice: refused on the form, nothing changes.
    empty = clerk.post(page + "/suspension", {"reason": "unpaid"})
    assert empty.status_code == 409 and "no overdue invoice" in _form_error(empty.text)
    assert tenant_state(world, world.a.id) == "active"
    due = date(2026, 11, 30)
    invoice(world.runtime, world.a.id, due)
    dunning.run_reminders(world.runtime, at(date(2026, 12, 1)))
    shown = clerk.get(page)
    assert "Overdue invoices: reminders and suspension" in shown.text
    assert "¥106.00" in shown.text and "Suspend the tenant" in shown.text
    # A reason is required: the message is next to the field.
    blank = clerk.post(page + "/suspension", {"reason": ""})
    assert blank.status_code == 422 and _error(blank.text, "reason")
    assert tenant_state(world, world.a.id) == "active"
    done = clerk.post(page + "/suspension", {"reason": "INV00000001 unpaid"})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=suspended")
    assert tenant_state(world, world.a.id) == "suspended"
    shown = clerk.get(page + "?done=suspended")
    assert "Suspended for non-payment since" in shown.text and "INV00000001 unpaid" in shown.text
    assert "Lift the suspension" in shown.text
    # In Chinese too; the tenant admin sees the suspension and the reminders, no buttons.
    _zh(clerk)
    zh = clerk.get(page)
    assert "解除欠费停机" in zh.text and "付款提醒" in zh.text
    admin = as_person(world, world.a.admin).get(page)
    assert admin.status_code == 200 and "INV00000001 unpaid" in admin.text
    assert "/suspension/lift" not in admin.text and '/suspension"' not in admin.text
    blank = clerk.post(page + "/suspension/lift", {"reason": " "})
    assert blank.status_code == 422 and _error(blank.text, "reason")
    lifted = clerk.post(page + "/suspension/lift", {"reason": "paid on 12-05"})
    assert lifted.status_code == 303 and lifted.headers["location"].endswith("?done=lifted")
    assert tenant_state(world, world.a.id) == "active"
    # The operator admin reads but has no button.
    op = as_person(world, world.admin).get(page)
    assert op.status_code == 200 and "Suspend the tenant" not in op.text
