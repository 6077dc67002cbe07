"""Conditional updates where the statement itself decides (of two racing, only one matches)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Update
from sqlalchemy.orm import Session


def rows_updated(session: Session, statement: Update) -> int:
    """Run ``statement`` without synchronising the session's objects; the rows it changed."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount)
