"""The store being unreachable, told apart from a bug, and said once rather than per request.

While PostgreSQL is stopped (or restarting, or out of connections) every request fails the
same way; answering each with a traceback buried the one line that mattered. The API answers
503 with ``Retry-After`` (:mod:`tongdao.api.errors`) for the failures :func:`unreachable_kind`
names, and logs one line per kind per :data:`REPEAT_AFTER_SECONDS`, with the number of failures
it did not repeat. Anything else a driver raises (a syntax error, a constraint the services
missed, SQLite's "integer overflow") is a bug and stays a 500 with its traceback.

What counts as unreachable:

* PostgreSQL: a connection that cannot be made or was lost (SQLAlchemy's
  ``connection_invalidated``; psycopg's client-side connection errors, which carry no
  SQLSTATE), SQLSTATE class 08 (connection exception), 57P01/57P02/57P03 (shut down by an
  administrator, crashed, starting up or shutting down) and 53300 (too many connections);
* SQLite: "database is locked" (a writer waited the whole busy timeout: the store is saturated,
  and the same request will succeed later), "unable to open database file" and "disk I/O
  error";
* either: no connection free in SQLAlchemy's pool within its timeout.

Serialisation failures and deadlocks (40001, 40P01) are not "unreachable": the services take
their locks in a fixed order, so one of those is a bug to see, not to retry quietly.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

import psycopg
from sqlalchemy import exc as sa_exc

RETRY_AFTER_SECONDS = 5
REPEAT_AFTER_SECONDS = 60.0

_PG_STATES = {
    "57P01": "PostgreSQL was shut down",
    "57P02": "PostgreSQL crashed",
    "57P03": "PostgreSQL is starting up or shutting down",
    "53300": "PostgreSQL has no connection slot free",
}
_SQLITE_MESSAGES = ("database is locked", "unable to open database file", "disk I/O error")


def unreachable_kind(exc: BaseException) -> str | None:
    """A short name for how the store is unreachable, or None when ``exc`` is not that."""
    if isinstance(exc, sa_exc.TimeoutError):
        return "no free connection in the pool"
    if not isinstance(exc, sa_exc.DBAPIError) or isinstance(exc, sa_exc.IntegrityError):
        return None
    orig = exc.orig
    if isinstance(orig, psycopg.Error):
        state = orig.sqlstate
        if state in _PG_STATES:
            return _PG_STATES[state]
        if state is not None and state.startswith("08"):
            return "PostgreSQL connection failure"
        if exc.connection_invalidated:
            return "PostgreSQL connection lost"
        if state is None and isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError):
            return "PostgreSQL unreachable"
        return None
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig)
        return next((f"SQLite: {m}" for m in _SQLITE_MESSAGES if text.startswith(m)), None)
    return "connection lost" if exc.connection_invalidated else None


class OncePerKind:
    """A logger that says each kind of failure once per ``every`` seconds (thread-safe)."""

    def __init__(
        self,
        logger: logging.Logger,
        every: float = REPEAT_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warning(self, kind: str, detail: str) -> bool:
        """Log ``kind: detail`` unless ``kind`` was logged in the last ``every`` seconds;
        whether it was logged."""
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every:
                self._quiet[kind] = self._quiet.get(kind, 0) + 1
                return False
            self._last[kind] = now
            quiet = self._quiet.pop(kind, 0)
        first_line = detail.strip().splitlines()[0] if detail.strip() else ""
        more = f" ({quiet} more since the last report)" if quiet else ""
        self.logger.warning(
            "%s: %s%s; repeats are not logged for %d s", kind, first_line[:300], more, self.every
        )
        return True


STORE_LOG = OncePerKind(logging.getLogger("tongdao.store"))
