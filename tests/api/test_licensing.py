"""Operator licences and ownership through the API: licence records are checked, expiry warnings
reach the dashboard, and a tenant, site or PoP the licences do not cover is refused with the
rule and its source (licence.b13_required, licence.validity, licence.region_covered,
ownership.foreign_cap), with nothing half-written."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from tests.conftest import both_stores
from tests.support.world import World
from tongdao.clock import utcnow
from tongdao.compliance.licensing import china_today
from tongdao.compliance.rules import rule

API = "/api/v1"
BEIJING_LICENCE = {
    "number": "京B1-20180001",
    "service_codes": ["B13"],
    "issuing_authority": "北京市通信管理局",
    "provinces": ["11"],
}


def today() -> date:
    return china_today(utcnow())


def refusal(resp: httpx.Response, rule_id: str) -> dict[str, str]:
    """Assert a 409 that names the rule and its source; its field errors."""
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "compliance_refused"
    assert f"rule {rule_id}:" in error["message"]
    assert rule(rule_id).source in error["message"]
    fields: dict[str, str] = error["fields"]
    return fields


def licences(world: World) -> list[dict[str, Any]]:
    resp = world.client.get(f"{API}/operator/licences", headers=world.admin.headers)
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


def only_licence(world: World, body: dict[str, Any] | None) -> None:
    """Replace the world's licences by ``body`` (none at all when None)."""
    h = world.operators["compliance_officer"].headers
    for lic in licences(world):
        assert (
            world.client.delete(f"{API}/operator/licences/{lic['id']}", headers=h).status_code
            == 204
        )
    if body is not None:
        start = today() - timedelta(days=365)
        full = {
            "valid_from": start.isoformat(),
            "valid_to": (start.replace(year=start.year + 5)).isoformat(),
            **body,
        }
        resp = world.client.post(f"{API}/operator/licences", json=full, headers=h)
        assert resp.status_code == 201, resp.text


def move(world: World, tenant_id: Any, *states: str) -> httpx.Response:
    """PATCH the tenant through ``states``; the last answer (stops at the first refusal)."""
    h = world.operators["compliance_officer"].headers
    resp = None
    for state in states:
        resp = world.client.patch(f"{API}/tenants/{tenant_id}", json={"state": state}, headers=h)
        if resp.status_code != 200:
            break
    assert resp is not None
    return resp


def pop(world: World, name: str, region: str, state: str = "active") -> httpx.Response:
    return world.client.post(
        f"{API}/pops",
        json={
            "name": name,
            "region": region,
            "country": region[:2],
            "endpoint_host": "198.51.100.20",
            "state": state,
        },
        headers=world.admin.headers,
    )


def tenant_state(world: World, tenant_id: Any) -> str:
    resp = world.client.get(f"{API}/tenants/{tenant_id}", headers=world.admin.headers)
    state: str = resp.json()["state"]
    return state


# --- licence records ---------------------------------------------------------------------------
def test_licence_records_are_checked(world: World) -> None:
    h = world.operators["compliance_officer"].headers
    good = {
        "number": "B1.B2-20100266",
        "service_codes": ["B13", "B25"],
        "issuing_authority": "Ministry of Industry and Information Technology",
        "provinces": ["nationwide"],
        "valid_from": "2026-01-01",
        "valid_to": "2031-01-01",
    }
    made = world.client.post(f"{API}/operator/licences", json=good, headers=h)
    assert made.status_code == 201, made.text
    assert made.json()["provinces"] == ["*"]

    def refused(fields: str, **changes: Any) -> dict[str, str]:
        resp = world.client.post(
            f"{API}/operator/licences",
            json={**good, "number": "B1.B2-20100267", **changes},
            headers=h,
        )
        assert resp.status_code == 422, resp.text
        got: dict[str, str] = resp.json()["error"]["fields"]
        assert fields in got, got
        return got

    assert "looks like" in refused("number", number="B1.B2-2010026")["number"]
    assert "prefix" in refused("number", number="中B1-20100266")["number"]
    assert "service code" in refused("number", number="Q1-20100266")["number"]
    assert "catalogue" in refused("service_codes.0", service_codes=["B99"])["service_codes.0"]
    assert "classes" in refused("service_codes.0", number="B2-20100267")["service_codes.0"]
    assert "GB/T 2260" in refused("provinces.0", provinces=["99"])["provinces.0"]
    assert "Beijing (11) only" in refused("provinces", number="京B1-20100267")["provinces"]
    assert (
        "MIIT"
        in refused("issuing_authority", issuing_authority="上海市通信管理局")["issuing_authority"]
    )
    assert "5 years" in refused("valid_to", valid_to="2031-01-02")["valid_to"]
    resp = world.client.post(
        f"{API}/operator/licences",
        json={**good, "number": "B1-20100268", "valid_to": "2032-01-01"},
        headers=h,
    )
    assert "rule licence.validity" in resp.json()["error"]["message"]
    # The same checks on update, against the stored number.
    item = f"{API}/operator/licences/{made.json()['id']}"
    resp = world.client.patch(item, json={"service_codes": ["A11"]}, headers=h)
    assert resp.status_code == 422
    assert "service_codes.0" in resp.json()["error"]["fields"]
    resp = world.client.patch(item, json={"valid_to": "2032-01-01"}, headers=h)
    assert resp.status_code == 422
    assert "valid_to" in resp.json()["error"]["fields"]
    assert world.client.get(item, headers=h).json()["valid_to"] == "2031-01-01"


