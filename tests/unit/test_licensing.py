"""Licence and ownership rules as pure functions: numbers, consistency, validity and warnings,
coverage of places, the foreign cap, and KYC of a tenant record. No store needed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongdao.compliance import kyc, licensing
from tongdao.compliance import provinces as pv
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.compliance.uscc import check_uscc, uscc_check_char
from tongdao.errors import ValidationError

TODAY = date(2026, 6, 15)
CODES = licensing.known_service_codes()
ABBREVIATIONS = sorted(a for p in pv.PROVINCES.values() for a in p.abbreviations)


@dataclass(frozen=True)
class Lic:
    number: str = "B1-20190001"
    service_codes: tuple[str, ...] = ("B13",)
    provinces: tuple[str, ...] = ("*",)
    valid_from: date = date(2025, 1, 1)
    valid_to: date = date(2030, 1, 1)


@dataclass(frozen=True)
class Holder:
    foreign: bool
    stake_percent: Decimal


JV = (Holder(False, Decimal("51")), Holder(True, Decimal("49")))
BEIJING = licensing.tenant_place("Acme", "110105")
SHENZHEN = licensing.tenant_place("Globex", "440300")
ABROAD = licensing.pop_place("fra-1", "DE-FRA", "DE")


# --- licence numbers (rule licence.number_format) ----------------------------------------------
@pytest.mark.parametrize(
    ("text", "province", "classes"),
    [
        ("B1.B2-20100266", None, ("B1", "B2")),
        ("京B1-20180001", "11", ("B1",)),
        (" b1.b2-20200593 ", None, ("B1", "B2")),
        ("粤B2-20090059", "44", ("B2",)),
        ("B13-20260001", None, ("B13",)),
    ],
)
def test_licence_numbers_parse(text: str, province: str | None, classes: tuple[str, ...]) -> None:
    number = licensing.parse_licence_number(text)
    assert number.province == province
    assert number.classes == classes
    assert number.text == text.strip().upper()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("B13-2026", "looks like"),
        ("B1-2010026", "looks like"),
        ("B1-201002666", "looks like"),
        ("B1..B2-20100266", "looks like"),
        ("B1.B2_20100266", "looks like"),
        ("B1-２０１００２６６", "looks like"),  # full-width digits
        ("京京B1-20180001", "looks like"),
        ("中B1-20180001", "prefix"),
        ("X1-20100266", "service code"),
        ("B9-20100266", "service code"),
        ("B1.B1-20100266", "twice"),
        ("", "looks like"),
    ],
)
def test_bad_licence_numbers(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        licensing.parse_licence_number(text)


@given(
    st.sampled_from([None, *ABBREVIATIONS]),
    st.lists(st.sampled_from(CODES), min_size=1, max_size=4, unique=True),
    st.integers(0, 9999),
    st.integers(0, 9999),
)
def test_licence_numbers_round_trip(
    prefix: str | None, codes: list[str], year: int, serial: int
) -> None:
    text = f"{prefix or ''}{'.'.join(codes)}-{year:04d}{serial:04d}"
    number = licensing.parse_licence_number(text)
    assert number.classes == tuple(codes)
    assert number.year == year
    assert number.serial == f"{serial:04d}"
    assert number.province == (pv.province_of_prefix(prefix) if prefix else None)
    assert licensing.parse_licence_number(number.text) == number


@given(st.text(max_size=40))
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        number = licensing.parse_licence_number(text)
    except ValueError as exc:
        message = str(exc)
        assert message
    else:
        assert set(number.classes) <= set(CODES)


@given(st.sampled_from(CODES), st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=3))
def test_only_catalogue_codes_are_accepted(code: str, other: str) -> None:
    text = f"{code}.{other}-20200001"
    if other in CODES and other != code:
        assert licensing.parse_licence_number(text).classes == (code, other)
    else:
        with pytest.raises(ValueError, match=r"service code|looks like|twice"):
            licensing.parse_licence_number(text)


# --- licence consistency -----------------------------------------------------------------------
def problems(number: str = "B1-20190001", **changes: object) -> dict[str, str]:
    fields: dict[str, object] = {
        "service_codes": ["B13"],
        "issuing_authority": "工业和信息化部",
        "provinces": ["*"],
        "valid_from": date(2026, 1, 1),
        "valid_to": date(2031, 1, 1),
        **changes,
    }
    found = licensing.licence_problems(licensing.parse_licence_number(number), **fields)  # type: ignore[arg-type]
    return {p.field: p.message for p in found}


def test_a_consistent_licence_has_no_problems() -> None:
    assert problems() == {}
    assert (
        problems(
            "京B1-20180001",
            issuing_authority="北京市通信管理局",
            provinces=["11"],
        )
        == {}
    )


def test_service_codes_belong_to_the_number() -> None:
    assert "service_codes.0" in problems("B2-20190001")
    assert "service_codes.1" in problems(service_codes=["B13", "B13"])


def test_a_province_prefix_fixes_area_and_authority() -> None:
    found = problems("京B1-20180001", provinces=["11", "31"])
    assert "Beijing (11) only" in found["provinces"]
    assert "Communications Administration" in found["issuing_authority"]


def test_national_licences_are_issued_by_miit() -> None:
    assert "MIIT" in problems(issuing_authority="北京市通信管理局")["issuing_authority"]
    assert problems(issuing_authority="MIIT (renewed)") == {}


def test_nationwide_stands_alone() -> None:
    assert "stands alone" in problems(provinces=["*", "11"])["provinces"]
    assert "twice" in problems(provinces=["11", "11"])["provinces"]


def test_term_is_at_most_five_years() -> None:
    term = rule("licence.validity").param("term_years")
    assert term == 5
    assert problems(valid_from=date(2026, 1, 1), valid_to=date(2031, 1, 1)) == {}
    assert "at most 5 years" in problems(valid_to=date(2031, 1, 2))["valid_to"]
    assert "after" in problems(valid_to=date(2026, 1, 1))["valid_to"]
    assert licensing.add_years(date(2024, 2, 29), 5) == date(2029, 2, 28)


def test_problems_become_a_field_keyed_422_naming_the_rules() -> None:
    found = licensing.licence_problems(
        licensing.parse_licence_number("B2-20190001"),
        ["B13"],
        "MIIT",
        ["*"],
        date(2026, 1, 1),
        date(2032, 1, 1),
    )
    with pytest.raises(ValidationError) as info:
        licensing.raise_problems(found)
    assert set(info.value.fields) == {"service_codes.0", "valid_to"}
    assert "rule licence.number_format" in info.value.message
    assert "rule licence.validity" in info.value.message
    assert rule("licence.validity").source in info.value.message


# --- validity and warnings (rule licence.validity) ---------------------------------------------
@pytest.mark.parametrize(
    ("days_left", "warning"),
    [(400, None), (91, None), (90, 90), (31, 90), (30, 30), (8, 30), (7, 7), (1, 7), (0, 7)],
)
def test_expiry_warnings_at_90_30_7_days(days_left: int, warning: int | None) -> None:
    lic = Lic(valid_to=TODAY + timedelta(days=days_left))
    assert licensing.licence_state(lic, TODAY) == "valid"
    assert licensing.days_to_expiry(lic, TODAY) == days_left
    assert licensing.expiry_warning(lic, TODAY) == warning


def test_expired_and_future_licences_warn_nothing() -> None:
    expired = Lic(valid_to=TODAY - timedelta(days=1))
    future = Lic(valid_from=TODAY + timedelta(days=1))
    assert licensing.licence_state(expired, TODAY) == "expired"
    assert licensing.licence_state(future, TODAY) == "not_yet_valid"
    assert licensing.expiry_warning(expired, TODAY) is None
    assert licensing.expiry_warning(future, TODAY) is None


@given(st.integers(0, 2000))
def test_the_warning_is_the_nearest_threshold_reached(days_left: int) -> None:
    lic = Lic(valid_from=TODAY - timedelta(days=1), valid_to=TODAY + timedelta(days=days_left))
    warning = licensing.expiry_warning(lic, TODAY)
    reached = [d for d in rule("licence.validity").param("warn_days") if days_left <= d]
    assert warning == (min(reached) if reached else None)


def test_china_today_is_utc_plus_8() -> None:
    assert licensing.china_today(datetime.fromisoformat("2026-06-14T16:00:00+00:00")) == TODAY
    assert licensing.china_today(datetime.fromisoformat("2026-06-14T15:59:59+00:00")) == date(
        2026, 6, 14
    )


# --- coverage (licence.b13_required, licence.validity, licence.region_covered) -----------------
def refused(licences: list[Lic], place: licensing.Place) -> str | None:
    found = licensing.coverage_refusal(licences, TODAY, place)
    return None if found is None else found.rule_id


def test_no_b13_licence() -> None:
    assert refused([], BEIJING) == "licence.b13_required"
    assert refused([Lic(service_codes=("B12",))], ABROAD) == "licence.b13_required"


def test_expired_or_future_licence() -> None:
    expired = Lic(valid_from=date(2020, 1, 1), valid_to=TODAY - timedelta(days=1))
    assert refused([expired], BEIJING) == "licence.validity"
    assert refused([expired], ABROAD) == "licence.validity"
    found = licensing.coverage_refusal([expired], TODAY, BEIJING)
    assert found is not None and "expired on" in found.detail
    future = Lic(valid_from=TODAY + timedelta(days=3))
    found = licensing.coverage_refusal([future], TODAY, BEIJING)
    assert found is not None and "valid only from" in found.detail


def test_region_must_be_covered() -> None:
    beijing_only = Lic(number="京B1-20180001", provinces=("11",))
    assert refused([beijing_only], BEIJING) is None
    assert refused([beijing_only], SHENZHEN) == "licence.region_covered"
    found = licensing.coverage_refusal([beijing_only], TODAY, SHENZHEN)
    assert found is not None and "Guangdong (44)" in found.detail
    assert "Beijing (11)" in found.detail
    # Abroad lies outside every licence's provinces, but a valid B13 licence is enough.
    assert refused([beijing_only], ABROAD) is None
    shanghai_pop = licensing.pop_place("sh-1", "CN-SH", "CN")
    assert refused([beijing_only], shanghai_pop) == "licence.region_covered"
    unknown = licensing.pop_place("x", "CN-NORTH", "CN")
    assert refused([beijing_only], unknown) == "licence.region_covered"
    assert refused([Lic()], unknown) is None  # nationwide covers all of China


def test_a_lapsed_licence_for_the_region_names_the_region_unmet_and_the_lapsed_licence() -> None:
    beijing_now = Lic(number="京B1-20180001", provinces=("11",))
    guangdong_lapsed = Lic(
        number="粤B1-20150001", provinces=("44",), valid_from=date(2020, 1, 1), valid_to=TODAY
    )
    assert refused([beijing_now, guangdong_lapsed], SHENZHEN) is None  # last valid day
    lapsed = replace(guangdong_lapsed, valid_to=TODAY - timedelta(days=1))
    # Valid licences exist: the rule unmet is that none covers Guangdong (issue 14).
    assert refused([beijing_now, lapsed], SHENZHEN) == "licence.region_covered"


def test_an_expired_national_licence_and_a_valid_shanghai_one_refuse_beijing_by_region() -> None:
    national = Lic(
        number="B1-20190001", provinces=("*",), valid_from=date(2020, 1, 1), valid_to=TODAY
    )
    shanghai = Lic(number="沪B1-20200001", provinces=("31",))
    assert refused([national, shanghai], BEIJING) is None  # the national one's last day
    expired = replace(national, valid_to=TODAY - timedelta(days=1))
    found = licensing.coverage_refusal([expired, shanghai], TODAY, BEIJING)
    assert found is not None and found.rule_id == "licence.region_covered"
    assert found.detail.startswith("no valid B13 licence covers tenant 'Acme' in Beijing (11)")
    assert f"B1-20190001 that covers it expired on {expired.valid_to.isoformat()}" in found.detail
    assert "the valid ones cover Shanghai (31)" in found.detail
    # With no valid licence at all, the expiry itself is what is unmet.
    alone = licensing.coverage_refusal([expired], TODAY, BEIJING)
    assert alone is not None and alone.rule_id == "licence.validity"


def test_places() -> None:
    assert BEIJING.province == "11" and BEIJING.in_china
    assert pv.province_of_region("CN-BJ") == pv.province_of_region("cn-11") == "11"
    assert pv.province_of_region("DE-FRA") is None
    assert pv.province_of_prefix("沪") == "31"
    assert not ABROAD.in_china
    at_shanghai = licensing.site_place("office", "CN", "CN-SH", "CN", "110105")
    assert at_shanghai.province == "31"
    no_pop = licensing.site_place("office", "CN", None, None, "110105")
    assert no_pop.province == "11"
    abroad = licensing.site_place("hq", "DE", "DE-FRA", "DE", "110105")
    assert not abroad.in_china


provinces_st = st.lists(st.sampled_from(["*", *sorted(pv.PROVINCES)]), max_size=3, unique=True)
licence_st = st.builds(
    Lic,
    service_codes=st.lists(st.sampled_from(["B13", "B12", "B21"]), min_size=1, unique=True).map(
        tuple
    ),
    provinces=provinces_st.map(tuple),
    valid_from=st.dates(date(2020, 1, 1), date(2027, 1, 1)),
    valid_to=st.dates(date(2021, 1, 1), date(2032, 1, 1)),
)
place_st = st.one_of(
    st.builds(
        licensing.Place,
        label=st.just("somewhere"),
        in_china=st.just(True),
        province=st.one_of(st.none(), st.sampled_from(sorted(pv.PROVINCES))),
    ),
    st.just(ABROAD),
)


@given(st.lists(licence_st, max_size=4), place_st)
def test_coverage_holds_exactly_when_a_valid_b13_licence_reaches_the_place(
    licences: list[Lic], place: licensing.Place
) -> None:
    def reaches(lic: Lic) -> bool:
        if "B13" not in lic.service_codes or not lic.valid_from <= TODAY <= lic.valid_to:
            return False
        if not place.in_china or "*" in lic.provinces:
            return True
        return place.province is not None and place.province in lic.provinces

    found = licensing.coverage_refusal(licences, TODAY, place)
    assert (found is None) == any(reaches(lic) for lic in licences)
    if found is not None:
        assert found.rule_id in {
            "licence.b13_required",
            "licence.validity",
            "licence.region_covered",
        }
        assert (found.rule_id == "licence.b13_required") == all(
            "B13" not in lic.service_codes for lic in licences
        )


# --- ownership (ownership.foreign_cap) ---------------------------------------------------------
def test_the_b13_cap_is_50_percent() -> None:
    assert licensing.ownership_refusal(JV) is None
    at_cap = (Holder(False, Decimal(50)), Holder(True, Decimal(50)))
    assert licensing.ownership_refusal(at_cap) is None
    over = (Holder(False, Decimal("49.99")), Holder(True, Decimal("50.01")))
    found = licensing.ownership_refusal(over)
    assert found is not None and found.rule_id == "ownership.foreign_cap"
    assert "50.01%" in found.detail and "at most 50%" in found.detail


def test_stakes_must_add_up_to_100() -> None:
    found = licensing.ownership_refusal([])
    assert found is not None and "no shareholders" in found.detail
    found = licensing.ownership_refusal([Holder(False, Decimal(60))])
    assert found is not None and "add up to 60%" in found.detail


def test_other_codes() -> None:
    all_foreign = [Holder(True, Decimal(100))]
    assert licensing.ownership_refusal(all_foreign, "B21") is None  # e-commerce: no cap
    found = licensing.ownership_refusal(
        [Holder(True, Decimal(50)), Holder(False, Decimal(50))], "A11"
    )
    assert found is not None and "below 50%" in found.detail  # basic telecom: Chinese-controlled


stake_st = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=2)


@given(st.lists(st.tuples(st.booleans(), stake_st), max_size=6))
def test_ownership_allows_b13_exactly_when_complete_and_within_the_cap(
    stakes: list[tuple[bool, Decimal]],
) -> None:
    holders = [Holder(foreign, stake) for foreign, stake in stakes]
    total = sum((s for _f, s in stakes), Decimal(0))
    foreign = sum((s for f, s in stakes if f), Decimal(0))
    found = licensing.ownership_refusal(holders)
    assert (found is None) == (bool(stakes) and total == 100 and foreign <= 50)


# --- KYC of a tenant record (kyc.uscc, kyc.foreign_invested_beijing) ---------------------------
@dataclass(frozen=True)
class TenantRecord:
    name_en: str = "Acme"
    uscc: str = "91110000802100433B"
    uscc_checksum_ok: bool = True
    uscc_verified_at: datetime | None = None
    division_code: str = "110000"
    foreign_invested: bool = True
    foreign_invested_evidence: str = "FIE report receipt 2026-001"


def kyc_rule(record: TenantRecord) -> tuple[str, str] | None:
    found = kyc.kyc_refusal(record)
    return None if found is None else (found[0].rule_id, found[1])


def test_kyc_vetting() -> None:
    assert kyc_rule(TenantRecord()) is None
    flagged = TenantRecord(uscc_checksum_ok=False)
    assert kyc_rule(flagged) == ("kyc.uscc", "uscc_verified")
    assert kyc_rule(replace(flagged, uscc_verified_at=datetime(2026, 1, 1))) is None
    assert kyc_rule(TenantRecord(foreign_invested=False)) == (
        "kyc.foreign_invested_beijing",
        "foreign_invested",
    )
    assert kyc_rule(TenantRecord(foreign_invested_evidence=" ")) == (
        "kyc.foreign_invested_beijing",
        "foreign_invested_evidence",
    )
    # Outside Beijing the pilot's condition does not apply.
    assert kyc_rule(TenantRecord(division_code="440300", foreign_invested=False)) is None


@given(
    st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=9, max_size=9),
    st.sampled_from(sorted(pv.PROVINCES)),
    st.booleans(),
)
def test_uscc_division_places_the_tenant(org: str, province: str, foreign: bool) -> None:
    first17 = f"91{province}0105{org}"
    check = check_uscc(first17 + uscc_check_char(first17))
    assert check.valid and check.checksum_ok
    place = licensing.tenant_place("t", check.division_code)
    assert place.province == province
    record = TenantRecord(
        uscc=check.code, division_code=check.division_code, foreign_invested=foreign
    )
    # Only a Beijing (11xxxx) customer has to be foreign-invested.
    assert (kyc_rule(record) is None) == (foreign or province != "11")


def test_require_vetted_raises_a_refusal_naming_rule_and_source() -> None:
    record = TenantRecord(foreign_invested=False)
    found = kyc.kyc_refusal(record)
    assert found is not None
    refusal = ComplianceRefusal(found[0].rule_id, found[0].detail, {found[1]: found[0].detail})
    assert refusal.status_code == 409
    assert "rule kyc.foreign_invested_beijing" in refusal.message
    assert "State Council" in refusal.message
