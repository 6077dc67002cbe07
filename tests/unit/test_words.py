"""Words people read for the names code uses: field labels and provinces, in both languages.

A refusal keys its fields by the API's names (clients rely on them); the sentence a person
reads names each field by its label, and a province by its name in the reader's language
(found trying the console as a new user: ``缺少 legal_name, id_number``, ``位于 Guangdong``).
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from tongdao import messages, words
from tongdao.compliance import licensing
from tongdao.compliance import provinces as pv
from tongdao.compliance.rules import rule
from tongdao.errors import ValidationError
from tongdao.tenancy import schemas
from tongdao.web import i18n

MAINLAND = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区",
    "21": "辽宁省", "22": "吉林省", "23": "黑龙江省", "31": "上海市", "32": "江苏省",
    "33": "浙江省", "34": "安徽省", "35": "福建省", "36": "江西省", "37": "山东省",
    "41": "河南省", "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西壮族自治区",
    "46": "海南省", "50": "重庆市", "51": "四川省", "52": "贵州省", "53": "云南省",
    "54": "西藏自治区", "61": "陕西省", "62": "甘肃省", "63": "青海省", "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
}  # fmt: skip
ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")


def test_every_mainland_province_has_its_official_chinese_name() -> None:
    mainland = {code: p.name_zh for code, p in pv.PROVINCES.items() if p.abbreviations}
    assert mainland == MAINLAND
    assert len(mainland) == 31
    assert pv.PROVINCES["31"].label_zh == "上海市（31）"


@pytest.mark.parametrize("code", sorted(MAINLAND))
def test_a_province_inside_a_refusal_reads_in_chinese(code: str) -> None:
    province = pv.PROVINCES[code]
    tenant = licensing.tenant_place("Example Trading", f"{code}0105")
    elsewhere = [other for other in ("11", "31", "44") if other != code][:2]
    held = [Lic(("B13",), tuple(elsewhere))]
    refusal = licensing.coverage_refusal(held, TODAY, tenant)
    assert refusal is not None and province.label in refusal.detail
    chinese = messages.translate(refusal.detail, "zh_CN")
    assert province.label_zh in chinese, chinese
    assert ENGLISH_WORD.findall(chinese.replace("Example Trading", "")) == [], chinese
    # English stays as the API has always written it.
    assert messages.translate(refusal.detail, "en") == refusal.detail


class Lic:
    def __init__(self, codes: tuple[str, ...], provinces: tuple[str, ...]) -> None:
        self.number = "B1.B2-20100266"
        self.service_codes = list(codes)
        self.provinces = list(provinces)
        self.valid_from = date(2026, 1, 1)
        self.valid_to = date(2030, 1, 1)


TODAY = date(2026, 12, 6)


def test_the_covered_provinces_are_a_chinese_list() -> None:
    tenant = licensing.tenant_place("Example Trading", "440300")
    refusal = licensing.coverage_refusal([Lic(("B13",), ("11", "31"))], TODAY, tenant)
    assert refusal is not None
    assert messages.translate(refusal.detail, "zh_CN") == (
        "租户“Example Trading”位于广东省（44）；有效的 B13 许可证覆盖北京市（11）、上海市（31）"
    )


def test_a_licence_records_problems_name_fields_and_provinces_in_chinese() -> None:
    number = licensing.parse_licence_number("沪B1-20100267")
    problems = licensing.licence_problems(
        number, ["B13"], "MIIT", ["31", "44"], date(2026, 1, 1), date(2025, 1, 1)
    )
    with pytest.raises(ValidationError) as caught:
        licensing.raise_problems(problems)
    exc = caught.value
    # The keys are the API's; the English message names the fields by their labels.
    assert set(exc.fields) == {"provinces", "issuing_authority", "valid_to"}
    assert exc.message.startswith("provinces: a licence numbered 沪… is issued in Shanghai")
    assert "issuing authority: " in exc.message and "valid to: " in exc.message
    assert "issuing_authority" not in exc.message and "valid_to" not in exc.message
    assert "rule licence.number_format: " in exc.message
    text, fields = messages.translate_exception(exc, "zh_CN")
    assert set(fields) == set(exc.fields)
    assert fields["provinces"] == "编号以“沪”开头的许可证在上海市颁发，仅覆盖上海市（31）"
    assert fields["issuing_authority"] == "编号以“沪”开头的许可证由上海市通信管理局颁发"
    assert text.startswith("省份：编号以“沪”开头的许可证在上海市颁发")
    assert "；发证机关：" in text and "；到期日期：" in text
    source = messages.translate(rule("licence.number_format").source, "zh_CN")
    assert f"规则 licence.number_format：{source}" in text
    leftover = re.sub(r"licence\.\w+|MIIT", "", text)
    assert ENGLISH_WORD.findall(leftover) == [], text


def test_the_identity_refusal_names_fields_by_label_in_both_languages() -> None:
    missing = {"legal_name": "x", "id_number": "y", "mobile": "z"}
    assert words.field_list(missing) == "legal name, ID number, mobile"
    message = f"the real identity is incomplete ({words.field_list(missing)} missing)"
    assert (
        messages.translate(message, "zh_CN") == "实名信息不完整（缺少法定姓名、证件号码、手机号码）"
    )
    # A list holding anything that is not a field's name is left to the templates.
    assert messages.translate("legal name, nonsense", "zh_CN") == "legal name, nonsense"


def test_an_id_type_without_its_number_names_the_field() -> None:
    with pytest.raises(ValueError, match="the ID number is missing") as caught:
        schemas.IdentityFields(id_type="passport")
    text = str(caught.value)
    assert "id_number" not in text
    found = re.search(r"the ID type and the ID number go together; the ID number is missing", text)
    assert found is not None
    assert (
        messages.translate(found.group(0), "zh_CN") == "证件类型和证件号码须同时填写；缺少证件号码"
    )


def test_every_field_the_identity_rule_requires_has_a_label_in_both_languages() -> None:
    zh = i18n.translations("zh_CN").gettext
    for key in rule("identity.real_name").param("required_fields"):
        label = words.label(key)
        assert label is not None, key
        assert zh(label) != label, key
    for key, label in words.FIELD_LABELS.items():
        assert zh(label) != label, (key, label)


def test_a_message_made_of_fields_names_them_by_label_in_chinese() -> None:
    fields = {"legal_name": "Field required", "group_ids.2": "no such group in this tenant"}
    joined = "; ".join(f"{k}: {v}" for k, v in fields.items())
    text, translated = messages.translate_error(joined, fields, "zh_CN")
    assert set(translated) == set(fields)
    assert text == f"法定姓名：必填；用户组：{translated['group_ids.2']}"
    # In English the machine-made message is left as the API has always sent it.
    assert messages.translate_error(joined, fields, "en")[0] == joined


def test_a_list_of_states_inside_a_refusal_reads_in_chinese() -> None:
    message = "a under_review tenant can move to approved, rejected, not active"
    assert messages.translate(message, "zh_CN") == (
        "审核中状态的租户可以变为已批准、已驳回，不能变为正常"
    )