def test_expiry_warnings_on_the_api_and_dashboard(world: World) -> None:
    h = world.operators["compliance_officer"].headers
    made = {}
    for n, days in enumerate((100, 90, 30, 7, 0)):
        end = today() + timedelta(days=days)
        resp = world.client.post(
            f"{API}/operator/licences",
            json={
                "number": f"B2-2022{n:04d}",
                "service_codes": ["B21"],
                "issuing_authority": "MIIT",
                "provinces": ["11"],
                "valid_from": (end - timedelta(days=1000)).isoformat(),
                "valid_to": end.isoformat(),
            },
            headers=h,
        )
        assert resp.status_code == 201, resp.text
        made[days] = resp.json()
        assert resp.json()["days_to_expiry"] == days
        assert resp.json()["status"] == "valid"
    assert [made[d]["expiry_warning_days"] for d in (100, 90, 30, 7, 0)] == [None, 90, 30, 7, 7]

    clerk = world.operators["billing_clerk"].headers
    status = world.client.get(f"{API}/operator/compliance", headers=clerk)
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["today"] == today().isoformat()
    assert body["rules_version"]
    warned = {w["number"]: w for w in body["warnings"]}
    assert set(warned) == {made[d]["number"] for d in (90, 30, 7, 0)}
    assert warned[made[30]["number"]]["warning_days"] == 30
    assert "expires on" in warned[made[7]["number"]]["message"]
    assert body["problems"] == []
    assert body["covered_provinces"] == ["*"]
    assert body["ownership"]["foreign_percent"] == "49.00"
    assert body["ownership"]["foreign_cap"] == "at most 50%"
    assert (
        world.client.get(f"{API}/operator/compliance", headers=world.a.admin.headers).status_code
        == 403
    )

    # Past its last day a licence is expired: no warning, but a problem if it was the B13 one.
    only_licence(world, None)
    past = today() - timedelta(days=1)
    resp = world.client.post(
        f"{API}/operator/licences",
        json={
            "number": "B1-20170001",
            "service_codes": ["B13"],
            "issuing_authority": "MIIT",
            "provinces": ["*"],
            "valid_from": (past - timedelta(days=1000)).isoformat(),
            "valid_to": past.isoformat(),
        },
        headers=h,
    )
    assert resp.json()["status"] == "expired"
    assert resp.json()["expiry_warning_days"] is None
    body = world.client.get(f"{API}/operator/compliance", headers=clerk).json()
    assert body["warnings"] == []
    assert [p["rule"] for p in body["problems"]] == ["licence.validity"]
    assert body["covered_provinces"] == []


