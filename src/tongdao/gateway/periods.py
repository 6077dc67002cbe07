"""Usage periods as both stores give them back: the UTC day of a record, aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlalchemy.orm import Session

from tongdao.gateway.models import UsageRecord


def report_day(session: Session) -> ColumnElement[Any]:
    """The UTC calendar day of a usage record's period end, as SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", UsageRecord.period_end))
    return func.date(UsageRecord.period_end)  # SQLite stores UTC, naive


def as_utc(value: Any) -> datetime | None:
    """A timestamp read back from either store, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite's MAX() over a datetime column gives text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
