"""Property tests: ID-document validators (GB 11643 and the other types), masking, the
consent gate's CIDR arithmetic, and the rule/permission tables agreeing."""

from __future__ import annotations

import ipaddress
import itertools
import string
from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tongdao.auth.permissions import PERMISSIONS, Action, Role, allowed
from tongdao.compliance.identity import id_number_problem, resident_id_check_digit
from tongdao.compliance.rules import rule
from tongdao.crypto import mask
from tongdao.gateway.desired import PolicyRule
from tongdao.privacy.routing import ANYWHERE, withhold_abroad
from tongdao.tenancy.service import mask_mobile

CHECK_CHARS = "0123456789X"
regions = st.from_regex(r"\A[1-6][0-9]{5}\Z")
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31))
serials = st.integers(min_value=0, max_value=999)


def _first17(region: str, born: date, serial: int) -> str:
    return f"{region}{born:%Y%m%d}{serial:03d}"


# --- PRC resident ID (GB 11643-1999) -----------------------------------------------------------
@given(regions, births, serials)
def test_a_resident_id_with_its_check_digit_is_accepted(region: str, born: date, n: int) -> None:
    first17 = _first17(region, born, n)
    number = first17 + resident_id_check_digit(first17)
    assert id_number_problem("prc_resident_id", number) is None
    assert id_number_problem("prc_resident_id", number.lower()) is None  # x or X


@given(regions, births, serials, st.sampled_from(CHECK_CHARS))
def test_any_other_check_digit_is_refused(region: str, born: date, n: int, check: str) -> None:
    first17 = _first17(region, born, n)
    assume(check != resident_id_check_digit(first17))
    assert "check digit" in (id_number_problem("prc_resident_id", first17 + check) or "")


@given(regions, births, serials, st.integers(min_value=0, max_value=16), st.data())
def test_a_single_changed_digit_is_caught(
    region: str, born: date, n: int, pos: int, data: st.DataObject
) -> None:
    """ISO 7064 MOD 11-2 detects every single-digit substitution."""
    first17 = _first17(region, born, n)
    digit = data.draw(st.sampled_from([d for d in string.digits if d != first17[pos]]))
    typo = first17[:pos] + digit + first17[pos + 1 :]
    assert resident_id_check_digit(typo) != resident_id_check_digit(first17)
    assert id_number_problem("prc_resident_id", typo + resident_id_check_digit(first17))


@given(st.text(max_size=25))
def test_anything_not_shaped_like_a_resident_id_is_refused(text: str) -> None:
    stripped = text.strip().upper()
    assume(not (len(stripped) == 18 and stripped[:17].isascii() and stripped[:17].isdigit()))
    assert id_number_problem("prc_resident_id", text) is not None


@given(regions, st.integers(min_value=1, max_value=12), st.integers(min_value=30, max_value=39))
def test_an_impossible_birth_date_is_refused(region: str, month: int, day: int) -> None:
    first17 = f"{region}1990{month:02d}{day:02d}123"
    assume(not (day <= 31 and month in (1, 3, 5, 7, 8, 10, 12) and day in (30, 31)))
    assume(not (day == 30 and month != 2))
    problem = id_number_problem("prc_resident_id", first17 + resident_id_check_digit(first17))
    assert problem is not None and "birth date" in problem


# --- passports and foreign permanent-residence IDs ----------------------------------------------
alnum = string.ascii_uppercase + string.digits


@given(st.text(alphabet=alnum, min_size=5, max_size=20))
def test_passport_numbers(number: str) -> None:
    assert id_number_problem("passport", number) is None
    assert id_number_problem("passport", f" {number.lower()} ") is None


@given(st.text(max_size=30))
def test_malformed_passport_numbers_are_refused(text: str) -> None:
    stripped = text.strip().upper()
    assume(not (5 <= len(stripped) <= 20 and all(c in alnum for c in stripped)))
    assert id_number_problem("passport", text) is not None


@given(st.text(alphabet=alnum, min_size=15, max_size=18))
def test_permanent_residence_numbers(number: str) -> None:
    assert id_number_problem("foreign_permanent_residence", number) is None
    assert id_number_problem("foreign_permanent_residence", number[:14]) is not None
    assert id_number_problem("foreign_permanent_residence", number + "ABCD") is not None


@given(st.text(min_size=1, max_size=20), st.text(max_size=20))
def test_unknown_id_types_are_refused(id_type: str, number: str) -> None:
    assume(id_type not in ("prc_resident_id", "passport", "foreign_permanent_residence"))
    assert id_number_problem(id_type, number) is not None


# --- masking -------------------------------------------------------------------------------------
@given(st.text(min_size=0, max_size=40), st.integers(min_value=1, max_value=6))
def test_mask_keeps_the_length_and_shows_at_most_the_tail(value: str, visible: int) -> None:
    masked = mask(value, visible)
    assert len(masked) == len(value)
    shown = masked.lstrip("*")
    assert len(shown) <= visible
    assert value.endswith(shown)
    if len(value) <= 2 * visible:
        assert set(masked) <= {"*"}