# --- refusals ----------------------------------------------------------------------------------
@both_stores
def test_no_b13_licence_refuses_tenants_pops_and_sites(world: World) -> None:
    only_licence(world, {**BEIJING_LICENCE, "number": "京B2-20180001", "service_codes": ["B21"]})
    fields = refusal(move(world, world.a.id, "under_review", "approved"), "licence.b13_required")
    assert "no licence for B13" in fields["state"]
    assert tenant_state(world, world.a.id) == "under_review"  # nothing half-written

    fields = refusal(pop(world, "bj-1", "CN-BJ"), "licence.b13_required")
    assert "state" in fields
    abroad = refusal(pop(world, "fra-1", "DE-FRA"), "licence.b13_required")
    assert "state" in abroad
    parked = pop(world, "bj-2", "CN-BJ", state="disabled")
    assert parked.status_code == 201, parked.text
    item = f"{API}/pops/{parked.json()['id']}"
    refusal(
        world.client.patch(item, json={"state": "active"}, headers=world.admin.headers),
        "licence.b13_required",
    )
    assert world.client.get(item, headers=world.admin.headers).json()["state"] == "disabled"
    names = [
        p["name"]
        for p in world.client.get(f"{API}/pops", headers=world.admin.headers).json()["data"]
    ]
    assert names == ["bj-2"]

    status = world.client.get(f"{API}/operator/compliance", headers=world.admin.headers).json()
    assert "licence.b13_required" in [p["rule"] for p in status["problems"]]


@both_stores
def test_an_expired_licence_covers_nothing(world: World) -> None:
    lic = licences(world)[0]
    h = world.operators["compliance_officer"].headers
    end = today() - timedelta(days=1)
    resp = world.client.patch(
        f"{API}/operator/licences/{lic['id']}",
        json={"valid_from": (end - timedelta(days=1800)).isoformat(), "valid_to": end.isoformat()},
        headers=h,
    )
    assert resp.status_code == 200, resp.text
    fields = refusal(move(world, world.a.id, "under_review", "approved"), "licence.validity")
    assert f"expired on {end.isoformat()}" in fields["state"]
    refusal(pop(world, "bj-1", "CN-BJ"), "licence.validity")

    # Renewed (valid from today): service may start again.
    resp = world.client.patch(
        f"{API}/operator/licences/{lic['id']}",
        json={
            "valid_to": (today() + timedelta(days=1000)).isoformat(),
            "valid_from": today().isoformat(),
        },
        headers=h,
    )
    assert resp.status_code == 200, resp.text
    assert move(world, world.a.id, "approved", "active").status_code == 200
    assert pop(world, "bj-1", "CN-BJ").status_code == 201


@both_stores
def test_regions_the_licence_does_not_cover_are_refused(world: World) -> None:
    only_licence(world, BEIJING_LICENCE)
    # Tenant A is in Beijing (110000); tenant B in Shenzhen (440300).
    assert move(world, world.a.id, "under_review", "approved", "active").status_code == 200
    fields = refusal(move(world, world.b.id, "under_review", "approved"), "licence.region_covered")
    assert "Guangdong (44)" in fields["state"] and "Beijing (11)" in fields["state"]
    assert tenant_state(world, world.b.id) == "under_review"

    assert pop(world, "bj-1", "CN-BJ").status_code == 201
    assert pop(world, "fra-1", "DE-FRA").status_code == 201  # abroad: a valid B13 licence
    fields = refusal(pop(world, "sh-1", "CN-SH"), "licence.region_covered")
    assert "Shanghai (31)" in fields["region"]
    refusal(pop(world, "cn-x", "CN-NORTH"), "licence.region_covered")

    # Moving an active PoP out of the area is refused too.
    bj = world.client.get(f"{API}/pops", params={"region": "CN-BJ"}, headers=world.admin.headers)
    item = f"{API}/pops/{bj.json()['data'][0]['id']}"
    resp = world.client.patch(item, json={"region": "CN-GD"}, headers=world.admin.headers)
    assert "Guangdong" in refusal(resp, "licence.region_covered")["region"]
    assert world.client.get(item, headers=world.admin.headers).json()["region"] == "CN-BJ"

    status = world.client.get(f"{API}/operator/compliance", headers=world.admin.headers).json()
    assert status["covered_provinces"] == ["11"]
    assert status["problems"] == []


def site_ready(world: World, site: dict[str, Any]) -> None:
    """Let the site's networks be routed when a declared-networks review is in place."""
    approve = getattr(world, "approve_site", None)
    if approve is not None:
        approve(site)


