"""Statements over many rows at once, for the hot write paths (usage reports).

On PostgreSQL, SQLAlchemy's ``executemany`` sends one statement per row (psycopg's pipeline),
and an ``IN (...)`` of a few thousand values is expanded and compiled anew every time: for a
gateway's report of 2,000 peers that was most of its cost. Here each call is **one statement
whatever the row count**: the rows are given column by column (:class:`Columns`), each column
travels as one text that the server splits and ``unnest``-s (``INSERT ... SELECT FROM
unnest(...)``, ``UPDATE ... FROM unnest(...)``), and lookups use ``= ANY(array)``.
On SQLite (in process, no round trips) the same calls use ``executemany`` and ``IN``, which
are fast there.

Values go to PostgreSQL without SQLAlchemy's type processing: datetimes must be timezone-aware
(every instant in Tongdao is), UUIDs :class:`uuid.UUID`, enums their string values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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

__all__ = ["Columns", "in_values", "insert_rows", "is_postgresql", "update_rows", "upsert_rows"]


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


@dataclass(frozen=True)
class Columns:
    """Rows given column by column: ``values`` holds a list per column (all as long), ``same``
    a value every row shares (sent once, not once a row)."""

    values: Mapping[str, Sequence[Any]]
    same: Mapping[str, Any] = field(default_factory=dict)
    # PostgreSQL only: columns computed by the database from the row, as SQL over ``u.<name>``
    # (code, never input), e.g. a lookup the server would otherwise make a round trip for.
    derived: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    @property
    def names(self) -> list[str]:
        return [*self.same, *self.values, *self.derived]

    def rows(self) -> list[dict[str, Any]]:
        assert not self.derived, "derived columns are for PostgreSQL"
        names = list(self.values)
        return [
            {**self.same, **dict(zip(names, row, strict=True))}
            for row in zip(*(self.values[c] for c in names), strict=True)
        ]


def _select(table: Table, cols: Columns) -> str:
    """``SELECT <same values>, u.* FROM unnest(<columns>) AS u(<names>)``, for PostgreSQL.
    Every name is the table's own column (the callers' code names them; never input)."""
    unknown = [c for c in cols.names if c not in table.c]
    if unknown:
        raise ValueError(f"not columns of {table.name}: {unknown}")
    same = [f"CAST(:s_{c} AS {table.c[c].type.compile(dialect=_PG)})" for c in cols.same]
    arrays = ", ".join(
        f"CAST(string_to_array(CAST(:a_{c} AS text), :sep, :null) AS {_array_type(table, c)})"
        for c in cols.values
    )
    picked = ", ".join([*same, "u.*", *cols.derived.values()])
    names = ", ".join(cols.values)
    return f"SELECT {picked} FROM unnest({arrays}) AS u({names})"  # noqa: S608


def _column_text(values: Sequence[Any]) -> str | None:
    """The column as one text for ``string_to_array`` (psycopg quotes a list's elements one
    by one with a regular expression: most of a 2,000-row statement's cost), or None when a
    value holds a separator (or is the single empty string) and the text would be wrong."""
    nones = 0
    kinds = set(map(type, values))
    if kinds == {str}:  # texts as they are and integers by str(), joined in C
        joined = _SEP.join(values)
    elif kinds == {int}:
        joined = _SEP.join(map(str, values))
    else:
        parts: list[str] = []
        texts: dict[Any, str] = {}  # ids and instants repeat down a column: made text once
        last: Any = _SEP  # often as the very same object, row after row (no hash needed)
        last_text = ""
        for value in values:
            if value is last:
                parts.append(last_text)
            elif value is None:
                nones += 1
                parts.append(_NULL)
            elif type(value) is str:
                parts.append(value)
            else:
                known = texts.get(value)
                if known is None:
                    known = texts[value] = str(value)
                parts.append(known)
                last, last_text = value, known
        if bool in kinds and len(kinds - {bool, type(None)}) > 0:
            return None  # True == 1: the texts made once a value would mix them up
        joined = _SEP.join(parts)
    if joined.count(_SEP) != len(values) - 1 or joined.count(_NULL) != nones or joined == "":
        return None
    return joined


def _execute(session: Session, sql: str, cols: Columns) -> None:
    """Run ``sql`` (written with :func:`_select`) with each varying column as one text, or,
    when a value cannot travel as text, with the same statement taking plain arrays."""
    params: dict[str, Any] = {f"s_{c}": v for c, v in cols.same.items()}
    texts: dict[str, Any] = {"sep": _SEP, "null": _NULL}
    for c, values in cols.values.items():
        joined = _column_text(values)
        if joined is None:
            break
        texts[f"a_{c}"] = joined
    else:
        session.execute(text(sql), {**params, **texts})
        return
    for c in cols.values:
        sql = sql.replace(f"string_to_array(CAST(:a_{c} AS text), :sep, :null)", f":a_{c}")
        params[f"a_{c}"] = list(cols.values[c])
    session.execute(text(sql), params)


def insert_rows(session: Session, model: type[Base] | Table, cols: Columns) -> None:
    """``INSERT`` the rows (all with the same keys) in one statement."""
    if not cols:
        return
    table = _table(model)
    if is_postgresql(session):
        sql = f"INSERT INTO {table.name} ({', '.join(cols.names)}) {_select(table, cols)}"
        _execute(session, sql, cols)
        return
    session.execute(insert(table), cols.rows())


def upsert_rows(
    session: Session,
    model: type[Base] | Table,
    keys: Sequence[str],
    cols: Columns,
    *,
    add: Iterable[str] = (),
    replace: Iterable[str] = (),
) -> None:
    """``INSERT`` the rows, or, for those whose ``keys`` exist, add the ``add`` columns to
    what is there and overwrite the ``replace`` columns; one statement on PostgreSQL."""
    if not cols:
        return
    table = _table(model)
    add, replace = list(add), list(replace)
    if is_postgresql(session):
        updates = [f"{c} = {table.name}.{c} + excluded.{c}" for c in add]
        updates += [f"{c} = excluded.{c}" for c in replace]
        sql = (
            f"INSERT INTO {table.name} ({', '.join(cols.names)}) {_select(table, cols)} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}"
        )
        _execute(session, sql, cols)
        return
    stmt = sqlite_insert(table)
    values: dict[str, Any] = {c: table.c[c] + stmt.excluded[c] for c in add}
    values.update({c: stmt.excluded[c] for c in replace})
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=values), cols.rows())


def update_rows(
    session: Session, model: type[Base] | Table, keys: Sequence[str], cols: Columns
) -> None:
    """``UPDATE`` each row found by its ``keys`` columns, setting its other columns."""
    if not cols:
        return
    table = _table(model)
    assert not cols.same, "update_rows takes varying columns only"
    columns = list(cols.values)
    values = [c for c in columns if c not in keys]
    if is_postgresql(session):
        sets = ", ".join(f"{c} = v.{c}" for c in values)
        match = " AND ".join(f"{table.name}.{c} = v.{c}" for c in keys)
        sql = (
            f"UPDATE {table.name} SET {sets} "  # noqa: S608 (names from the model)
            f"FROM ({_select(table, cols)}) AS v WHERE {match}"
        )
        _execute(session, sql, cols)
        return
    stmt = (
        table.update()
        .where(*(table.c[c] == bindparam(f"k_{c}") for c in keys))
        .values({c: bindparam(f"k_{c}") for c in values})
    )
    session.execute(stmt, [{f"k_{c}": row[c] for c in columns} for row in cols.rows()])


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
