"""Usage retention and monthly partitions: replays across a Shanghai month boundary, raw rows
purged (PostgreSQL: partitions dropped) without breaking the seq dedupe, partitions made
ahead, the job under its lease and its CLI command; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text
from typer.testing import CliRunner

from tests.api.test_gateway import device, state
from tests.api.test_usage import REPORTS, enrolled_days_ago, serving_gateway
from tests.api.test_usage_ledger import ledger_totals, report_at, xpeer
from tests.conftest import both_stores
from tests.store.test_billing_jobs import env_for
from tests.support.world import World
from tongdao.billing import money
from tongdao.cli import app as cli_app
from tongdao.gateway import retention
from tongdao.gateway.models import UsageHourly, UsageRecord, UsageTenantHourly
from tongdao.jobs import lease
from tongdao.runtime import Runtime
from tongdao.store import partitions


def count(runtime: Runtime, model: type) -> int:
    with runtime.db.session(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def this_month() -> date:
    return money.shanghai_today(datetime.now(UTC)).replace(day=1)


@both_stores
def test_replays_across_a_month_boundary_and_after_the_purge_count_once(
    world: World, runtime: Runtime
) -> None:
    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    enrolled_days_ago(runtime, 40)
    boundary, _ = money.month_bounds_utc(this_month())  # 00:00+08 on the 1st, as UTC
    before = report_at(1, boundary - timedelta(seconds=40), [xpeer(world.a.id, dev, 5, 6, 1, 1)])
    across = report_at(2, boundary + timedelta(seconds=10), [xpeer(world.a.id, dev, 7, 8, 2, 2)])
    for body in (before, across):
        assert world.client.post(REPORTS, json=body, headers=gw).json()["stored"] == 1
    for body in (before, across, {**across, "seq": 1}):
        assert world.client.post(REPORTS, json=body, headers=gw).json()["duplicate"]
    assert ledger_totals(runtime) == (12, 14, 3, 3)
    pg = runtime.db.engine.dialect.name == "postgresql"
    last = money.previous_month(this_month())
    if pg:  # each report's rows sit in its Shanghai month's partition
        with runtime.db.session(write=False) as session:
            where = session.execute(
                text("SELECT seq, tableoid::regclass::text FROM usage_records ORDER BY seq")
            ).all()
        assert [tuple(r) for r in where] == [
            (1, partitions.partition_name("usage_records", last)),
            (2, partitions.partition_name("usage_records", this_month())),
        ]
    # Keep no whole month of raw rows: last month's go (PostgreSQL: its partition).
    outcome = retention.apply(runtime.db, this_month(), raw_months=0, hourly_months=13)
    assert count(runtime, UsageRecord) == 1
    if pg:
        assert outcome.dropped == [partitions.partition_name("usage_records", last)]
        with runtime.db.session(write=False) as session:
            assert last not in partitions.months_present(session.connection(), "usage_records")
            ahead = partitions.months_present(session.connection(), "usage_hourly")
        assert ahead[-1] >= money.next_month(money.next_month(money.next_month(this_month())))
    # The raw rows are gone, the dedupe is not: replays still add nothing.
    for body in (before, across, {**across, "seq": 3}):
        answer = world.client.post(REPORTS, json=body, headers=gw).json()
        assert answer["duplicate"] or answer["dropped_reasons"] == {"duplicate_peer": 1}
    assert ledger_totals(runtime) == (12, 14, 3, 3)
    # The ledger's hours go once they are past their months.
    retention.apply(runtime.db, money.next_month(this_month()), raw_months=0, hourly_months=0)
    assert count(runtime, UsageHourly) == 0 and count(runtime, UsageTenantHourly) == 0
    assert count(runtime, UsageRecord) == 0


@both_stores
def test_the_job_runs_once_a_day_under_its_lease_and_from_the_cli(
    tmp_path: Path, store_url: str, runtime: Runtime
) -> None:
    now = datetime.now(UTC)
    first = retention.run_retention_job(runtime, now, "replica-a")
    assert first is not None
    assert first.raw_before == f"{retention.months_back(this_month(), 2):%Y-%m}"
    assert retention.run_retention_job(runtime, now, "replica-b") is None  # done today
    runner = CliRunner()
    env = env_for(tmp_path, store_url)
    ran = runner.invoke(cli_app, ["usage", "retention", "--json"], env=env)
    assert ran.exit_code == 0, ran.output
    assert '"hourly_before"' in ran.output
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert lease.acquire(
        runtime.db, retention.RETENTION_JOB, "replica-x", later, timedelta(minutes=5)
    )
    held = runner.invoke(cli_app, ["usage", "retention"], env=env)
    assert held.exit_code == 3 and "lease" in held.output


def test_a_month_made_late_takes_its_rows_from_the_default_partition(
    pg_cluster: object, tmp_path: Path
) -> None:
    """PostgreSQL: rows of a month without a partition wait in the default partition and move
    into the month's partition when the job makes it."""
    import uuid

    from tongdao.store import migrate
    from tongdao.store.engine import Database

    cluster = pg_cluster
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = cluster.create_database(name, template="tongdao_template")  # type: ignore[attr-defined]
    db = Database(url)
    try:
        far = date(2031, 5, 1)
        hour = money.day_start_utc(far) + timedelta(hours=3)
        with db.session() as session:
            session.add(
                UsageHourly(
                    tenant_id=uuid.uuid4(), peer_ref="x", hour=hour, peer_kind="device",
                    gateway_id=uuid.uuid4(), pop_id=None, owner_id=None, rx_bytes=1,
                    tx_bytes=2, cross_border_rx_bytes=0, cross_border_tx_bytes=0,
                )
            )  # fmt: skip
            session.commit()
        with db.session() as session:
            conn = session.connection()
            assert partitions.ensure_months(conn, [far]) == [
                partitions.partition_name("usage_records", far),
                partitions.partition_name("usage_hourly", far),
            ]
            session.commit()
        with db.session(write=False) as session:
            where = session.scalar(text("SELECT tableoid::regclass::text FROM usage_hourly"))
        assert where == partitions.partition_name("usage_hourly", far)
        assert migrate.differences(url) == []
    finally:
        db.dispose()
        cluster.drop_database(name)  # type: ignore[attr-defined]
