"""``tongdao gateway|connector enrol|list|revoke`` against a real server on 127.0.0.1."""

from __future__ import annotations

import httpx

from tests.api.test_gateway import make_pop
from tests.cli.test_cli import Cli, cli, config_dir, ok_json, server_url  # noqa: F401
from tests.support.world import World


def _enrol(url: str, token: str) -> str:
    """The agent's side: trade the token for a credential; returns the credential."""
    resp = httpx.post(f"{url}/api/v1/gateway/enrol", json={"token": token}, timeout=30)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["credential"])


def _polls(url: str, credential: str) -> int:
    resp = httpx.get(
        f"{url}/api/v1/gateway/desired-state",
        params={"wait": 0},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=30,
    )
    return resp.status_code


def test_gateway_credentials_enrol_list_revoke(world: World, cli: Cli, server_url: str) -> None:  # noqa: F811
    token = world.admin.token
    pop = make_pop(world, "bj")
    made = cli("gateway", "enrol", "--pop", pop, "--ttl-hours", "2", token=token)
    assert made.exit_code == 0, made.output
    enrolment = made.stdout.strip()
    assert enrolment.startswith("tde_")
    assert "one-time" in made.stderr
    first = _enrol(server_url, enrolment)
    again = ok_json(cli("gateway", "enrol", "--pop", pop, "--json", token=token))
    assert isinstance(again, dict)
    second = _enrol(server_url, again["token"])

    table = cli("gateway", "list", "--pop", pop, token=token)
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split()[:2] == ["ID", "HOSTNAME"]
    assert len(rows) == 2
    assert rows[0].split()[-1] == "replaced"
    listed = ok_json(cli("gateway", "list", "--pop", pop, "--json", token=token))
    assert isinstance(listed, dict)
    live = [g["id"] for g in listed["data"] if g["revoked_at"] is None]
    assert len(live) == 1
    assert (_polls(server_url, first), _polls(server_url, second)) == (401, 200)

    revoked = cli("gateway", "revoke", live[0], "--pop", pop, token=token)
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.strip() == f"revoked gateway {live[0]}"
    assert _polls(server_url, second) == 401
    # A tenant's admin may not see a PoP's gateways.
    denied = cli("gateway", "list", "--pop", pop, token=world.a.admin.token)
    assert denied.exit_code == 1
    assert denied.stderr.startswith("error: ")


def test_connector_credentials_enrol_list_revoke(world: World, cli: Cli, server_url: str) -> None:  # noqa: F811
    admin = world.a.admin.token
    tenant = str(world.a.id)
    site = ok_json(
        cli(
            "sites", "create", "--tenant", tenant, "--set", "name=hq", "--set", "country=CN",
            "--set", "purpose=office", "--set", 'prefixes=["198.18.9.0/24"]', "--json",
            token=admin,
        )
    )  # fmt: skip
    assert isinstance(site, dict)
    where = ("--tenant", tenant, "--site", site["id"])
    made = cli("connector", "enrol", *where, token=admin)
    assert made.exit_code == 0, made.output
    credential = _enrol(server_url, made.stdout.strip())
    assert _polls(server_url, credential) == 200

    listed = ok_json(cli("connector", "list", *where, "--json", token=admin))
    assert isinstance(listed, dict)
    (row,) = listed["data"]
    assert row["tenant_id"] == tenant
    # Another tenant's admin: not found; the tenant's own admin revokes.
    other = cli("connector", "list", *where, token=world.b.admin.token)
    assert other.exit_code == 1
    assert "not found" in other.stderr
    revoked = ok_json(cli("connector", "revoke", row["id"], *where, "--json", token=admin))
    assert revoked == {"id": row["id"], "revoked": True}
    assert _polls(server_url, credential) == 401
    shown = cli("connector", "list", *where, token=admin)
    assert shown.stdout.splitlines()[1].split()[-1] == "revoked"
