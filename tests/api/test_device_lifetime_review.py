"""Device lifetime under attack (security review): an employee's API token outlives the
lifetime, yet it must not bring a held device back or register one that escapes the clock;
an admin's decision about a held device is not undone by the user's next sign-in."""

from __future__ import annotations

from datetime import timedelta

from tests.api.test_gateway import public_key
from tests.scim.support import activate, device, enrol, make_pop, state
from tests.support.world import PASSWORD, World
from tongdao.clock import utcnow
from tongdao.lifetime import service
from tongdao.runtime import Runtime

API = "/api/v1"


def peers(world: World, gw: dict[str, str]) -> list[str]:
    return [p.public_key for t in state(world, gw).tenants for p in t.peers]


def sign_in(world: World, email: str) -> dict[str, str]:
    resp = world.client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def api_token(world: World, headers: dict[str, str]) -> dict[str, str]:
    resp = world.client.post(
        f"{API}/tokens",
        json={
            "name": "script",
            "scopes": ["read", "write"],
            "expires_in_days": 90,
            "current_password": PASSWORD,
        },
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_an_api_token_does_not_bring_a_held_device_back(world: World, runtime: Runtime) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    token = api_token(world, world.a.employee.headers)
    start = utcnow()
    runtime.clock = lambda: start
    item = f"{API}/tenants/{world.a.id}/device-lifetime"
    assert world.client.put(item, json={"days": 30}, headers=world.a.admin.headers).is_success
    runtime.clock = lambda: start + timedelta(days=31)
    assert [str(i) for i in service.run(runtime).disabled] == [dev["id"]]

    # The employee has not signed in; their 90-day API token still works.
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/devices/{dev['id']}", json={"state": "active"}, headers=token
    )
    assert resp.status_code == 422, resp.text
    assert "state" in resp.json()["error"]["fields"]
    assert dev["public_key"] not in peers(world, gw)
    # A device registered with the token is on the same clock: the next run takes it off.
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "phone", "public_key": public_key()},
        headers=token,
    )
    assert resp.status_code == 201, resp.text
    new = resp.json()
    assert [str(i) for i in service.run(runtime).disabled] == [new["id"]]
    assert new["public_key"] not in peers(world, gw)

    # Signing in brings both back.
    sign_in(world, "employee@a.example")
    assert {dev["public_key"], new["public_key"]} <= set(peers(world, gw))


def test_an_admins_decision_on_a_held_device_stands(world: World, runtime: Runtime) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    start = utcnow()
    runtime.clock = lambda: start
    item = f"{API}/tenants/{world.a.id}/device-lifetime"
    assert world.client.put(item, json={"days": 30}, headers=world.a.admin.headers).is_success
    runtime.clock = lambda: start + timedelta(days=31)
    assert [str(i) for i in service.run(runtime).disabled] == [dev["id"]]
    admin = sign_in(world, "tenant_admin@a.example")
    url = f"{API}/tenants/{world.a.id}/devices/{dev['id']}"
    # The admin enables it (not held any more), then disables it: the laptop was lost.
    assert world.client.patch(url, json={"state": "active"}, headers=admin).status_code == 200
    assert world.client.get(item, headers=admin).json()["held"] == []
    assert world.client.patch(url, json={"state": "disabled"}, headers=admin).status_code == 200
    sign_in(world, "employee@a.example")
    assert world.client.get(url, headers=admin).json()["state"] == "disabled"
    assert dev["public_key"] not in peers(world, gw)


def test_the_job_survives_a_held_device_enabled_behind_its_back(
    world: World, runtime: Runtime
) -> None:
    """An admin enables a held device; a later run holds it again (one hold per device: the
    job used to add a second and fail for every tenant)."""
    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    start = utcnow()
    runtime.clock = lambda: start
    item = f"{API}/tenants/{world.a.id}/device-lifetime"
    assert world.client.put(item, json={"days": 30}, headers=world.a.admin.headers).is_success
    runtime.clock = lambda: start + timedelta(days=31)
    assert [str(i) for i in service.run(runtime).disabled] == [dev["id"]]
    admin = sign_in(world, "tenant_admin@a.example")
    url = f"{API}/tenants/{world.a.id}/devices/{dev['id']}"
    assert world.client.patch(url, json={"state": "active"}, headers=admin).status_code == 200
    runtime.clock = lambda: start + timedelta(days=40)
    assert [str(i) for i in service.run(runtime).disabled] == [dev["id"]]
    assert service.run(runtime).disabled == []
