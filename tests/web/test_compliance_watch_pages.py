"""The scheduled compliance check in the console: the breach and its countdown on the
compliance and operations dashboards (both languages), and the grace period form."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from tests.api.test_compliance_watch import foreign_majority
from tests.api.test_gateway import activate
from tests.support.console import as_person
from tests.support.world import World
from tongdao.compliance import watch

API = "/api/v1"


def officer_of(world: World) -> Any:
    return as_person(world, world.operators["compliance_officer"])


def field_error(page: str, name: str) -> str:
    found = re.search(rf'id="f-{name}-error">([^<]*)<', page)
    assert found, f"no error element for {name}"
    return html.unescape(found.group(1))


def breach(world: World) -> None:
    activate(world, world.a.id)
    foreign_majority(world)
    watch.check(world.runtime, datetime.now(UTC))


def test_no_breach_says_every_rule_is_met(world: World) -> None:
    page = officer_of(world).get("/console/compliance/dashboard")
    assert page.status_code == 200
    assert "The last check found every rule met" in page.text
    assert 'name="grace_days"' in page.text and 'value="7"' in page.text


def test_a_breach_shows_its_countdown_on_both_dashboards_in_both_languages(
    world: World,
) -> None:
    breach(world)
    officer = officer_of(world)
    page = officer.get("/console/compliance/dashboard").text
    assert "ownership.foreign_cap" in page
    assert re.search(r"in (6 d 23 h|7 d 0 h), unless", page), page
    admin = as_person(world, world.admin)
    ops = admin.get("/console/operator").text
    assert "alert-breach" in ops and "ownership.foreign_cap" in ops
    assert "/console/compliance/dashboard#watch" in ops
    officer.http.cookies.set("tongdao_lang", "zh_CN")
    zh = officer.get("/console/compliance/dashboard").text
    assert '<html lang="zh-CN">' in zh
    assert "定时合规检查" in zh and "被暂停" in zh
    assert re.search(r"还剩 (6 天 23 小时|7 天 0 小时)", zh)
    assert "外资持股比例" in zh or "境外" in zh or "外资" in zh, zh


def test_the_grace_period_form_saves_and_refuses_next_to_the_field(world: World) -> None:
    officer = officer_of(world)
    refused = officer.post("/console/compliance/watch", {"grace_days": "31"})
    assert refused.status_code == 422
    assert "30" in field_error(refused.text, "grace_days")
    assert 'value="31"' in refused.text
    for text in ("1_0", "true", "7.5", "x"):  # a whole number only, not read loosely
        refused = officer.post("/console/compliance/watch", {"grace_days": text})
        assert refused.status_code == 422, text
        assert "integer" in field_error(refused.text, "grace_days"), text
    got = world.client.get(f"{API}/operator/compliance/watch", headers=world.admin.headers)
    assert got.json()["grace_days"] == 7
    done = officer.post("/console/compliance/watch", {"grace_days": "14"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=grace")
    page = officer.get(done.headers["location"]).text
    assert "The grace period is saved" in page
    got = world.client.get(f"{API}/operator/compliance/watch", headers=world.admin.headers)
    assert got.json()["grace_days"] == 14
    # Operator staff who only read see the period, not the form.
    auditor = as_person(world, world.operators["auditor"])
    page = auditor.get("/console/compliance/dashboard").text
    assert "Grace period: 14 days." in page and 'name="grace_days"' not in page
    assert auditor.post("/console/compliance/watch", {"grace_days": "3"}).status_code == 403
