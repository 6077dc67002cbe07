"""Engines and sessions for SQLite (embedded default) and PostgreSQL.

**SQLite writers.** SQLite has one write lock per file. Write transactions begin
``IMMEDIATE`` (they take it up front, so a read cannot turn into a write that fails), and
before that they queue, first come first served, on the file's :class:`WriteGate` in this
process. Without the gate a writer that finds the lock taken waits in SQLite's busy handler,
which sleeps in growing steps (1, 2, 5, ... up to 100 ms) and polls: a writer that has
waited a while polls every 100 ms and keeps losing to newcomers polling every millisecond,
so under steady load an unlucky writer waited seconds (issue 10: 20 clients creating and
listing devices, p50 99 ms, p99 3.5 s). With the gate the lock passes straight to the next
writer in line when the previous one's connection goes back to the pool (after its COMMIT
or ROLLBACK). The busy timeout stays as the guard against other processes (the CLI) holding
the lock. Reads never queue: under WAL they run beside the writer.

**One write per request.** A request's session (:meth:`Database.new_session` with
``one_write=True``) writes in one transaction, ended by its commit. What it reads after that
(the stored object to answer with) runs in a read transaction: it takes neither the gate nor
the write lock, and SQLite refuses a write in it (``PRAGMA query_only``). Were it a write
transaction, the request would hold the lock while FastAPI checks its answer in another
worker thread; with every thread taken by writers queueing on the gate, that thread would
never come until the gate's timeout (issue 10: the demo with two request threads).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from tongdao.filemodes import private_store

# SQLite's busy timeout, and as long a wait for the gate (then BEGIN IMMEDIATE is tried
# anyway and SQLite's busy handler decides).
SQLITE_BUSY_TIMEOUT_S = 30
# Connections kept for SQLite: as many as the threads that can serve requests at once
# (anyio's default thread limiter, used by FastAPI for sync endpoints and dependencies: 40),
# so that a reader never waits for a connection held by a queued writer. They are cheap.
SQLITE_POOL_SIZE = 40
SQLITE_POOL_OVERFLOW = 20
_HOLDS_GATE = "tongdao_holds_write_gate"
# A pooled connection's info key: it was set query_only for a read after a request's commit.
_QUERY_ONLY = "tongdao_query_only"
# Session info keys: a request's session (one write); its commit happened (reads from now).
ONE_WRITE = "tongdao_one_write"
_COMMITTED = "tongdao_committed"
# The execution option that marks a write session's connection (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "tongdao_write"


class WriteGate:
    """A first-come, first-served lock (released by any thread: a transaction may begin in
    one worker thread and end in another). ``acquire`` hands the lock to the oldest waiter
    directly, so no newcomer can overtake it."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=max(0.0, timeout)):
            return True  # handed over by release(): we hold the gate
        with self._mutex:
            try:
                self._waiters.remove(turn)
            except ValueError:
                return True  # handed over just as the wait ran out
            return False

    def release(self) -> None:
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of a write gate that is not held")
            if self._waiters:
                self._waiters.popleft().release()  # stays held, by the next in line
            else:
                self._held = False


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()


def sqlite_write_gate(database: str | None) -> WriteGate:
    """The gate of an SQLite file, shared by every engine on it in this process."""
    if database in (None, "", ":memory:") or str(database).startswith("file:"):
        return WriteGate()  # private to its engine
    key = str(Path(str(database)).resolve())
    with _gates_lock:
        return _gates.setdefault(key, WriteGate())


class Database:
    """One engine and its session factory. Transactions belong to the caller (request or job)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        self.write_gate: WriteGate | None = None
        if self.is_sqlite:
            ensure_sqlite_dir(url)
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_S,
            }
            if self.url.database not in (None, "", ":memory:"):
                kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_OVERFLOW)
            self.write_gate = sqlite_write_gate(self.url.database)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            gate = self.write_gate
            assert gate is not None

            def begin(conn: Any) -> None:
                _sqlite_begin(conn, gate)

            def checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
                # After the pool's reset (a ROLLBACK if still in a transaction): the write
                # lock is free for the next writer in line.
                if record.info.pop(_QUERY_ONLY, False) and dbapi_connection is not None:
                    dbapi_connection.execute("PRAGMA query_only=OFF")
                if record.info.pop(_HOLDS_GATE, False):
                    gate.release()

            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", begin)
            event.listen(self.engine.pool, "checkin", checkin)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
        if self.is_sqlite:
            event.listen(self.write_sessions, "after_commit", self._after_commit)
            event.listen(self.write_sessions, "after_begin", _after_begin)

    def _after_commit(self, session: Session) -> None:
        """A request's write is over: its later transactions read (see the module)."""
        if session.info.get(ONE_WRITE) and not session.in_nested_transaction():  # a savepoint: no
            session.info[_COMMITTED] = True
            session.bind = self.engine  # a plain BEGIN: no gate, no write lock

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session whose transaction the caller commits; rolled back on error or exit.

        ``write=False`` is for requests that only read: on SQLite they do not take the
        write lock, so reads run concurrently with each other and with one writer.
        """
        with self.new_session(write=write) as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise

    def new_session(self, *, write: bool = True, one_write: bool = False) -> Session:
        """A session the caller closes (see :meth:`session`). ``one_write``: a request's,
        which writes in one transaction and only reads after its commit (see the module)."""
        session = (self.write_sessions if write else self.sessions)()
        if write and one_write:
            session.info[ONE_WRITE] = True
        return session

    def dispose(self) -> None:
        self.engine.dispose()


def ensure_sqlite_dir(url: str) -> None:
    """Make the directory an SQLite file URL points into (0700) and the file (0600): see
    :mod:`tongdao.filemodes`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        private_store(Path(str(parsed.database)))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy own BEGIN so that the first statement of a transaction takes the lock
    # we ask for (see _sqlite_begin); pysqlite's own implicit BEGIN would defer it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def _after_begin(session: Session, _transaction: Any, connection: Any) -> None:
    if session.info.get(_COMMITTED):  # a read after a request's commit: no write in it
        connection.exec_driver_sql("PRAGMA query_only=ON")
        connection.connection.info[_QUERY_ONLY] = True


def _sqlite_begin(conn: Any, gate: WriteGate) -> None:
    # BEGIN IMMEDIATE: a write transaction takes SQLite's single write lock up front, so
    # read-then-write allocations (IPAM) cannot interleave. Reads stay concurrent under WAL.
    # Writers first queue on the gate (see the module); a connection keeps its place until
    # it goes back to the pool, so a second transaction on it does not queue behind itself.
    if not conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN")
        return
    info = conn.connection.info  # the pooled connection's, cleared when it is replaced
    if not info.get(_HOLDS_GATE) and gate.acquire(SQLITE_BUSY_TIMEOUT_S):
        info[_HOLDS_GATE] = True
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if info.pop(_HOLDS_GATE, False):
            gate.release()
        raise
