"""``tongdao billing``: the monthly billing run, on the store (where the server runs)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from

app = typer.Typer(help="Billing jobs on the store itself.", no_args_is_help=True)


@app.command("run")
def run(
    month: Annotated[str, typer.Option(help="the Asia/Shanghai month to bill, YYYY-MM")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Make every tenant's draft invoice for MONTH under the job's lease; running it again
    makes only what is missing. Exit 3 when a server replica holds the lease."""
    from tongdao.billing.service import billable_month
    from tongdao.errors import ValidationError
    from tongdao.jobs.lease import holder_id
    from tongdao.jobs.scheduler import LeaseHeld, run_billing_job
    from tongdao.runtime import Runtime

    runtime = Runtime.from_settings(settings_from(data_dir, database_url))
    try:
        try:
            first = billable_month(month, runtime.clock())
        except ValidationError as exc:
            fail(f"--month: {exc.fields['month']}", 2)
        outcome = run_billing_job(runtime, first, f"cli:{holder_id()}", force=True)
    except LeaseHeld:
        fail("the billing job is running elsewhere (its lease is held); try again later", 3)
    finally:
        runtime.db.dispose()
    assert outcome is not None
    if as_json:
        typer.echo(
            json.dumps(
                {"month": outcome.month, "created": outcome.created, "existing": outcome.existing}
            )
        )
    else:
        typer.echo(
            f"{outcome.month}: {len(outcome.created)} invoices made"
            + (f" ({outcome.created[0]}..{outcome.created[-1]})" if outcome.created else "")
            + f", {outcome.existing} tenants had theirs already"
        )


@app.command("remind")
def remind(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Send the payment reminders due now (1, 7 and 30 days past due, each once per invoice)
    under the job's lease. Exit 3 when a server replica holds the lease."""
    from tongdao.billing.dunning import LeaseHeld, run_reminders_job
    from tongdao.jobs.lease import holder_id
    from tongdao.runtime import Runtime

    runtime = Runtime.from_settings(settings_from(data_dir, database_url))
    try:
        outcome = run_reminders_job(runtime, f"cli:{holder_id()}")
    except LeaseHeld:
        fail("the reminders job is running elsewhere (its lease is held); try again later", 3)
    finally:
        if runtime.mailer is not None:  # the reminders it queued leave before the command ends
            runtime.mailer.wait_idle(60)
            runtime.mailer.stop()
        runtime.db.dispose()
    if as_json:
        typer.echo(json.dumps({"sent": outcome.sent, "skipped": outcome.skipped}))
    else:
        typer.echo(
            f"{len(outcome.sent)} reminders sent"
            + (f" ({', '.join(outcome.sent)})" if outcome.sent else "")
            + f", {outcome.skipped} overdue invoices had theirs already"
        )
