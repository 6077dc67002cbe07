"""The monthly run as a job: two server replicas' schedulers under the lease, the CLI
command, and a run killed (SIGKILL) mid-way, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.conftest import TEST_DATA_KEY, both_stores, make_settings
from tests.store.test_billing_store import invoices_of, numbers, series_value
from tests.support.billing import add_plan, add_tenants, subscribe
from tongdao.api.app import create_app
from tongdao.billing import money
from tongdao.billing.models import Invoice
from tongdao.cli import app as cli_app
from tongdao.config import Settings
from tongdao.jobs import lease
from tongdao.jobs.scheduler import BILLING_JOB, Scheduler
from tongdao.runtime import Runtime

JANUARY_2ND = datetime(2027, 1, 2, 1, tzinfo=UTC)  # 09:00 in Shanghai: December is due


def env_for(tmp_path: Path, store_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "TONGDAO_DATA_DIR": str(tmp_path),
        "TONGDAO_DATABASE_URL": store_url,
        "TONGDAO_DATA_KEY": TEST_DATA_KEY,
        "TONGDAO_ENV": "test",
    }


@both_stores
def test_two_replicas_schedulers_bill_the_month_once(settings: Settings, runtime: Runtime) -> None:
    plan = add_plan(runtime)
    for tenant in add_tenants(runtime, 5):
        subscribe(runtime, tenant, plan, date(2026, 11, 20))
    replicas = [Runtime.from_settings(settings, clock=lambda: JANUARY_2ND) for _ in range(2)]
    schedulers = [Scheduler(r, interval=0.05) for r in replicas]
    try:
        for s in schedulers:
            s.start()
        deadline = time.monotonic() + 30
        while lease.last_done(runtime.db, BILLING_JOB) != "2026-12":
            assert time.monotonic() < deadline, "the monthly run did not finish"
            time.sleep(0.05)
        time.sleep(0.3)  # several more ticks of both: nothing more happens
    finally:
        for s in schedulers:
            s.stop()
        for r in replicas:
            r.db.dispose()
    assert numbers(runtime) == [1, 2, 3, 4, 5] and series_value(runtime) == 5
    assert {i.month for i in invoices_of(runtime)} == {"2026-12"}


def test_the_server_starts_the_scheduler(tmp_path: Path, store_url: str) -> None:
    """The server's default: a scheduler ticking every 300 s (the tests' apps run none)."""
    assert Settings.model_fields["jobs_interval_seconds"].default == 300.0
    settings = make_settings(tmp_path, store_url, jobs_interval_seconds=300.0)
    app = create_app(Runtime.from_settings(settings))
    with TestClient(app):
        scheduler = app.state.scheduler
        assert isinstance(scheduler, Scheduler) and scheduler.interval == 300.0
        assert scheduler._thread is not None and scheduler._thread.is_alive()
    assert not scheduler._thread.is_alive()


@both_stores
def test_the_cli_runs_a_month_and_refuses_one_not_ended(
    tmp_path: Path, store_url: str, runtime: Runtime
) -> None:
    plan = add_plan(runtime)
    for tenant in add_tenants(runtime, 2):
        subscribe(runtime, tenant, plan, date(2026, 10, 1))
    runner = CliRunner()
    env = env_for(tmp_path, store_url)
    first = runner.invoke(cli_app, ["billing", "run", "--month", "2026-11", "--json"], env=env)
    assert first.exit_code == 0, first.output
    assert '"created": ["INV00000001", "INV00000002"]' in first.output
    again = runner.invoke(cli_app, ["billing", "run", "--month", "2026-11"], env=env)
    assert again.exit_code == 0 and "0 invoices made, 2 tenants had theirs" in again.output
    future = runner.invoke(cli_app, ["billing", "run", "--month", "2099-01"], env=env)
    assert future.exit_code == 2 and "has not ended" in future.output
    # A replica holding the lease: the command says so and makes nothing.
    assert lease.acquire(
        runtime.db, BILLING_JOB, "replica-x", runtime.clock(), lease.timedelta(minutes=5)
    )
    held = runner.invoke(cli_app, ["billing", "run", "--month", "2026-10"], env=env)
    assert held.exit_code == 3 and "lease" in held.output
    assert numbers(runtime) == [1, 2]


@both_stores
def test_a_run_killed_mid_way_leaves_no_half_invoice_and_no_gap(
    tmp_path: Path, store_url: str, runtime: Runtime
) -> None:
    plan = add_plan(runtime)
    tenants = add_tenants(runtime, 40)
    for tenant in tenants:
        subscribe(runtime, tenant, plan, date(2026, 10, 1))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tongdao", "billing", "run", "--month", "2026-11"],
        # A tenant per transaction here, so that the kill lands between commits; a batch of
        # tenants is one transaction (test_billing_store: a failure in a batch).
        env={**env_for(tmp_path, store_url), "TONGDAO_BILLING_RUN_BATCH": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with runtime.db.session(write=False) as session:
                if (session.scalar(select(func.count()).select_from(Invoice)) or 0) >= 3:
                    break
            time.sleep(0.005)
    finally:
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    made = numbers(runtime)
    assert made == list(range(1, len(made) + 1)) and series_value(runtime) == len(made)
    for invoice in invoices_of(runtime):
        assert invoice.lines and invoice.subtotal == sum(x.amount for x in invoice.lines)
        assert invoice.total == invoice.subtotal + sum(x.vat for x in invoice.lines)
    assert killed and len(made) < 40, "the run finished before it could be killed"
    # The lease the killed run held expires; a run after that makes the rest.
    later = Runtime(
        settings=runtime.settings, db=runtime.db, cipher=runtime.cipher,
        passwords=runtime.passwords, clock=lambda: datetime.now(UTC) + lease.timedelta(hours=1),
    )  # fmt: skip
    from tongdao.jobs.scheduler import run_billing_job

    outcome = run_billing_job(later, money.parse_month("2026-11"), "after-kill", force=True)
    assert outcome is not None and outcome.existing == len(made)
    assert numbers(runtime) == list(range(1, 41))
