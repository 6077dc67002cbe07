"""One lifecycle for every agent credential (a PoP's gateway, a site's connector): listed,
revoked (audited), replaced by a later enrolment, refused while the PoP or site is disabled and
accepted again once it is enabled, unless revoked meanwhile."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.api.test_gateway import activate, device, enrol, make_pop, state
from tests.support.live import serve
from tests.support.world import World
from tongdao.errors import AuthenticationError
from tongdao.gateway import service
from tongdao.network.models import PopTenantInterface
from tongdao.runtime import Ctx, Runtime
from tongdao.testing.keys import public_key

API = "/api/v1"


def _site(world: World, name: str = "hq") -> dict[str, Any]:
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/sites",
        json={"name": name, "country": "CN", "purpose": "office", "prefixes": ["198.18.9.0/24"]},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _enrol_site(world: World, site: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(connector id, its credential header), enrolled with a token of A's tenant admin."""
    token = world.client.post(
        f"{API}/tenants/{world.a.id}/sites/{site['id']}/enrolments",
        json={},
        headers=world.a.admin.headers,
    ).json()["token"]
    resp = world.client.post(f"{API}/gateway/enrol", json={"token": token, "hostname": "hq-gw"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["gateway_id"]), {"Authorization": f"Bearer {resp.json()['credential']}"}


def _poll(world: World, credential: dict[str, str]) -> tuple[int, str]:
    """(status, error message) of the agent's poll for its desired state."""
    resp = world.client.get(f"{API}/gateway/desired-state", params={"wait": 0}, headers=credential)
    return resp.status_code, resp.json().get("error", {}).get("message", "")


def _connectors(world: World, site: dict[str, Any], headers: dict[str, str]) -> Any:
    return world.client.get(
        f"{API}/tenants/{world.a.id}/sites/{site['id']}/connectors", headers=headers
    )


def test_connector_credentials_are_listed_and_revoked_by_their_tenant(world: World) -> None:
    site = _site(world)
    connector, credential = _enrol_site(world, site)
    assert _poll(world, credential)[0] == 200

    listed = _connectors(world, site, world.a.admin.headers)
    assert listed.status_code == 200, listed.text
    (row,) = listed.json()["data"]
    assert row["id"] == connector
    assert row["site_id"] == site["id"]
    assert row["tenant_id"] == str(world.a.id)
    assert row["hostname"] == "hq-gw"
    assert row["revoked_at"] is None
    assert "credential" not in row and "credential_hash" not in row
    # The operator's staff who read sites see it too; another tenant's admin learns nothing.
    assert _connectors(world, site, world.operators["auditor"].headers).status_code == 200
    assert _connectors(world, site, world.a.employee.headers).status_code == 403
    b_sees = world.client.get(
        f"{API}/tenants/{world.b.id}/sites/{site['id']}/connectors",
        headers=world.b.admin.headers,
    )
    assert b_sees.status_code == 404
    assert _connectors(world, site, world.b.admin.headers).status_code == 404

    item = f"{API}/tenants/{world.a.id}/sites/{site['id']}/connectors/{connector}"
    assert world.client.delete(item, headers=world.b.admin.headers).status_code == 404
    assert world.client.delete(item, headers=world.a.employee.headers).status_code == 403
    assert world.client.delete(item, headers=world.a.admin.headers).status_code == 204
    status, message = _poll(world, credential)
    assert status == 401
    assert "revoked" in message
    (row,) = _connectors(world, site, world.a.admin.headers).json()["data"]
    assert row["revoked_at"] is not None
    assert row["revoked_reason"] == "revoked"
    # Revoking again changes nothing; the revocation is in the tenant's own audit log, by whom.
    assert world.client.delete(item, headers=world.a.admin.headers).status_code == 204
    events = world.client.get(
        f"{API}/audit/events",
        params={"object_type": "gateway", "tenant_id": str(world.a.id)},
        headers=world.a.admin.headers,
    ).json()["data"]
    revocations = [e for e in events if e["object_id"] == connector and e["action"] == "update"]
    assert len(revocations) == 1, revocations
    assert revocations[0]["after"]["revoked_reason"] == "revoked"
    assert revocations[0]["actor_id"] == str(world.a.admin.user_id)


def test_re_enrolment_replaces_the_earlier_credential(world: World) -> None:
    pop = make_pop(world, "bj")
    first, second = enrol(world, pop), enrol(world, pop)
    status, message = _poll(world, first)
    assert status == 401
    assert "replaced" in message
    assert _poll(world, second)[0] == 200
    rows = world.client.get(f"{API}/pops/{pop}/gateways", headers=world.admin.headers).json()
    assert [r["revoked_reason"] for r in rows["data"]] == ["replaced", None]
    events = world.client.get(
        f"{API}/audit/events",
        params={"object_type": "gateway", "action": "update"},
        headers=world.operators["auditor"].headers,
    ).json()["data"]
    assert [e["after"]["revoked_reason"] for e in events] == ["replaced"]
    assert [e["object_id"] for e in events] == [rows["data"][0]["id"]]

    site = _site(world)
    old_id, old = _enrol_site(world, site)
    new_id, new = _enrol_site(world, site)
    assert _poll(world, old)[0] == 401
    assert _poll(world, new)[0] == 200
    rows = _connectors(world, site, world.a.admin.headers).json()["data"]
    assert [(r["id"], r["revoked_reason"]) for r in rows] == [(old_id, "replaced"), (new_id, None)]
    # Each PoP and each site has its own slot: the PoP's gateway was not touched.
    assert _poll(world, second)[0] == 200


def test_a_disabled_pop_refuses_its_gateway_until_enabled(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    spare = enrol(world, make_pop(world, "sh", host="198.51.100.11"))
    admin = world.admin.headers

    def set_state(state: str) -> None:
        resp = world.client.patch(f"{API}/pops/{pop}", json={"state": state}, headers=admin)
        assert resp.status_code == 200, resp.text

    set_state("disabled")
    status, message = _poll(world, gw)
    assert status == 403
    assert "PoP bj is disabled" in message
    report = {
        "seq": 1,
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-01-01T00:00:30Z",
        "peers": [],
    }
    assert world.client.post(f"{API}/gateway/reports", json=report, headers=gw).status_code == 403
    ack = world.client.post(f"{API}/gateway/ack", json={"version": 1}, headers=gw)
    assert ack.status_code == 403
    # A token for the disabled PoP is refused without being used up (and replaces nothing).
    token = world.client.post(f"{API}/pops/{pop}/enrolments", json={}, headers=admin).json()[
        "token"
    ]
    refused = world.client.post(f"{API}/gateway/enrol", json={"token": token})
    assert refused.status_code == 403
    assert "disabled" in refused.json()["error"]["message"]
    assert _poll(world, spare)[0] == 200  # another PoP's gateway is not affected

    set_state("active")
    assert _poll(world, gw)[0] == 200  # not revoked: works again

    set_state("disabled")
    (row,) = world.client.get(f"{API}/pops/{pop}/gateways", headers=admin).json()["data"]
    assert world.client.delete(f"{API}/pops/{pop}/gateways/{row['id']}", headers=admin).status_code
    set_state("active")
    assert _poll(world, gw)[0] == 401  # revoked while disabled: stays revoked
    # The token kept while the PoP was disabled enrols a new gateway now.
    enrolled = world.client.post(f"{API}/gateway/enrol", json={"token": token})
    assert enrolled.status_code == 201
    fresh = {"Authorization": f"Bearer {enrolled.json()['credential']}"}
    assert _poll(world, fresh)[0] == 200


def test_a_disabled_site_refuses_its_connector_until_enabled(world: World) -> None:
    site = _site(world)
    _connector, credential = _enrol_site(world, site)
    url = f"{API}/tenants/{world.a.id}/sites/{site['id']}"
    h = world.a.admin.headers

    assert world.client.patch(url, json={"state": "disabled"}, headers=h).status_code == 200
    status, message = _poll(world, credential)
    assert status == 403
    assert "site hq is disabled" in message
    key = world.client.put(
        f"{API}/gateway/interfaces/{world.a.id}",
        json={"public_key": public_key()},
        headers=credential,
    )
    assert key.status_code == 403

    assert world.client.patch(url, json={"state": "pending"}, headers=h).status_code == 200
    assert _poll(world, credential)[0] == 200


def test_a_retired_connector_takes_its_key_with_it(world: World) -> None:
    """The PoP peers with a site's connector by the key the connector published: revoking or
    replacing the connector withdraws that key (the PoP drops the peer); a key the tenant set
    for its own router is not the connector's and stays."""
    site = _site(world)
    url = f"{API}/tenants/{world.a.id}/sites/{site['id']}"
    h = world.a.admin.headers

    def site_key() -> str | None:
        key: str | None = world.client.get(url, headers=h).json()["connector_public_key"]
        return key

    def publish(credential: dict[str, str]) -> str:
        key = public_key()
        resp = world.client.put(
            f"{API}/gateway/interfaces/{world.a.id}", json={"public_key": key}, headers=credential
        )
        assert resp.status_code == 204, resp.text
        return key

    first_id, first = _enrol_site(world, site)
    key = publish(first)
    assert site_key() == key
    (row,) = _connectors(world, site, h).json()["data"]
    assert row["published_key"] == key
    _second_id, second = _enrol_site(world, site)  # replaces the first: its key goes
    assert site_key() is None
    key = publish(second)
    assert site_key() == key
    (_, row) = _connectors(world, site, h).json()["data"]
    assert world.client.delete(f"{url}/connectors/{row['id']}", headers=h).status_code == 204
    assert site_key() is None

    # The tenant switches to its own router; revoking a connector leaves the router's key.
    third_id, _third = _enrol_site(world, site)
    router = public_key()
    resp = world.client.patch(url, json={"connector_public_key": router}, headers=h)
    assert resp.status_code == 200, resp.text
    assert world.client.delete(f"{url}/connectors/{third_id}", headers=h).status_code == 204
    assert site_key() == router
    assert first_id != third_id


def test_a_poll_held_when_the_credential_is_revoked_is_refused(world: World) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    first = world.client.get(f"{API}/gateway/desired-state", params={"wait": 0}, headers=gw)
    version = first.json()["version"]
    answer: dict[str, Any] = {}

    def poll() -> None:
        resp = world.client.get(
            f"{API}/gateway/desired-state", params={"after": version, "wait": 3}, headers=gw
        )
        answer["status"] = resp.status_code

    held = threading.Thread(target=poll)
    held.start()
    time.sleep(0.5)  # the poll is waiting for a change
    (row,) = world.client.get(f"{API}/pops/{pop}/gateways", headers=world.admin.headers).json()[
        "data"
    ]
    resp = world.client.delete(
        f"{API}/pops/{pop}/gateways/{row['id']}", headers=world.admin.headers
    )
    assert resp.status_code == 204
    held.join(30)
    assert not held.is_alive()
    assert answer["status"] == 401


def test_a_revoked_gateway_takes_its_interface_keys_with_it(world: World) -> None:
    """A revoked PoP gateway's host still holds the private halves of the keys it published
    for its tenant interfaces: revoking it withdraws them, so linked PoPs and connectors drop
    those peers and device configs wait for a new gateway. A replacement (re-enrolment of the
    PoP) leaves them: the new gateway publishes its own on its first apply."""
    bj = make_pop(world, "bj")
    sh = make_pop(world, "sh", region="CN-SH", host="198.51.100.11")
    gw_bj, gw_sh = enrol(world, bj), enrol(world, sh)
    activate(world, world.a.id)
    admin, h = world.admin.headers, world.a.admin.headers
    link = world.client.post(
        f"{API}/links",
        json={
            "name": "bj-sh",
            "pop_a_id": bj,
            "pop_b_id": sh,
            "circuit_ref": "CU-2",
            "capacity_mbps": 100,
        },
        headers=admin,
    )
    assert link.status_code == 201, link.text
    site = world.client.post(
        f"{API}/tenants/{world.a.id}/sites",
        json={
            "name": "hq",
            "country": "CN",
            "purpose": "office",
            "prefixes": ["198.18.9.0/24"],
            "pop_id": bj,
        },
        headers=h,
    ).json()
    world.approve_site(site)
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/sites/{site['id']}", json={"state": "active"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    _conn_id, conn = _enrol_site(world, site)
    pinned = device(world, pop_id=bj)  # homed at bj only; sh serves the tenant for another
    device(world, name="phone")
    conf_url = f"{API}/tenants/{world.a.id}/devices/{pinned['id']}/wireguard.conf"

    def publish(gw: dict[str, str]) -> str:
        state(world, gw)  # the first look allocates the PoP's interface for the tenant
        key = public_key()
        resp = world.client.put(
            f"{API}/gateway/interfaces/{world.a.id}", json={"public_key": key}, headers=gw
        )
        assert resp.status_code == 204, resp.text
        return key

    def pop_peers(gw: dict[str, str]) -> list[str]:
        return [p.public_key for t in state(world, gw).tenants for p in t.peers if p.kind == "pop"]

    bj_key, sh_key = publish(gw_bj), publish(gw_sh)
    assert pop_peers(gw_sh) == [bj_key]
    assert pop_peers(conn) == [bj_key]
    conf = world.client.get(conf_url, headers=world.a.employee.headers)
    assert conf.status_code == 200, conf.text
    assert bj_key in conf.text

    version = state(world, gw_sh).version
    (row,) = world.client.get(f"{API}/pops/{bj}/gateways", headers=admin).json()["data"]
    revoked = world.client.delete(f"{API}/pops/{bj}/gateways/{row['id']}", headers=admin)
    assert revoked.status_code == 204
    # The linked PoP and the connector drop the revoked host's keys, in a new version ...
    after = state(world, gw_sh)
    assert after.version > version
    assert pop_peers(gw_sh) == []
    assert pop_peers(conn) == []
    assert all(t.public_key == sh_key for t in after.tenants)  # sh's own key stays
    # ... and the device's config waits for a gateway to publish bj's key again.
    conf = world.client.get(conf_url, headers=world.a.employee.headers)
    assert conf.status_code == 409, conf.text
    assert "not yet published" in conf.json()["error"]["message"]
    events = world.client.get(
        f"{API}/audit/events",
        params={"object_type": "pop_tenant_interface", "action": "update"},
        headers=world.operators["auditor"].headers,
    ).json()["data"]
    withdrawn = [e for e in events if e["after"].get("public_key", "") is None]
    assert len(withdrawn) == 1, events
    assert withdrawn[0]["actor_id"] == str(world.admin.user_id)

    # A new gateway sees no key for its interface, publishes its own, and is peered again.
    fresh = enrol(world, bj)
    (iface,) = state(world, fresh).tenants
    assert iface.public_key is None
    new_key = publish(fresh)
    assert pop_peers(gw_sh) == [new_key]
    assert pop_peers(conn) == [new_key]
    # Re-enrolling the PoP again replaces that gateway but withdraws nothing.
    enrol(world, bj)
    assert pop_peers(gw_sh) == [new_key]
    assert pop_peers(conn) == [new_key]
    assert world.client.get(conf_url, headers=world.a.employee.headers).status_code == 200


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_key_published_while_its_gateway_is_revoked_does_not_outlive_it(
    world: World, runtime: Runtime, app: FastAPI
) -> None:
    """The agent's request authenticates, then writes its key; a revocation may commit in
    between (PostgreSQL runs the two side by side; SQLite serialises them whole), or start
    while the key is being written. Either way no key of the revoked gateway stays."""
    pop = make_pop(world, "bj")
    activate(world, world.a.id)
    device(world)
    admin = world.admin.headers

    def interface_key() -> str | None:
        with runtime.db.session(write=False) as session:
            key: str | None = session.scalar(
                select(PopTenantInterface.public_key).where(
                    PopTenantInterface.pop_id == uuid.UUID(pop),
                    PopTenantInterface.tenant_id == world.a.id,
                )
            )
            return key

    def live_gateway() -> tuple[str, str]:
        credential = enrol(world, pop)
        state(world, credential)  # allocates the interface
        rows = world.client.get(f"{API}/pops/{pop}/gateways", headers=admin).json()["data"]
        return rows[-1]["id"], credential["Authorization"].split()[1]

    # 1. The revocation commits between the agent's authentication and its write: refused.
    gateway_id, secret = live_gateway()
    with runtime.db.session() as session:
        ctx = Ctx(session=session, runtime=runtime)
        gateway = service.authenticate_gateway(ctx, secret)
        revoked = world.client.delete(f"{API}/pops/{pop}/gateways/{gateway_id}", headers=admin)
        assert revoked.status_code == 204
        with pytest.raises(AuthenticationError, match="revoked"):
            service.publish_key(ctx, gateway, world.a.id, public_key())
    assert interface_key() is None

    # 2. The key is written first; the revocation, arriving meanwhile, waits and withdraws it.
    gateway_id, secret = live_gateway()
    with serve(app) as url, runtime.db.session() as session:
        ctx = Ctx(session=session, runtime=runtime)
        gateway = service.authenticate_gateway(ctx, secret)
        service.publish_key(ctx, gateway, world.a.id, public_key())
        answers: list[int] = []
        revoking = threading.Thread(
            target=lambda: answers.append(
                httpx.delete(
                    f"{url}{API}/pops/{pop}/gateways/{gateway_id}", headers=admin, timeout=30
                ).status_code
            )
        )
        revoking.start()
        revoking.join(1.0)
        assert revoking.is_alive(), "the revocation did not wait for the key being written"
        session.commit()
        revoking.join(30)
        assert answers == [204]
    assert interface_key() is None
