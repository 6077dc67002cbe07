"""The operator's licences and ownership: what they cover, and whether service may start.

Nothing here restates a rule's parameters: service codes, caps, the term and the warning days
come from :mod:`tongdao.compliance.rules`. The checks are pure functions over plain facts
(a licence's codes, provinces and dates; shareholders' flags and stakes), so they are unit- and
property-tested without a store. :func:`require_service` loads the facts and raises a
:class:`~tongdao.compliance.rules.ComplianceRefusal` naming the rule and its source; it is what
tenant, site and PoP activation call.

Places: a tenant is in the province of its USCC division code, a PoP in China in the province
of its region (``CN-BJ`` or ``CN-11``), a site in China in its PoP's province (or, without a
PoP in China, its tenant's). A place abroad lies outside every licence's provinces but still
needs a valid B13 licence and lawful ownership: the service is the operator's either way.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal, Protocol

from sqlalchemy import select

from tongdao.compliance import provinces as pv
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.errors import ValidationError
from tongdao.network.models import Pop
from tongdao.operator.models import Licence, Shareholder
from tongdao.runtime import Ctx
from tongdao.words import RULE_CITED, field_name

# Licence dates are Chinese calendar dates; China keeps UTC+8 all year.
CHINA_TZ = timezone(timedelta(hours=8), "CST")


def china_today(now: datetime) -> date:
    return now.astimezone(CHINA_TZ).date()


def service_code() -> str:
    """The service Tongdao provides and every activation needs a licence for (B13)."""
    return str(rule("licence.b13_required").param("service_code"))


def known_service_codes() -> tuple[str, ...]:
    return tuple(rule("licence.number_format").param("service_codes"))


# --- licence numbers ---------------------------------------------------------------------------
_NUMBER = re.compile(
    r"^(?P<prefix>[^\x00-\x7f])?(?P<codes>[A-Z][0-9]{1,2}(?:\.[A-Z][0-9]{1,2})*)"
    r"-(?P<year>[0-9]{4})(?P<serial>[0-9]{4})$"
)


@dataclass(frozen=True)
class LicenceNumber:
    text: str
    province: str | None  # from the prefix: issued by that province's administration
    classes: tuple[str, ...]  # the service codes in the number, e.g. ("B1", "B2")
    year: int
    serial: str


def parse_licence_number(raw: str) -> LicenceNumber:
    """Parse ``B1.B2-20100266`` / ``京B1-20180001``; ValueError says what is wrong."""
    text = raw.strip().upper()
    match = _NUMBER.match(text)
    if match is None:
        raise ValueError(
            "a licence number looks like B1.B2-20100266 or 京B1-20180001: an optional province "
            "prefix, service codes joined by '.', '-', a 4-digit year and a 4-digit serial"
        )
    prefix = match["prefix"]
    province = None
    if prefix is not None:
        province = pv.province_of_prefix(prefix)
        if province is None:
            raise ValueError(f"{prefix!r} is not a province's licence prefix (京, 沪, 粤, ...)")
    classes = tuple(match["codes"].split("."))
    known = known_service_codes()
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise ValueError(f"not a telecom service code of the catalogue: {', '.join(unknown)}")
    if len(set(classes)) != len(classes):
        raise ValueError("a service code appears twice in the number")
    return LicenceNumber(text, province, classes, int(match["year"]), match["serial"])


def normalise_provinces(values: Iterable[str]) -> list[str]:
    """Province codes as stored: ``nationwide`` (or ``全国``) becomes ``*``."""
    return [pv.NATIONWIDE if v.strip().lower() in pv.NATIONWIDE_ALIASES else v for v in values]


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    rule_id: str


def licence_problems(
    number: LicenceNumber,
    service_codes: Sequence[str],
    issuing_authority: str,
    provinces: Sequence[str],
    valid_from: date,
    valid_to: date,
) -> list[Problem]:
    """What is inconsistent in a licence record (its fields each pass on their own)."""
    fmt, validity = "licence.number_format", "licence.validity"
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, code in enumerate(service_codes):
        if code in seen:
            problems.append(Problem(f"service_codes.{i}", f"{code} is listed twice", fmt))
        elif not any(code.startswith(c) for c in number.classes):
            problems.append(
                Problem(
                    f"service_codes.{i}",
                    f"{code} is not among the licence's classes {'.'.join(number.classes)}",
                    fmt,
                )
            )
        seen.add(code)
    if pv.NATIONWIDE in provinces and len(provinces) > 1:
        problems.append(Problem("provinces", "nationwide ('*') stands alone", fmt))
    elif len(set(provinces)) != len(provinces):
        problems.append(Problem("provinces", "a province is listed twice", fmt))
    authorities = rule("licence.number_format").param("issuing_authorities")
    authority = issuing_authority.casefold()
    if number.province is not None:
        province = pv.PROVINCES[number.province]
        if list(provinces) != [number.province]:
            problems.append(
                Problem(
                    "provinces",
                    f"a licence numbered {number.text[0]}… is issued in {province.name} and "
                    f"covers {province.label} only",
                    fmt,
                )
            )
        if not any(m.casefold() in authority for m in authorities["provincial"]):
            problems.append(
                Problem(
                    "issuing_authority",
                    f"a licence numbered {number.text[0]}… is issued by the {province.name} "
                    "Communications Administration (通信管理局)",
                    fmt,
                )
            )
    elif not any(m.casefold() in authority for m in authorities["national"]):
        problems.append(
            Problem(
                "issuing_authority",
                "a licence without a province prefix is issued by MIIT (工业和信息化部)",
                fmt,
            )
        )
    term = int(rule(validity).param("term_years"))
    if valid_to <= valid_from:
        problems.append(Problem("valid_to", "must be after the first day of validity", validity))
    elif valid_to > add_years(valid_from, term):
        problems.append(
            Problem(
                "valid_to",
                f"a value-added telecom licence runs at most {term} years: "
                f"{add_years(valid_from, term).isoformat()} at the latest",
                validity,
            )
        )
    return problems


class LicenceProblems(ValidationError):
    """A licence record's problems: 422 keyed by field; the message names each field by its
    label, then each rule and its source (:mod:`tongdao.messages` puts it together again in
    the reader's language from these parts)."""

    def __init__(self, fields: dict[str, str], rule_ids: Sequence[str]) -> None:
        self.rule_ids = tuple(rule_ids)
        cited = "; ".join(RULE_CITED % {"rule": r, "source": rule(r).source} for r in rule_ids)
        text = "; ".join(f"{field_name(k)}: {v}" for k, v in fields.items())
        super().__init__(fields, f"{text} ({cited})")


def raise_problems(problems: Sequence[Problem]) -> None:
    """422 keyed by field; the message names each rule and its source."""
    if not problems:
        return
    fields: dict[str, str] = {}
    for p in problems:
        fields.setdefault(p.field, p.message)
    raise LicenceProblems(fields, sorted({p.rule_id for p in problems}))


# --- validity and expiry warnings --------------------------------------------------------------
class LicenceFacts(Protocol):
    @property
    def number(self) -> str: ...
    @property
    def service_codes(self) -> list[str]: ...
    @property
    def provinces(self) -> list[str]: ...
    @property
    def valid_from(self) -> date: ...
    @property
    def valid_to(self) -> date: ...


LicenceState = Literal["valid", "expired", "not_yet_valid"]


def licence_state(licence: LicenceFacts, today: date) -> LicenceState:
    """Valid from ``valid_from`` through ``valid_to``, both days included."""
    if today < licence.valid_from:
        return "not_yet_valid"
    if today > licence.valid_to:
        return "expired"
    return "valid"


def days_to_expiry(licence: LicenceFacts, today: date) -> int:
    """Days left after today (0: the last valid day; negative: expired)."""
    return (licence.valid_to - today).days


def warn_days() -> tuple[int, ...]:
    return tuple(sorted(int(d) for d in rule("licence.validity").param("warn_days")))


def expiry_warning(licence: LicenceFacts, today: date) -> int | None:
    """The warning reached (90, 30 or 7 days before expiry) by a valid licence, else None."""
    if licence_state(licence, today) != "valid":
        return None
    left = days_to_expiry(licence, today)
    return next((d for d in warn_days() if left <= d), None)


def covers(licence: LicenceFacts, province: str) -> bool:
    return pv.NATIONWIDE in licence.provinces or province in licence.provinces


# --- coverage ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """Where service would be given: ``label`` for messages; province None abroad or unknown."""

    label: str
    in_china: bool
    province: str | None


@dataclass(frozen=True)
class Refusal:
    rule_id: str
    detail: str


def _coverage_text(licences: Sequence[LicenceFacts]) -> str:
    areas = sorted({p for lic in licences for p in lic.provinces})
    return ", ".join(pv.label(p) for p in areas) or "nothing"


def coverage_refusal(licences: Iterable[LicenceFacts], today: date, place: Place) -> Refusal | None:
    """Why the licences do not cover service at ``place`` today (None: they do)."""
    code = service_code()
    held = [lic for lic in licences if code in lic.service_codes]
    if not held:
        return Refusal(
            "licence.b13_required",
            f"the operator holds no licence for {code}; record one under /operator/licences",
        )
    current = [lic for lic in held if licence_state(lic, today) == "valid"]
    lapsed = [lic for lic in held if lic not in current]

    def validity(candidates: Sequence[LicenceFacts]) -> Refusal:
        lic = max(candidates, key=lambda c: c.valid_to)
        if licence_state(lic, today) == "expired":
            why = f"expired on {lic.valid_to.isoformat()}"
        else:
            why = f"is valid only from {lic.valid_from.isoformat()}"
        return Refusal("licence.validity", f"licence {lic.number} for {code} {why}")

    if not current:
        return validity(held)
    if not place.in_china or any(pv.NATIONWIDE in lic.provinces for lic in current):
        return None
    if place.province is None:
        return Refusal(
            "licence.region_covered",
            f"{place.label} is in China but names no province (GB/T 2260) a licence could "
            f"cover; the valid {code} licences cover {_coverage_text(current)}",
        )
    if any(covers(lic, place.province) for lic in current):
        return None
    # Valid licences exist but none covers the place: that is the rule unmet (region), even
    # when a lapsed licence used to cover it (named as the reason).
    where = pv.label(place.province)
    lapsed_here = [lic for lic in lapsed if covers(lic, place.province)]
    if lapsed_here:
        gone = max(lapsed_here, key=lambda c: c.valid_to)
        number, covered = gone.number, _coverage_text(current)
        if licence_state(gone, today) == "expired":
            until = gone.valid_to.isoformat()
            return Refusal(
                "licence.region_covered",
                f"no valid {code} licence covers {place.label} in {where}: licence {number} "
                f"that covers it expired on {until}; the valid ones cover {covered}",
            )
        since = gone.valid_from.isoformat()
        return Refusal(
            "licence.region_covered",
            f"no valid {code} licence covers {place.label} in {where}: licence {number} "
            f"that covers it is valid only from {since}; the valid ones cover {covered}",
        )
    return Refusal(
        "licence.region_covered",
        f"{place.label} is in {pv.label(place.province)}; the valid {code} licences cover "
        f"{_coverage_text(current)}",
    )


# --- ownership ---------------------------------------------------------------------------------
class HolderFacts(Protocol):
    @property
    def foreign(self) -> bool: ...
    @property
    def stake_percent(self) -> Decimal: ...


@dataclass(frozen=True)
class Cap:
    percent: Decimal
    inclusive: bool  # True: at most; False: below

    def allows(self, foreign: Decimal) -> bool:
        return foreign <= self.percent if self.inclusive else foreign < self.percent

    def text(self) -> str:
        return f"{'at most' if self.inclusive else 'below'} {self.percent}%"


def foreign_cap(code: str) -> Cap | None:
    """The cap on the foreign stake for a service code (None: no cap)."""
    r = rule("ownership.foreign_cap")
    caps = r.param("cap_percent")
    if code in caps:
        return Cap(Decimal(caps[code]), inclusive=True)
    controlled = r.param("chinese_controlled")
    if code.startswith(controlled["prefix"]):
        return Cap(Decimal(controlled["foreign_below_percent"]), inclusive=False)
    return None


@dataclass(frozen=True)
class Ownership:
    total: Decimal
    foreign: Decimal
    holders: int


def ownership(holders: Iterable[HolderFacts]) -> Ownership:
    total = foreign = Decimal(0)
    count = 0
    for h in holders:
        count += 1
        total += h.stake_percent
        if h.foreign:
            foreign += h.stake_percent
    return Ownership(total, foreign, count)


def ownership_refusal(holders: Iterable[HolderFacts], code: str | None = None) -> Refusal | None:
    """Why the shareholder register does not allow service under ``code`` (default B13)."""
    code = code or service_code()
    rule_id = "ownership.foreign_cap"
    owned = ownership(holders)
    need = Decimal(rule(rule_id).param("total_percent"))
    if owned.holders == 0:
        return Refusal(
            rule_id,
            "no shareholders are recorded; the register (/operator/shareholders) must add up "
            f"to {need}% so that the foreign stake is known",
        )
    if owned.total != need:
        return Refusal(
            rule_id,
            f"the shareholders' stakes add up to {owned.total}%, not {need}%; the foreign stake "
            "cannot be known until the register is complete",
        )
    cap = foreign_cap(code)
    if cap is not None and not cap.allows(owned.foreign):
        return Refusal(
            rule_id,
            f"the foreign stake is {owned.foreign}%; for {code} it must be {cap.text()}",
        )
    return None


# --- places ------------------------------------------------------------------------------------
def tenant_place(name: str, division_code: str) -> Place:
    return Place(f"tenant {name!r}", True, pv.province_of_division(division_code))


def pop_place(name: str, region: str, country: str) -> Place:
    where = f"PoP {name!r} (region {region})"
    if country != "CN":
        return Place(where, False, None)
    return Place(where, True, pv.province_of_region(region))


def site_place(
    name: str, country: str, pop_region: str | None, pop_country: str | None, division_code: str
) -> Place:
    """A site in China is served in its PoP's province; without a PoP in China, its tenant's."""
    if country != "CN":
        return Place(f"site {name!r} ({country})", False, None)
    if pop_country == "CN" and pop_region is not None:
        return Place(
            f"site {name!r} (at a PoP in {pop_region})", True, pv.province_of_region(pop_region)
        )
    return Place(f"site {name!r}", True, pv.province_of_division(division_code))


# --- against the store -------------------------------------------------------------------------
class SiteFacts(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def pop_id(self) -> uuid.UUID | None: ...


def service_refusal(
    licences: Iterable[LicenceFacts], holders: Iterable[HolderFacts], today: date, place: Place
) -> Refusal | None:
    return coverage_refusal(licences, today, place) or ownership_refusal(holders)


def require_service(ctx: Ctx, place: Place, *, field: str, region_field: str | None = None) -> None:
    """Raise a ComplianceRefusal unless the operator may serve ``place`` today.

    ``field`` keys the error (the request field that asked for service, usually ``state``);
    a region refusal is keyed by ``region_field`` when given.
    """
    licences = list(ctx.session.scalars(select(Licence)))
    holders = list(ctx.session.scalars(select(Shareholder)))
    today = china_today(ctx.runtime.clock())
    refusal = service_refusal(licences, holders, today, place)
    if refusal is not None:
        key = (
            region_field if refusal.rule_id == "licence.region_covered" and region_field else field
        )
        raise ComplianceRefusal(refusal.rule_id, refusal.detail, {key: refusal.detail})


def require_pop(ctx: Ctx, name: str, region: str, country: str) -> None:
    """A PoP is activated (created active, or moved to active / to another region)."""
    require_service(ctx, pop_place(name, region, country), field="state", region_field="region")


def require_site(ctx: Ctx, site: SiteFacts, division_code: str) -> None:
    """A site is activated (or an active site moves to another country or PoP)."""
    pop = ctx.session.get(Pop, site.pop_id) if site.pop_id is not None else None
    place = site_place(
        site.name,
        site.country,
        pop.region if pop else None,
        pop.country if pop else None,
        division_code,
    )
    require_service(ctx, place, field="state")
