"""Issue 14, "compliance that holds over time": what a compliance officer found when trying
the rules (besides the scheduled check, tests/api/test_compliance_watch.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.conftest import both_stores
from tests.support.world import World, uscc_for
from tongdao.compliance.licensing import china_today

API = "/api/v1"


def officer(world: World) -> dict[str, str]:
    return world.operators["compliance_officer"].headers


@both_stores
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


@both_stores
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


@both_stores
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


@both_stores
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


@both_stores
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
    zh = world.client.put(
        REGISTER,
        json=register(("A Co", False, "60"), ("B Ltd", True, "30")),
        headers={**h, "Accept-Language": "zh-CN"},
    ).json()["error"]["fields"]
    assert zh["shareholders"] == "持股比例合计为 90.00%，而不是 100%"
    for who in ("billing_clerk", "auditor"):
        resp = world.client.put(
            REGISTER,
            json=register(("A Co", False, "100")),
            headers=world.operators[who].headers,
        )
        assert resp.status_code == 403


def _changes_of(world: World, object_id: str) -> list[Any]:
    from sqlalchemy import select

    from tongdao.audit.models import AuditEvent

    with world.runtime.db.session(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.object_id == object_id, AuditEvent.kind == "change")
                .order_by(AuditEvent.seq)
            )
        )


def _no_placeholder(image: dict[str, Any] | None) -> None:
    """No SQLAlchemy marker (NO_VALUE / NEVER_SET, enums written as small integers) in an
    after- or before-image: every value is what the column holds, or a redaction marker."""
    assert image is not None
    for key, value in image.items():
        assert not (isinstance(value, int) and not isinstance(value, bool) and value in (1, 2, 3, 4)
                    and key not in {"stake_percent", "id_number_length"}), (key, value)  # fmt: skip


@both_stores
def test_update_and_erasure_images_hold_true_values(world: World) -> None:
    """Stop 19 fixed creation records; an update's before/after and an erasure's change record
    show the stored values too (an unset column: null; a secret: the redaction marker)."""
    from tests.support.privacy import identity_body

    admin = world.a.admin.headers
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/users",
        json={"email": "leaver@a.example", "display_name": "Leaver"},
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    uid = resp.json()["id"]
    url = f"{API}/tenants/{world.a.id}/users/{uid}"
    resp = world.client.patch(url, json={"display_name": "Leaver Two"}, headers=admin)
    assert resp.status_code == 200, resp.text
    body = identity_body()
    resp = world.client.patch(url, json=body, headers=admin)
    assert resp.status_code == 200, resp.text
    resp = world.client.post(f"{url}/personal-data/erase", headers=officer(world))
    assert resp.status_code == 200, resp.text
    create, rename, identity, *erasure = _changes_of(world, uid)
    assert rename.before == {"display_name": "Leaver"}
    assert rename.after == {"display_name": "Leaver Two"}
    assert identity.before is not None and identity.before["id_type"] is None
    assert identity.after is not None and identity.after["id_type"] == "prc_resident_id"
    assert body["id_number"] not in str(identity.after)  # sealed: a marker, not the number
    assert erasure, "the erasure is a change of the user record"
    last = erasure[-1]
    assert last.after is not None and last.after.get("id_type", "unset") in (None, "unset")
    assert last.after.get("state") == "disabled"
    for event in (create, rename, identity, *erasure):
        if event.after is not None:
            _no_placeholder(event.after)
        if event.before is not None:
            _no_placeholder(event.before)


@both_stores
def test_the_regulator_export_can_leave_out_machine_telemetry(world: World) -> None:
    """Gateway acknowledgements, polls and connection sessions are told apart from people's
    actions in the export as in the audit page (machine=false / true), chain intact."""
    from tests.api.test_audit_log import EXPORT, connect, jsonl, unzip
    from tongdao.audit.reading import is_machine

    connect(world)  # a gateway's enrolment, polls, acknowledgements and an open session
    auditor = world.operators["auditor"].headers
    everything = jsonl(
        unzip(world.client.get(EXPORT, params={"format": "jsonl"}, headers=auditor))[1]
    )
    manifest, files = unzip(
        world.client.get(EXPORT, params={"format": "jsonl", "machine": "false"}, headers=auditor)
    )
    people = jsonl(files)
    assert manifest["filters"]["machine"] is False and manifest["open_sessions"] == 0
    assert people and not any(is_machine(r["actor"], r["kind"]) for r in people)
    machines = jsonl(
        unzip(
            world.client.get(EXPORT, params={"format": "jsonl", "machine": "true"}, headers=auditor)
        )[1]
    )
    assert machines and all(is_machine(r["actor"], r["kind"]) for r in machines if r["seq"])
    # Each export is audited (a person's action), so compare by seq: disjoint, and together
    # they hold everything the first export held.
    people_seqs = {r["seq"] for r in people}
    machine_seqs = {r["seq"] for r in machines if r["seq"]}
    assert not people_seqs & machine_seqs
    assert {r["seq"] for r in everything if r["seq"]} <= people_seqs | machine_seqs
    assert any(r["actor"].startswith("gateway:") for r in machines)
    verified = world.client.get(f"{API}/audit/verify", headers=auditor).json()
    assert verified["ok"] is True


@both_stores
def test_vetting_is_the_compliance_officers_and_a_403_names_who_may(world: World) -> None:
    tenant = f"{API}/tenants/{world.b.id}"
    for body in ({"state": "under_review"}, {"state": "rejected", "state_reason": "no"}):
        resp = world.client.patch(tenant, json=body, headers=world.admin.headers)
        assert resp.status_code == 403, resp.text
        error = resp.json()["error"]
        assert "it is for: compliance_officer" in error["message"]
        assert error["fields"] == {"state": "decided by the compliance officer"}
    flawed = world.client.post(
        f"{API}/tenants",
        json={"name_en": "Fuzhou Co", "uscc": "91350100M000100Y44"},
        headers=world.admin.headers,
    ).json()
    resp = world.client.patch(
        f"{API}/tenants/{flawed['id']}", json={"uscc_verified": True}, headers=world.admin.headers
    )
    assert resp.status_code == 403 and "uscc_verified" in resp.json()["error"]["fields"]
    for state in ("under_review", "approved"):
        resp = world.client.patch(tenant, json={"state": state}, headers=officer(world))
        assert resp.status_code == 200, resp.text
    # Running the service stays the operator admin's too.
    resp = world.client.patch(tenant, json={"state": "active"}, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    # Any other refusal by the permissions table names the roles that may, in both languages.
    resp = world.client.put(
        f"{API}/operator/compliance/watch",
        json={"grace_days": 3},
        headers=world.operators["auditor"].headers,
    )
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == (
        "your roles do not allow update on operator; it is for: operator_admin, compliance_officer"
    )
    zh = world.client.get(
        f"{API}/audit/verify", headers={**world.a.admin.headers, "Accept-Language": "zh-CN"}
    ).json()["error"]["message"]
    assert zh == (
        "您的角色不允许对 audit_chain 执行 read；可执行该操作的角色：operator_admin, "
        "compliance_officer, auditor"
    )


def test_the_operator_admin_cannot_take_the_compliance_officers_role(world: World) -> None:
    """Separation of duties holds for the roles too: one account is never both operator admin
    and compliance officer (the admin could otherwise give themselves the officer's role and
    vet customers alone), neither by a change nor at creation."""
    admin = world.admin
    resp = world.client.patch(
        f"{API}/operator/staff/{admin.user_id}",
        json={"roles": ["operator_admin", "compliance_officer"]},
        headers=admin.headers,
    )
    assert resp.status_code == 422, resp.text
    assert "compliance_officer" in resp.json()["error"]["fields"]["roles"]
    resp = world.client.post(
        f"{API}/operator/staff",
        json={
            "email": "both@example.com",
            "display_name": "Both",
            "roles": ["compliance_officer", "operator_admin"],
        },
        headers=admin.headers,
    )
    assert resp.status_code == 422, resp.text
    assert "roles" in resp.json()["error"]["fields"]
    zh = world.client.patch(
        f"{API}/operator/staff/{admin.user_id}",
        json={"roles": ["operator_admin", "compliance_officer"]},
        headers={**admin.headers, "Accept-Language": "zh-CN"},
    )
    assert zh.json()["error"]["fields"]["roles"] == (
        "operator_admin 与 compliance_officer 职责分离：一个账户至多持有其中之一"
    )
    # The admin still vets nobody: the tenant's review stays the officer's.
    resp = world.client.patch(
        f"{API}/tenants/{world.b.id}", json={"state": "under_review"}, headers=admin.headers
    )
    assert resp.status_code == 403, resp.text