@given(st.from_regex(r"\A\+?[0-9]{6,15}\Z"))
def test_a_masked_mobile_hides_the_middle(mobile: str) -> None:
    masked = mask_mobile(mobile)
    assert masked is not None and len(masked) == len(mobile)
    assert sum(c != "*" for c in masked) <= 7
    assert masked != mobile


# --- the consent gate --------------------------------------------------------------------------
UNIVERSE = ipaddress.ip_network("198.18.0.0/28")  # 16 addresses, small enough to enumerate
HOSTS = list(UNIVERSE)
cidrs = st.builds(
    lambda i, plen: str(ipaddress.ip_network(f"{HOSTS[i]}/{plen}", strict=False)),
    st.integers(min_value=0, max_value=15),
    st.integers(min_value=28, max_value=32),
)
rules_st = st.lists(
    st.builds(
        lambda src, dst: PolicyRule(src=tuple(sorted(set(src))), dst=tuple(sorted(set(dst)))),
        st.lists(cidrs, min_size=1, max_size=4),
        st.lists(cidrs, min_size=1, max_size=4),
    ),
    max_size=4,
)


def _pairs(rules: tuple[PolicyRule, ...] | list[PolicyRule]) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for r in rules:
        src = {i for i, h in enumerate(HOSTS) for c in r.src if h in ipaddress.ip_network(c)}
        dst = {i for i, h in enumerate(HOSTS) for c in r.dst if h in ipaddress.ip_network(c)}
        out |= set(itertools.product(src, dst))
    return out


@settings(max_examples=300)
@given(
    rules_st,
    st.sets(st.integers(min_value=0, max_value=15), max_size=5),
    st.lists(cidrs, max_size=3),
)
def test_withholding_removes_exactly_the_pairs_across_the_border(
    rules: list[PolicyRule], held_idx: set[int], abroad: list[str]
) -> None:
    held = {i for i in held_idx if not any(HOSTS[i] in ipaddress.ip_network(a) for a in abroad)}
    abroad_idx = {i for i, h in enumerate(HOSTS) for a in abroad if h in ipaddress.ip_network(a)}
    out = withhold_abroad(rules, [str(HOSTS[i]) for i in held], abroad)
    forbidden = {(h, a) for h in held for a in abroad_idx} | {
        (a, h) for h in held for a in abroad_idx
    }
    assert _pairs(out) == _pairs(rules) - forbidden
    for r in out:
        assert r.src == tuple(sorted(set(r.src))) and r.dst == tuple(sorted(set(r.dst)))
    if not held or not abroad_idx:
        assert out == tuple(rules)


@given(rules_st, st.sets(st.integers(min_value=0, max_value=15), min_size=1, max_size=5))
def test_abroad_everything_is_withheld_from_held_devices(
    rules: list[PolicyRule], held_idx: set[int]
) -> None:
    out = withhold_abroad(rules, [str(HOSTS[i]) for i in held_idx], ANYWHERE)
    for s, d in _pairs(out):
        assert (s in held_idx) == (d in held_idx)  # a held device talks to nobody else


def test_the_rule_names_the_roles_the_permission_table_lets_verify() -> None:
    verifiers = set(rule("identity.real_name").param("verifier_roles"))
    granted = {r.value for r in Role if allowed(frozenset({r}), "identity", Action.UPDATE)}
    assert granted == verifiers
    assert "identity" in PERMISSIONS


# --- every impossible birth date (issue 14) ------------------------------------------------------
@pytest.mark.parametrize(
    ("birth", "why"),
    [
        ("19900230", "is not a date"),  # 30 February
        ("19901301", "is not a date"),  # month 13
        ("19900001", "is not a date"),  # month 00
        ("19900100", "is not a date"),  # day 00
        ("19000229", "is not a date"),  # 1900 was not a leap year
        ("20261207", "(2026-12-07) is in the future"),
        ("30000101", "(3000-01-01) is in the future"),
        ("18991231", "(1899-12-31) is before 1900"),
        ("08880101", "(0888-01-01) is before 1900"),
    ],
)
def test_a_birth_date_that_cannot_be_is_refused_whatever_makes_it_so(birth: str, why: str) -> None:
    first17 = f"110105{birth}123"
    number = first17 + resident_id_check_digit(first17)
    problem = id_number_problem("prc_resident_id", number, date(2026, 12, 6))
    assert problem is not None and problem.endswith(why), problem
    # The day itself and a leap day are fine.
    for fine in ("20261206", "20000229", "19000101"):
        first17 = f"110105{fine}123"
        ok = first17 + resident_id_check_digit(first17)
        assert id_number_problem("prc_resident_id", ok, date(2026, 12, 6)) is None
