"""Usage retention: raw reports and the hourly ledger kept only as long as needed.

**How long.**

* Raw ``usage_records``: the current Asia/Shanghai month and ``usage_raw_months`` (default 2)
  whole months before it. They are needed for the monthly billing run of the month before
  (active seats count devices with a handshake in the month, from the raw rows) and for a
  re-run or correction the month after; the bytes themselves live on in the hourly ledger.
  They are *not* the regulator's network log (Cybersecurity Law: network logs kept ≥ 6
  months): that is the connection log, one chained audit record per connection session
  derived from the reports as they are stored (:mod:`tongdao.audit.sessions`), kept by the
  audit retention. Nor are they the dedupe of a report's ``seq``: the gateway's row holds its
  ``last_report_seq`` (compare-and-set, see :mod:`tongdao.gateway.usage`) and each peer's
  credit (``usage_credits``) the last period counted for it, so a replay of a report whose raw
  rows are gone is still a duplicate and adds nothing.
* ``usage_hourly`` and ``usage_tenant_hourly``: the current month and ``usage_hourly_months``
  (default 24, at least 13) before it: invoices of the past year can be checked and corrected
  (credit notes) against the ledger that made them.

**How.** PostgreSQL: whole monthly partitions are detached and dropped
(:mod:`tongdao.store.partitions`; no row-by-row delete, no bloat), the default partition's
old rows deleted, and the partitions of this month and the next :data:`AHEAD` months made.
SQLite: the old rows are deleted. ``usage_tenant_hourly`` is small (hours × gateways × kinds
per tenant) and is deleted by rows on both stores, as is ``usage_overseas_hourly`` (the
overseas ends' cross-border bytes, kept as long as the ledger they reconcile).

**When.** ``tongdao server`` runs :func:`run_retention_job` under the lease ``usage.retention``
once per Asia/Shanghai day (the lease records the day done); ``tongdao usage retention`` runs
it at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete

from tongdao.billing import money
from tongdao.gateway.models import UsageHourly, UsageRecord, UsageTenantHourly
from tongdao.gateway.xbends import UsageOverseasHourly
from tongdao.jobs import lease
from tongdao.store import partitions

if TYPE_CHECKING:
    from tongdao.runtime import Runtime
    from tongdao.store.engine import Database

log = logging.getLogger("tongdao.usage.retention")

RETENTION_JOB = "usage.retention"
LEASE_TTL = timedelta(minutes=30)
AHEAD = 3  # monthly partitions made ahead of the current month


class LeaseHeld(Exception):
    """Another holder has the job's lease."""


@dataclass
class RetentionOutcome:
    raw_before: str  # YYYY-MM: raw rows before this month are gone
    hourly_before: str
    made: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def months_back(month: date, n: int) -> date:
    for _ in range(n):
        month = money.previous_month(month)
    return month


def apply(db: Database, this_month: date, raw_months: int, hourly_months: int) -> RetentionOutcome:
    """Keep raw rows from ``raw_months`` and the ledger from ``hourly_months`` whole months
    before ``this_month`` (its first day) on; make the partitions ahead (PostgreSQL)."""
    raw_cut = months_back(this_month, raw_months)
    hourly_cut = months_back(this_month, hourly_months)
    outcome = RetentionOutcome(f"{raw_cut:%Y-%m}", f"{hourly_cut:%Y-%m}")
    ahead = [this_month]
    for _ in range(AHEAD):
        ahead.append(money.next_month(ahead[-1]))
    raw_at, _ = money.month_bounds_utc(raw_cut)
    hourly_at, _ = money.month_bounds_utc(hourly_cut)
    with db.session() as session:
        conn = session.connection()
        if partitions.is_partitioned(conn, "usage_records"):
            outcome.made = partitions.ensure_months(conn, ahead)
            outcome.dropped += partitions.drop_before(conn, "usage_records", raw_cut)
        else:
            session.execute(delete(UsageRecord).where(UsageRecord.period_end < raw_at))
        if partitions.is_partitioned(conn, "usage_hourly"):
            outcome.dropped += partitions.drop_before(conn, "usage_hourly", hourly_cut)
        else:
            session.execute(delete(UsageHourly).where(UsageHourly.hour < hourly_at))
        session.execute(delete(UsageTenantHourly).where(UsageTenantHourly.hour < hourly_at))
        session.execute(delete(UsageOverseasHourly).where(UsageOverseasHourly.hour < hourly_at))
        session.commit()
    return outcome


def run_retention_job(
    runtime: Runtime, now: datetime, holder: str, *, force: bool = False
) -> RetentionOutcome | None:
    """The retention under its lease, once per Asia/Shanghai day (``force``: again); None when
    done today already. Raises :class:`LeaseHeld` when another holder runs it."""
    db = runtime.db
    today = money.shanghai_today(now)
    done = today.isoformat()
    if not force and lease.last_done(db, RETENTION_JOB) >= done:
        return None
    if not lease.acquire(db, RETENTION_JOB, holder, now, LEASE_TTL):
        raise LeaseHeld(RETENTION_JOB)
    finished = False
    try:
        settings = runtime.settings
        outcome = apply(
            db, today.replace(day=1), settings.usage_raw_months, settings.usage_hourly_months
        )
        finished = True
        log.info(
            "usage retention: raw from %s, hourly from %s; partitions made %s, dropped %s",
            outcome.raw_before, outcome.hourly_before, outcome.made, outcome.dropped,
        )  # fmt: skip
        return outcome
    finally:
        previous = lease.last_done(db, RETENTION_JOB)
        lease.release(
            db, RETENTION_JOB, holder, runtime.clock(),
            done=max(done, previous) if finished else None,
        )  # fmt: skip
