"""Monthly range partitions on PostgreSQL for the tables that grow without bound.

``usage_records`` (by ``period_end``) and ``usage_hourly`` (by ``hour``) are declared
``PARTITION BY RANGE`` on PostgreSQL by migration ``0018_usage_ledger`` (SQLite keeps plain
tables). Each Asia/Shanghai calendar month is one partition, ``<table>_pYYYYMM``, covering
``[first day 00:00+08, next first day 00:00+08)``; a ``<table>_default`` partition catches rows
outside every made one (a gateway's first report for a long past period, a month the job has
not made yet), so an insert never fails for want of a partition.

:func:`ensure_months` makes the months it is given (the retention job makes this month and the
next ones ahead); a month whose rows already sit in the default partition is made by moving
them out first (create a standalone table, move the rows, ``ATTACH``), so it works whatever
the default holds. :func:`drop_before` detaches and drops the partitions wholly before a
month, and deletes the default partition's rows before it.
"""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import Connection, text

from tongdao.billing import money

PARTITIONED: dict[str, str] = {"usage_records": "period_end", "usage_hourly": "hour"}
# Room left in each page for updated rows (PostgreSQL's fillfactor, percent): an hour's ledger
# row is updated by every report of that hour, and an update that finds room on its page
# touches no index (a HOT update). Insert-only tables keep the default, 100.
FILLFACTOR: dict[str, int] = {"usage_hourly": 70}
_PARTITION = re.compile(r"^(usage_records|usage_hourly)_(p[0-9]{6}|default)$")


def is_partition(name: str | None) -> bool:
    """Whether a table name is one of the partitions (not in the models: they are made at
    run time)."""
    return bool(name) and _PARTITION.match(name or "") is not None


def month_bound(month: date) -> str:
    """The first instant of an Asia/Shanghai month, as a PostgreSQL timestamptz literal."""
    return f"{month:%Y-%m}-01 00:00:00+08"


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y%m}"


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(
        text("SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
             "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"),
        {"t": table},
    ).first()  # fmt: skip
    return found is not None


def months_present(conn: Connection, table: str) -> list[date]:
    """The monthly partitions of ``table`` (not the default), oldest first."""
    names = conn.scalars(
        text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
             "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t"),
        {"t": table},
    ).all()  # fmt: skip
    out = []
    for name in names:
        m = re.fullmatch(rf"{table}_p([0-9]{{4}})([0-9]{{2}})", name)
        if m:
            out.append(date(int(m.group(1)), int(m.group(2)), 1))
    return sorted(out)


def ensure_month(conn: Connection, table: str, month: date) -> bool:
    """Make ``table``'s partition for ``month`` (first day) unless it exists; True if made.
    Rows of that month in the default partition move into it."""
    if month in months_present(conn, table):
        return False
    column = PARTITIONED[table]
    name = partition_name(table, month)
    low, high = month_bound(month), month_bound(money.next_month(month))
    conn.execute(text(f"LOCK TABLE {table}_default IN ACCESS EXCLUSIVE MODE"))
    storage = f" WITH (fillfactor = {FILLFACTOR[table]})" if table in FILLFACTOR else ""
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS){storage}"))
    conn.execute(
        text(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK "
            f"({column} IS NOT NULL AND {column} >= '{low}' AND {column} < '{high}')"
        )
    )  # fmt: skip  (lets ATTACH skip its scan)
    # Names from PARTITIONED and dates only (never input): safe to put in the text.
    moved = (
        f"WITH moved AS (DELETE FROM {table}_default WHERE {column} >= CAST(:low AS timestamptz) "  # noqa: S608
        f"AND {column} < CAST(:high AS timestamptz) RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved"
    )
    conn.execute(text(moved), {"low": low, "high": high})
    conn.execute(
        text(f"ALTER TABLE {table} ATTACH PARTITION {name} "
             f"FOR VALUES FROM ('{low}') TO ('{high}')")
    )  # fmt: skip
    conn.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range"))
    return True


def ensure_months(conn: Connection, months: list[date]) -> list[str]:
    """Make every partitioned table's partitions for ``months``; the names made."""
    made = []
    for table in PARTITIONED:
        if not is_partitioned(conn, table):
            continue
        for month in months:
            if ensure_month(conn, table, month):
                made.append(partition_name(table, month))
    return made


def drop_before(conn: Connection, table: str, month: date) -> list[str]:
    """Detach and drop ``table``'s partitions of months before ``month``, and delete the
    default partition's rows before it; the partitions dropped."""
    dropped = []
    for old in months_present(conn, table):
        if old >= month:
            continue
        name = partition_name(table, old)
        conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name}"))
        conn.execute(text(f"DROP TABLE {name}"))
        dropped.append(name)
    column = PARTITIONED[table]
    purge = f"DELETE FROM {table}_default WHERE {column} < CAST(:bound AS timestamptz)"  # noqa: S608
    conn.execute(text(purge), {"bound": month_bound(month)})
    return dropped


def create_partitioned(conn: Connection, table: str, months: list[date]) -> None:
    """The default partition and the monthly ones of a table just declared partitioned."""
    conn.execute(text(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"))
    for month in months:
        ensure_month(conn, table, month)
