"""Usage periods as both stores give them back: the Asia/Shanghai day of a record,
aware datetimes, instants within sane bounds, and sums of byte counters that cannot overflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime
from sqlalchemy import ColumnElement, func, literal_column
from sqlalchemy.orm import InstrumentedAttribute, Session

from tongdao.gateway.models import UsageRecord

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def shanghai_report_day(session: Session) -> ColumnElement[Any]:
    """The Asia/Shanghai calendar day holding a usage record's period end, as SQL: the day of
    ``(D 00:00+08, D+1 00:00+08]``, as the usage ledger counts a report in the hour
    ``(h, h + 1 h]`` that holds its end (so a period ending at midnight is the day before's).
    Asia/Shanghai is UTC+8 with no DST."""
    if session.get_bind().dialect.name == "postgresql":
        end = UsageRecord.period_end - literal_column("interval '1 microsecond'")
        return func.date(func.timezone("Asia/Shanghai", end))
    # SQLite stores UTC, naive; its date functions work in milliseconds.
    return func.date(UsageRecord.period_end, "+8 hours", "-0.001 seconds")


def as_utc(value: Any) -> datetime | None:
    """A timestamp read back from either store, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite's MAX() over a datetime column gives text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_instant(value: datetime) -> datetime:
    """``value`` in UTC (naive taken as UTC); ValueError outside [2000, 9999)."""
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError("out of range") from exc
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(utc_instant)]


# --- sums that cannot overflow -------------------------------------------------------------------
# SQLite's SUM() over 64-bit integers raises "integer overflow" past 2^63-1 (PostgreSQL's gives
# a numeric). Summing the high and low 32 bits of each counter apart keeps every partial sum
# far from the limit (2^31 rows of 2^32), and Python joins them exactly.
_LOW: ColumnElement[int] = literal_column("4294967295")
_SHIFT: ColumnElement[int] = literal_column("32")


def exact_sum(
    column: InstrumentedAttribute[int] | ColumnElement[int],
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Two SQL aggregates whose :func:`joined` value is the exact sum of ``column``."""
    high = func.coalesce(func.sum(column.op(">>")(_SHIFT)), 0)
    low = func.coalesce(func.sum(column.op("&")(_LOW)), 0)
    return high, low


def joined(high: Any, low: Any) -> int:
    return (int(high) << 32) + int(low)
