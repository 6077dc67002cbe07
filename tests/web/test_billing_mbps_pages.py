"""The plan form prices cross-border per GB or per committed Mbit/s: the basis is a choice,
an inconsistent price is refused next to its field (in the person's language), a consistent
plan is stored as the API shows it, and the invoice page names the committed-bandwidth line."""

from __future__ import annotations

from datetime import date

from tests.conftest import both_stores
from tests.store.test_billing_mbps import MBPS_PLAN, authorisation
from tests.support.billing import plan_body
from tests.support.world import World
from tests.web.test_billing_pages import (
    B,
    _accounts_before_october,
    _api,
    _clerk,
    _error,
    _form,
    _zh,
)


@both_stores
def test_the_plan_form_takes_the_cross_border_basis(world: World) -> None:
    clerk = _clerk(world)
    page = clerk.get(B + "/plans")
    assert (
        'name="cross_border_basis"' in page.text
        and 'id="f-cross_border_price_per_mbps"' in page.text
    )
    _zh(clerk)
    mixed_plan = plan_body("M", cross_border_basis="mbps", cross_border_price_per_mbps="25.00")
    mixed = clerk.post(B + "/plans", _form(mixed_plan))
    assert mixed.status_code == 422
    assert "按核准带宽" in _error(mixed.text, "cross_border_price_per_gb")
    assert _api(world, "GET", "/billing/plans")["count"] == 0
    made = clerk.post(B + "/plans", _form(plan_body("M", **MBPS_PLAN)))
    assert made.status_code == 303, made.text
    plan_id = made.headers["location"].split("/")[-1].split("?")[0]
    stored = _api(world, "GET", f"/billing/plans/{plan_id}")
    assert (stored["cross_border_basis"], stored["cross_border_price_per_mbps"]) == (
        "mbps",
        "25.00",
    )
    # The invoice shows the committed-bandwidth line with its unit, in Chinese.
    _accounts_before_october(world)
    sub = clerk.post(
        f"{B}/tenants/{world.a.id}/subscriptions", {"plan_id": plan_id, "starts_on": "2026-10-01"}
    )
    assert sub.status_code == 303, sub.text
    authorisation(world.runtime, world.a.id, 20, (date(2026, 11, 16), date(2027, 5, 15)))
    assert clerk.post(B + "/run", {"month": "2026-11"}).status_code == 200
    invoice = _api(world, "GET", f"/tenants/{world.a.id}/invoices")["data"][0]
    (line,) = [x for x in invoice["lines"] if x["kind"] == "committed_mbps"]
    assert (line["quantity"], line["amount"]) == ("10.000000", "250.00")
    shown = clerk.get(f"{B}/tenants/{world.a.id}/invoices/{invoice['id']}")
    assert shown.status_code == 200
    assert "跨境承诺带宽" in shown.text and "Mbit/s·月" in shown.text
