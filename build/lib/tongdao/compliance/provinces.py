"""China's province-level divisions, keyed by their GB/T 2260 code (the first two digits of a
division code, as in a USCC), with the ISO 3166-2:CN code a PoP's region uses and the short
names that prefix provincial telecom licence numbers (京B2-…, 沪B2-…).

Reference data, not rules: a licence lists the provinces it covers by these codes, and
:mod:`tongdao.compliance.licensing` maps tenants (USCC division code), PoPs (region) and sites
onto them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

NATIONWIDE = "*"
NATIONWIDE_ALIASES = frozenset({"*", "nationwide", "全国"})


@dataclass(frozen=True)
class Province:
    code: str  # GB/T 2260, two digits
    iso: str  # ISO 3166-2:CN subdivision, after "CN-"
    name: str
    abbreviations: tuple[str, ...] = ()  # licence-number prefixes; the first is the usual one

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})"


PROVINCES: Mapping[str, Province] = MappingProxyType(
    {
        p.code: p
        for p in (
            Province("11", "BJ", "Beijing", ("京",)),
            Province("12", "TJ", "Tianjin", ("津",)),
            Province("13", "HE", "Hebei", ("冀",)),
            Province("14", "SX", "Shanxi", ("晋",)),
            Province("15", "NM", "Inner Mongolia", ("蒙",)),
            Province("21", "LN", "Liaoning", ("辽",)),
            Province("22", "JL", "Jilin", ("吉",)),
            Province("23", "HL", "Heilongjiang", ("黑",)),
            Province("31", "SH", "Shanghai", ("沪",)),
            Province("32", "JS", "Jiangsu", ("苏",)),
            Province("33", "ZJ", "Zhejiang", ("浙",)),
            Province("34", "AH", "Anhui", ("皖",)),
            Province("35", "FJ", "Fujian", ("闽",)),
            Province("36", "JX", "Jiangxi", ("赣",)),
            Province("37", "SD", "Shandong", ("鲁",)),
            Province("41", "HA", "Henan", ("豫",)),
            Province("42", "HB", "Hubei", ("鄂",)),
            Province("43", "HN", "Hunan", ("湘",)),
            Province("44", "GD", "Guangdong", ("粤",)),
            Province("45", "GX", "Guangxi", ("桂",)),
            Province("46", "HI", "Hainan", ("琼",)),
            Province("50", "CQ", "Chongqing", ("渝",)),
            Province("51", "SC", "Sichuan", ("川", "蜀")),
            Province("52", "GZ", "Guizhou", ("黔", "贵")),
            Province("53", "YN", "Yunnan", ("滇", "云")),
            Province("54", "XZ", "Tibet", ("藏",)),
            Province("61", "SN", "Shaanxi", ("陕", "秦")),
            Province("62", "GS", "Gansu", ("甘", "陇")),
            Province("63", "QH", "Qinghai", ("青",)),
            Province("64", "NX", "Ningxia", ("宁",)),
            Province("65", "XJ", "Xinjiang", ("新",)),
            # Taiwan, Hong Kong and Macao have GB/T 2260 codes but no mainland licence prefix.
            Province("71", "TW", "Taiwan"),
            Province("81", "HK", "Hong Kong"),
            Province("82", "MO", "Macao"),
        )
    }
)
_BY_ISO = {p.iso: p.code for p in PROVINCES.values()}
_BY_ABBREVIATION = {a: p.code for p in PROVINCES.values() for a in p.abbreviations}


def province_of_region(region: str) -> str | None:
    """The GB/T 2260 code of a PoP region: ``CN-BJ`` (ISO 3166-2) or ``CN-11``; else None."""
    country, _, part = region.strip().upper().partition("-")
    if country != "CN":
        return None
    if part in PROVINCES:
        return part
    return _BY_ISO.get(part)


def province_of_division(division_code: str) -> str | None:
    """The province of a GB/T 2260 division code (``110105`` → ``11``)."""
    code = division_code[:2]
    return code if code in PROVINCES else None


def province_of_prefix(prefix: str) -> str | None:
    """The province whose communications administration uses this licence prefix (京 → 11)."""
    return _BY_ABBREVIATION.get(prefix)


def label(code: str) -> str:
    """``Beijing (11)``, ``nationwide`` or the bare code."""
    if code == NATIONWIDE:
        return "nationwide"
    province = PROVINCES.get(code)
    return province.label if province else code
