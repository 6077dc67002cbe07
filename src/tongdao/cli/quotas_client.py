"""API client commands for quotas: ``tongdao tenants limits`` / ``quota-events`` and
``tongdao users limits`` (show, or change some values with ``--set``)."""

from __future__ import annotations

from typing import Any

import typer

from tongdao.cli.client import Client, ServerOpt, TokenOpt
from tongdao.cli.resources import IdArg, JsonOpt, SetOpt, TenantOpt, read_body, seg, show, table
from tongdao.cli.resources import user_path as _user_path

TENANT_FIELDS = ("tenant_cap_mb", "user_cap_mb", "user_rate_mbps", "over_cap", "throttle_mbps")
USER_FIELDS = ("cap_mb", "rate_mbps")
EVENT_COLUMNS = ("month", "subject", "level", "used_bytes", "cap_bytes", "created_at", "lifted_at")


def _show_or_set(path: str, fields: tuple[str, ...], sets: list[str] | None, **kw: Any) -> None:
    client = Client.resolve(kw["server"], kw["token"])
    current = client.json("GET", path)
    if sets:
        body = {k: current.get(k) for k in fields} | read_body(None, sets)
        current = client.json("PUT", path, body=body)
    show(current, kw["as_json"])


def tenant_limits(
    tenant_id: IdArg,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show the tenant's caps and bandwidth limits and its bytes this month; with --set
    (tenant_cap_mb, user_cap_mb, user_rate_mbps, over_cap, throttle_mbps) change them
    (operator admin, billing clerk); the values not set stay."""
    path = f"/tenants/{seg(tenant_id)}/limits"
    _show_or_set(path, TENANT_FIELDS, sets, as_json=as_json, server=server, token=token)


def quota_events(
    tenant_id: IdArg, as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """The tenant's 80% / 100% events, newest first."""
    answer = Client.resolve(server, token).json("GET", f"/tenants/{seg(tenant_id)}/quota-events")
    if as_json:
        show(answer, True)
    else:
        typer.echo(table(answer["data"], EVENT_COLUMNS))


def user_limits(
    user_id: IdArg,
    tenant: TenantOpt,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a user's cap and bandwidth (their override and the values in force) and their
    bytes this month; with --set (cap_mb, rate_mbps; null to remove) change the override
    within the tenant's values (tenant admin, operator staff)."""
    path = _user_path(tenant, user_id) + "/limits"
    _show_or_set(path, USER_FIELDS, sets, as_json=as_json, server=server, token=token)


def add_tenant_commands(tenants: typer.Typer) -> None:
    tenants.command("limits")(tenant_limits)
    tenants.command("quota-events")(quota_events)


def add_user_commands(users: typer.Typer) -> None:
    users.command("limits")(user_limits)
