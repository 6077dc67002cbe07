"""China's province-level divisions, keyed by their GB/T 2260 code (the first two digits of a
division code, as in a USCC), with the ISO 3166-2:CN code a PoP's region uses, the English
and the official Chinese name (the one table both languages read: refusals and pages show
``上海市``, ``广东省`` in 简体中文) and the short names that prefix provincial telecom licence
numbers (京B2-…, 沪B2-…).

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
    name_zh: str  # the official Chinese name (北京市, 广东省, 广西壮族自治区)
    abbreviations: tuple[str, ...] = ()  # licence-number prefixes; the first is the usual one

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def label_zh(self) -> str:
        return f"{self.name_zh}（{self.code}）"


PROVINCES: Mapping[str, Province] = MappingProxyType(
    {
        p.code: p
        for p in (
            Province("11", "BJ", "Beijing", "北京市", ("京",)),
            Province("12", "TJ", "Tianjin", "天津市", ("津",)),
            Province("13", "HE", "Hebei", "河北省", ("冀",)),
            Province("14", "SX", "Shanxi", "山西省", ("晋",)),
            Province("15", "NM", "Inner Mongolia", "内蒙古自治区", ("蒙",)),
            Province("21", "LN", "Liaoning", "辽宁省", ("辽",)),
            Province("22", "JL", "Jilin", "吉林省", ("吉",)),
            Province("23", "HL", "Heilongjiang", "黑龙江省", ("黑",)),
            Province("31", "SH", "Shanghai", "上海市", ("沪",)),
            Province("32", "JS", "Jiangsu", "江苏省", ("苏",)),
            Province("33", "ZJ", "Zhejiang", "浙江省", ("浙",)),
            Province("34", "AH", "Anhui", "安徽省", ("皖",)),
            Province("35", "FJ", "Fujian", "福建省", ("闽",)),
            Province("36", "JX", "Jiangxi", "江西省", ("赣",)),
            Province("37", "SD", "Shandong", "山东省", ("鲁",)),
            Province("41", "HA", "Henan", "河南省", ("豫",)),
            Province("42", "HB", "Hubei", "湖北省", ("鄂",)),
            Province("43", "HN", "Hunan", "湖南省", ("湘",)),
            Province("44", "GD", "Guangdong", "广东省", ("粤",)),
            Province("45", "GX", "Guangxi", "广西壮族自治区", ("桂",)),
            Province("46", "HI", "Hainan", "海南省", ("琼",)),
            Province("50", "CQ", "Chongqing", "重庆市", ("渝",)),
            Province("51", "SC", "Sichuan", "四川省", ("川", "蜀")),
            Province("52", "GZ", "Guizhou", "贵州省", ("黔", "贵")),
            Province("53", "YN", "Yunnan", "云南省", ("滇", "云")),
            Province("54", "XZ", "Tibet", "西藏自治区", ("藏",)),
            Province("61", "SN", "Shaanxi", "陕西省", ("陕", "秦")),
            Province("62", "GS", "Gansu", "甘肃省", ("甘", "陇")),
            Province("63", "QH", "Qinghai", "青海省", ("青",)),
            Province("64", "NX", "Ningxia", "宁夏回族自治区", ("宁",)),
            Province("65", "XJ", "Xinjiang", "新疆维吾尔自治区", ("新",)),
            # Taiwan, Hong Kong and Macao have GB/T 2260 codes but no mainland licence prefix.
            Province("71", "TW", "Taiwan", "台湾省"),
            Province("81", "HK", "Hong Kong", "香港特别行政区"),
            Province("82", "MO", "Macao", "澳门特别行政区"),
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