@both_stores
def test_sites_in_uncovered_regions_are_refused(world: World) -> None:
    only_licence(world, BEIJING_LICENCE)
    assert move(world, world.a.id, "under_review", "approved", "active").status_code == 200
    sh = pop(world, "sh-1", "CN-SH", state="disabled").json()
    fra = pop(world, "fra-1", "DE-FRA").json()
    h = world.a.admin.headers
    base = f"{API}/tenants/{world.a.id}/sites"

    def site(name: str, country: str, pop_id: str | None, prefix: str) -> dict[str, Any]:
        resp = world.client.post(
            base,
            json={
                "name": name,
                "country": country,
                "purpose": "office" if country == "CN" else "hq",
                "pop_id": pop_id,
                "prefixes": [prefix],
            },
            headers=h,
        )
        assert resp.status_code == 201, resp.text
        made: dict[str, Any] = resp.json()
        site_ready(world, made)
        return made

    def activate(made: dict[str, Any]) -> httpx.Response:
        return world.client.patch(
            f"{base}/{made['id']}", json={"state": "active"}, headers=world.admin.headers
        )

    shanghai_office = site("sh-office", "CN", sh["id"], "198.18.1.0/24")
    fields = refusal(activate(shanghai_office), "licence.region_covered")
    assert "Shanghai (31)" in fields["state"]
    beijing_office = site("bj-office", "CN", None, "198.18.2.0/24")  # the tenant's province
    assert activate(beijing_office).status_code == 200
    hq = site("hq", "DE", fra["id"], "198.18.3.0/24")
    assert activate(hq).status_code == 200
    # An active site moved to a PoP outside the area is refused.
    resp = world.client.patch(
        f"{base}/{beijing_office['id']}", json={"pop_id": sh["id"]}, headers=world.admin.headers
    )
    refusal(resp, "licence.region_covered")


@both_stores
def test_the_foreign_stake_cap_and_a_complete_register(world: World) -> None:
    h = world.operators["compliance_officer"].headers
    holders = world.client.get(f"{API}/operator/shareholders", headers=h).json()["data"]
    domestic = next(x for x in holders if not x["foreign"])
    foreign = next(x for x in holders if x["foreign"])
    resp = world.client.patch(
        f"{API}/operator/shareholders/{domestic['id']}", json={"stake_percent": "48"}, headers=h
    )
    assert resp.status_code == 200
    fields = refusal(move(world, world.a.id, "under_review", "approved"), "ownership.foreign_cap")
    assert "add up to 97.00%" in fields["state"]
    refusal(pop(world, "fra-1", "DE-FRA"), "ownership.foreign_cap")

    resp = world.client.patch(
        f"{API}/operator/shareholders/{foreign['id']}", json={"stake_percent": "52"}, headers=h
    )
    assert resp.status_code == 200
    fields = refusal(move(world, world.a.id, "approved"), "ownership.foreign_cap")
    assert "foreign stake is 52.00%" in fields["state"]
    assert "at most 50%" in fields["state"]
    status = world.client.get(f"{API}/operator/compliance", headers=h).json()
    assert status["ownership"]["foreign_percent"] == "52.00"
    assert "ownership.foreign_cap" in [p["rule"] for p in status["problems"]]

    # 50% foreign is at the cap, not over it.
    world.client.patch(
        f"{API}/operator/shareholders/{foreign['id']}", json={"stake_percent": "50"}, headers=h
    )
    world.client.patch(
        f"{API}/operator/shareholders/{domestic['id']}", json={"stake_percent": "50"}, headers=h
    )
    assert move(world, world.a.id, "approved", "active").status_code == 200


def test_the_dashboard_lists_service_the_licences_no_longer_cover(world: World) -> None:
    assert move(world, world.b.id, "under_review", "approved", "active").status_code == 200
    assert pop(world, "sh-1", "CN-SH").status_code == 201
    lic = licences(world)[0]
    resp = world.client.patch(
        f"{API}/operator/licences/{lic['id']}",
        json={"provinces": ["11"]},
        headers=world.operators["compliance_officer"].headers,
    )
    # A nationwide licence's number has no prefix, so narrowing it is a valid record.
    assert resp.status_code == 200, resp.text
    status = world.client.get(f"{API}/operator/compliance", headers=world.admin.headers).json()
    messages = [p["message"] for p in status["problems"] if p["rule"] == "licence.region_covered"]
    assert any("'Tenant B'" in m and "Guangdong (44)" in m for m in messages), messages
    assert any("sh-1" in m and "Shanghai" in m for m in messages), messages
