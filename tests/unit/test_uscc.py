"""USCC (GB 32100-2015) checks: the vectors from product.md, mutations, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongdao.compliance.uscc import CHARSET, check_uscc, uscc_check_char

VALID = ["914403001922038216", "91110000802100433B", "91350100M000100Y43"]


@pytest.mark.parametrize("code", VALID)
def test_known_valid_codes_pass(code: str) -> None:
    result = check_uscc(code)
    assert result.valid
    assert result.checksum_ok


def test_beijing_division_code() -> None:
    assert check_uscc("91110000802100433B").division_code == "110000"


def test_lower_case_and_spaces_are_normalised() -> None:
    assert check_uscc(" 91110000802100433b ").code == "91110000802100433B"


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("9111000080210043", "18 characters"),
        ("91110000802100433BX", "18 characters"),
        ("91I10000802100433B", "not allowed"),
        ("91110000802100O33B", "not allowed"),
        ("X1110000802100433B", "registration authority"),
        ("94110000802100433B", "entity type"),
        ("91990000802100433B", "division code"),
        ("9111000080210043-B", "18 characters"),
    ],
)
def test_malformed_codes_are_rejected(code: str, fragment: str) -> None:
    result = check_uscc(code)
    assert not result.valid
    assert any(fragment in e for e in result.errors)


def test_checksum_failure_flags_but_does_not_reject() -> None:
    result = check_uscc("91110000802100433C")
    assert result.valid
    assert not result.checksum_ok


@given(st.sampled_from(VALID), st.integers(0, 17), st.sampled_from(CHARSET))
def test_any_single_substitution_breaks_the_checksum(code: str, pos: int, ch: str) -> None:
    mutated = code[:pos] + ch + code[pos + 1 :]
    if mutated == code:
        return
    # 31 is prime and no weight is 0 mod 31, so one changed character always shows.
    assert not check_uscc(mutated).checksum_ok


@given(st.text(alphabet=CHARSET, min_size=9, max_size=9), st.sampled_from(["110105", "440300"]))
def test_computed_check_char_always_validates(org: str, division: str) -> None:
    first17 = "91" + division + org
    code = first17 + uscc_check_char(first17)
    result = check_uscc(code)
    assert result.valid
    assert result.checksum_ok


@given(st.text(max_size=30))
def test_arbitrary_text_never_raises(text: str) -> None:
    check_uscc(text)
