"""Refusals in 简体中文: exact messages, templates with values, pydantic's own wording."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field
from pydantic import ValidationError as PydanticError

from tongdao.compliance.rules import RULES, ComplianceRefusal
from tongdao.messages import translate, translate_error, translate_exception
from tongdao.web.catalogue import refusal_messages


def test_an_exact_message_and_a_template_with_values() -> None:
    assert translate("tenant not found", "zh_CN") == "未找到该租户"
    assert translate("tenant not found", "en") == "tenant not found"
    # A value inside is translated in turn when the catalogue has it (a state).
    assert translate("the device is revoked; it has no configuration", "zh_CN") == (
        "该设备状态为已吊销，没有配置"
    )
    assert translate("too many failed sign-ins; try again in 30 s", "zh_CN") == (
        "登录失败次数过多，请在 30 秒后重试"
    )
    # Unknown text stays as it is.
    assert translate("something nobody wrote", "zh_CN") == "something nobody wrote"


def test_a_compliance_refusal_translates_its_detail_and_its_rule() -> None:
    refusal = ComplianceRefusal(
        "logs.retention",
        "records younger than 6 calendar months and a margin of 7 days cannot be purged: the "
        "date must be on or before 2026-06-09T00:00:00+00:00",
    )
    text, _fields = translate_exception(refusal, "zh_CN")
    rule = RULES["logs.retention"]
    assert text == (
        "未满 6 个自然月加 7 天余量的记录不能清理：日期须在 2026-06-09T00:00:00+00:00 或更早"
        "（规则 logs.retention：网络日志至少留存 6 个月；不足 6 个月的不能清理；"
        f"依据：{rule.source}）"
    )


def test_a_message_made_of_fields_is_made_again_in_chinese() -> None:
    fields = {"name": "Field required", "uscc": "String should have at most 18 characters"}
    message = "; ".join(f"{k}: {v}" for k, v in fields.items())
    translated, translated_fields = translate_error(message, fields, "zh_CN")
    assert translated_fields == {"name": "必填", "uscc": "最多 18 个字符"}
    # Each field is named by its label (tongdao.words), not by its key.
    assert translated == "名称：必填；统一社会信用代码：最多 18 个字符"


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    short: str = Field(min_length=3, max_length=5)
    number: int = Field(ge=1, le=10)
    ident: uuid.UUID
    kind: Literal["a", "b"]
    colour: Colour
    when: AwareDatetime
    plain: datetime
    items: list[int] = Field(min_length=1, max_length=2)
    email: EmailStr
    flag: bool


@pytest.mark.parametrize(
    "data",
    [
        {},
        {
            "short": "x",
            "number": 0,
            "ident": "nope",
            "kind": "c",
            "colour": "green",
            "when": "2026-01-01T00:00:00",
            "plain": "yesterday",
            "items": [],
            "email": "not-an-address",
            "flag": "perhaps",
            "extra": 1,
        },
        {
            "short": "toolong",
            "number": 11,
            "ident": 5,
            "kind": 1,
            "colour": 2,
            "when": "x",
            "plain": 3.5,
            "items": [1, 2, 3],
            "email": "a@",
            "flag": 2,
        },
        {"short": 5, "number": "x", "items": "no", "when": 1},
        {"number": 1.5},
    ],
)
def test_pydantics_own_refusals_have_their_translation(data: dict[str, object]) -> None:
    with pytest.raises(PydanticError) as caught:
        Probe.model_validate(data)
    for error in caught.value.errors():
        message = error["msg"].removeprefix("Value error, ")
        assert translate(message, "zh_CN") != message, (error["type"], message)


def test_every_refusal_the_services_raise_is_found_and_translated() -> None:
    found = refusal_messages()
    assert len(found) > 150  # the scan sees the services' messages
    msgids = {m.msgid for m in found}
    assert "tenant not found" in msgids
    assert "the device is %(device_state)s; it has no configuration" in msgids
    for message in found:
        sample = message.msgid.replace("%%", "%")
        for index, name in enumerate(sorted(set(_names(message.msgid)))):
            sample = sample.replace(f"%({name})s", f"V{index}")
        if "%(" not in message.msgid and catalogue_entry(message.msgid) == message.msgid:
            continue  # translated as itself on purpose (a standard's number: GB 32100-2015)
        assert translate(sample, "zh_CN") != sample, (message.where, message.msgid)


def catalogue_entry(msgid: str) -> str | None:
    from tongdao.web.i18n import read_catalogue

    entry = read_catalogue("zh_CN").get(msgid)
    return entry.string if entry is not None and isinstance(entry.string, str) else None


def _names(msgid: str) -> list[str]:
    import re

    return re.findall(r"%\((\w+)\)s", msgid)


def test_template_matching_is_one_scan_and_never_backtracks() -> None:
    from tongdao.messages import Template

    template = Template.parse(
        "link %(a)s joins %(b)s (%(c)s) across", "链路 %(a)s 连接 %(b)s（%(c)s）"
    )
    assert template is not None
    assert template.match("link L1 joins Beijing (CN) across") == {
        "a": "L1",
        "b": "Beijing",
        "c": "CN",
    }
    # A value holding the next fixed text ends at its first occurrence (no backtracking):
    # the split is the leftmost one, or no match, never a search over all splits.
    assert template.match("link x joins y joins Beijing (CN) across") == {
        "a": "x",
        "b": "y joins Beijing",
        "c": "CN",
    }
    assert template.match("link L1 joins Beijing across") is None
    assert Template.parse("%(a)s%(b)s", "x") is None  # nothing tells where a ends
    # A message full of the template's own fixed texts is still matched in one pass.
    crafted = "link " + " joins  (x) across" * 500 + " joins B (C) across"
    assert template.match(crafted) is not None
