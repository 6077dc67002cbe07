"""Device lifetime: a device whose user has not signed in for the tenant's N days leaves the
desired state the PoPs get, and comes back when the user signs in (fake clock)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import both_stores
from tests.scim.support import activate, device, enrol, make_pop, state
from tests.support.world import PASSWORD, World
from tongdao.audit.models import AuditEvent
from tongdao.cli import app as cli_app
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


@both_stores
def test_a_device_leaves_the_gateways_after_n_days_and_comes_back_at_sign_in(
    world: World, runtime: Runtime
) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    item = f"{API}/tenants/{world.a.id}/device-lifetime"
    h = world.a.admin.headers
    assert world.client.get(item, headers=h).json()["days"] is None  # off by default
    start = utcnow()
    runtime.clock = lambda: start
    resp = world.client.put(item, json={"days": 30}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["days"] == 30

    # Day 29: nothing; day 31: the device is disabled and off the gateways.
    runtime.clock = lambda: start + timedelta(days=29)
    assert service.run(runtime).disabled == []
    assert dev["public_key"] in peers(world, gw)
    runtime.clock = lambda: start + timedelta(days=31)
    assert [str(i) for i in service.run(runtime).disabled] == [dev["id"]]
    assert service.run(runtime).disabled == []  # running again changes nothing
    assert dev["public_key"] not in peers(world, gw)
    # The console and the API say why (the world's API tokens have expired by day 31: the
    # admin signs in, which starts only the admin's own clock).
    admin = sign_in(world, "tenant_admin@a.example")
    got = world.client.get(f"{API}/tenants/{world.a.id}/devices/{dev['id']}", headers=admin)
    assert got.json()["state"] == "disabled"
    held = world.client.get(item, headers=admin).json()["held"]
    assert [d["device_id"] for d in held] == [dev["id"]]

    # The user signs in (the CLI's and the console's sign-in): the device is back.
    sign_in(world, "employee@a.example")
    assert dev["public_key"] in peers(world, gw)
    assert world.client.get(item, headers=admin).json()["held"] == []
    # Their clock started again: 29 days after that sign-in, still on.
    runtime.clock = lambda: start + timedelta(days=31 + 29)
    assert service.run(runtime).disabled == []
    with runtime.db.session() as s:
        actions = list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.object_id == dev["id"])
                .order_by(AuditEvent.id)
            )
        )
    expired = actions.index("device_lifetime_expired")
    assert "device_lifetime_restored" in actions[expired:]


def test_turning_the_lifetime_off_gives_devices_back_and_bad_values_are_refused(
    world: World, runtime: Runtime
) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    item = f"{API}/tenants/{world.a.id}/device-lifetime"
    h = world.a.admin.headers
    for bad in (0, 3651, "7", True, 1.5):
        resp = world.client.put(item, json={"days": bad}, headers=h)
        assert resp.status_code == 422, (bad, resp.text)
        assert "days" in resp.json()["error"]["fields"]
    start = utcnow()
    runtime.clock = lambda: start
    assert world.client.put(item, json={"days": 1}, headers=h).status_code == 200
    runtime.clock = lambda: start + timedelta(days=2)
    assert len(service.run(runtime).disabled) == 1
    assert dev["public_key"] not in peers(world, gw)
    runtime.clock = lambda: start  # (the world's API tokens last a day)
    # Only the tenant's admin sets it; another tenant's answers 404.
    assert (
        world.client.put(item, json={"days": 5}, headers=world.a.employee.headers).status_code
        == 403
    )
    assert (
        world.client.put(item, json={"days": 5}, headers=world.b.admin.headers).status_code == 404
    )
    resp = world.client.put(item, json={"days": None}, headers=h)
    assert resp.status_code == 200 and resp.json()["days"] is None
    assert dev["public_key"] in peers(world, gw)


def test_the_cli_runs_the_job(world: World, runtime: Runtime) -> None:
    result = CliRunner().invoke(
        cli_app,
        [
            "devices",
            "expire",
            "--data-dir",
            str(runtime.settings.data_dir),
            "--database-url",
            runtime.settings.database_url,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == '{"disabled": []}'
