"""Real-identity documents (Cybersecurity Law art. 24): ID number checks per ID type."""

from __future__ import annotations

import re
from datetime import date

from tongdao.clock import utcnow
from tongdao.web.i18n import N_

_RESIDENT = re.compile(r"^\d{17}[\dX]$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,20}$")
_PERMANENT = re.compile(r"^[A-Z0-9]{15,18}$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# Nobody alive was born before this; a resident ID's birth date before it is a typo.
EARLIEST_BIRTH = date(1900, 1, 1)
NOT_A_DATE = N_("the birth date inside the resident ID is not a date")
IN_FUTURE = N_("the birth date inside the resident ID (%(birth)s) is in the future")
TOO_EARLY = N_("the birth date inside the resident ID (%(birth)s) is before 1900")


def resident_id_check_digit(first17: str) -> str:
    """GB 11643-1999 (ISO 7064 MOD 11-2) check character."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def birth_date_problem(text: str, today: date) -> str | None:
    """Why the birth date (digits 7-14, YYYYMMDD) of a resident ID cannot be one: not a
    calendar date (30 February, month 13, day 00), in the future, or before 1900."""
    try:
        birth = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return NOT_A_DATE
    if birth > today:
        return IN_FUTURE % {"birth": birth.isoformat()}
    if birth < EARLIEST_BIRTH:
        return TOO_EARLY % {"birth": birth.isoformat()}
    return None


def id_number_problem(id_type: str, number: str, today: date | None = None) -> str | None:
    """Why an ID number is not acceptable for its type, or None (``today``: the date in
    China, default now)."""
    text = number.strip().upper()
    if id_type == "prc_resident_id":
        if not _RESIDENT.match(text):
            return "a PRC resident ID is 17 digits and a check digit or X"
        birth = birth_date_problem(text, today or china_today())
        if birth is not None:
            return birth
        if resident_id_check_digit(text[:17]) != text[17]:
            return "the resident ID's check digit does not match (GB 11643)"
        return None
    if id_type == "passport":
        return None if _PASSPORT.match(text) else "a passport number is 5-20 letters and digits"
    if id_type == "foreign_permanent_residence":
        if _PERMANENT.match(text):
            return None
        return "a foreign permanent-residence ID is 15-18 letters and digits"
    return f"unknown ID type {id_type!r}"


def china_today() -> date:
    from tongdao.compliance.licensing import china_today as today_in_china

    return today_in_china(utcnow())
