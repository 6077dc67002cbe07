"""``tongdao tenants limits | quota-events`` and ``tongdao users limits`` against a real
server: the clerk changes some values and keeps the rest; the tenant admin's override above
the tenant's is refused with the field named."""

from __future__ import annotations

import json

from tests.cli.test_audit_cli import Cli, run, server_url
from tests.support.world import World

__all__ = ["run", "server_url"]


def test_limits_through_the_command_line(world: World, run: Cli, server_url: str) -> None:
    clerk = world.operators["billing_clerk"].token
    tenant = str(world.a.id)
    out = run("tenants", "limits", tenant, "--set", "user_cap_mb=100", "--json",
              token=clerk, server=server_url)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["user_cap_mb"] == 100
    out = run("tenants", "limits", tenant, "--set", "user_rate_mbps=20", "--json",
              token=clerk, server=server_url)  # fmt: skip
    assert out.exit_code == 0, out.output
    both = json.loads(out.output)
    assert (both["user_cap_mb"], both["user_rate_mbps"]) == (100, 20)  # the cap stayed
    admin = world.a.admin.token
    user = str(world.a.employee.user_id)
    refused = run("users", "limits", "--tenant", tenant, user, "--set", "cap_mb=500",
                  token=admin, server=server_url)  # fmt: skip
    assert refused.exit_code != 0 and "cap_mb" in refused.output
    out = run("users", "limits", "--tenant", tenant, user, "--set", "cap_mb=50",
              token=admin, server=server_url)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "effective_cap_mb" in out.output and "50" in out.output
    out = run("tenants", "quota-events", tenant, token=admin, server=server_url)
    assert out.exit_code == 0, out.output
