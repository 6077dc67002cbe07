"""``tongdao quotas``: the quota jobs, on the store (where the server runs)."""

from __future__ import annotations

import typer

from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from

app = typer.Typer(help="Quota jobs on the store itself.", no_args_is_help=True)


@app.command("lift")
def lift(data_dir: DataDirOpt = None, database_url: DatabaseUrlOpt = None) -> None:
    """Lift the blocks and throttles of past Asia/Shanghai months (the quotas.month job, which
    the server runs by itself). Exit 3 when a server replica holds the job's lease."""
    from tongdao.jobs.lease import holder_id
    from tongdao.quotas.jobs import run_month_job
    from tongdao.runtime import Runtime

    runtime = Runtime.from_settings(settings_from(data_dir, database_url))
    try:
        lifted = run_month_job(runtime, f"cli:{holder_id()}", force=True)
    finally:
        runtime.db.dispose()
    if lifted is None:
        fail("the quotas job is running elsewhere (its lease is held); try again later", 3)
    typer.echo(f"{lifted} blocks of past months lifted")
