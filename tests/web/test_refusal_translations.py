"""Rule refusals shown on the compliance officer's and operator's pages read in 简体中文.

The licence and ownership refusals (``tongdao.compliance.licensing.Refusal``) are built from
values, so each is matched against its catalogue template; an untranslated one would show
English inside a Chinese page (found trying the console as a Chinese compliance officer).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from tests.support.console import as_person
from tests.support.world import World
from tongdao import messages
from tongdao.compliance import licensing
from tongdao.compliance.rules import rule


@dataclass(frozen=True)
class Lic:
    number: str
    service_codes: tuple[str, ...]
    provinces: tuple[str, ...]
    valid_from: date
    valid_to: date


@dataclass(frozen=True)
class Holder:
    foreign: bool
    stake_percent: Decimal


TODAY = date(2026, 12, 6)
BEIJING = licensing.tenant_place("Example Trading", "110000")
EXPIRED = Lic("B1.B2-20100266", ("B13",), ("11",), date(2020, 1, 1), date(2025, 1, 1))
LATER = Lic("B1.B2-20100266", ("B13",), ("11",), date(2027, 1, 1), date(2032, 1, 1))


def refusals() -> list[licensing.Refusal | None]:
    return [
        licensing.coverage_refusal([], TODAY, BEIJING),
        licensing.coverage_refusal([EXPIRED], TODAY, BEIJING),
        licensing.coverage_refusal([LATER], TODAY, BEIJING),
        licensing.ownership_refusal([]),
        licensing.ownership_refusal([Holder(True, Decimal(40))]),
        licensing.ownership_refusal([Holder(True, Decimal(60)), Holder(False, Decimal(40))]),
    ]


@pytest.mark.parametrize("index", range(6))
def test_a_licence_or_ownership_refusal_reads_in_chinese(index: int) -> None:
    refusal = refusals()[index]
    assert refusal is not None
    chinese = messages.translate(refusal.detail, "zh_CN")
    assert chinese != refusal.detail
    # No English words left, other than codes, dates and the API's path.
    words = re.findall(r"[A-Za-z]{3,}", re.sub(r"/operator/\w+|B1\.B2-\d+|GB/T|API", "", chinese))
    assert words == [], (refusal.detail, chinese)
    assert re.search(r"[\u4e00-\u9fff]", chinese)


def test_the_dashboard_names_a_problems_source_and_text_in_chinese(world: World) -> None:
    world.clear_shareholders()
    officer = as_person(world, world.operators["compliance_officer"])
    officer.http.cookies.set("tongdao_lang", "zh_CN")
    page = officer.get("/console/compliance/dashboard")
    assert page.status_code == 200
    assert "ownership.foreign_cap" in page.text
    source = rule("ownership.foreign_cap").source
    assert html.escape(source, quote=False) not in page.text
    assert "《外商投资准入特别管理措施（负面清单）（2020年版）》" in page.text
    assert "no shareholders are recorded" not in page.text
    assert "尚未登记任何股东" in page.text
