"""The ``quotas.month`` job: when an Asia/Shanghai month begins, lift the previous months'
blocks and throttles (a data-plane change: every PoP receives a state without them). It runs
in ``tongdao server``'s scheduler under its lease (one replica does it, once per month; the
lease records the month done) and as ``tongdao quotas lift``."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from tongdao.audit.recorder import Actor, set_actor
from tongdao.jobs import lease
from tongdao.quotas.service import lift_past_months, month_of
from tongdao.runtime import Ctx

if TYPE_CHECKING:
    from tongdao.runtime import Runtime

log = logging.getLogger("tongdao.quotas")

JOB = "quotas.month"
LEASE_TTL = timedelta(minutes=10)
JOB_ACTOR = Actor(None, "job:quotas.month")


def run_month_job(runtime: Runtime, holder: str, *, force: bool = False) -> int | None:
    """Lift past months' blocks under the lease: how many were lifted, or None when this
    month was done already or another holder has the lease."""
    db = runtime.db
    now = runtime.clock()
    month = month_of(now)
    if not force and lease.last_done(db, JOB) >= month:
        return None
    if not lease.acquire(db, JOB, holder, now, LEASE_TTL):
        return None
    done = False
    try:
        with db.session() as session:
            set_actor(session, JOB_ACTOR)
            lifted = lift_past_months(Ctx(session=session, runtime=runtime), now)
            session.commit()
        done = True
        if lifted:
            log.info("quotas: %d blocks of past months lifted for %s", lifted, month)
        return lifted
    finally:
        lease.release(db, JOB, holder, runtime.clock(), done=month if done else None)
