"""The money rule, in one place (pure functions, no store).

* Money is :class:`~decimal.Decimal` yuan at fen precision (two places).
* Prices are set excluding VAT. Each invoice line's amount is rounded half up to the fen; its
  VAT is ``amount × rate`` rounded half up to the fen, per line, as a fapiao computes it.
* An invoice's subtotal is the sum of its line amounts, its VAT the sum of the lines' VAT and
  its total their sum: totals are never recomputed from the subtotal.
* Proration by day over the invoice month (Asia/Shanghai calendar days) is cumulative: the
  part of a monthly amount for days ``[a, b)`` of a month of ``n`` days is
  ``round(m × b / n) − round(m × a / n)``. Any split of a month into segments therefore sums
  exactly to the month's amount (the rounding telescopes), which per-segment rounding would not.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
FEN = Decimal("0.01")
ZERO = Decimal("0.00")
VAT_TELECOM_VALUE_ADDED = Decimal("0.06")
FIRST_YEAR, LAST_YEAR = 2000, 2999  # billing dates outside are typing errors
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def fen(value: Decimal) -> Decimal:
    """``value`` rounded half up to the fen."""
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def line_vat(amount: Decimal, rate: Decimal) -> Decimal:
    """The VAT of one line: its amount times the rate, rounded half up to the fen."""
    return fen(amount * rate)


def totals(lines: list[tuple[Decimal, Decimal]]) -> tuple[Decimal, Decimal, Decimal]:
    """(subtotal, VAT, total) of lines given as (amount, vat): sums of the lines."""
    subtotal = sum((amount for amount, _ in lines), ZERO)
    vat = sum((v for _, v in lines), ZERO)
    return subtotal, vat, subtotal + vat


def days_in_month(month: date) -> int:
    return calendar.monthrange(month.year, month.month)[1]


def prorate(monthly: Decimal, start_day: int, end_day: int, month_days: int) -> Decimal:
    """The part of ``monthly`` for days ``[start_day, end_day)`` (0-based) of a month."""
    if not 0 <= start_day <= end_day <= month_days:
        raise ValueError(f"days [{start_day}, {end_day}) outside a month of {month_days}")
    return fen(monthly * end_day / month_days) - fen(monthly * start_day / month_days)


def parse_month(text: str) -> date:
    """``YYYY-MM`` as the first day of that month; ValueError otherwise."""
    match = _MONTH.fullmatch(text)
    if match is None:
        raise ValueError("a month is written YYYY-MM, e.g. 2026-11")
    if not FIRST_YEAR <= int(match[1]) <= LAST_YEAR:
        raise ValueError(f"a month between {FIRST_YEAR} and {LAST_YEAR}")
    return date(int(match[1]), int(match[2]), 1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def previous_month(month: date) -> date:
    return (month.replace(day=1) - timedelta(days=1)).replace(day=1)


def month_bounds_utc(month: date) -> tuple[datetime, datetime]:
    """The instants (UTC) an Asia/Shanghai month starts and ends."""
    start = datetime.combine(month, time(), SHANGHAI).astimezone(UTC)
    end = datetime.combine(next_month(month), time(), SHANGHAI).astimezone(UTC)
    return start, end


def day_start_utc(day: date) -> datetime:
    return datetime.combine(day, time(), SHANGHAI).astimezone(UTC)


def shanghai_today(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


def credit_vat(
    amount: Decimal, rate: Decimal, remaining_amount: Decimal, remaining_vat: Decimal
) -> Decimal:
    """The VAT of a credit-note line taking ``amount`` off an invoice line of which
    ``remaining_amount`` (excl. VAT) and ``remaining_vat`` are still uncredited.

    The line rule: ``amount × rate`` half up to the fen, never more than the VAT still
    uncredited; a credit taking all that remains of the line takes all its remaining VAT. A
    line credited in parts therefore credits exactly its own VAT, and the credits of an invoice
    plus what remains of it add up to its total to the fen."""
    if amount == remaining_amount:
        return remaining_vat
    return min(line_vat(amount, rate), remaining_vat)
