"""The console's usage-over-time page (tongdao.web.pages.ledger): the ledger's days of a month,
domestic and cross-border, for a tenant admin (own tenant), an employee (own devices) and
operator staff (a tenant they pick); the CSV; a bad month is refused next to its field."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api.test_gateway import device, state
from tests.api.test_usage import REPORTS, serving_gateway
from tests.api.test_usage_ledger import report_at, xpeer
from tests.support.console import as_person
from tests.support.world import World
from tongdao.testing.keys import public_key

PAGE = "/console/usage-trend"


def ledger_world(world: World) -> dict[str, Any]:
    """The employee's device and the admin's, each with a report this hour."""
    _pop, gw = serving_gateway(world)
    mine = device(world)
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/devices",
        json={"name": "admin laptop", "public_key": public_key()},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    admins = resp.json()
    state(world, gw)
    end = datetime.now(UTC) - timedelta(minutes=1)
    body = report_at(
        1,
        end,
        [
            xpeer(world.a.id, mine, 3000, 1000, 500, 0),
            xpeer(world.a.id, admins, 70_000, 0, 0, 0),
        ],
    )
    answer = world.client.post(REPORTS, json=body, headers=gw).json()
    assert answer["stored"] == 2, answer
    return {
        "day": (end + timedelta(hours=8)).date().isoformat(),
        "month": f"{end + timedelta(hours=8):%Y-%m}",
    }


def rows(page: str) -> dict[str, tuple[int, int, int, int]]:
    body = page.split('id="trend-days"', 1)[1].split("</table>", 1)[0]
    out = {}
    for day, cells in re.findall(r'<tr data-day="([0-9-]+)">(.*?)</tr>', body, re.S):
        values = [int(v) for v in re.findall(r'data-bytes="([0-9]+)"', cells)]
        out[day] = (values[0], values[1], values[2], values[3])
    return out


def test_admin_sees_the_tenant_and_the_chart_gets_the_same_numbers(world: World) -> None:
    made = ledger_world(world)
    page = as_person(world, world.a.admin).get(f"{PAGE}?month={made['month']}")
    assert page.status_code == 200, page.text
    # domestic up/down, cross-border up/down (up: what the device sent = the gateway's rx)
    assert rows(page.text) == {made["day"]: (72_500, 1000, 500, 0)}
    data = re.search(r'<script type="application/json" id="trend-data">(.*?)</script>', page.text)
    assert data
    chart = json.loads(data.group(1))
    # every day of the month on the chart, the traffic on its day
    day = int(made["day"][8:])
    assert len(chart["labels"]) in (28, 29, 30, 31) and chart["labels"][day - 1] == made["day"][8:]
    assert chart["domestic"][day - 1] == 73_500 and sum(chart["domestic"]) == 73_500
    assert chart["cross_border"][day - 1] == 500 and sum(chart["cross_border"]) == 500
    assert "/console/static/js/ledger-trend.js" in page.text
    assert "vendor/chartjs/chart.umd.min.js" in page.text


def test_employee_sees_their_own_devices_only(world: World) -> None:
    made = ledger_world(world)
    page = as_person(world, world.a.employee).get(f"{PAGE}?month={made['month']}")
    assert page.status_code == 200
    assert rows(page.text) == {made["day"]: (2500, 1000, 500, 0)}


def test_operator_staff_pick_a_tenant_and_other_tenants_see_theirs(world: World) -> None:
    made = ledger_world(world)
    clerk = as_person(world, world.operators["billing_clerk"])
    choose = clerk.get(f"{PAGE}?month={made['month']}")
    assert choose.status_code == 200 and "Choose a tenant" in choose.text
    seen = clerk.get(f"{PAGE}?month={made['month']}&tenant={world.a.id}")
    assert rows(seen.text) == {made["day"]: (72_500, 1000, 500, 0)}
    # tenant B's admin asking for A's: their own tenant (no traffic), nothing of A's
    other = as_person(world, world.b.admin).get(f"{PAGE}?month={made['month']}&tenant={world.a.id}")
    assert other.status_code == 200
    assert 'id="trend-days"' not in other.text and "No traffic in this month" in other.text
    assert "Tenant A" not in other.text


def test_csv_and_a_bad_month(world: World) -> None:
    made = ledger_world(world)
    admin = as_person(world, world.a.admin)
    got = admin.get(f"{PAGE}.csv?month={made['month']}")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    (row,) = list(csv.DictReader(io.StringIO(got.text)))
    assert (row["period"], row["domestic_rx_bytes"], row["cross_border_rx_bytes"]) == (
        made["day"],
        "72500",
        "500",
    )
    for month in ("2026-13", "1999-01", "soon"):
        bad = admin.get(f"{PAGE}?month={month}")
        assert bad.status_code == 422
        field = bad.text.split('for="f-month"', 1)[1]
        assert "field-error" in field.split("</div>", 2)[0] + field.split("</div>", 2)[1]


def test_the_page_in_chinese(world: World) -> None:
    made = ledger_world(world)
    admin = as_person(world, world.a.admin)
    page = admin.get(f"{PAGE}?month={made['month']}", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200
    assert "用量趋势" in page.text and "境内上行" in page.text
