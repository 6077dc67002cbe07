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
