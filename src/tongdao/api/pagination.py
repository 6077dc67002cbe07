"""Cursor pagination over time-ordered ids: ``limit`` + opaque ``cursor``."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from tongdao.errors import ValidationError

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    """A list envelope: this page's items, the total matching, and the next page's cursor."""

    data: list[T]
    count: int
    next_cursor: str | None = None


class PageParams(BaseModel):
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=64, description="next_cursor of the previous page")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def encode_cursor(key: uuid.UUID | int) -> str:
    return base64.urlsafe_b64encode(str(key).encode()).decode().rstrip("=")


# Integer keys are SQL BIGINTs: a cursor outside them can come from no page of any list (and
# would overflow the driver's parameter conversion: a 500, not a 422).
_BIGINT = range(-(2**63), 2**63)
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def decode_cursor(cursor: str, *, integer: bool = False) -> uuid.UUID | int:
    """The key a ``next_cursor`` holds; 422 (field ``cursor``) for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not integer:
            return uuid.UUID(text)
        if not _INTEGER.fullmatch(text) or int(text) not in _BIGINT:
            raise ValueError(text)
        return int(text)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValidationError({"cursor": "not a cursor returned by this list"}) from exc


def paginate(
    session: Session,
    stmt: Select[Any],
    key: InstrumentedAttribute[Any],
    params: PageParams,
    *,
    descending: bool = False,
    rows: bool = False,
) -> tuple[list[Any], int, str | None]:
    """Rows of ``stmt`` after the cursor, ordered by ``key``; plus the total and next cursor.

    ``rows``: ``stmt`` selects columns, and the page is of rows (else of its first column's
    values: the objects of ``select(Model)``)."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    if params.cursor:
        after = decode_cursor(params.cursor, integer=key.type.python_type is int)
        stmt = stmt.where(key < after if descending else key > after)
    stmt = stmt.order_by(key.desc() if descending else key).limit(params.limit + 1)
    found: list[Any] = list(session.execute(stmt).all() if rows else session.scalars(stmt))
    next_cursor = None
    if len(found) > params.limit:
        found = found[: params.limit]
        next_cursor = encode_cursor(getattr(found[-1], key.key))
    return found, total, next_cursor
