"""Which store failures are "unreachable" (503) and which are bugs (500), with real driver
errors; and the once-per-kind log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from tongdao.store.outage import OncePerKind, unreachable_kind


def _error(url: str, sql: str, *, hold_lock: bool = False) -> DBAPIError:
    holder = create_engine(url, connect_args={"timeout": 0, "isolation_level": None})
    engine = create_engine(url, connect_args={"timeout": 0, "isolation_level": None})
    try:
        with holder.connect() as held:
            if hold_lock:
                held.exec_driver_sql("BEGIN IMMEDIATE")
            with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
                conn.execute(text(sql))
            if hold_lock:
                held.exec_driver_sql("ROLLBACK")
        return caught.value
    finally:
        holder.dispose()
        engine.dispose()


def test_sqlite_locked_and_missing_files_are_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    locked = _error(url, "BEGIN IMMEDIATE", hold_lock=True)
    assert unreachable_kind(locked) == "SQLite: database is locked"
    engine = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite3'}")
    try:
        with pytest.raises(DBAPIError) as missing, engine.connect():
            pass
    finally:
        engine.dispose()
    assert unreachable_kind(missing.value) == "SQLite: unable to open database file"


def test_bugs_are_not_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert unreachable_kind(_error(url, "SELECT * FROM no_such_table")) is None
    overflow = "SELECT sum(x) FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 1)"
    assert unreachable_kind(_error(url, overflow)) is None
    assert unreachable_kind(ValueError("not a store error")) is None


def test_each_kind_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = OncePerKind(logging.getLogger("tongdao.test.outage"), every=60, clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    said = [log.warning("PostgreSQL unreachable", f"attempt {i}\ntraceback") for i in range(100)]
    said.append(log.warning("SQLite: database is locked", "busy"))
    now[0] = 61.0
    said.append(log.warning("PostgreSQL unreachable", "still down"))
    assert said.count(True) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("PostgreSQL unreachable: attempt 0; repeats")
    assert "traceback" not in lines[0]
    assert "(99 more since the last report)" in lines[2]
