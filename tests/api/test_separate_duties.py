"""Separation of duties between the operator admin (runs the service) and the compliance
officer (vets customers, decides cross-border applications), for accounts that existed before
one account was refused both roles, and for who may give or take the officer's role."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from tests.api.test_crossborder import Net, apply_a
from tests.conftest import both_stores
from tests.support.world import World, make_user
from tongdao.auth.permissions import DUTY_CONFLICT

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@both_stores
def test_an_account_holding_both_duties_may_not_decide(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """An account made (straight in the store, as before the rule) with both roles is refused
    the officer's decisions with a 403 naming the conflict; the real officer still decides; and
    the server names the account at start-up."""
    _uid, token = make_user(
        world.runtime, "both@operator.example", ["operator_admin", "compliance_officer"]
    )
    both = bearer(token)
    tenant = f"{API}/tenants/{world.b.id}"
    resp = world.client.patch(tenant, json={"state": "under_review"}, headers=both)
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["message"] == DUTY_CONFLICT
    assert list(error["fields"]) == ["state"]
    zh = world.client.patch(
        tenant, json={"state": "under_review"}, headers={**both, "Accept-Language": "zh-CN"}
    )
    assert "职责分离" in zh.json()["error"]["message"]
    assert world.client.get(tenant, headers=both).json()["state"] == "applied"
    officer = world.operators["compliance_officer"].headers
    resp = world.client.patch(tenant, json={"state": "under_review"}, headers=officer)
    assert resp.status_code == 200, resp.text

    net = Net(world)
    app = apply_a(world, net)
    for path, body in (
        ("review", None),
        ("reject", {"reason": "no"}),
    ):
        resp = world.client.post(
            f"{API}/crossborder/applications/{app['id']}/{path}", json=body, headers=both
        )
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["error"]["message"] == DUTY_CONFLICT
    resp = world.client.post(f"{API}/crossborder/applications/{app['id']}/review", headers=officer)
    assert resp.status_code == 200, resp.text

    # Start-up (the app's lifespan) warns of the account, and of no one else.
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="tongdao.operator.bootstrap"),
        TestClient(world.client.app),
    ):
        pass
    named = [r.getMessage() for r in caplog.records if r.name == "tongdao.operator.bootstrap"]
    assert len(named) == 1 and "both@operator.example" in named[0], named


@both_stores
def test_the_operator_admin_neither_gives_nor_takes_the_officers_role(world: World) -> None:
    """The admin could otherwise make a second account of theirs an officer (or replace the
    real one) and vet customers alone: creating an officer, promoting staff to officer,
    demoting or deleting the officer are refused with a 403 keyed roles; nothing changes."""
    admin = world.admin.headers
    resp = world.client.post(
        f"{API}/operator/staff",
        json={"email": "second@operator.example", "display_name": "Second",
              "roles": ["compliance_officer"]},
        headers=admin,
    )  # fmt: skip
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert list(error["fields"]) == ["roles"] and "compliance_officer" in error["message"]
    listed = world.client.get(
        f"{API}/operator/staff", params={"email": "second@operator.example"}, headers=admin
    )
    assert listed.json()["data"] == []

    auditor = world.operators["auditor"]
    officer = world.operators["compliance_officer"]
    for who, roles in (
        (auditor, ["compliance_officer"]),
        (auditor, ["auditor", "compliance_officer"]),
        (officer, ["auditor"]),
    ):
        resp = world.client.patch(
            f"{API}/operator/staff/{who.user_id}", json={"roles": roles}, headers=admin
        )
        assert resp.status_code == 403, resp.text
        assert list(resp.json()["error"]["fields"]) == ["roles"]
    resp = world.client.delete(f"{API}/operator/staff/{officer.user_id}", headers=admin)
    assert resp.status_code == 403, resp.text
    zh = world.client.patch(
        f"{API}/operator/staff/{auditor.user_id}",
        json={"roles": ["compliance_officer"]},
        headers={**admin, "Accept-Language": "zh-CN"},
    )
    assert zh.json()["error"]["fields"]["roles"] == "compliance_officer 角色由合规专员授予和撤销"
    for who, roles in ((auditor, ["auditor"]), (officer, ["compliance_officer"])):
        got = world.client.get(f"{API}/operator/staff/{who.user_id}", headers=admin).json()
        assert got["roles"] == roles
    # Other roles are still the admin's to give; the officer keeps vetting.
    resp = world.client.patch(
        f"{API}/operator/staff/{auditor.user_id}",
        json={"roles": ["auditor", "billing_clerk"]},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    resp = world.client.patch(
        f"{API}/tenants/{world.b.id}", json={"state": "under_review"}, headers=officer.headers
    )
    assert resp.status_code == 200, resp.text
