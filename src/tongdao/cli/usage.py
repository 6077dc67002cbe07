"""``tongdao usage``: usage jobs on the store (where the server runs)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from

app = typer.Typer(help="Usage ledger jobs on the store itself.", no_args_is_help=True)


@app.command("retention")
def retention(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Drop raw usage reports and ledger hours past their retention (settings
    usage_raw_months, usage_hourly_months) and make the monthly partitions ahead
    (PostgreSQL), under the job's lease. Exit 3 when a server replica holds the lease."""
    from tongdao.gateway.retention import LeaseHeld, run_retention_job
    from tongdao.jobs.lease import holder_id
    from tongdao.runtime import Runtime

    runtime = Runtime.from_settings(settings_from(data_dir, database_url))
    try:
        outcome = run_retention_job(runtime, runtime.clock(), f"cli:{holder_id()}", force=True)
    except LeaseHeld:
        fail("the usage retention job is running elsewhere (its lease is held)", 3)
    finally:
        runtime.db.dispose()
    assert outcome is not None
    if as_json:
        typer.echo(json.dumps(asdict(outcome)))
    else:
        typer.echo(
            f"raw usage kept from {outcome.raw_before}, hourly ledger from "
            f"{outcome.hourly_before}; partitions made: {', '.join(outcome.made) or 'none'}; "
            f"dropped: {', '.join(outcome.dropped) or 'none'}"
        )
