"""Data-plane change tracking: a version bumped in the transaction of every relevant change,
and a process-wide feed that wakes long-polling gateways when it moves.

A model opts in with ``__dataplane__ = True`` (see :class:`tongdao.store.base.Base`). The
bump is an UPDATE of the single :class:`ConfigVersion` row, so the version a gateway reads is
never ahead of what has committed. On PostgreSQL the same transaction sends
``NOTIFY tongdao_config``; each server replica listens (:class:`PgListener`) so a change made
through one replica wakes gateways polling another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from typing import cast

import psycopg
from sqlalchemy import Table, event, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, UOWTransaction

from tongdao.gateway.models import ConfigVersion
from tongdao.store.outage import STORE_LOG

log = logging.getLogger("tongdao.gateway.changes")

CHANNEL = "tongdao_config"
_BUMPED = "tongdao.config_bumped"


class ChangeFeed:
    """A counter that moves whenever a data-plane change commits in (or reaches) this process,
    and wakes the long polls waiting on it (they run on an event loop; commits happen in
    worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.generation = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        with self._lock:
            self.generation += 1
            waiters = list(self._waiters)
        for loop, moved in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(moved.set)

    async def wait(self, seen: int, at_most: float) -> None:
        """Return once the generation is no longer ``seen``, or after ``at_most`` seconds."""
        moved = asyncio.Event()
        waiter = (asyncio.get_running_loop(), moved)
        with self._lock:
            if self.generation != seen:
                return
            self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), max(at_most, 0.0))
        finally:
            with self._lock:
                self._waiters.discard(waiter)


FEED = ChangeFeed()


def current_version(session: Session) -> int:
    return int(session.scalar(select(ConfigVersion.version).where(ConfigVersion.id == 1)) or 0)


_VERSION_TABLE = cast(Table, ConfigVersion.__table__)
_BUMP = (
    update(_VERSION_TABLE)
    .where(_VERSION_TABLE.c.id == 1)
    .values(version=_VERSION_TABLE.c.version + 1)
)
_NOTIFY = text(f"NOTIFY {CHANNEL}")


@event.listens_for(Session, "before_flush")
def _bump_version(session: Session, _ctx: UOWTransaction, _instances: object) -> None:
    if session.info.get(_BUMPED):
        return
    changed = itertools.chain(session.new, session.dirty, session.deleted)
    if not any(getattr(type(obj), "__dataplane__", False) for obj in changed):
        return
    # A Core statement on the session's connection: the ORM's bulk-update path cost a
    # write request more CPU than the UPDATE itself (issue 10); no ORM object holds it.
    conn = session.connection()
    conn.execute(_BUMP)
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY)
    session.info[_BUMPED] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_BUMPED, False):
        FEED.notify()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_BUMPED, None)


class PgListener:
    """LISTEN on PostgreSQL and move the feed for changes committed by other replicas."""

    def __init__(self, url: str, feed: ChangeFeed = FEED) -> None:
        parsed = make_url(url)
        self._conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._feed = feed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> PgListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._feed.notify()  # changes may have happened while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=100):
                            self._feed.notify()
            except psycopg.Error as exc:
                STORE_LOG.warning(f"LISTEN {CHANNEL} failed", f"{exc}; retrying every second")
                self._stop.wait(1.0)
