"""Gateway enrolment, credentials, the desired state a PoP gets, long-poll and ack."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import both_stores
from tests.support.crossborder import authorise_abroad
from tests.support.privacy import consent_abroad, publish_notice
from tests.support.world import World
from tongdao.gateway.changes import ChangeFeed, PgListener, current_version
from tongdao.gateway.desired import DesiredState
from tongdao.network.models import Device
from tongdao.runtime import Runtime
from tongdao.testing.keys import public_key
from tongdao.testing.postgres import PostgresCluster


def activate(world: World, tenant_id: uuid.UUID) -> None:
    officer = world.operators["compliance_officer"].headers  # vetting is the officer's
    for state in ("under_review", "approved", "active"):
        resp = world.client.patch(
            f"/api/v1/tenants/{tenant_id}", json={"state": state}, headers=officer
        )
        assert resp.status_code == 200, resp.text


def make_pop(world: World, name: str, region: str = "CN-BJ", host: str = "198.51.100.10") -> str:
    resp = world.client.post(
        "/api/v1/pops",
        json={
            "name": name,
            "region": region,
            "country": region[:2],
            "endpoint_host": host,
            "port_min": 51820,
            "port_max": 51829,
        },
        headers=world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def make_site(world: World, prefixes: list[str], **fields: Any) -> dict[str, Any]:
    """Tenant A's admin declares a site "hq" in Germany (pending until approved)."""
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/sites",
        json={"name": "hq", "country": "DE", "purpose": "hq", "prefixes": prefixes, **fields},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def activate_site(world: World, site: dict[str, Any]) -> None:
    """Approve the site's prefixes (network.declared_only), then activate it."""
    world.approve_site(site)
    resp = world.client.patch(
        f"/api/v1/tenants/{world.a.id}/sites/{site['id']}",
        json={"state": "active"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200, resp.text


def enrol(world: World, pop_id: str) -> dict[str, str]:
    token = world.client.post(
        f"/api/v1/pops/{pop_id}/enrolments", json={}, headers=world.admin.headers
    ).json()["token"]
    resp = world.client.post("/api/v1/gateway/enrol", json={"token": token, "hostname": "bj1"})
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['credential']}"}


def state(world: World, gw: dict[str, str], after: int = 0, wait: float = 0) -> DesiredState:
    resp = world.client.get(
        "/api/v1/gateway/desired-state", params={"after": after, "wait": wait}, headers=gw
    )
    assert resp.status_code == 200, resp.text
    return DesiredState.model_validate(resp.json())


def device(world: World, **extra: Any) -> dict[str, Any]:
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/devices",
        json={"name": "laptop", "public_key": public_key(), **extra},
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_enrolment_token_is_one_time_and_expires(world: World, runtime: Runtime) -> None:
    pop = make_pop(world, "bj")
    token = world.client.post(
        f"/api/v1/pops/{pop}/enrolments", json={"ttl_hours": 1}, headers=world.admin.headers
    ).json()["token"]
    first = world.client.post("/api/v1/gateway/enrol", json={"token": token})
    assert first.status_code == 201
    again = world.client.post("/api/v1/gateway/enrol", json={"token": token})
    assert again.status_code == 401
    assert "token" in again.json()["error"]["fields"]

    late = world.client.post(
        f"/api/v1/pops/{pop}/enrolments", json={"ttl_hours": 1}, headers=world.admin.headers
    ).json()["token"]
    later = datetime.now(UTC) + timedelta(hours=2)
    runtime.clock = lambda: later
    assert world.client.post("/api/v1/gateway/enrol", json={"token": late}).status_code == 401


def test_credentials_are_machine_only_and_revocable(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    assert world.client.get("/api/v1/gateway/desired-state", headers=gw).status_code == 200
    # A user's token is not a gateway credential, and a gateway credential is not a user's.
    assert (
        world.client.get("/api/v1/gateway/desired-state", headers=world.admin.headers).status_code
        == 401
    )
    assert world.client.get("/api/v1/tenants", headers=gw).status_code == 401
    gateways = world.client.get(f"/api/v1/pops/{pop}/gateways", headers=world.admin.headers).json()[
        "data"
    ]
    assert [g["hostname"] for g in gateways] == ["bj1"]
    resp = world.client.delete(
        f"/api/v1/pops/{pop}/gateways/{gateways[0]['id']}", headers=world.admin.headers
    )
    assert resp.status_code == 204
    assert world.client.get("/api/v1/gateway/desired-state", headers=gw).status_code == 401


def test_desired_state_serves_active_tenants_with_their_devices(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    dev = device(world)
    assert state(world, gw).tenants == ()  # tenant A is only "applied"
    activate(world, world.a.id)
    desired = state(world, gw)
    assert [t.tenant_id for t in desired.tenants] == [world.a.id]
    iface = desired.tenants[0]
    assert iface.ifname == "wgt51820"
    assert iface.table == iface.listen_port == 51820
    assert iface.address_v4.endswith("/22")
    assert iface.pools == (world.a.data["ipv4_pool"], world.a.data["ipv6_pool"])
    assert [(p.kind, p.public_key, p.allowed_ips) for p in iface.peers] == [
        ("device", dev["public_key"], (f"{dev['ipv4']}/32", f"{dev['ipv6']}/128"))
    ]
    # The gateway publishes its key; then the device's config is ready.
    key = public_key()
    resp = world.client.put(
        f"/api/v1/gateway/interfaces/{world.a.id}", json={"public_key": key}, headers=gw
    )
    assert resp.status_code == 204
    conf = world.client.get(
        f"/api/v1/tenants/{world.a.id}/devices/{dev['id']}/wireguard.conf",
        headers=world.a.employee.headers,
    )
    assert conf.status_code == 200
    assert f"PublicKey = {key}" in conf.text
    assert "Endpoint = 198.51.100.10:51820" in conf.text
    # Revoked devices and suspended tenants drop out.
    world.client.patch(
        f"/api/v1/tenants/{world.a.id}/devices/{dev['id']}",
        json={"state": "revoked"},
        headers=world.a.employee.headers,
    )
    assert state(world, gw).tenants[0].peers == ()
    world.client.patch(
        f"/api/v1/tenants/{world.a.id}", json={"state": "suspended"}, headers=world.admin.headers
    )
    assert state(world, gw).tenants == ()


def test_policy_is_compiled_to_addresses(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    h = world.a.admin.headers
    group = world.client.post(
        f"/api/v1/tenants/{world.a.id}/groups",
        json={"name": "eng", "member_ids": [str(world.a.employee.user_id)]},
        headers=h,
    ).json()
    site = make_site(world, ["198.18.5.0/24"])
    activate_site(world, site)
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/policies",
        json={
            "name": "eng to hq web",
            "rules": [
                {
                    "sources": [{"kind": "group", "id": group["id"]}],
                    "destinations": [{"kind": "site", "id": site["id"]}],
                    "protocol": "tcp",
                    "ports": ["443"],
                }
            ],
        },
        headers=h,
    )
    assert resp.status_code == 201, resp.text
    # The HQ is in Germany: without the employee's consent to transfer abroad the rule
    # compiles to nothing (rule pi.notice_and_consent, tests/api/test_privacy.py).
    assert state(world, gw).tenants[0].policy == ()
    publish_notice(world.client, world.admin.headers)
    consent_abroad(world.client, world.a.id, world.a.employee.user_id, world.a.employee.headers)
    rules = state(world, gw).tenants[0].policy
    assert len(rules) == 1
    assert rules[0].src == tuple(sorted((f"{dev['ipv4']}/32", f"{dev['ipv6']}/128")))
    assert rules[0].dst == ("198.18.5.0/24",)
    assert (rules[0].protocol, rules[0].ports) == ("tcp", ("443",))


def test_cross_border_peering_needs_a_registered_link(world: World) -> None:
    bj = make_pop(world, "bj")
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw_bj, gw_fra = enrol(world, bj), enrol(world, fra)
    activate(world, world.a.id)
    device(world)
    site = make_site(world, ["198.18.7.0/24"], pop_id=fra, connector_public_key=public_key())
    activate_site(world, site)
    fra_state = state(world, gw_fra)
    assert [p.kind for p in fra_state.tenants[0].peers] == ["site"]
    for gw in (gw_bj, gw_fra):
        state(world, gw)  # the first look allocates the PoP's interface for the tenant
        resp = world.client.put(
            f"/api/v1/gateway/interfaces/{world.a.id}",
            json={"public_key": public_key()},
            headers=gw,
        )
        assert resp.status_code == 204, resp.text
    # No link: neither PoP peers with the other.
    assert [p.kind for p in state(world, gw_bj).tenants[0].peers] == ["device"]
    resp = world.client.post(
        "/api/v1/links",
        json={
            "name": "bj-fra",
            "pop_a_id": bj,
            "pop_b_id": fra,
            "circuit_ref": "CU-1",
            "approval_ref": "工信部国际〔2026〕7号",
            "capacity_mbps": 100,
        },
        headers=world.admin.headers,
    )
    assert resp.status_code == 201
    # The link alone carries no tenant: tenant A needs its authorisation (rule
    # crossborder.tenant_authorised; tests/api/test_crossborder.py).
    assert [p.kind for p in state(world, gw_bj).tenants[0].peers] == ["device"]
    authorise_abroad(world, [site["id"]], resp.json()["id"])
    bj_peers = {p.kind: p for p in state(world, gw_bj).tenants[0].peers}
    assert "198.18.7.0/24" in bj_peers["pop"].allowed_ips
    assert bj_peers["pop"].endpoint == "203.0.113.20:51820"
    fra_peers = {p.kind: p for p in state(world, gw_fra).tenants[0].peers}
    dev_addrs = set(bj_peers["device"].allowed_ips)
    # The device's owner has not consented to transfer abroad: FRA does not carry it ...
    assert not dev_addrs & set(fra_peers["pop"].allowed_ips)
    publish_notice(world.client, world.admin.headers)
    consent_abroad(world.client, world.a.id, world.a.employee.user_id, world.a.employee.headers)
    # ... and does once they have.
    fra_peers = {p.kind: p for p in state(world, gw_fra).tenants[0].peers}
    assert dev_addrs <= set(fra_peers["pop"].allowed_ips)


def test_long_poll_wakes_on_change(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    version = state(world, gw).version
    # Nothing changes: the poll holds for its wait, then answers with the same version.
    started = time.monotonic()
    assert state(world, gw, after=version, wait=0.5).version == version
    assert time.monotonic() - started >= 0.5
    result: dict[str, Any] = {}

    def poll() -> None:
        t0 = time.monotonic()
        result["state"] = state(world, gw, after=version, wait=20)
        result["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    dev = device(world)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert result["state"].version > version
    assert result["seconds"] < 15  # woken by the change, not by the wait running out
    assert dev["public_key"] in {p.public_key for p in result["state"].tenants[0].peers}


def test_ack_records_the_applied_version(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    assert (
        world.client.post("/api/v1/gateway/ack", json={"version": 7}, headers=gw).status_code == 204
    )
    world.client.post(
        "/api/v1/gateway/ack", json={"version": 8, "error": "nft: syntax error"}, headers=gw
    )
    gateway = world.client.get(f"/api/v1/pops/{pop}/gateways", headers=world.admin.headers).json()
    assert gateway["data"][0]["applied_version"] == 8
    assert gateway["data"][0]["apply_error"] == "nft: syntax error"


@both_stores
def test_version_bumps_once_per_dataplane_transaction(world: World, runtime: Runtime) -> None:
    with runtime.db.session(write=False) as session:
        before = current_version(session)
    device(world)
    world.client.post(
        "/api/v1/operator/licences",
        json={
            "number": "B1.B2-20260001",
            "service_codes": ["B13"],
            "issuing_authority": "MIIT",
            "provinces": ["11"],
            "valid_from": "2026-01-01",
            "valid_to": "2031-01-01",
        },
        headers=world.admin.headers,
    )
    with runtime.db.session(write=False) as session:
        assert current_version(session) == before + 1
        assert session.scalar(select(Device.id)) is not None


@pytest.mark.postgres
def test_notify_reaches_another_replica(
    pg_cluster: PostgresCluster, runtime: Runtime, world: World, store_url: str
) -> None:
    """A change committed through one server wakes the feed of another (LISTEN/NOTIFY)."""
    if not store_url.startswith("postgresql"):
        url = pg_cluster.create_database("notify_test", template="tongdao_template")
    else:  # pragma: no cover
        url = store_url
    feed = ChangeFeed()
    listener = PgListener(url, feed).start()
    try:
        other = Runtime.from_settings(runtime.settings.model_copy(update={"database_url": url}))
        deadline = time.monotonic() + 10
        while feed.generation == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the listener is connected once it has signalled once
        start = feed.generation
        with other.db.session() as session:
            from tongdao.network.models import Pop

            session.add(
                Pop(
                    name="p",
                    region="CN-BJ",
                    country="CN",
                    endpoint_host="198.51.100.1",
                    port_min=1,
                    port_max=2,
                )
            )
            session.commit()
        while feed.generation == start and time.monotonic() < deadline:
            time.sleep(0.05)
        assert feed.generation > start
        other.db.dispose()
    finally:
        listener.stop()
        pg_cluster.drop_database("notify_test")


def test_site_connector_enrols_and_gets_its_tunnel(world: World) -> None:
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw = enrol(world, fra)
    activate(world, world.a.id)
    h = world.a.admin.headers
    site = make_site(world, ["198.18.9.0/24"], pop_id=fra)
    url = f"/api/v1/tenants/{world.a.id}/sites/{site['id']}/enrolments"
    # Another tenant's admin cannot enrol A's site; an employee may not at all.
    assert world.client.post(url, json={}, headers=world.b.admin.headers).status_code == 404
    assert world.client.post(url, json={}, headers=world.a.employee.headers).status_code == 403
    token = world.client.post(url, json={}, headers=h).json()["token"]
    resp = world.client.post("/api/v1/gateway/enrol", json={"token": token})
    assert resp.status_code == 201
    assert resp.json()["site_id"] == site["id"]
    conn = {"Authorization": f"Bearer {resp.json()['credential']}"}
    # A pending site gets nothing; once active, one interface with its PoP as the only peer.
    assert state(world, conn).tenants == ()
    activate_site(world, site)
    state(world, gw)
    world.client.put(
        f"/api/v1/gateway/interfaces/{world.a.id}", json={"public_key": public_key()}, headers=gw
    )
    desired = state(world, conn)
    assert desired.role == "connector"
    (iface,) = desired.tenants
    assert iface.table == 254
    (peer,) = iface.peers
    assert peer.kind == "pop"
    assert peer.endpoint == "203.0.113.20:51820"
    assert world.a.data["ipv4_pool"] in peer.allowed_ips
    key = public_key()
    assert (
        world.client.put(
            f"/api/v1/gateway/interfaces/{world.a.id}", json={"public_key": key}, headers=conn
        ).status_code
        == 204
    )
    assert (
        world.client.get(f"/api/v1/tenants/{world.a.id}/sites/{site['id']}", headers=h).json()[
            "connector_public_key"
        ]
        == key
    )
    # The PoP now has the connector as a peer carrying the site's prefixes and tunnel address.
    pop_peers = {p.kind: p for p in state(world, gw).tenants[0].peers}
    assert "198.18.9.0/24" in pop_peers["site"].allowed_ips
    assert any(a.endswith("/32") for a in pop_peers["site"].allowed_ips)
    # Publishing for another tenant is refused.
    assert (
        world.client.put(
            f"/api/v1/gateway/interfaces/{world.b.id}",
            json={"public_key": public_key()},
            headers=conn,
        ).status_code
        == 404
    )


def test_site_paths_say_why_and_a_router_gets_its_config(world: World) -> None:
    bj = make_pop(world, "bj")
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw = enrol(world, fra)
    activate(world, world.a.id)
    h = world.a.admin.headers
    router_key = public_key()
    site = make_site(world, ["198.18.9.0/24"], pop_id=fra, connector_public_key=router_key)
    base = f"/api/v1/tenants/{world.a.id}/sites/{site['id']}"
    (path,) = world.client.get(f"{base}/paths", headers=h).json()
    assert path["up"] is False
    assert "no registered cross-border link joins bj and fra" in path["reason"]
    link = world.client.post(
        "/api/v1/links",
        headers=world.admin.headers,
        json={
            "name": "bj-fra",
            "pop_a_id": bj,
            "pop_b_id": fra,
            "circuit_ref": "CU-1",
            "approval_ref": "工信部国际〔2026〕9号",
            "capacity_mbps": 10,
        },
    )
    (path,) = world.client.get(f"{base}/paths", headers=h).json()
    # The link is there, tenant A's authorisation to use it is not (yet).
    assert (path["up"], path["crossborder_step"]) == (False, "none")
    authorise_abroad(world, [site["id"]], link.json()["id"])
    (path,) = world.client.get(f"{base}/paths", headers=h).json()
    assert (path["up"], path["link"], path["approval_ref"]) == (
        True,
        "bj-fra",
        "工信部国际〔2026〕9号",
    )

    conf = world.client.get(f"{base}/wireguard.conf", headers=h)
    assert conf.status_code == 409
    assert "pending" in conf.json()["error"]["message"]
    world.approve_site(site)
    world.client.patch(base, json={"state": "active"}, headers=world.admin.headers)
    assert (
        "not yet published"
        in world.client.get(f"{base}/wireguard.conf", headers=h).json()["error"]["message"]
    )
    state(world, gw)
    pop_key = public_key()
    world.client.put(
        f"/api/v1/gateway/interfaces/{world.a.id}", json={"public_key": pop_key}, headers=gw
    )
    text = world.client.get(f"{base}/wireguard.conf", headers=h).text
    assert f"PublicKey = {pop_key}" in text
    assert "Endpoint = 203.0.113.20:51820" in text
    assert world.a.data["ipv4_pool"] in text
    assert "\nPrivateKey" not in text
    # The PoP carries the router as the site's peer.
    pop_peers = {p.kind: p for p in state(world, gw).tenants[0].peers}
    assert pop_peers["site"].public_key == router_key
    assert (
        world.client.get(f"{base}/wireguard.conf", headers=world.b.admin.headers).status_code == 404
    )


@both_stores
def test_a_gateway_holding_the_last_version_gets_only_the_changes(world: World) -> None:
    from tongdao.gateway.desired import DesiredDelta, merge

    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    for _ in range(3):
        device(world)
    base = state(world, gw)
    new = device(world)

    resp = world.client.get(
        "/api/v1/gateway/desired-state",
        params={"after": base.version, "wait": 0, "delta": True},
        headers=gw,
    )
    assert resp.status_code == 200, resp.text
    assert "base_version" in resp.json()
    delta = DesiredDelta.model_validate(resp.json())
    assert delta.base_version == base.version
    [change] = delta.changes
    assert [p.public_key for p in change.upserts] == [new["public_key"]]
    assert change.removals == ()
    merged = merge(base, delta)
    assert merged == state(world, gw)  # exactly what a full fetch gives

    # A gateway claiming a version this server did not last send it gets the whole state.
    resp = world.client.get(
        "/api/v1/gateway/desired-state",
        params={"after": base.version, "wait": 0, "delta": True},
        headers=gw,
    )
    assert "base_version" not in resp.json()
    assert DesiredState.model_validate(resp.json()) == merged
