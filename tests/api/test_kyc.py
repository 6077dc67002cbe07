"""Customer vetting (KYC) through the API: USCC vectors, checksum failures flagged for manual
verification, Beijing customers foreign-invested with evidence, the workflow with reasons, and
terminated tenants keeping their records."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_licensing import move, refusal, tenant_state
from tests.conftest import both_stores
from tests.support.world import World, uscc_for

API = "/api/v1"
VALID = ["914403001922038216", "91110000802100433B", "91350100M000100Y43"]  # product.md


def create(world: World, uscc: str, **extra: Any) -> dict[str, Any]:
    resp = world.client.post(
        f"{API}/tenants",
        json={"name_en": f"Co {uscc}", "uscc": uscc, **extra},
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


@pytest.mark.parametrize("uscc", VALID)
def test_valid_usccs_from_product_md(world: World, uscc: str) -> None:
    if uscc in (world.a.data["uscc"], world.b.data["uscc"]):
        tenant = world.a.data if world.a.data["uscc"] == uscc else world.b.data
    else:
        tenant = create(world, uscc)
    assert tenant["uscc_checksum_ok"] is True
    assert tenant["needs_manual_verification"] is False
    assert tenant["division_code"] == uscc[2:8]


@pytest.mark.parametrize(
    ("uscc", "fragment"),
    [
        ("9111000080210043", "18 characters"),  # too short
        ("91I10000802100433B", "not allowed"),  # I is not in the charset
        ("91110000802100O33B", "not allowed"),  # nor O
        ("X1110000802100433B", "registration authority"),
        ("94110000802100433B", "entity type"),  # 9 (market regulator) issues 1-3 only
        ("91990000802100433B", "division code"),  # 99 is no province
        ("9211000080210043 B", "18 characters"),
    ],
)
def test_mutated_usccs_are_refused(world: World, uscc: str, fragment: str) -> None:
    resp = world.client.post(
        f"{API}/tenants", json={"name_en": "X", "uscc": uscc}, headers=world.admin.headers
    )
    assert resp.status_code == 422, resp.text
    assert fragment in resp.json()["error"]["fields"]["uscc"]


@both_stores
def test_a_checksum_failure_is_flagged_for_manual_verification(world: World) -> None:
    # 91350100M000100Y43 with its check character changed: Fujian, so no FIE condition.
    tenant = create(world, "91350100M000100Y44")
    assert tenant["uscc_checksum_ok"] is False
    assert tenant["needs_manual_verification"] is True
    item = f"{API}/tenants/{tenant['id']}"
    officer = world.operators["compliance_officer"].headers
    queue = world.client.get(
        f"{API}/tenants", params={"needs_manual_verification": "true"}, headers=officer
    ).json()["data"]
    assert [t["id"] for t in queue] == [tenant["id"]]

    fields = refusal(move(world, tenant["id"], "under_review", "approved"), "kyc.uscc")
    assert "verifies the code" in fields["uscc_verified"]
    assert tenant_state(world, tenant["id"]) == "under_review"

    verified = world.client.patch(item, json={"uscc_verified": True}, headers=officer)
    assert verified.status_code == 200, verified.text
    assert verified.json()["needs_manual_verification"] is False
    assert verified.json()["uscc_verified_at"] is not None
    queue = world.client.get(
        f"{API}/tenants", params={"needs_manual_verification": "true"}, headers=officer
    ).json()["data"]
    assert queue == []
    assert move(world, tenant["id"], "approved", "active").status_code == 200

    # Withdrawing the verification of an active tenant would break its vetting.
    resp = world.client.patch(item, json={"uscc_verified": False}, headers=officer)
    refusal(resp, "kyc.uscc")
    # A code whose check character matches has nothing to verify.
    resp = world.client.patch(
        f"{API}/tenants/{world.b.id}", json={"uscc_verified": True}, headers=officer
    )
    assert resp.status_code == 422
    assert "nothing to verify" in resp.json()["error"]["fields"]["uscc_verified"]


@both_stores
def test_a_beijing_customer_must_be_foreign_invested_with_evidence(world: World) -> None:
    tenant = create(world, uscc_for(7))  # division 110105, Beijing
    item = f"{API}/tenants/{tenant['id']}"
    officer = world.operators["compliance_officer"].headers
    fields = refusal(
        move(world, tenant["id"], "under_review", "approved"), "kyc.foreign_invested_beijing"
    )
    assert "foreign_invested" in fields
    resp = world.client.patch(item, json={"foreign_invested": True}, headers=officer)
    assert resp.status_code == 200
    fields = refusal(move(world, tenant["id"], "approved"), "kyc.foreign_invested_beijing")
    assert "foreign_invested_evidence" in fields
    # Evidence and approval in one request.
    resp = world.client.patch(
        item,
        json={
            "foreign_invested_evidence": "商务部外商投资信息报告回执 2026-0042",
            "state": "approved",
        },
        headers=officer,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["foreign_invested_evidence"] == "商务部外商投资信息报告回执 2026-0042"
    # Once approved, the vetting must stay true.
    refusal(
        world.client.patch(item, json={"foreign_invested": False}, headers=officer),
        "kyc.foreign_invested_beijing",
    )
    refusal(
        world.client.patch(item, json={"foreign_invested_evidence": ""}, headers=officer),
        "kyc.foreign_invested_beijing",
    )
    assert world.client.get(item, headers=officer).json()["foreign_invested"] is True
    # Outside Beijing the condition does not apply (tenant B is in Shenzhen).
    assert move(world, world.b.id, "under_review", "approved", "active").status_code == 200


def test_tenant_admins_cannot_vet_themselves(world: World) -> None:
    item = f"{API}/tenants/{world.b.id}"
    for body in (
        {"foreign_invested": True},
        {"foreign_invested_evidence": "x"},
        {"uscc_verified": True},
        {"state_reason": "x"},
    ):
        resp = world.client.patch(item, json=body, headers=world.b.admin.headers)
        assert resp.status_code == 403, (body, resp.text)
        assert set(resp.json()["error"]["fields"]) == set(body)


@both_stores
def test_the_workflow_with_reasons_and_retention(world: World) -> None:
    officer = world.operators["compliance_officer"].headers
    item = f"{API}/tenants/{world.a.id}"
    assert move(world, world.a.id, "under_review").status_code == 200
    resp = world.client.patch(item, json={"state": "rejected"}, headers=officer)
    assert resp.status_code == 422
    assert "reason" in resp.json()["error"]["fields"]["state_reason"]
    resp = world.client.patch(
        item,
        json={"state": "rejected", "state_reason": "  business licence expired  "},
        headers=officer,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["state_reason"] == "business licence expired"
    resp = world.client.patch(item, json={"state": "active"}, headers=officer)
    assert resp.status_code == 422  # rejected → under_review only
    for state in ("under_review", "approved", "active"):
        resp = world.client.patch(item, json={"state": state}, headers=officer)
        assert resp.status_code == 200, resp.text
        assert resp.json()["state_reason"] == ""
    resp = world.client.patch(
        item, json={"state": "suspended", "state_reason": "unpaid invoice"}, headers=officer
    )
    assert resp.json()["state_reason"] == "unpaid invoice"

    device = world.client.post(
        f"{item}/devices",
        json={"name": "laptop", "public_key": _key()},
        headers=world.a.employee.headers,
    )
    assert device.status_code == 201, device.text
    resp = world.client.patch(item, json={"state": "terminated"}, headers=officer)
    assert resp.status_code == 200
    # Terminated, not deleted: the tenant and its records stay, and deleting it is refused.
    fields = refusal(world.client.delete(item, headers=world.admin.headers), "logs.retention")
    assert "terminate" in fields["state"]
    assert tenant_state(world, world.a.id) == "terminated"
    users = world.client.get(f"{item}/users", headers=world.admin.headers).json()["data"]
    assert {u["id"] for u in users} >= {str(world.a.admin.user_id), str(world.a.employee.user_id)}
    devices = world.client.get(f"{item}/devices", headers=world.admin.headers).json()["data"]
    assert [d["id"] for d in devices] == [device.json()["id"]]
    events = world.client.get(
        f"{API}/audit/events",
        params={"object_id": str(world.a.id), "limit": 50},
        headers=world.admin.headers,
    ).json()["data"]
    states = [e["after"].get("state") for e in reversed(events) if e["action"] == "update"]
    assert states[-1] == "terminated"


def test_an_applicant_never_served_can_be_deleted(world: World) -> None:
    tenant = create(world, VALID[2])
    assert move(world, tenant["id"], "under_review").status_code == 200
    resp = world.client.delete(f"{API}/tenants/{tenant['id']}", headers=world.admin.headers)
    assert resp.status_code == 204, resp.text


def _key() -> str:
    from tongdao.testing.keys import public_key

    return public_key()
