"""How long logs are kept: six calendar months (rule ``logs.retention``) and a margin.

The Cybersecurity Law asks for at least six *months*, not 180 days: six calendar months can be
up to 184 days (31 August back to 28 February is 184 days), so a 180-day cut would purge
records a few days short of six months old. Here a record may be purged or erased only when it
occurred before :func:`retention_cutoff`: the same instant six calendar months earlier, in
the Chinese calendar (Asia/Shanghai, UTC+8 all year), the day clamped to the end of a shorter
month (31 August → 28 or 29 February), and then the operator's margin in days
(``TONGDAO_RETENTION_MARGIN_DAYS``, default 7) earlier still. :func:`kept_until` is the other
direction: the first instant a record may go.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone

from tongdao.compliance.rules import rule

CHINA_TZ = timezone(timedelta(hours=8), "CST")
DEFAULT_MARGIN_DAYS = 7


def months() -> int:
    return int(rule("logs.retention").param("months"))


def shift_months(moment: datetime, count: int) -> datetime:
    """An aware ``moment`` moved by ``count`` calendar months in China's calendar, the day
    clamped to the last day of a shorter month; returned in ``moment``'s zone."""
    local = moment.astimezone(CHINA_TZ)
    index = local.year * 12 + (local.month - 1) + count
    year, month0 = divmod(index, 12)
    day = min(local.day, calendar.monthrange(year, month0 + 1)[1])
    return local.replace(year=year, month=month0 + 1, day=day).astimezone(moment.tzinfo)


def retention_cutoff(now: datetime, margin_days: int = DEFAULT_MARGIN_DAYS) -> datetime:
    """Records that occurred before this may be purged or erased; younger ones may not."""
    return shift_months(now, -months()) - timedelta(days=margin_days)


def kept_until(occurred: datetime, margin_days: int = DEFAULT_MARGIN_DAYS) -> datetime:
    """When a record that occurred at ``occurred`` may go: six calendar months later (when the
    later month is too short for its day, the first of the month after) plus the margin."""
    later = shift_months(occurred, months())
    if later.astimezone(CHINA_TZ).day != occurred.astimezone(CHINA_TZ).day:
        local = later.astimezone(CHINA_TZ)
        later = (local.replace(day=1) + timedelta(days=32)).replace(day=1)
        later = later.astimezone(occurred.tzinfo)
    return later + timedelta(days=margin_days)


PERIOD = "%(months)s calendar months and a margin of %(margin)s days"


def describe(margin_days: int = DEFAULT_MARGIN_DAYS) -> str:
    """The period in words (``6 calendar months and a margin of 7 days``); refusals quote it
    and :mod:`tongdao.messages` translates it from the catalogue's template."""
    return PERIOD % {"months": months(), "margin": margin_days}
