"""Device lifetime commands: ``tongdao tenants device-lifetime`` (API client: show, or set with
``--set days=N`` / ``--set days=null``) and ``tongdao devices expire`` (the scheduled job, run on
the store now)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tongdao.cli.client import Client, ServerOpt, TokenOpt
from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from
from tongdao.cli.resources import IdArg, JsonOpt, SetOpt, read_body, seg, show


def device_lifetime(
    tenant_id: IdArg,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show the tenant's device lifetime and the devices it holds off the gateways; with
    --set days=N (1 to 3650) or days=null (off) change it (tenant admin)."""
    client = Client.resolve(server, token)
    path = f"/tenants/{seg(tenant_id)}/device-lifetime"
    answer = (
        client.json("PUT", path, body=read_body(None, sets)) if sets else client.json("GET", path)
    )
    show(answer, as_json)


def expire(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Run the device lifetime job on the store now (under its lease): disable the devices
    whose user has not signed in for their tenant's lifetime. Exit 3 when a server replica
    holds the lease."""
    from tongdao.jobs.lease import holder_id
    from tongdao.lifetime import service
    from tongdao.runtime import Runtime

    runtime = Runtime.from_settings(settings_from(data_dir, database_url))
    try:
        outcome = service.run_job(runtime, f"cli:{holder_id()}")
    except service.LeaseHeld:
        fail("the device lifetime job is running elsewhere (its lease is held); try later", 3)
    finally:
        runtime.db.dispose()
    disabled = [str(i) for i in outcome.disabled]
    if as_json:
        typer.echo(json.dumps({"disabled": disabled}))
    else:
        typer.echo(f"{len(disabled)} devices disabled")


def add_tenant_commands(tenants: typer.Typer) -> None:
    tenants.command("device-lifetime")(device_lifetime)


def add_device_commands(devices: typer.Typer) -> None:
    devices.command("expire")(expire)
