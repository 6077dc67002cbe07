"""Data-plane change tracking: a version bumped in the transaction of every relevant change,
and a process-wide feed that wakes long-polling gateways when it moves.

A model opts in with ``__dataplane__ = True`` (see :class:`tongdao.store.base.Base`). The
bump is an UPDATE of the single :class:`ConfigVersion` row, so the version a gateway reads is
never ahead of what has committed. On PostgreSQL the same transaction sends
``NOTIFY tongdao_config``; each server replica listens (:class:`PgListener`) so a change made
through one replica wakes gateways polling another.

Each process also keeps a short log of what the versions it committed itself changed
(:data:`LOG`: the ids of the devices and users written, per store), so the compiler can re-read
only those (:mod:`tongdao.gateway.service`). A version this process did not commit (another
replica, a CLI command, a log that moved on) is simply absent, and whoever asks reads in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import psycopg
from sqlalchemy import Pool, Table, event, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction

from tongdao.gateway.models import ConfigVersion
from tongdao.store.outage import STORE_LOG

log = logging.getLogger("tongdao.gateway.changes")

CHANNEL = "tongdao_config"
_BUMPED = "tongdao.config_bumped"
_TOUCHED = "tongdao.config_touched"
_BUMPED_IN = "tongdao.config_bumped_in"  # the (nested) transaction the bump was made in


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
    .returning(_VERSION_TABLE.c.version)
)
_NOTIFY = text(f"NOTIFY {CHANNEL}")


@dataclass
class Touched:
    """What one committed version wrote that decides which devices are active: the ids of the
    devices and of the users written (created, changed or deleted), as canonical text."""

    devices: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    too_many: bool = False  # more than :data:`TOUCHED_AT_MOST` ids: not kept, read in full

    def add(self, devices: Iterable[str] = (), users: Iterable[str] = ()) -> None:
        if self.too_many:
            return
        self.devices.update(devices)
        self.users.update(users)
        if len(self.devices) + len(self.users) > TOUCHED_AT_MOST:
            self.devices, self.users, self.too_many = set(), set(), True


TOUCHED_AT_MOST = 500  # ids a version may name in the log (a bulk change is not worth keeping)


class ChangeLog:
    """Per store (its connection pool: the engines of a store's sessions differ in their
    options only), the last versions this process committed and what each touched (bounded).

    :meth:`since` answers only when every version of the range is in the log: one committed
    elsewhere (another replica, another process on the same SQLite file), or not yet logged
    (its commit is still finishing in another thread), leaves a gap, and the answer is None."""

    def __init__(self, limit: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._stores: weakref.WeakKeyDictionary[Pool, OrderedDict[int, Touched]] = (
            weakref.WeakKeyDictionary()
        )
        self._limit = limit

    def record(self, store: Pool, version: int, touched: Touched) -> None:
        with self._lock:
            log = self._stores.setdefault(store, OrderedDict())
            log[version] = touched
            while len(log) > self._limit:
                log.popitem(last=False)

    def since(self, store: Pool, base: int, version: int) -> Touched | None:
        """Everything versions ``base + 1`` to ``version`` touched, or None when one of them
        is not in the log (or ``version`` is below ``base``)."""
        if version < base:
            return None
        out = Touched()
        with self._lock:
            log = self._stores.get(store)
            if log is None and version > base:
                return None
            for v in range(base + 1, version + 1):
                touched = log.get(v) if log is not None else None
                if touched is None or touched.too_many:
                    return None
                out.add(touched.devices, touched.users)
        return None if out.too_many else out

    def clear(self) -> None:
        with self._lock:
            self._stores.clear()


LOG = ChangeLog()


def pending(session: Session) -> Touched | None:
    """What ``session``'s open transaction has written so far that the log would name (None:
    no data-plane change yet): not committed, so no other transaction sees it."""
    touched = session.info.get(_TOUCHED)
    return touched if isinstance(touched, Touched) else None


def _id_of(obj: object) -> str | None:
    ident = getattr(obj, "id", None)
    return str(ident) if isinstance(ident, uuid.UUID) else None


def _note(touched: Touched, objects: Iterable[object], deleted: Iterable[object] = ()) -> None:
    from tongdao.network.models import Device, Pop
    from tongdao.tenancy.models import User

    devices: list[str] = []
    users: list[str] = []
    for obj in objects:
        key = _id_of(obj)
        if key is None:
            continue
        if isinstance(obj, Device):
            devices.append(key)
        elif isinstance(obj, User):
            users.append(key)
    touched.add(devices, users)
    # A deleted PoP leaves its devices without one in the database (devices.pop_id ON DELETE
    # SET NULL), past the session: which devices is not known here, so read in full.
    if any(isinstance(obj, Pop) for obj in deleted):
        touched.devices, touched.users, touched.too_many = set(), set(), True


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
    version = conn.execute(_BUMP).scalar()
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY)
    session.info[_BUMPED] = (conn.engine.pool, version)
    session.info[_TOUCHED] = Touched()
    session.info[_BUMPED_IN] = session.get_nested_transaction() or session.get_transaction()


@event.listens_for(Session, "after_flush")
def _collect(session: Session, _ctx: UOWTransaction) -> None:
    """What this flush wrote, for the change log (ids are assigned by now; ``new``, ``dirty``
    and ``deleted`` still show what was flushed)."""
    touched = session.info.get(_TOUCHED)
    if touched is not None:
        _note(
            touched,
            itertools.chain(session.new, session.dirty, session.deleted),
            session.deleted,
        )


def _forget(session: Session) -> None:
    session.info.pop(_BUMPED, None)
    session.info.pop(_TOUCHED, None)
    session.info.pop(_BUMPED_IN, None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: nothing has committed yet (the transaction may roll back)
    bumped = session.info.get(_BUMPED)
    touched = session.info.get(_TOUCHED)
    _forget(session)
    if bumped:
        store, version = bumped
        if isinstance(version, int) and touched is not None:
            LOG.record(store, version, touched)
        FEED.notify()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous: SessionTransaction) -> None:
    """The transaction rolled back: no version. A savepoint rolled back: the version only if
    it was bumped inside it (the next flush bumps again); one bumped before it stays, with
    what it wrote (a flush's own inner transaction: the savepoint or transaction around it
    decides)."""
    if previous.parent is None:
        _forget(session)
        return
    if not previous.nested:
        return
    inside: SessionTransaction | None = session.info.get(_BUMPED_IN)
    while inside is not None:
        if inside is previous:
            _forget(session)
            return
        inside = inside.parent


@event.listens_for(Session, "after_transaction_end")
def _after_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # also a session closed without commit or rollback
        _forget(session)


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
