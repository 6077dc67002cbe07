"""PoPs, links, sites, devices, IPAM and the device's wireguard.conf."""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.support.world import World
from tongdao.testing.keys import public_key


def make_pop(world: World, name: str = "bj-1", **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "region": "CN-BJ",
        "country": "CN",
        "endpoint_host": "198.51.100.10",
        "port_min": 51820,
        "port_max": 51821,
        **extra,
    }
    resp = world.client.post("/api/v1/pops", json=body, headers=world.admin.headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def publish(world: World, pop: dict[str, Any], tenant_id: Any, **body: Any) -> Any:
    return world.client.put(
        f"/api/v1/pops/{pop['id']}/interfaces/{tenant_id}",
        json={"public_key": public_key(), **body},
        headers=world.admin.headers,
    )


def device(world: World, headers: dict[str, str], tenant: Any, **body: Any) -> Any:
    return world.client.post(
        f"/api/v1/tenants/{tenant}/devices",
        json={"name": "laptop", "public_key": public_key(), **body},
        headers=headers,
    )


def test_employee_registers_own_devices_only(world: World) -> None:
    emp = world.a.employee
    own = device(world, emp.headers, world.a.id)
    assert own.status_code == 201, own.text
    assert own.json()["user_id"] == str(emp.user_id)
    other = device(world, emp.headers, world.a.id, user_id=str(world.a.admin.user_id))
    assert other.status_code == 422
    assert other.json()["error"]["fields"] == {
        "user_id": "you can register devices for yourself only"
    }
    admins = device(world, world.a.admin.headers, world.a.id)
    assert admins.status_code == 201
    listed = world.client.get(f"/api/v1/tenants/{world.a.id}/devices", headers=emp.headers).json()
    assert [d["id"] for d in listed["data"]] == [own.json()["id"]]
    hidden = f"/api/v1/tenants/{world.a.id}/devices/{admins.json()['id']}"
    assert world.client.get(hidden, headers=emp.headers).status_code == 404
    assert world.client.delete(hidden, headers=emp.headers).status_code == 404
    assert (
        world.client.get(
            f"/api/v1/tenants/{world.a.id}/devices", headers=world.a.admin.headers
        ).json()["count"]
        == 2
    )


def test_operator_must_name_the_owner(world: World) -> None:
    resp = device(world, world.admin.headers, world.a.id)
    assert resp.status_code == 422
    assert "user_id" in resp.json()["error"]["fields"]
    resp = device(world, world.admin.headers, world.a.id, user_id=str(world.b.employee.user_id))
    assert resp.json()["error"]["fields"] == {"user_id": "no such user in this tenant"}


def test_addresses_come_from_the_tenant_pools_and_are_reused(world: World) -> None:
    h = world.a.admin.headers
    pool4 = ipaddress.ip_network(world.a.data["ipv4_pool"])
    pool6 = ipaddress.ip_network(world.a.data["ipv6_pool"])
    made = [device(world, h, world.a.id).json() for _ in range(3)]
    v4 = [ipaddress.ip_address(d["ipv4"]) for d in made]
    assert all(a in pool4 for a in v4)
    assert all(ipaddress.ip_address(d["ipv6"]) in pool6 for d in made)
    assert len(set(v4)) == 3
    world.client.delete(f"/api/v1/tenants/{world.a.id}/devices/{made[1]['id']}", headers=h)
    again = device(world, h, world.a.id).json()
    assert again["ipv4"] == made[1]["ipv4"]
    assert again["ipv6"] == made[1]["ipv6"]
    # The other tenant's first device does not collide with anything of A's.
    b = device(world, world.b.admin.headers, world.b.id).json()
    assert ipaddress.ip_address(b["ipv4"]) not in pool4


def test_duplicate_public_key_is_refused(world: World) -> None:
    key = public_key()
    assert device(world, world.a.admin.headers, world.a.id, public_key=key).status_code == 201
    resp = device(world, world.b.admin.headers, world.b.id, public_key=key)
    assert resp.status_code == 409
    assert resp.json()["error"]["fields"] == {"public_key": "already in use"}


def test_revoked_device_stays_revoked(world: World) -> None:
    made = device(world, world.a.employee.headers, world.a.id).json()
    item = f"/api/v1/tenants/{world.a.id}/devices/{made['id']}"
    h = world.a.employee.headers
    assert world.client.patch(item, json={"state": "revoked"}, headers=h).status_code == 200
    resp = world.client.patch(item, json={"state": "active"}, headers=h)
    assert resp.status_code == 422
    conf = world.client.get(f"{item}/wireguard.conf", headers=h)
    assert conf.status_code == 409
    assert "revoked" in conf.json()["error"]["message"]


def test_wireguard_conf(world: World) -> None:
    made = device(world, world.a.employee.headers, world.a.id).json()
    conf_url = f"/api/v1/tenants/{world.a.id}/devices/{made['id']}/wireguard.conf"
    h = world.a.employee.headers
    resp = world.client.get(conf_url, headers=h)
    assert resp.status_code == 409
    assert "no PoP has yet published a WireGuard key" in resp.json()["error"]["message"]

    bj = make_pop(world, "bj-1")
    sh = make_pop(world, "sh-1", region="CN-SH", country="CN", endpoint_host="2001:db8::10")
    fra = make_pop(world, "fra-1", region="DE-FRA", country="DE", endpoint_host="203.0.113.9")
    first = publish(world, bj, world.a.id)
    assert first.status_code == 200, first.text
    assert first.json()["listen_port"] == 51820
    assert publish(world, bj, world.b.id).json()["listen_port"] == 51821
    full = publish(world, bj, world.a.id, listen_port=51821)
    assert full.status_code == 409
    assert publish(world, sh, world.a.id).status_code == 200
    assert publish(world, fra, world.a.id).status_code == 200

    site = world.client.post(
        f"/api/v1/tenants/{world.a.id}/sites",
        json={
            "name": "hq",
            "country": "DE",
            "purpose": "hq",
            "prefixes": ["198.18.10.0/24", "fd00:10::/64"],
        },
        headers=world.a.admin.headers,
    ).json()
    text = world.client.get(conf_url, headers=h).text
    assert text.count("[Peer]") == 2
    assert f"Address = {made['ipv4']}/32, {made['ipv6']}/128" in text
    assert f"PublicKey = {first.json()['public_key']}" in text
    assert "Endpoint = 198.51.100.10:51820" in text
    assert "Endpoint = [2001:db8::10]:" in text
    assert "fra-1" not in text  # devices in China never dial an overseas PoP directly
    assert "198.18.10.0/24" not in text  # the site is not active yet

    # The tenant admin cannot activate a site; the operator does.
    site_url = f"/api/v1/tenants/{world.a.id}/sites/{site['id']}"
    refused = world.client.patch(site_url, json={"state": "active"}, headers=world.a.admin.headers)
    assert refused.status_code == 403
    # ... once a compliance officer approved its prefixes (rule network.declared_only).
    world.approve_site(site)
    assert (
        world.client.patch(
            site_url, json={"state": "active"}, headers=world.admin.headers
        ).status_code
        == 200
    )
    text = world.client.get(conf_url, headers=h).text
    primary = text.split("[Peer]")[1]
    assert "bj-1" in primary
    assert "198.18.10.0/24" in primary
    assert "fd00:10::/64" in primary
    assert world.a.data["ipv4_pool"] in primary

    # The other tenant's admin cannot read it.
    assert world.client.get(conf_url, headers=world.b.admin.headers).status_code == 404


def test_pop_and_link_rules(world: World) -> None:
    h = world.admin.headers
    resp = world.client.post(
        "/api/v1/pops",
        json={"name": "x", "region": "CN-BJ", "country": "DE", "endpoint_host": "198.51.100.1"},
        headers=h,
    )
    assert resp.status_code == 422
    resp = world.client.post(
        "/api/v1/pops",
        json={
            "name": "x",
            "region": "CN-BJ",
            "country": "CN",
            "endpoint_host": "198.51.100.1",
            "port_min": 52000,
            "port_max": 51000,
        },
        headers=h,
    )
    assert resp.status_code == 422
    bj, fra = make_pop(world, "bj"), make_pop(world, "fra", region="DE-FRA", country="DE")
    link = {
        "name": "bj-fra",
        "pop_a_id": bj["id"],
        "pop_b_id": fra["id"],
        "circuit_ref": "CU-1",
        "approval_ref": "工信部国际〔2026〕1号",
        "capacity_mbps": 200,
    }
    assert world.client.post("/api/v1/links", json=link, headers=h).status_code == 201
    reverse = {**link, "name": "fra-bj", "pop_a_id": fra["id"], "pop_b_id": bj["id"]}
    assert world.client.post("/api/v1/links", json=reverse, headers=h).status_code == 409
    same = {**link, "name": "loop", "pop_b_id": bj["id"]}
    assert world.client.post("/api/v1/links", json=same, headers=h).status_code == 422
    # A PoP joined by a link cannot be deleted.
    assert world.client.delete(f"/api/v1/pops/{bj['id']}", headers=h).status_code == 409
    # Shrinking the port range under a published interface is refused.
    publish(world, bj, world.a.id)
    resp = world.client.patch(f"/api/v1/pops/{bj['id']}", json={"port_min": 51821}, headers=h)
    assert resp.status_code == 409


def test_policies_reference_only_own_objects(world: World) -> None:
    base = f"/api/v1/tenants/{world.a.id}/policies"
    h = world.a.admin.headers
    group = world.client.post(
        f"/api/v1/tenants/{world.a.id}/groups", json={"name": "eng"}, headers=h
    ).json()
    b_group = world.client.post(
        f"/api/v1/tenants/{world.b.id}/groups", json={"name": "eng"}, headers=world.b.admin.headers
    ).json()
    rule = {
        "sources": [{"kind": "group", "id": b_group["id"]}],
        "destinations": [{"kind": "prefix", "cidr": world.a.data["ipv4_pool"]}],
    }
    resp = world.client.post(base, json={"name": "p", "rules": [rule]}, headers=h)
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"] == {
        "rules.0.sources.0.id": "no such group in this tenant"
    }
    rule["sources"] = [{"kind": "group", "id": group["id"]}]
    bad_ports = {**rule, "protocol": "icmp", "ports": ["22"]}
    assert (
        world.client.post(base, json={"name": "p", "rules": [bad_ports]}, headers=h).status_code
        == 422
    )
    ok = world.client.post(
        base,
        json={"name": "p", "rules": [{**rule, "protocol": "tcp", "ports": ["22", "8000-8100"]}]},
        headers=h,
    )
    assert ok.status_code == 201, ok.text
    resp = world.client.delete(f"/api/v1/tenants/{world.a.id}/groups/{group['id']}", headers=h)
    assert resp.status_code == 409
    assert "used by policies: p" in resp.json()["error"]["message"]


