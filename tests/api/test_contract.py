"""The same contract for every resource, on SQLite and PostgreSQL.

create → get → list (count, pagination by cursor, a filter) → update → delete → 404; another
tenant's admin gets 404 on each item operation; a read-only role gets 403 on create.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import both_stores
from tests.support.world import USCC_C, World, uscc_for
from tongdao.testing.keys import public_key

Body = Callable[[World, int], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # "{t}" is tenant A's id
    create: Body
    update: dict[str, Any]
    filter: tuple[str, str] | None = None  # (query, field) whose value the first object has
    tenant_scoped: bool = True
    actor: str = "tenant_admin"


def _pop(w: World, i: int) -> dict[str, Any]:
    return {
        "name": f"pop-{i}",
        "region": "CN-BJ",
        "country": "CN",
        "endpoint_host": f"198.51.100.{i + 1}",
    }


def _link_pops(w: World, i: int) -> dict[str, Any]:
    ids = []
    for j in (2 * i, 2 * i + 1):
        resp = w.client.post("/api/v1/pops", json=_pop(w, 50 + j), headers=w.admin.headers)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    return {
        "name": f"link-{i}",
        "pop_a_id": ids[0],
        "pop_b_id": ids[1],
        "circuit_ref": f"CIRCUIT-{i}",
        "approval_ref": f"工信部-2026-{i}",
        "capacity_mbps": 100,
    }


CASES = [
    Case(
        "users",
        "/tenants/{t}/users",
        lambda w, i: {"email": f"user{i}@a.example", "display_name": f"User {i}"},
        {"display_name": "Renamed"},
        ("email", "email"),
    ),
    Case(
        "groups",
        "/tenants/{t}/groups",
        lambda w, i: {"name": f"group-{i}", "member_ids": [str(w.a.employee.user_id)]},
        {"description": "changed"},
        ("name", "name"),
    ),
    Case(
        "devices",
        "/tenants/{t}/devices",
        lambda w, i: {
            "name": f"dev-{i}",
            "public_key": public_key(),
            "user_id": str(w.a.employee.user_id),
        },
        {"name": "renamed"},
        ("public_key", "public_key"),
    ),
    Case(
        "sites",
        "/tenants/{t}/sites",
        lambda w, i: {
            "name": f"site-{i}",
            "country": "DE",
            "purpose": "hq",
            "prefixes": [f"198.18.{i}.0/24", f"fd00:{i + 1}::/64"],
        },
        # prefixes become pending declarations (their own audited objects); purpose is the
        # site row's own change
        {"purpose": "datacenter", "prefixes": ["203.0.113.0/25"]},
        ("purpose", "purpose"),
    ),
    Case(
        "policies",
        "/tenants/{t}/policies",
        lambda w, i: {
            "name": f"policy-{i}",
            "rules": [
                {
                    "sources": [{"kind": "user", "id": str(w.a.employee.user_id)}],
                    # inside the tenant's pool: needs no declaration (network.declared_only)
                    "destinations": [{"kind": "prefix", "cidr": w.a.data["ipv4_pool"]}],
                    "protocol": "tcp",
                    "ports": ["443", "8000-8100"],
                }
            ],
        },
        {"enabled": False},
        ("name", "name"),
    ),
    Case(
        "pops",
        "/pops",
        _pop,
        {"state": "draining"},
        ("region", "region"),
        tenant_scoped=False,
        actor="operator_admin",
    ),
    Case(
        "links",
        "/links",
        _link_pops,
        {"capacity_mbps": 1000},
        ("state", "state"),
        tenant_scoped=False,
        actor="operator_admin",
    ),
    Case(
        "tenants",
        "/tenants",
        lambda w, i: {"name_en": f"Extra {i}", "uscc": USCC_C if i == 0 else uscc_for(i)},
        {"contact_name": "王经理"},
        ("uscc", "uscc"),
        tenant_scoped=False,
        actor="compliance_officer",
    ),
    Case(
        "licences",
        "/operator/licences",
        lambda w, i: {
            "number": f"B1.B2-2026000{i}",
            "service_codes": ["B13"],
            "issuing_authority": "工业和信息化部",
            "provinces": ["11"],
            "valid_from": "2026-01-01",
            "valid_to": "2031-01-01",
        },
        {"provinces": ["11", "31"]},
        None,
        tenant_scoped=False,
        actor="operator_admin",
    ),
    Case(
        "shareholders",
        "/operator/shareholders",
        lambda w, i: {"name": f"Holder {i}", "foreign": i % 2 == 0, "stake_percent": "30"},
        {"stake_percent": "25.5"},
        None,
        tenant_scoped=False,
        actor="operator_admin",
    ),
    Case(
        "staff",
        "/operator/staff",
        lambda w, i: {
            "email": f"noc{i}@operator.example",
            "display_name": f"NOC {i}",
            "roles": ["auditor"],
        },
        {"roles": ["billing_clerk"]},
        ("email", "email"),
        tenant_scoped=False,
        actor="operator_admin",
    ),
]


@both_stores
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_resource_contract(world: World, case: Case) -> None:
    client = world.client
    actor = world.actor(case.actor, "a")
    base = "/api/v1" + case.path.replace("{t}", str(world.a.id))
    if case.name == "shareholders":
        world.clear_shareholders()  # the world's register is full (100%)

    created = []
    for i in range(3):
        resp = client.post(base, json=case.create(world, i), headers=actor.headers)
        assert resp.status_code == 201, resp.text
        created.append(resp.json())
    first = created[0]
    item = f"{base}/{first['id']}"

    resp = client.get(item, headers=actor.headers)
    assert resp.status_code == 200
    assert resp.json() == first

    listed = client.get(base, headers=actor.headers).json()
    ids = {obj["id"] for obj in created}
    assert ids <= {obj["id"] for obj in listed["data"]}
    assert listed["count"] == len(listed["data"])

    # Cursor pagination walks every object once, in creation order.
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = client.get(base, params=params, headers=actor.headers).json()
        seen += [obj["id"] for obj in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == listed["count"] == len(set(seen))
    assert [i for i in seen if i in ids] == [obj["id"] for obj in created]

    if case.filter:
        query, field = case.filter
        page = client.get(base, params={query: first[field]}, headers=actor.headers).json()
        assert first["id"] in {obj["id"] for obj in page["data"]}
        assert all(obj[field] == first[field] for obj in page["data"])

    resp = client.patch(item, json=case.update, headers=actor.headers)
    assert resp.status_code == 200, resp.text
    for key, value in case.update.items():
        got = resp.json()[key]
        assert got == value or str(got) == str(value) or float(got) == float(value)
    assert client.get(item, headers=actor.headers).json()["updated_at"] >= first["updated_at"]

    if case.tenant_scoped:
        other = world.b.admin.headers
        assert client.get(item, headers=other).status_code == 404
        assert client.patch(item, json=case.update, headers=other).status_code == 404
        assert client.delete(item, headers=other).status_code == 404
        assert client.get(base, headers=other).status_code == 404
        assert client.post(base, json=case.create(world, 9), headers=other).status_code == 404
    auditor = world.operators["auditor"].headers
    assert client.get(item, headers=auditor).status_code == 200
    assert client.post(base, json=case.create(world, 8), headers=auditor).status_code == 403
    assert client.delete(item, headers=auditor).status_code == 403

    resp = client.delete(item, headers=actor.headers)
    assert resp.status_code == 204, resp.text
    assert client.get(item, headers=actor.headers).status_code == 404
    assert client.delete(item, headers=actor.headers).status_code == 404

    # Every change left an audit event naming the actor.
    events = client.get(
        "/api/v1/audit/events",
        params={"object_id": first["id"], "limit": 50},
        headers=world.admin.headers,
    ).json()["data"]
    actions = [e["action"] for e in reversed(events)]
    assert actions[0] == "create"
    assert "update" in actions
    assert actions[-1] == "delete"
    assert {e["actor_id"] for e in events} == {str(actor.user_id)}
