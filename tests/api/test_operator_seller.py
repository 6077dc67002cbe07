"""The operator profile becomes every invoice's seller: what it holds must fit an invoice
(review of the billing run, s23-billrev)."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient

from tests.support.billing import add_plan, subscribe
from tests.support.world import World
from tongdao.billing import service

ADDRESS = "北京市朝阳区" + "建国路" * 98  # 300 characters: the address field's own limit
PROFILE = {
    "legal_name": "Tongdao Beijing JV Ltd",
    "legal_name_zh": "通道（北京）科技有限公司",
    "uscc": "91110000802100433B",
    "contact_phone": "+86 10 6500 0000",
}


def test_an_address_that_with_the_phone_overflows_the_invoices_seller_field_is_refused(
    world: World, client: TestClient
) -> None:
    """The invoice's seller address and phone (300 characters) is the address and the phone
    joined: a profile whose two do not fit would stop every monthly run (each tenant's
    invoice refused), so the profile is refused instead, on the address."""
    h = world.admin.headers
    resp = client.put("/api/v1/operator", json={**PROFILE, "address": ADDRESS}, headers=h)
    assert resp.status_code == 422, resp.text
    assert "address" in resp.json()["error"]["fields"], resp.json()
    zh = client.put(
        "/api/v1/operator",
        json={**PROFILE, "address": ADDRESS},
        headers={**h, "Accept-Language": "zh-CN"},
    )
    assert "发票" in zh.json()["error"]["fields"]["address"], zh.json()
    fits = ADDRESS[: 300 - 1 - len(PROFILE["contact_phone"])]
    resp = client.put("/api/v1/operator", json={**PROFILE, "address": fits}, headers=h)
    assert resp.status_code == 200, resp.text
    # and the run makes the invoices with it
    plan = add_plan(world.runtime)
    subscribe(world.runtime, world.a.id, plan, date(2027, 1, 1))
    outcome = service.run_month(world.runtime.db, date(2027, 1, 1))
    assert len(outcome.created) == 1


def test_an_address_alone_may_fill_the_field(world: World, client: TestClient) -> None:
    body = {**PROFILE, "contact_phone": "", "address": ADDRESS}
    resp = client.put("/api/v1/operator", json=body, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text


def test_the_limit_is_the_columns() -> None:
    from tongdao.billing.models import INVOICES

    assert INVOICES.c.seller_address_phone.type.length == service.SELLER_ADDRESS_PHONE_MAX