def test_operator_profile(world: World) -> None:
    h = world.admin.headers
    assert world.client.get("/api/v1/operator", headers=h).status_code == 404
    body = {
        "legal_name": "Tongdao Beijing JV Ltd",
        "legal_name_zh": "通道（北京）科技有限公司",
        "uscc": "91110000802100433B",
    }
    assert world.client.put("/api/v1/operator", json=body, headers=h).status_code == 200
    clerk = world.operators["billing_clerk"].headers
    assert (
        world.client.get("/api/v1/operator", headers=clerk).json()["legal_name"]
        == body["legal_name"]
    )
    assert world.client.put("/api/v1/operator", json=body, headers=clerk).status_code == 403
    world.clear_shareholders()  # the world's register is full (100%)
    assert world.client.get("/api/v1/operator", headers=world.a.admin.headers).status_code == 403
    bad = world.client.post(
        "/api/v1/operator/licences",
        json={
            "number": "B13-2026",
            "service_codes": ["B13"],
            "issuing_authority": "MIIT",
            "provinces": ["11"],
            "valid_from": "2026-01-01",
            "valid_to": "2025-01-01",
        },
        headers=h,
    )
    assert bad.status_code == 422
    assert {"number", "body"} <= set(bad.json()["error"]["fields"]) or "number" in bad.json()[
        "error"
    ]["fields"]
    over = world.client.post(
        "/api/v1/operator/shareholders",
        json={"name": "A", "foreign": True, "stake_percent": "60"},
        headers=h,
    )
    assert over.status_code == 201
    more = world.client.post(
        "/api/v1/operator/shareholders",
        json={"name": "B", "foreign": False, "stake_percent": "50"},
        headers=h,
    )
    assert more.status_code == 422
    assert "100%" in more.json()["error"]["fields"]["stake_percent"]
