"""Issue 14, "compliance that holds over time": what a compliance officer found when trying
the rules (besides the scheduled check, tests/api/test_compliance_watch.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.support.world import World, uscc_for
from tongdao.compliance.licensing import china_today

API = "/api/v1"


def officer(world: World) -> dict[str, str]:
    return world.operators["compliance_officer"].headers


def test_a_beijing_tenant_is_told_at_creation_what_vetting_needs(world: World) -> None:
    resp = world.client.post(
        f"{API}/tenants",
        json={"name_en": "Beijing Trading Co", "uscc": uscc_for(7)},
        headers=world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    missing = resp.json()["vetting_missing"]
    assert set(missing) == {"foreign_invested", "foreign_invested_evidence"}
    assert "kyc.foreign_invested_beijing" in missing["foreign_invested"]
    # In Chinese too.
    got = world.client.get(
        f"{API}/tenants/{resp.json()['id']}",
        headers={**world.admin.headers, "Accept-Language": "zh-CN"},
    )
    assert got.json()["vetting_missing"] == missing  # the API's fields stay English
    # A Shenzhen tenant with a good code needs nothing more; tenant A has its evidence.
    assert (
        world.client.get(f"{API}/tenants/{world.b.id}", headers=officer(world)).json()[
            "vetting_missing"
        ]
        == {}
    )
    fixed = world.client.patch(
        f"{API}/tenants/{resp.json()['id']}",
        json={"foreign_invested": True, "foreign_invested_evidence": "回执 2026-0042"},
        headers=officer(world),
    )
    assert fixed.status_code == 200 and fixed.json()["vetting_missing"] == {}


def test_who_verified_a_uscc_by_hand_is_recorded(world: World) -> None:
    flawed = "91350100M000100Y44"  # the check character of a known-valid code, changed
    resp = world.client.post(
        f"{API}/tenants", json={"name_en": "Fuzhou Co", "uscc": flawed}, headers=world.admin.headers
    )
    assert resp.status_code == 201, resp.text
    tenant = resp.json()
    assert tenant["vetting_missing"].keys() == {"uscc_verified"}
    verified = world.client.patch(
        f"{API}/tenants/{tenant['id']}", json={"uscc_verified": True}, headers=officer(world)
    )
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert body["uscc_verified_by"] == str(world.operators["compliance_officer"].user_id)
    assert body["uscc_verified_at"] is not None and body["vetting_missing"] == {}


def test_beijing_with_an_expired_national_licence_and_a_valid_shanghai_one_names_the_region(
    world: World,
) -> None:
    """The refusal names the rule actually unmet: no valid licence covers Beijing."""
    h = officer(world)
    today = china_today(world.runtime.clock())
    (national,) = world.client.get(f"{API}/operator/licences", headers=h).json()["data"]
    resp = world.client.post(
        f"{API}/operator/licences",
        json={
            "number": "沪B1-20200001",
            "service_codes": ["B13"],
            "issuing_authority": "上海市通信管理局",
            "provinces": ["31"],
            "valid_from": (today - timedelta(days=30)).isoformat(),
            "valid_to": date(today.year + 3, 1, 1).isoformat(),
        },
        headers=h,
    )
    assert resp.status_code == 201, resp.text
    ended = today - timedelta(days=1)
    resp = world.client.patch(
        f"{API}/operator/licences/{national['id']}", json={"valid_to": ended.isoformat()}, headers=h
    )
    assert resp.status_code == 200, resp.text
    for state in ("under_review", "approved"):
        answer: Any = world.client.patch(
            f"{API}/tenants/{world.a.id}", json={"state": state}, headers=h
        )
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert "licence.region_covered" in error["message"]
    assert "no valid B13 licence covers tenant 'Tenant A' in Beijing (11)" in error["message"]
    assert f"expired on {ended.isoformat()}" in error["message"]
    zh = world.client.patch(
        f"{API}/tenants/{world.a.id}",
        json={"state": "approved"},
        headers={**h, "Accept-Language": "zh-CN"},
    ).json()["error"]["message"]
    assert "没有有效的 B13 许可证覆盖北京市（11）的租户" in zh, zh


REGISTER = f"{API}/operator/shareholders"


def register(*holders: tuple[str, bool, str]) -> dict[str, Any]:
    return {
        "shareholders": [
            {"name": name, "foreign": foreign, "stake_percent": stake}
            for name, foreign, stake in holders
        ]
    }


def test_the_shareholder_register_is_replaced_in_one_request(world: World) -> None:
    h = officer(world)
    before = {row["name"]: row for row in world.client.get(REGISTER, headers=h).json()["data"]}
    # A transfer of 10% from the domestic holder to a new foreign one: one change.
    resp = world.client.put(
        REGISTER,
        json=register(
            ("Tongdao Holdings (Beijing) Co., Ltd.", False, "41"),
            ("Overseas Telecom Ltd", True, "49"),
            ("Second Overseas Fund", True, "10"),
        ),
        headers=h,
    )
    assert resp.status_code == 200, resp.text
    after = {row["name"]: row for row in resp.json()}
    assert after["Overseas Telecom Ltd"]["id"] == before["Overseas Telecom Ltd"]["id"]
    status = world.client.get(f"{API}/operator/compliance", headers=h).json()
    assert status["ownership"]["foreign_percent"] == "59.00"
    assert [p["rule"] for p in status["problems"]] == ["ownership.foreign_cap"]
    # Back under the cap, one holder removed, in one request again.
    resp = world.client.put(
        REGISTER,
        json=register(
            ("Tongdao Holdings (Beijing) Co., Ltd.", False, "51"),
            ("Second Overseas Fund", True, "49"),
        ),
        headers=h,
    )
    assert resp.status_code == 200, resp.text
    listed = world.client.get(REGISTER, headers=h).json()["data"]
    assert sorted(row["name"] for row in listed) == [
        "Second Overseas Fund",
        "Tongdao Holdings (Beijing) Co., Ltd.",
    ]
    assert world.client.get(f"{API}/operator/compliance", headers=h).json()["problems"] == []


def test_a_register_that_is_not_whole_is_refused_by_field_and_nothing_changes(
    world: World,
) -> None:
    h = officer(world)
    before = world.client.get(REGISTER, headers=h).json()["data"]
    for body, field in (
        (register(("A Co", False, "60"), ("B Ltd", True, "30")), "shareholders"),
        (register(("A Co", False, "51"), ("a co ", True, "49")), "shareholders.1.name"),
        (register(("A Co", False, "101")), "shareholders.0.stake_percent"),
        ({"shareholders": []}, "shareholders"),
        ({}, "shareholders"),
    ):
        resp = world.client.put(REGISTER, json=body, headers=h)
        assert resp.status_code == 422, resp.text
        assert field in resp.json()["error"]["fields"], resp.json()
    assert world.client.get(REGISTER, headers=h).json()["data"] == before
    for who in ("billing_clerk", "auditor"):
        resp = world.client.put(
            REGISTER,
            json=register(("A Co", False, "100")),
            headers=world.operators[who].headers,
        )
        assert resp.status_code == 403
