"""A lease in the store, so that of several server replicas one runs a scheduled job.

A lease is a row of ``job_leases`` (name, holder, expires_at). :func:`acquire` makes sure the
row exists (an insert that does nothing on conflict), then takes it with one conditional
update that matches only while the lease is free (expired) or already ours: of two replicas
racing, the database lets exactly one update match (PostgreSQL: the row lock, the loser's
statement re-checks the committed row; SQLite: one writer at a time). Each call runs and
commits its own short transaction, so the lease is visible to the others at once. A holder
that dies lets the lease expire after ``ttl``; a long job renews it as it goes.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tongdao.jobs.models import JobLease
from tongdao.store.engine import Database
from tongdao.store.rows import rows_updated


def holder_id() -> str:
    """This process, as a lease holder: host, pid and a random part."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def acquire(db: Database, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take (or renew) the lease ``name`` for ``holder`` until ``now + ttl``; True if taken."""
    with db.session() as session:
        insert = pg_insert if not db.is_sqlite else sqlite_insert
        session.execute(
            insert(JobLease)
            .values(name=name, holder="", expires_at=now, last_done="")
            .on_conflict_do_nothing(index_elements=["name"])
        )
        taken = rows_updated(
            session,
            update(JobLease)
            .where(JobLease.name == name)
            .where((JobLease.expires_at <= now) | (JobLease.holder == holder))
            .values(holder=holder, expires_at=now + ttl),
        )
        session.commit()
    return taken == 1


def release(
    db: Database, name: str, holder: str, now: datetime, *, done: str | None = None
) -> bool:
    """Give the lease up (it expires now), recording what was done; False if not ours."""
    values: dict[str, object] = {"expires_at": now}
    if done is not None:
        values["last_done"] = done
    with db.session() as session:
        n = rows_updated(
            session,
            update(JobLease)
            .where(JobLease.name == name, JobLease.holder == holder)
            .values(**values),
        )
        session.commit()
    return n == 1


def last_done(db: Database, name: str) -> str:
    with db.session(write=False) as session:
        row = session.get(JobLease, name)
        return "" if row is None else row.last_done
