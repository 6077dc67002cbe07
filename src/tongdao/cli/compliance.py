"""``tongdao compliance``: the scheduled compliance check, run once on the store."""

from __future__ import annotations

from typing import Annotated

import typer

from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from

app = typer.Typer(help="Compliance jobs on the store itself.", no_args_is_help=True)


@app.command("check")
def check(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Check the licences and ownership against the service in place now, under the job's
    lease (what `tongdao server` does every TONGDAO_JOBS_INTERVAL_SECONDS): alert on a rule
    newly unmet, suspend the tenants whose grace period ended, lift what was put right.
    Exit 3 when a server replica holds the lease."""
    from tongdao.compliance import watch
    from tongdao.jobs.lease import holder_id
    from tongdao.runtime import Runtime

    runtime = Runtime.from_settings(settings_from(data_dir, database_url))
    try:
        outcome = watch.run_job(runtime, f"cli:{holder_id()}")
    except watch.LeaseHeld:
        fail("the compliance check is running elsewhere (its lease is held); try again later", 3)
    finally:
        runtime.db.dispose()
    if as_json:
        typer.echo(outcome.model_dump_json(indent=2))
        return
    typer.echo(
        f"unmet: {', '.join(outcome.open) or 'nothing'}; newly found: "
        f"{', '.join(outcome.opened) or 'nothing'}; put right: "
        f"{', '.join(outcome.resolved) or 'nothing'}; tenants suspended: "
        f"{len(outcome.suspended)}, reactivated: {len(outcome.lifted)}"
    )
