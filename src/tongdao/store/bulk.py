"""Statements over many rows at once, for the hot write paths (usage reports).

On PostgreSQL, SQLAlchemy's ``executemany`` sends one statement per row (psycopg's pipeline),
and an ``IN (...)`` of a few thousand values is expanded and compiled anew every time: for a
gateway's report of 2,000 peers that was most of its cost. Here each call is **one statement
whatever the row count**: the rows' columns travel as arrays and are ``unnest``-ed on the
server (``INSERT ... SELECT FROM unnest(...)``, ``UPDATE ... FROM unnest(...)``, ``= ANY(...)``).
On SQLite (in process, no round trips) the same calls use ``executemany`` and ``IN``, which
are fast there.

Values go to PostgreSQL without SQLAlchemy's type processing: datetimes must be timezone-aware
(every instant in Tongdao is), UUIDs :class:`uuid.UUID`, enums their string values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, insert, literal, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnClause

from tongdao.store.base import Base

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
IN_BATCH = 500  # values per IN (...) on SQLite (its bound-parameter limit is far above)

__all__ = ["in_values", "insert_rows", "is_postgresql", "update_rows", "upsert_rows"]


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _table(model: type[Base] | Table) -> Table:
    table = model if isinstance(model, Table) else model.__table__
    assert isinstance(table, Table)
    return table


@lru_cache(maxsize=256)
def _array_type(table: Table, column: str) -> str:
    """``uuid[]``, ``varchar(44)[]``, ``bigint[]``, ``timestamp with time zone[]``, ..."""
    return f"{table.c[column].type.compile(dialect=_PG)}[]"


_SEP = "\x1f"  # ASCII unit separator: between the elements of a column sent as one text
_NULL = "\x1e"  # ASCII record separator: an element that is NULL


def _arrays(table: Table, columns: Sequence[str]) -> str:
    return ", ".join(
        f"CAST(string_to_array(CAST(:a_{c} AS text), :sep, :null) AS {_array_type(table, c)})"
        for c in columns
    )


def _column_text(values: list[Any]) -> str | None:
    """The column as one text for ``string_to_array`` (psycopg quotes a list's elements one
    by one with a regular expression: most of a 2,000-row statement's cost), or None when a
    value holds a separator (or is the single empty string) and the text would be wrong."""
    nones = 0
    parts: list[str] = []
    texts: dict[Any, str] = {}  # ids and instants repeat down a column: each made text once
    for value in values:
        if value is None:
            nones += 1
            parts.append(_NULL)
        elif type(value) is str:
            parts.append(value)
        else:
            known = texts.get(value)
            if known is None:
                known = texts[value] = str(value)
            parts.append(known)
    joined = _SEP.join(parts)
    if joined.count(_SEP) != len(parts) - 1 or joined.count(_NULL) != nones or joined == "":
        return None
    return joined


def _params(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each column as one text; if a value could not travel so, the statement takes the rows
    as arrays instead (see :func:`_sql_params`)."""
    out: dict[str, Any] = {"sep": _SEP, "null": _NULL}
    for c in columns:
        joined = _column_text([row[c] for row in rows])
        if joined is None:
            raise _NotAsText
        out[f"a_{c}"] = joined
    return out


class _NotAsText(Exception):
    pass


def _execute(
    session: Session, sql: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run ``sql`` (written with :func:`_arrays`) with the rows' columns as texts, or, when a
    value cannot travel as text, with the same statement taking plain arrays."""
    try:
        params = _params(columns, rows)
    except _NotAsText:
        plain = sql
        for c in columns:
            plain = plain.replace(f"string_to_array(CAST(:a_{c} AS text), :sep, :null)", f":a_{c}")
        session.execute(text(plain), {f"a_{c}": [row[c] for row in rows] for c in columns})
        return
    session.execute(text(sql), params)


def insert_rows(
    session: Session, model: type[Base] | Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``INSERT`` the rows (all with the same keys) in one statement."""
    if not rows:
        return
    table = _table(model)
    columns = list(rows[0])
    if is_postgresql(session):
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 (names from the model)
            f"SELECT * FROM unnest({_arrays(table, columns)})"
        )
        _execute(session, sql, columns, rows)
        return
    session.execute(insert(table), list(rows))


def upsert_rows(
    session: Session,
    model: type[Base] | Table,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    add: Iterable[str] = (),
    replace: Iterable[str] = (),
) -> None:
    """``INSERT`` the rows, or, for those whose ``keys`` exist, add the ``add`` columns to
    what is there and overwrite the ``replace`` columns; one statement on PostgreSQL."""
    if not rows:
        return
    table = _table(model)
    columns = list(rows[0])
    add, replace = list(add), list(replace)
    if is_postgresql(session):
        updates = [f"{c} = {table.name}.{c} + excluded.{c}" for c in add]
        updates += [f"{c} = excluded.{c}" for c in replace]
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 (names from the model)
            f"SELECT * FROM unnest({_arrays(table, columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}"
        )
        _execute(session, sql, columns, rows)
        return
    stmt = sqlite_insert(table)
    values: dict[str, Any] = {c: table.c[c] + stmt.excluded[c] for c in add}
    values.update({c: stmt.excluded[c] for c in replace})
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=values), list(rows))


def update_rows(
    session: Session,
    model: type[Base] | Table,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """``UPDATE`` each row found by its ``keys`` columns, setting its other columns."""
    if not rows:
        return
    table = _table(model)
    columns = list(rows[0])
    values = [c for c in columns if c not in keys]
    if is_postgresql(session):
        sets = ", ".join(f"{c} = u.{c}" for c in values)
        match = " AND ".join(f"{table.name}.{c} = u.{c}" for c in keys)
        sql = (
            f"UPDATE {table.name} SET {sets} "  # noqa: S608 (names from the model)
            f"FROM unnest({_arrays(table, columns)}) AS u({', '.join(columns)}) WHERE {match}"
        )
        _execute(session, sql, columns, rows)
        return
    stmt = (
        table.update()
        .where(*(table.c[c] == bindparam(f"k_{c}") for c in keys))
        .values({c: bindparam(f"k_{c}") for c in values})
    )
    session.execute(stmt, [{f"k_{c}": row[c] for c in columns} for row in rows])


def in_values(
    session: Session,
    column: ColumnElement[Any] | ColumnClause[Any] | InstrumentedAttribute[Any],
    values: Sequence[Any],
) -> list[ColumnElement[bool]]:
    """Conditions that together select the rows whose ``column`` is one of ``values``: one
    ``= ANY(array)`` on PostgreSQL (compiled once, whatever the count), ``IN`` batches of
    :data:`IN_BATCH` on SQLite (run one query per condition and merge)."""
    if is_postgresql(session):
        return [column == any_(bindparam(f"any_{column.key}", list(values), type_=_array(column)))]
    if not values:
        return [literal(False)]
    return [column.in_(values[i : i + IN_BATCH]) for i in range(0, len(values), IN_BATCH)]


def _array(
    column: ColumnElement[Any] | ColumnClause[Any] | InstrumentedAttribute[Any],
) -> postgresql.ARRAY[Any]:
    return postgresql.ARRAY(column.type)
