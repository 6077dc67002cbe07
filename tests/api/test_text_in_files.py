"""Files people open (issue 10): a name cannot add a [Peer] to anyone's wireguard.conf.

Single-line fields refuse control characters with a field-keyed 422; rows already stored with
them (written before the schemas refused them, here straight into the store) still give a
config with exactly the intended sections, read back with every Unicode line break and with
the real ``wg-quick strip``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.api.test_gateway import activate, enrol
from tests.api.test_network import device, make_pop, publish
from tests.conftest import both_stores
from tests.support.live import serve
from tests.support.wgquick import Parsed, have_wg_quick, parse, wg_quick_strip
from tests.support.world import USCC_C, World
from tongdao.agent.gateway import ControlPlane
from tongdao.network.models import Device, Pop, PopTenantInterface, Site
from tongdao.tenancy.models import Tenant
from tongdao.testing.keys import public_key

ATTACKER_KEY = "E" * 43 + "="
EVIL = "Evil\n[Peer]\nPublicKey = " + ATTACKER_KEY + "\nAllowedIPs = 0.0.0.0/0"  # fits 100
POST_UP = "Evil\n[Interface]\nPostUp = touch /tmp/tongdao-pwned"


def read_back(text: str) -> list[Parsed]:
    return [parse(text), *([parse(wg_quick_strip(text))] if have_wg_quick() else [])]


def assert_exactly(text: str, peer_keys: list[str]) -> None:
    for parsed in read_back(text):
        assert parsed.stray == []
        assert parsed.names == ["interface"] + ["peer"] * len(peer_keys)
        assert set(parsed.sections[0].keys) <= {"address", "dns"}
        assert [p.keys["publickey"] for p in parsed.peers()] == [[k] for k in peer_keys]
        for peer in parsed.peers():
            assert set(peer.keys) == {"publickey", "endpoint", "allowedips", "persistentkeepalive"}
            assert "0.0.0.0/0" not in peer.keys["allowedips"][0]
    assert ATTACKER_KEY not in text.replace("Evil[Peer]PublicKey = " + ATTACKER_KEY, "")


# --- through the API: 422, field-keyed, nothing written -----------------------------------------
def test_single_line_fields_refuse_line_breaks_field_keyed(world: World) -> None:
    h = world.admin.headers
    pop = make_pop(world, "bj-1")
    tenant = f"/api/v1/tenants/{world.a.id}"
    pop_body = {"region": "CN-BJ", "country": "CN", "endpoint_host": "198.51.100.11"}
    cases: list[tuple[str, str, dict[str, Any], dict[str, str], str]] = [
        ("POST", "/api/v1/tenants", {"name_en": EVIL, "uscc": USCC_C}, h, "name_en"),
        ("PATCH", tenant, {"name_en": EVIL}, h, "name_en"),
        ("PATCH", tenant, {"name_zh": "租户\u2028甲"}, h, "name_zh"),
        ("PATCH", tenant, {"contact_name": "Li\u202eexe.txt"}, h, "contact_name"),
        ("POST", "/api/v1/pops", {"name": EVIL, **pop_body}, h, "name"),
        ("PATCH", f"/api/v1/pops/{pop['id']}", {"name": "bj\r\n[Peer]"}, h, "name"),
        (
            "PATCH",
            f"/api/v1/pops/{pop['id']}",
            {"endpoint_host": "fe80::1%x\n[Peer]"},
            h,
            "endpoint_host",
        ),
        (
            "POST",
            f"{tenant}/devices",
            {"name": EVIL, "public_key": public_key()},
            world.a.employee.headers,
            "name",
        ),
        (
            "POST",
            f"{tenant}/sites",
            {
                "name": "hq\x85x",
                "country": "CN",
                "purpose": "office",
                "prefixes": ["198.18.0.0/24"],
            },
            world.a.admin.headers,
            "name",
        ),
    ]
    for method, url, body, headers, field in cases:
        resp = world.client.request(method, url, json=body, headers=headers)
        assert resp.status_code == 422, (url, body, resp.text)
        message = resp.json()["error"]["fields"][field]
        expected = "not a DNS name" if field == "endpoint_host" else "single line of text"
        assert expected in message, message
    # Nothing was written.
    assert world.client.get(tenant, headers=h).json()["name_en"] == "Tenant A"
    assert world.client.get(f"/api/v1/pops/{pop['id']}", headers=h).json()["name"] == "bj-1"
    assert world.client.get("/api/v1/pops", headers=h).json()["count"] == 1
    # Multi-line text keeps its line breaks.
    group = world.client.post(
        f"{tenant}/groups",
        json={"name": "ops", "description": "Line one\nLine two"},
        headers=world.a.admin.headers,
    )
    assert group.status_code == 201, group.text
    assert group.json()["description"] == "Line one\nLine two"


@both_stores
def test_nul_is_a_422_on_both_stores(world: World) -> None:
    """PostgreSQL cannot store NUL in text: before, these were 500s there."""
    h = world.admin.headers
    cases = [
        ("POST", "/api/v1/tenants", {"name_en": "Acme\x00", "uscc": USCC_C}, h, "name_en"),
        (
            "POST",
            f"/api/v1/tenants/{world.a.id}/groups",
            {"name": "ops", "description": "a\x00b"},
            world.a.admin.headers,
            "description",
        ),
        ("POST", "/api/v1/auth/login", {"email": "li\x00@a.example", "password": "x"}, {}, "email"),
    ]
    for method, url, body, headers, field in cases:
        resp = world.client.request(method, url, json=body, headers=headers)
        assert resp.status_code == 422, (url, resp.text)
        assert "U+0000" in resp.json()["error"]["fields"][field]


@both_stores
def test_a_list_filter_with_nul_is_a_422_on_both_stores(world: World) -> None:
    """Before, PostgreSQL refused the query: a 500."""
    for url, field in (
        ("/api/v1/tenants?q=%00", "q"),
        ("/api/v1/audit/events?action=a%00b", "action"),
        (f"/api/v1/tenants/{world.a.id}/users?email=%00", "email"),
        ("/api/v1/pops?region=CN-BJ%0A", "region"),
    ):
        resp = world.client.get(url, headers=world.admin.headers)
        assert resp.status_code == 422, (url, resp.text)
        assert "single line of text" in resp.json()["error"]["fields"][field]


# --- rows stored before the schemas refused them ------------------------------------------------
def serve_a(world: World) -> tuple[dict[str, Any], str, dict[str, Any]]:
    pop = make_pop(world, "bj-1")
    published = publish(world, pop, world.a.id)
    assert published.status_code == 200, published.text
    made = device(world, world.a.employee.headers, world.a.id)
    assert made.status_code == 201, made.text
    return pop, published.json()["public_key"], made.json()


def store(world: World, *statements: Any) -> None:
    with world.runtime.db.session() as session:
        for statement in statements:
            session.execute(statement)
        session.commit()


@both_stores
def test_stored_names_cannot_add_a_peer_to_a_device_config(world: World) -> None:
    pop, pop_key, dev = serve_a(world)
    conf = f"/api/v1/tenants/{world.a.id}/devices/{dev['id']}/wireguard.conf"
    store(
        world,
        update(Tenant).where(Tenant.id == world.a.id).values(name_en=POST_UP),
        update(Pop).where(Pop.id == uuid.UUID(pop["id"])).values(name=EVIL, region="CN-BJ\n[Peer]"),
        update(Device)
        .where(Device.id == uuid.UUID(dev["id"]))
        .values(name=EVIL.replace("\n", "\u2028")),
    )
    resp = world.client.get(conf, headers=world.a.employee.headers)
    assert resp.status_code == 200, resp.text
    assert_exactly(resp.text, [pop_key])
    # The names are still shown, each on its own comment line.
    assert resp.text.startswith("# Tongdao device 'Evil[Peer]PublicKey = ")
    assert "of Evil[Interface]PostUp = touch /tmp/tongdao-pwned\n" in resp.text
    assert "\n# PoP Evil[Peer]PublicKey = " in resp.text


@both_stores
def test_stored_names_cannot_add_a_peer_to_a_site_config(world: World) -> None:
    activate(world, world.a.id)
    pop, pop_key, _dev = serve_a(world)
    created = world.client.post(
        f"/api/v1/tenants/{world.a.id}/sites",
        json={
            "name": "hq",
            "country": "CN",
            "purpose": "office",
            "prefixes": ["198.18.20.0/24"],
            "pop_id": pop["id"],
            "connector_public_key": public_key(),
        },
        headers=world.a.admin.headers,
    )
    assert created.status_code == 201, created.text
    site = created.json()
    world.approve_site(site)
    url = f"/api/v1/tenants/{world.a.id}/sites/{site['id']}"
    activated = world.client.patch(url, json={"state": "active"}, headers=world.admin.headers)
    assert activated.status_code == 200, activated.text
    store(
        world,
        update(Site).where(Site.id == uuid.UUID(site["id"])).values(name=EVIL),
        update(Tenant).where(Tenant.id == world.a.id).values(name_en=EVIL),
        update(Pop).where(Pop.id == uuid.UUID(pop["id"])).values(name=EVIL.replace("\n", "\r")),
    )
    resp = world.client.get(f"{url}/wireguard.conf", headers=world.a.admin.headers)
    assert resp.status_code == 200, resp.text
    assert_exactly(resp.text, [pop_key])


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("public_key", ATTACKER_KEY + "\nAllowedIPs = 0.0.0.0/0", "peers[0].public_key"),
        ("ipv4", "100.64.0.1\nAllowedIPs = 0.0.0.0/0", None),
        ("endpoint_host", "pop.example.com\nAllowedIPs = 0.0.0.0/0", "peers[0].endpoint"),
    ],
)
def test_a_stored_value_that_is_not_what_it_claims_is_a_409(
    world: World, column: str, value: str, field: str | None
) -> None:
    pop, _key, dev = serve_a(world)
    if column == "endpoint_host":
        store(world, update(Pop).where(Pop.id == uuid.UUID(pop["id"])).values(endpoint_host=value))
    elif column == "public_key":
        stmt = update(PopTenantInterface).where(PopTenantInterface.pop_id == uuid.UUID(pop["id"]))
        store(world, stmt.values(public_key=value))
    else:
        store(world, update(Device).where(Device.id == uuid.UUID(dev["id"])).values(ipv4=value))
        field = "ipv4"
    conf = f"/api/v1/tenants/{world.a.id}/devices/{dev['id']}/wireguard.conf"
    resp = world.client.get(conf, headers=world.a.employee.headers)
    assert resp.status_code == 409, resp.text
    assert field in resp.json()["error"]["fields"]


def test_an_agent_sends_its_apply_error_as_the_server_takes_it(world: World, app: FastAPI) -> None:
    """The ack's error refuses controls other than line breaks (and is at most 2,000
    characters): the agent cleans what an apply error may hold (e.g. a tool's colour codes)
    instead of having its ack refused."""
    pop = make_pop(world, "bj-1")
    credential = enrol(world, pop["id"])["Authorization"].removeprefix("Bearer ")
    error = "EngineError: \x1b[31mfailed\x1b[0m\x00\nsecond line " + "x" * 3000
    with serve(app) as url:
        control = ControlPlane(url, credential)
        try:
            control.ack(0, error)
        finally:
            control.close()
    [gateway] = world.client.get(
        f"/api/v1/pops/{pop['id']}/gateways", headers=world.admin.headers
    ).json()["data"]
    assert gateway["apply_error"].startswith("EngineError: [31mfailed[0m\nsecond line xxx")
    assert len(gateway["apply_error"]) == 2000
