"""Unified Social Credit Code (统一社会信用代码), GB 32100-2015.

18 characters: registration authority (1), entity type (1), GB/T 2260 division code (6),
organisation code (9, GB 11714) and a check character. A checksum failure does not reject
the code: some real codes fail it, so it means manual verification.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, Z, S, V; values 0..30
VALUES = {ch: i for i, ch in enumerate(CHARSET)}
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))

# Registration authority → entity types it issues (GB 32100-2015 table 1).
AUTHORITY_ENTITY_TYPES: dict[str, frozenset[str]] = {
    "1": frozenset("1239"),  # 机构编制: organs, public institutions, mass organisations
    "2": frozenset("19"),  # 外交: foreign permanent representative offices
    "3": frozenset("12349"),  # 司法行政: law firms, notaries, judicial expertise
    "4": frozenset("129"),  # 文化: foreign cultural centres
    "5": frozenset("1239"),  # 民政: social organisations, foundations
    "6": frozenset("129"),  # 旅游: foreign tourism offices
    "7": frozenset("129"),  # 宗教: religious venues
    "8": frozenset("19"),  # 工会: trade unions
    "9": frozenset("123"),  # 工商 / 市场监管: enterprises, individual businesses, cooperatives
    "A": frozenset("19"),  # 中央军委改革和编制办公室
    "N": frozenset("129"),  # 农业: rural collective economic organisations
    "Y": frozenset("1"),  # other
}

# GB/T 2260 province-level prefixes (first two digits of the division code).
PROVINCE_PREFIXES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
    "50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)

_SHAPE = re.compile(r"^[0-9A-Z]{18}$")


@dataclass(frozen=True)
class UsccCheck:
    """The outcome of checking a USCC: ``errors`` reject it, ``checksum_ok`` only flags it."""

    code: str
    errors: tuple[str, ...]
    checksum_ok: bool

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def division_code(self) -> str:
        return self.code[2:8]


def uscc_check_char(first17: str) -> str:
    """The check character for the first 17 characters (which must be in the charset)."""
    total = sum(VALUES[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def check_uscc(raw: str) -> UsccCheck:
    code = raw.strip().upper()
    if not _SHAPE.match(code):
        return UsccCheck(code, ("must be 18 characters of digits and capital letters",), False)
    bad = sorted({ch for ch in code if ch not in VALUES})
    if bad:
        letters = ", ".join(bad)
        return UsccCheck(code, (f"characters not allowed in a USCC: {letters}",), False)
    errors: list[str] = []
    authority, entity = code[0], code[1]
    if authority not in AUTHORITY_ENTITY_TYPES:
        errors.append(f"unknown registration authority code {authority!r}")
    elif entity not in AUTHORITY_ENTITY_TYPES[authority]:
        errors.append(
            f"entity type {entity!r} is not issued by registration authority {authority!r}"
        )
    division = code[2:8]
    if not division.isdigit() or division[:2] not in PROVINCE_PREFIXES:
        errors.append(f"division code {division!r} is not a GB/T 2260 division")
    checksum_ok = uscc_check_char(code[:17]) == code[17]
    return UsccCheck(code, tuple(errors), checksum_ok)
