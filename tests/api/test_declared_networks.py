"""Declared networks and cross-border links, through the API, on SQLite and PostgreSQL.

Rules (tongdao.compliance.rules): ``network.declared_only`` (only approved declarations are
routed), ``network.no_default_or_public`` (default routes, public prefixes, other tenants'
overlay refused unless an operator allowance covers them), ``crossborder.registered_link``
(an active cross-border link carries its approval reference). Each refusal is a 409 whose
message names the rule and its source; format errors stay 422.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.api.test_gateway import activate, enrol, make_pop, state
from tests.conftest import both_stores
from tests.support.crossborder import authorise_abroad
from tests.support.world import World
from tongdao.compliance.rules import rule
from tongdao.store import migrate
from tongdao.testing.keys import public_key

API = "/api/v1"


def refused(resp: Any, rule_id: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    """Assert a 409 naming the rule and its source; the error body."""
    assert resp.status_code == 409, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == "compliance_refused", error
    r = rule(rule_id)
    assert f"rule {rule_id}:" in error["message"], error["message"]
    assert f"source: {r.source}" in error["message"], error["message"]
    if fields is not None:
        for key, fragment in fields.items():
            assert fragment in error["fields"].get(key, ""), error["fields"]
    return error


def new_site(world: World, tenant: str, prefixes: list[str], name: str = "hq", **extra: Any) -> Any:
    t = world.a if tenant == "a" else world.b
    return world.client.post(
        f"{API}/tenants/{t.id}/sites",
        json={"name": name, "country": "DE", "purpose": "hq", "prefixes": prefixes, **extra},
        headers=t.admin.headers,
    )


def decide(
    world: World, decl_id: str, verb: str, role: str = "compliance_officer", **body: Any
) -> Any:
    return world.client.post(
        f"{API}/declarations/{decl_id}/{verb}", json=body, headers=world.actor(role).headers
    )


def site_url(world: World, site: dict[str, Any]) -> str:
    return f"{API}/tenants/{site['tenant_id']}/sites/{site['id']}"


def get_site(world: World, site: dict[str, Any]) -> dict[str, Any]:
    resp = world.client.get(site_url(world, site), headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def allowance(world: World, tenant_id: Any, cidr: str, **extra: Any) -> Any:
    return world.client.post(
        f"{API}/tenants/{tenant_id}/prefix-allowances",
        json={"cidr": cidr, "reason": "contract clause 7: full tunnel for the finance team"}
        | extra,
        headers=world.admin.headers,
    )


# --- network.declared_only ----------------------------------------------------------------------
@both_stores
def test_only_approved_declarations_are_routed(world: World) -> None:
    pop = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    resp = new_site(
        world,
        "a",
        ["198.18.20.0/24", "fd00:20::/64", "192.0.2.0/25"],
        pop_id=pop,
        connector_public_key=public_key(),
    )
    assert resp.status_code == 201, resp.text
    site = resp.json()
    assert site["prefixes"] == ["192.0.2.0/25", "198.18.20.0/24", "fd00:20::/64"]
    assert site["approved_prefixes"] == []
    assert {d["state"] for d in site["declarations"]} == {"pending"}
    by_cidr = {d["cidr"]: d["id"] for d in site["declarations"]}

    # Not activated with nothing approved.
    activation = world.client.patch(
        site_url(world, site), json={"state": "active"}, headers=world.admin.headers
    )
    refused(activation, "network.declared_only", {"state": "no approved prefix"})
    assert get_site(world, site)["state"] == "pending"

    # The compliance officer's queue; the declaration records purpose and country.
    queue = world.client.get(
        f"{API}/declarations",
        params={"state": "pending", "tenant_id": str(world.a.id)},
        headers=world.operators["compliance_officer"].headers,
    ).json()
    assert queue["count"] == 3
    assert {(d["cidr"], d["purpose"], d["country"]) for d in queue["data"]} == {
        ("198.18.20.0/24", "hq", "DE"),
        ("fd00:20::/64", "hq", "DE"),
        ("192.0.2.0/25", "hq", "DE"),
    }

    # Only a compliance officer decides: not the operator admin, not the tenant.
    v4 = by_cidr["198.18.20.0/24"]
    assert decide(world, v4, "approve", "operator_admin").status_code == 403
    assert decide(world, v4, "approve", "tenant_admin").status_code == 403
    assert decide(world, v4, "approve", "auditor").status_code == 403
    approved = decide(world, v4, "approve", reason="HQ LAN, contract 2026-17")
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["state"] == "approved"
    assert body["decided_by"] == str(world.operators["compliance_officer"].user_id)
    assert body["decided_at"] is not None
    assert decide(world, v4, "approve").status_code == 409  # already approved
    assert decide(world, by_cidr["fd00:20::/64"], "approve").status_code == 200

    # A rejection needs its reason; the rejected prefix is never routed.
    v4b = by_cidr["192.0.2.0/25"]
    no_reason = decide(world, v4b, "reject")
    assert no_reason.status_code == 422
    assert "reason" in no_reason.json()["error"]["fields"]
    assert decide(world, v4b, "reject", reason="  ").status_code == 422
    rejected = decide(world, v4b, "reject", reason="not an office network")
    assert rejected.status_code == 200, rejected.text

    site = get_site(world, site)
    assert site["approved_prefixes"] == ["198.18.20.0/24", "fd00:20::/64"]
    assert site["prefixes"] == ["198.18.20.0/24", "fd00:20::/64"]
    rejected_brief = next(d for d in site["declarations"] if d["cidr"] == "192.0.2.0/25")
    assert (rejected_brief["state"], rejected_brief["reason"]) == (
        "rejected",
        "not an office network",
    )

    activation = world.client.patch(
        site_url(world, site), json={"state": "active"}, headers=world.admin.headers
    )
    assert activation.status_code == 200, activation.text
    (peer,) = [p for p in state(world, gw).tenants[0].peers if p.kind == "site"]
    assert "198.18.20.0/24" in peer.allowed_ips
    assert "fd00:20::/64" in peer.allowed_ips
    assert "192.0.2.0/25" not in peer.allowed_ips

    # Withdrawing an approval takes the route away in the same change.
    assert decide(world, v4, "reject", reason="site closed").status_code == 200
    (peer,) = [p for p in state(world, gw).tenants[0].peers if p.kind == "site"]
    assert "198.18.20.0/24" not in peer.allowed_ips
    assert get_site(world, site)["approved_prefixes"] == ["fd00:20::/64"]

    # Decisions are audited with the officer as actor.
    events = world.client.get(
        f"{API}/audit/events",
        params={"object_id": v4, "limit": 50},
        headers=world.operators["auditor"].headers,
    ).json()["data"]
    updates = [e for e in events if e["action"] == "update"]
    assert len(updates) == 2
    assert {e["actor_id"] for e in updates} == {str(world.operators["compliance_officer"].user_id)}


def test_declarations_are_scoped_to_their_tenant(world: World) -> None:
    a_site = new_site(world, "a", ["198.18.30.0/24"]).json()
    b_site = new_site(world, "b", ["198.18.30.0/24"])  # the same private prefix: isolated
    assert b_site.status_code == 201, b_site.text
    a_decl = a_site["declarations"][0]["id"]
    b_decl = b_site.json()["declarations"][0]["id"]

    b_admin = world.b.admin.headers
    assert world.client.get(f"{API}/declarations/{a_decl}", headers=b_admin).status_code == 404
    assert decide(world, a_decl, "approve", "tenant_admin").status_code == 403
    resp = world.client.post(f"{API}/declarations/{a_decl}/approve", json={}, headers=b_admin)
    assert resp.status_code == 404
    listed = world.client.get(f"{API}/declarations", headers=b_admin).json()
    assert [d["id"] for d in listed["data"]] == [b_decl]
    own = world.client.get(f"{API}/declarations/{a_decl}", headers=world.a.admin.headers)
    assert own.status_code == 200
    assert (
        world.client.get(f"{API}/declarations", headers=world.a.employee.headers).status_code == 403
    )
    assert (
        world.client.get(
            f"{API}/declarations/{uuid.uuid4()}", headers=world.admin.headers
        ).status_code
        == 404
    )
    bad = world.client.get(
        f"{API}/declarations", params={"state": "maybe"}, headers=world.admin.headers
    )
    assert bad.status_code == 422


@both_stores
def test_overlapping_declarations_are_refused(world: World) -> None:
    first = new_site(world, "a", ["198.18.40.0/24"], name="office").json()
    clash = new_site(world, "a", ["198.51.100.0/24", "198.18.40.128/25"], name="lab")
    error = refused(
        clash,
        "network.declared_only",
        {"prefixes.1": "overlaps 198.18.40.0/24, declared for site 'office'"},
    )
    assert "prefixes.0" not in error["fields"]
    # Nothing of the refused site was written.
    sites = world.client.get(f"{API}/tenants/{world.a.id}/sites", headers=world.a.admin.headers)
    assert sites.json()["count"] == 1
    # Inside one request it is a 422, as before.
    same = new_site(world, "a", ["198.51.100.0/24", "198.51.100.0/25"], name="lab")
    assert same.status_code == 422
    # A rejected declaration no longer holds its prefix ...
    decl = first["declarations"][0]["id"]
    assert decide(world, decl, "reject", reason="duplicate of the lab").status_code == 200
    lab = new_site(world, "a", ["198.18.40.128/25"], name="lab")
    assert lab.status_code == 201, lab.text
    # ... and cannot be approved again while another declaration holds part of it.
    refused(decide(world, decl, "approve"), "network.declared_only", {"cidr": "overlaps"})


@both_stores
def test_changing_a_site_redeclares_its_prefixes(world: World) -> None:
    site = new_site(world, "a", ["198.18.50.0/24", "198.18.51.0/24"]).json()
    site = world.approve_site(site)
    assert site["approved_prefixes"] == ["198.18.50.0/24", "198.18.51.0/24"]
    url = site_url(world, site)
    h = world.a.admin.headers

    # Adding a prefix leaves the approved ones approved; the new one waits.
    resp = world.client.patch(
        url, json={"prefixes": ["198.18.50.0/24", "198.18.51.0/24", "198.18.52.0/24"]}, headers=h
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["approved_prefixes"] == ["198.18.50.0/24", "198.18.51.0/24"]
    assert resp.json()["prefixes"] == ["198.18.50.0/24", "198.18.51.0/24", "198.18.52.0/24"]
    # Dropping one withdraws it (and its route).
    resp = world.client.patch(url, json={"prefixes": ["198.18.50.0/24"]}, headers=h)
    assert resp.json()["approved_prefixes"] == ["198.18.50.0/24"]
    assert [d["cidr"] for d in resp.json()["declarations"]] == ["198.18.50.0/24"]
    # An approval is for the purpose and country declared: changing them re-declares.
    resp = world.client.patch(url, json={"country": "FR", "purpose": "office"}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["approved_prefixes"] == []
    (decl,) = resp.json()["declarations"]
    assert decl["state"] == "pending"
    full = world.client.get(f"{API}/declarations/{decl['id']}", headers=h).json()
    assert (full["country"], full["purpose"]) == ("FR", "office")
    # A rejected prefix declared again goes back to the queue.
    assert decide(world, decl["id"], "reject", reason="unclear").status_code == 200
    resp = world.client.patch(url, json={"prefixes": ["198.18.50.0/24"]}, headers=h)
    assert [d["state"] for d in resp.json()["declarations"]] == ["pending"]


def test_deleting_a_site_deletes_its_declarations(world: World) -> None:
    site = new_site(world, "a", ["198.18.60.0/24"]).json()
    decl = site["declarations"][0]["id"]
    assert (
        world.client.delete(site_url(world, site), headers=world.a.admin.headers).status_code == 204
    )
    assert (
        world.client.get(f"{API}/declarations/{decl}", headers=world.admin.headers).status_code
        == 404
    )
    events = world.client.get(
        f"{API}/audit/events", params={"object_id": decl}, headers=world.admin.headers
    ).json()["data"]
    assert [e["action"] for e in reversed(events)] == ["create", "delete"]


# --- network.no_default_or_public ------------------------------------------------------------
@both_stores
@pytest.mark.parametrize(
    ("prefix", "fragment"),
    [
        ("0.0.0.0/0", "is a default route"),
        ("::/0", "is a default route"),
        ("0.0.0.0/1", "a default route split in two"),
        ("128.0.0.0/1", "a default route split in two"),
        ("8000::/1", "a default route split in two"),
        ("8.8.8.0/24", "is public"),
        ("2400:cb00::/32", "is public"),
        ("172.0.0.0/11", "is public"),  # reaches beyond 172.16/12
        ("100.127.0.0/16", "the overlay range that holds other tenants' pools"),
    ],
)
def test_default_public_and_foreign_prefixes_are_refused(
    world: World, prefix: str, fragment: str
) -> None:
    resp = new_site(world, "a", ["198.18.70.0/24", prefix])
    refused(resp, "network.no_default_or_public", {"prefixes.1": fragment})
    assert (
        world.client.get(f"{API}/tenants/{world.a.id}/sites", headers=world.a.admin.headers).json()[
            "count"
        ]
        == 0
    )


def test_another_tenants_ipv6_pool_is_refused(world: World) -> None:
    b_pool = world.b.data["ipv6_pool"]
    resp = new_site(world, "a", [b_pool])
    refused(resp, "network.no_default_or_public", {"prefixes.0": "another tenant's overlay pool"})
    own = new_site(world, "a", [world.a.data["ipv6_pool"]])
    assert own.status_code == 422  # the tenant's own pool: invalid, as before


def test_private_documentation_and_benchmark_ranges_are_not_public(world: World) -> None:
    prefixes = [
        "10.20.0.0/16",
        "172.16.5.0/24",
        "192.168.10.0/24",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
        "fd12:3456::/32",
        "2001:db8:5::/48",
    ]
    resp = new_site(world, "a", prefixes)
    assert resp.status_code == 201, resp.text
    declared = resp.json()["prefixes"]
    assert len(declared) == len(prefixes)
    assert world.approve_site(resp.json())["approved_prefixes"] == declared


def test_format_errors_stay_422(world: World) -> None:
    for bad, fragment in (("not-a-prefix", "not an IP prefix"), ("8.8.8.1/24", "host bits")):
        resp = new_site(world, "a", [bad])
        assert resp.status_code == 422
        assert fragment in resp.json()["error"]["fields"]["prefixes.0"]
    resp = allowance(world, world.a.id, "198.51.100.0")
    assert resp.status_code == 422
    assert "cidr" in resp.json()["error"]["fields"]


@both_stores
def test_an_operator_allowance_lets_a_tenant_declare_a_public_prefix(world: World) -> None:
    # Only the operator admin grants one; the tenant sees its own, not another's.
    denied = world.client.post(
        f"{API}/tenants/{world.a.id}/prefix-allowances",
        json={"cidr": "8.8.8.0/24", "reason": "x"},
        headers=world.operators["compliance_officer"].headers,
    )
    assert denied.status_code == 403
    made = allowance(world, world.a.id, "8.8.8.0/24")
    assert made.status_code == 201, made.text
    grant = made.json()
    assert allowance(world, world.a.id, "8.8.8.0/24").status_code == 409  # duplicate
    item = f"{API}/tenants/{world.a.id}/prefix-allowances/{grant['id']}"
    assert world.client.get(item, headers=world.a.admin.headers).status_code == 200
    assert world.client.get(item, headers=world.b.admin.headers).status_code == 404
    assert (
        world.client.post(
            f"{API}/tenants/{world.a.id}/prefix-allowances",
            json={"cidr": "8.8.4.0/24", "reason": "mine"},
            headers=world.a.admin.headers,
        ).status_code
        == 403
    )

    # Covered for tenant A only.
    resp = new_site(world, "a", ["8.8.8.0/25"])
    assert resp.status_code == 201, resp.text
    site = world.approve_site(resp.json())
    assert site["approved_prefixes"] == ["8.8.8.0/25"]
    refused(new_site(world, "b", ["8.8.8.0/25"]), "network.no_default_or_public")
    refused(new_site(world, "a", ["8.8.0.0/16"], name="wider"), "network.no_default_or_public")

    # The allowance stays while a declaration needs it; then it can go, audited.
    in_use = world.client.delete(item, headers=world.admin.headers)
    assert in_use.status_code == 409
    assert "8.8.8.0/25 of site 'hq'" in in_use.json()["error"]["message"]
    assert (
        world.client.delete(site_url(world, site), headers=world.a.admin.headers).status_code == 204
    )
    assert world.client.delete(item, headers=world.admin.headers).status_code == 204
    events = world.client.get(
        f"{API}/audit/events",
        params={"object_type": "prefix_allowance"},
        headers=world.admin.headers,
    ).json()["data"]
    assert {e["action"] for e in events} == {"create", "delete"}
    # An allowed default route: HQ is the tenant's Internet exit; its LANs stay declared
    # alongside (the more specific route wins), the same prefix twice still collides.
    assert allowance(world, world.a.id, "0.0.0.0/0").status_code == 201
    exit_site = new_site(world, "a", ["0.0.0.0/0"], name="hq-exit")
    assert exit_site.status_code == 201, exit_site.text
    assert new_site(world, "a", ["198.18.71.0/24"], name="office").status_code == 201
    refused(new_site(world, "a", ["0.0.0.0/0"], name="twice"), "network.declared_only")
    assert world.approve_site(exit_site.json())["approved_prefixes"] == ["0.0.0.0/0"]
    refused(new_site(world, "b", ["0.0.0.0/0"]), "network.no_default_or_public")
    # A tenant with allowances is not deleted from under them.
    allowance(world, world.b.id, "0.0.0.0/0")
    gone = world.client.delete(f"{API}/tenants/{world.b.id}", headers=world.admin.headers)
    assert gone.status_code == 409


# --- access rules naming prefixes ---------------------------------------------------------------
@both_stores
def test_policy_prefixes_must_be_declared_or_allowed(world: World) -> None:
    h = world.a.admin.headers
    base = f"{API}/tenants/{world.a.id}/policies"
    source = [{"kind": "user", "id": str(world.a.employee.user_id)}]

    def policy(name: str, *cidrs: str) -> Any:
        dests = [{"kind": "prefix", "cidr": c} for c in cidrs]
        return world.client.post(
            base,
            json={"name": name, "rules": [{"sources": source, "destinations": dests}]},
            headers=h,
        )

    pool = world.a.data["ipv4_pool"]
    assert policy("pool", pool, world.a.data["ipv6_pool"]).status_code == 201

    field = "rules.0.destinations.1.cidr"
    refused(
        policy("hq", pool, "198.18.80.0/24"),
        "network.declared_only",
        {field: "nor in an approved declaration"},
    )
    site = new_site(world, "a", ["198.18.80.0/25", "198.18.80.128/25"]).json()
    refused(policy("hq", pool, "198.18.80.0/24"), "network.declared_only")  # pending only
    world.approve_site(site)
    assert policy("hq", pool, "198.18.80.0/24").status_code == 201  # two approved halves
    assert policy("hq-web", "198.18.80.64/26").status_code == 201

    for cidr, fragment in (
        ("0.0.0.0/0", "is a default route"),
        ("8.8.8.8/32", "is public"),
        (world.b.data["ipv4_pool"], "other tenants' pools"),
    ):
        refused(
            policy("out", pool, cidr),
            "network.no_default_or_public",
            {field: fragment},
        )

    # An operator allowance for a full tunnel; it cannot go while the policy names it.
    grant = allowance(world, world.a.id, "0.0.0.0/0").json()
    full = policy("full tunnel", "0.0.0.0/0")
    assert full.status_code == 201, full.text
    item = f"{API}/tenants/{world.a.id}/prefix-allowances/{grant['id']}"
    in_use = world.client.delete(item, headers=world.admin.headers)
    assert in_use.status_code == 409
    assert "0.0.0.0/0 in policy 'full tunnel'" in in_use.json()["error"]["message"]

    # An update that breaks the rules changes nothing.
    url = f"{base}/{full.json()['id']}"
    bad = {"rules": [{"sources": source, "destinations": [{"kind": "prefix", "cidr": "::/0"}]}]}
    refused(world.client.patch(url, json=bad, headers=h), "network.no_default_or_public")
    kept = world.client.get(url, headers=h).json()
    assert kept["rules"][0]["destinations"] == [{"kind": "prefix", "cidr": "0.0.0.0/0"}]


# --- crossborder.registered_link ------------------------------------------------------------------
@both_stores
def test_cross_border_link_needs_its_approval_reference(world: World) -> None:
    h = world.admin.headers
    bj = make_pop(world, "bj")
    sh = make_pop(world, "sh", region="CN-SH", host="198.51.100.11")
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    hk = make_pop(world, "hk", region="HK-HK", host="203.0.113.21")
    link = {
        "name": "bj-fra",
        "pop_a_id": bj,
        "pop_b_id": fra,
        "circuit_ref": "CU-IPLC-1",
        "capacity_mbps": 100,
    }
    error = refused(
        world.client.post(f"{API}/links", json=link, headers=h),
        "crossborder.registered_link",
        {"approval_ref": "required"},
    )
    assert "bj (CN) and fra (DE)" in error["message"]
    refused(
        world.client.post(
            f"{API}/links", json={**link, "name": "bj-hk", "pop_b_id": hk}, headers=h
        ),
        "crossborder.registered_link",
    )
    assert world.client.get(f"{API}/links", headers=h).json()["count"] == 0
    blank = world.client.post(f"{API}/links", json={**link, "approval_ref": "  "}, headers=h)
    assert blank.status_code == 422

    # Recorded disabled until approved; not activated without the approval.
    made = world.client.post(f"{API}/links", json={**link, "state": "disabled"}, headers=h)
    assert made.status_code == 201, made.text
    item = f"{API}/links/{made.json()['id']}"
    refused(
        world.client.patch(item, json={"state": "active"}, headers=h),
        "crossborder.registered_link",
    )

    # The site behind FRA is out of reach, and the API says which rule is missing.
    activate(world, world.a.id)
    site = new_site(world, "a", ["198.18.90.0/24"], pop_id=fra).json()
    paths_url = site_url(world, site) + "/paths"
    (path,) = [p for p in world.client.get(paths_url, headers=h).json() if p["from_pop"] == "bj"]
    assert path["up"] is False
    assert "rule crossborder.registered_link" in path["reason"]

    approval = "工信部国际〔2026〕21号"
    resp = world.client.patch(item, json={"state": "active", "approval_ref": approval}, headers=h)
    assert resp.status_code == 200, resp.text
    # The link is registered; the tenant still needs its own cross-border authorisation
    # (rule crossborder.tenant_authorised), and /paths names the step that is missing.
    (path,) = [p for p in world.client.get(paths_url, headers=h).json() if p["from_pop"] == "bj"]
    assert path["up"] is False and path["crossborder_step"] == "none"
    authorise_abroad(world, [site["id"]], made.json()["id"])
    (path,) = [p for p in world.client.get(paths_url, headers=h).json() if p["from_pop"] == "bj"]
    assert (path["up"], path["approval_ref"]) == (True, approval)
    # Clearing the approval of an active crossing is refused.
    refused(
        world.client.patch(item, json={"approval_ref": None}, headers=h),
        "crossborder.registered_link",
    )
    assert world.client.get(item, headers=h).json()["approval_ref"] == approval

    # A domestic link needs no international approval; moving one end abroad then does.
    domestic = world.client.post(
        f"{API}/links",
        json={**link, "name": "bj-sh", "pop_b_id": sh, "circuit_ref": "CU-MPLS-2"},
        headers=h,
    )
    assert domestic.status_code == 201, domestic.text
    assert domestic.json()["approval_ref"] is None
    moved = world.client.patch(
        f"{API}/pops/{sh}", json={"region": "JP-TYO", "country": "JP"}, headers=h
    )
    refused(moved, "crossborder.registered_link", {"country": "cross the border"})
    assert world.client.get(f"{API}/pops/{sh}", headers=h).json()["country"] == "CN"


# --- the migration carries routed prefixes over ---------------------------------------------------
@both_stores
def test_migration_keeps_what_is_routed(world: World, store_url: str) -> None:
    site = new_site(world, "a", ["198.18.7.0/24", "fd00:77::/64"]).json()
    routed = site["declarations"][0]["id"]  # 198.18.7.0/24
    assert decide(world, routed, "approve").status_code == 200
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    bj = make_pop(world, "bj")
    link = world.client.post(
        f"{API}/links",
        json={
            "name": "bj-fra",
            "pop_a_id": bj,
            "pop_b_id": fra,
            "circuit_ref": "CU-1",
            "capacity_mbps": 10,
            "state": "disabled",
        },
        headers=world.admin.headers,
    )
    assert link.status_code == 201, link.text
    world.runtime.db.dispose()

    # Down: sites keep their routed (approved) prefixes; a missing approval becomes ''.
    migrate.downgrade(store_url, "0005_identity_and_consent")
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert not {"prefix_declarations", "prefix_allowances"} & tables
            assert conn.execute(text("SELECT approval_ref FROM links")).scalar_one() == ""
            prefixes = conn.execute(text("SELECT prefixes FROM sites")).scalar_one()
        assert (json.loads(prefixes) if isinstance(prefixes, str) else prefixes) == [
            "198.18.7.0/24"
        ]
        # Up: what was routed comes back as approved declarations, marked carried over.
        migrate.upgrade(store_url)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT cidr, state, purpose, country, reason FROM prefix_declarations")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r[:4]) for r in rows] == [("198.18.7.0/24", "approved", "hq", "DE")]
    assert "migration 0006" in rows[0][4]
    after = get_site(world, site)
    assert after["approved_prefixes"] == ["198.18.7.0/24"]
    assert [(d["cidr"], d["state"]) for d in after["declarations"]] == [
        ("198.18.7.0/24", "approved")
    ]
