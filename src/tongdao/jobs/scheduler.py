"""Scheduled work inside ``tongdao server``: a background thread that, every
``jobs_interval_seconds`` (first after one interval), runs each due job under its lease
(:mod:`tongdao.jobs.lease`), so that with several replicas each job runs once.

Jobs:

* ``billing.monthly``: from the first Asia/Shanghai day of a month on, make the previous
  month's invoices (:func:`tongdao.billing.service.run_month`); the lease records the month
  done, so later ticks and other replicas skip it. ``tongdao billing run`` runs the same job.
* ``quotas.month``: from the first Asia/Shanghai day of a month on, lift past months' quota
  blocks (:mod:`tongdao.quotas.jobs`); ``tongdao quotas lift`` runs the same job.
* ``billing.reminders``: reminders for overdue invoices at 1, 7 and 30 days past due, each
  once (:mod:`tongdao.billing.dunning`); ``tongdao billing remind`` runs the same job.
* ``devices.lifetime``: devices whose user has not signed in for the tenant's device lifetime
  leave the gateways (:mod:`tongdao.lifetime.service`); ``tongdao devices expire`` runs the
  same job.
* ``usage.retention``: once per Asia/Shanghai day, old raw usage reports and ledger hours go
  and monthly partitions are made ahead (:mod:`tongdao.gateway.retention`); ``tongdao usage
  retention`` runs the same job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING

from tongdao.audit.recorder import Actor
from tongdao.billing import money
from tongdao.billing.service import RunOutcome, run_month
from tongdao.jobs import lease

if TYPE_CHECKING:
    from tongdao.crossborder.expiry import ExpiryOutcome
    from tongdao.runtime import Runtime

log = logging.getLogger("tongdao.jobs")

BILLING_JOB = "billing.monthly"
LEASE_TTL = timedelta(minutes=10)
JOB_ACTOR = Actor(None, "job:billing.monthly")


class LeaseHeld(Exception):
    """Another holder has the job's lease (it is running elsewhere)."""


def run_billing_job(
    runtime: Runtime, month: date, holder: str, *, force: bool = False, actor: Actor = JOB_ACTOR
) -> RunOutcome | None:
    """The monthly run for ``month`` under the lease; None when it was done already.

    ``actor`` is who the audit trail names (the console's run: the billing clerk).

    Raises :class:`LeaseHeld` when another replica (or command) holds the lease."""
    db = runtime.db
    done = month.strftime("%Y-%m")
    if not force and lease.last_done(db, BILLING_JOB) >= done:
        return None
    if not lease.acquire(db, BILLING_JOB, holder, runtime.clock(), LEASE_TTL):
        raise LeaseHeld(BILLING_JOB)
    finished = False
    try:

        def keep_going() -> bool:
            return lease.acquire(db, BILLING_JOB, holder, runtime.clock(), LEASE_TTL)

        outcome = run_month(
            db,
            month,
            actor=actor,
            keep_going=keep_going,
            batch=runtime.settings.billing_run_batch,
        )
        finished = True
        return outcome
    finally:
        previous = lease.last_done(db, BILLING_JOB)
        lease.release(
            db, BILLING_JOB, holder, runtime.clock(),
            done=max(done, previous) if finished else None,
        )  # fmt: skip


def due_billing_month(runtime: Runtime) -> date:
    """The month the scheduler bills: the one before today's (Asia/Shanghai)."""
    return money.previous_month(money.shanghai_today(runtime.clock()).replace(day=1))


def run_crossborder_job(runtime: Runtime, holder: str) -> ExpiryOutcome:
    """The cross-border expiry job under its lease; raises :class:`LeaseHeld`."""
    from tongdao.crossborder import expiry

    db = runtime.db
    if not lease.acquire(db, expiry.JOB, holder, runtime.clock(), LEASE_TTL):
        raise LeaseHeld(expiry.JOB)
    try:
        return expiry.run(runtime)
    finally:
        lease.release(db, expiry.JOB, holder, runtime.clock(), done=runtime.clock().isoformat())


class Scheduler:
    def __init__(self, runtime: Runtime, interval: float) -> None:
        self.runtime = runtime
        self.interval = interval
        self.holder = lease.holder_id()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when the compliance check should run now
        self._unsubscribe: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self.jobs: list[Callable[[], object]] = [
            self.billing,
            self.reminders,
            self.usage_retention,
            self.quotas,
            self.crossborder,
            self.device_lifetime,
            self.compliance,
            self.anchor,
        ]

    def billing(self) -> RunOutcome | None:
        try:
            outcome = run_billing_job(self.runtime, due_billing_month(self.runtime), self.holder)
        except LeaseHeld:
            return None
        if outcome is not None:
            log.info(
                "billing run %s: %d invoices made, %d tenants had theirs",
                outcome.month, len(outcome.created), outcome.existing,
            )  # fmt: skip
        return outcome

    def reminders(self) -> object:
        from tongdao.billing import dunning

        try:
            return dunning.run_reminders_job(self.runtime, self.holder)
        except dunning.LeaseHeld:
            return None

    def quotas(self) -> int | None:
        from tongdao.quotas.jobs import run_month_job

        return run_month_job(self.runtime, self.holder)

    def usage_retention(self) -> object:
        """Usage retention and partitions, once a day (tongdao.gateway.retention)."""
        from tongdao.gateway import retention

        try:
            return retention.run_retention_job(self.runtime, self.runtime.clock(), self.holder)
        except retention.LeaseHeld:
            return None

    def crossborder(self) -> object:
        try:
            return run_crossborder_job(self.runtime, self.holder)
        except LeaseHeld:
            return None

    def device_lifetime(self) -> object:
        from tongdao.lifetime import service as lifetime

        try:
            return lifetime.run_job(self.runtime, self.holder)
        except lifetime.LeaseHeld:
            return None

    def compliance(self) -> object:
        from tongdao.compliance import watch

        try:
            return watch.run_job(self.runtime, self.holder)
        except watch.LeaseHeld:
            return None

    def anchor(self) -> object:
        from tongdao.audit import anchor

        settings = self.runtime.settings
        return anchor.write(
            self.runtime.db,
            anchor.AnchorKeys.from_settings(settings),
            anchor.anchor_file(settings),
            self.runtime.clock(),
        )

    def tick(self) -> None:
        for job in self.jobs:
            self._run_one(job)

    def start(self) -> Scheduler:
        if self.interval > 0 and self._thread is None:
            from tongdao.compliance import watch

            # A licence or the shareholder register changed here: check the rules now, not at
            # the next tick (the alert is "at once").
            self._unsubscribe = watch.on_rules_changed(self._wake.set)
            self._thread = threading.Thread(target=self._run, name="tongdao-jobs", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop.is_set():
            woken = self._wake.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                return
            if woken:
                self._wake.clear()
                self._run_one(self.compliance)
            if time.monotonic() >= due:
                self.tick()
                due = time.monotonic() + self.interval

    def _run_one(self, job: Callable[[], object]) -> None:
        try:
            job()
        except Exception:  # a store outage: try again next time
            log.exception("scheduled job failed")

    def stop(self, timeout: float = 30.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
