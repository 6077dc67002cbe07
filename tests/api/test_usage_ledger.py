"""The usage ledger: hourly rollups written with each stored report, cross-border bytes,
Asia/Shanghai periods, the series API (JSON and CSV) and who may read it."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as SchemaError
from sqlalchemy import func, select

from tests.api.test_gateway import device, state
from tests.api.test_usage import REPORTS, enrolled_days_ago, peer, serving_gateway
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.gateway.ledger import hour_of
from tongdao.gateway.models import UsageHourly, UsageRecord, UsageTenantHourly
from tongdao.gateway.usage import PeerUsage
from tongdao.runtime import Runtime
from tongdao.testing.keys import public_key

SH = timedelta(hours=8)


def report_at(seq: int, end: datetime, peers: list[dict[str, Any]], span: int = 30) -> Any:
    return {
        "seq": seq,
        "period_start": (end - timedelta(seconds=span)).isoformat(),
        "period_end": end.isoformat(),
        "peers": peers,
    }


def xpeer(tenant: uuid.UUID, dev: dict[str, Any], rx: int, tx: int, xrx: int, xtx: int) -> Any:
    row = peer(tenant, dev["id"], rx, tx, key=dev["public_key"])
    return {**row, "cross_border_rx_bytes": xrx, "cross_border_tx_bytes": xtx}


def ledger_totals(runtime: Runtime) -> tuple[int, int, int, int]:
    with runtime.db.session(write=False) as session:
        row = session.execute(
            select(
                func.coalesce(func.sum(UsageHourly.rx_bytes), 0),
                func.coalesce(func.sum(UsageHourly.tx_bytes), 0),
                func.coalesce(func.sum(UsageHourly.cross_border_rx_bytes), 0),
                func.coalesce(func.sum(UsageHourly.cross_border_tx_bytes), 0),
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def raw_totals(runtime: Runtime) -> tuple[int, int]:
    with runtime.db.session(write=False) as session:
        row = session.execute(
            select(
                func.coalesce(func.sum(UsageRecord.rx_bytes), 0),
                func.coalesce(func.sum(UsageRecord.tx_bytes), 0),
            )
        ).one()
    return int(row[0]), int(row[1])


def series(world: World, headers: dict[str, str], path: str, **params: Any) -> Any:
    resp = world.client.get(f"/api/v1{path}/usage/series", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_cross_border_bytes_are_at_most_the_peers_bytes() -> None:
    base = {
        "tenant_id": str(uuid.uuid4()),
        "peer_key": public_key(),
        "peer_kind": "device",
        "peer_ref": str(uuid.uuid4()),
        "rx_bytes": 10,
        "tx_bytes": 20,
    }
    row = PeerUsage.model_validate({**base, "cross_border_rx_bytes": 10})
    assert (row.cross_border_rx_bytes, row.cross_border_tx_bytes) == (10, 0)
    assert row.cross_border_fits
    # Over the total: the row validates, and screening drops it (next test).
    for name, value in (("cross_border_rx_bytes", 11), ("cross_border_tx_bytes", 21)):
        assert not PeerUsage.model_validate({**base, name: value}).cross_border_fits
    with pytest.raises(SchemaError) as caught:
        PeerUsage.model_validate({**base, "cross_border_tx_bytes": -1})
    assert [e["loc"] for e in caught.value.errors()] == [("cross_border_tx_bytes",)]


@both_stores
def test_a_row_with_more_cross_border_bytes_than_bytes_is_dropped(
    world: World, runtime: Runtime
) -> None:
    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    end = datetime.now(UTC) - timedelta(minutes=1)
    body = report_at(1, end, [xpeer(world.a.id, dev, 1000, 2000, 1001, 50)])
    answer = world.client.post(REPORTS, json=body, headers=gw).json()
    assert (answer["stored"], answer["dropped_reasons"]) == (0, {"invalid": 1})


@both_stores
def test_report_rolls_up_into_the_hour_with_cross_border_split(
    world: World, runtime: Runtime
) -> None:
    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    end = datetime.now(UTC) - timedelta(minutes=1)
    body = report_at(1, end, [xpeer(world.a.id, dev, 1000, 2000, 300, 50)])
    answer = world.client.post(REPORTS, json=body, headers=gw).json()
    assert answer["stored"] == 1
    # The same report again, and a replay of the period under a new seq: no more bytes.
    assert world.client.post(REPORTS, json=body, headers=gw).json()["duplicate"]
    replay = world.client.post(REPORTS, json={**body, "seq": 2}, headers=gw).json()
    assert replay["dropped_reasons"] == {"duplicate_peer": 1}
    # A row claiming more cross-border bytes than bytes is dropped as invalid.
    bad = world.client.post(
        REPORTS,
        json=report_at(3, end + timedelta(seconds=20), [xpeer(world.a.id, dev, 5, 5, 6, 0)]),
        headers=gw,
    ).json()
    assert bad["dropped_reasons"] == {"invalid": 1}
    assert ledger_totals(runtime) == (1000, 2000, 300, 50)
    with runtime.db.session(write=False) as session:
        hourly = session.scalars(select(UsageHourly)).one()
        tenant_row = session.scalars(select(UsageTenantHourly)).one()
    assert hourly.hour == hour_of(end)
    assert hourly.owner_id == world.a.employee.user_id
    assert hourly.peer_ref == dev["id"]
    assert (tenant_row.rx_bytes, tenant_row.cross_border_tx_bytes) == (1000, 50)
    got = series(world, world.a.admin.headers, f"/tenants/{world.a.id}", granularity="hour")
    assert got["rx_bytes"] == 1000
    (point,) = got["points"]
    assert (point["domestic_rx_bytes"], point["domestic_tx_bytes"]) == (700, 1950)
    assert (point["cross_border_rx_bytes"], point["cross_border_tx_bytes"]) == (300, 50)
    assert point["period"] == (hour_of(end) + SH).strftime("%Y-%m-%dT%H:00+08:00")


@both_stores
def test_a_period_over_a_shanghai_midnight_counts_on_the_day_it_ends(
    world: World, runtime: Runtime
) -> None:
    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    enrolled_days_ago(runtime, 10)
    today = (datetime.now(UTC) + SH).date()
    day = today - timedelta(days=3)  # a Shanghai day in the past
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) - SH  # 00:00+08 as UTC
    # 23:59:40 → 00:00:00: ends at midnight exactly, the day before; 23:59:50 → 00:00:10:
    # ends after midnight, the new day.
    reports = [
        report_at(1, midnight, [xpeer(world.a.id, dev, 100, 1, 0, 0)], span=20),
        report_at(2, midnight + timedelta(seconds=10), [xpeer(world.a.id, dev, 7, 1, 7, 0)]),
    ]
    for body in reports:
        assert world.client.post(REPORTS, json=body, headers=gw).json()["stored"] == 1
    got = series(
        world,
        world.a.admin.headers,
        f"/tenants/{world.a.id}",
        granularity="day",
        since=str(day - timedelta(days=1)),
        until=str(day),
    )
    assert [(p["period"], p["rx_bytes"], p["cross_border_rx_bytes"]) for p in got["points"]] == [
        (str(day - timedelta(days=1)), 100, 0),
        (str(day), 7, 7),
    ]
    hours = series(
        world,
        world.a.admin.headers,
        f"/tenants/{world.a.id}/devices/{dev['id']}",
        granularity="hour",
        since=str(day - timedelta(days=1)),
        until=str(day),
    )
    assert [p["period"] for p in hours["points"]] == [
        f"{day - timedelta(days=1)}T23:00+08:00",
        f"{day}T00:00+08:00",
    ]


@both_stores
@settings(
    max_examples=12,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["new", "again", "older", "replay_period"]),
            st.integers(0, 10**6),
            st.integers(0, 10**6),
            st.integers(0, 100),
            st.integers(0, 30),  # minutes forward
        ),
        min_size=1,
        max_size=8,
    )
)
def test_replays_never_double_the_ledger_and_periods_agree(
    world: World, runtime: Runtime, ops: list[tuple[str, int, int, int, int]]
) -> None:
    """Reports replayed, duplicated (same seq), out of order (older seq) or repeating a period
    under a new seq: the ledger holds exactly the stored raw rows, and its hours, days and
    months sum to the same."""
    if "gw" not in world.a.data:
        _pop, gw = serving_gateway(world)
        dev = device(world)
        state(world, gw)
        enrolled_days_ago(runtime, 60)
        world.a.data.update(
            gw=gw, dev=dev, seq=0, at=datetime.now(UTC) - timedelta(days=40), last=None
        )
    data = world.a.data
    gw, dev = data["gw"], data["dev"]
    for kind, rx, tx, percent, minutes in ops:
        last = data["last"]
        if kind == "new" or last is None:
            data["seq"] += 1
            data["at"] += timedelta(minutes=minutes, seconds=30)
            row = xpeer(world.a.id, dev, rx, tx, rx * percent // 100, tx * percent // 100)
            body = report_at(data["seq"], data["at"], [row])
            data["last"] = body
        elif kind == "again":
            body = last
        elif kind == "older":
            body = {**last, "seq": max(data["seq"] - 1, 1)}
        else:  # the same period and peer under a new seq
            data["seq"] += 1
            body = {**last, "seq": data["seq"]}
        resp = world.client.post(REPORTS, json=body, headers=gw)
        assert resp.status_code == 200, resp.text
    rx, tx, xrx, xtx = ledger_totals(runtime)
    assert (rx, tx) == raw_totals(runtime)
    assert xrx <= rx and xtx <= tx
    since = str((data["at"] - timedelta(days=45) + SH).date())
    until = str((data["at"] + SH).date())
    path = f"/tenants/{world.a.id}"
    days = series(world, world.a.admin.headers, path, granularity="day", since=since, until=until)
    months = series(
        world, world.a.admin.headers, path, granularity="month", since=since, until=until
    )
    mine = series(
        world, world.a.employee.headers, path, granularity="day", since=since, until=until
    )
    for got in (days, months, mine):
        assert (got["rx_bytes"], got["tx_bytes"]) == (rx, tx)
        assert (got["cross_border_rx_bytes"], got["cross_border_tx_bytes"]) == (xrx, xtx)
    hours_total = 0
    for point in days["points"]:
        hours = series(
            world,
            world.a.admin.headers,
            path,
            granularity="hour",
            since=point["period"],
            until=point["period"],
        )
        assert hours["rx_bytes"] == point["rx_bytes"]
        hours_total += hours["rx_bytes"]
    assert hours_total == rx


@both_stores
def test_series_permissions_and_bounds(world: World, runtime: Runtime) -> None:
    pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    end = datetime.now(UTC) - timedelta(minutes=1)
    body = report_at(1, end, [xpeer(world.a.id, dev, 10, 20, 1, 2)])
    assert world.client.post(REPORTS, json=body, headers=gw).json()["stored"] == 1
    a = f"/tenants/{world.a.id}"
    paths = [
        a,
        f"{a}/devices/{dev['id']}",
        f"{a}/users/{world.a.employee.user_id}",
    ]
    for role in ("operator_admin", "billing_clerk", "auditor", "compliance_officer"):
        headers = world.operators[role].headers
        for path in [*paths, f"/pops/{pop}"]:
            assert series(world, headers, path)["rx_bytes"] == 10, (role, path)
    for headers in (world.a.admin.headers, world.a.employee.headers):
        for path in paths:
            assert series(world, headers, path)["tx_bytes"] == 20
    # Another tenant's objects: 404; an employee reads no one else's user or device.
    for headers in (world.b.admin.headers, world.b.employee.headers):
        for path in paths:
            resp = world.client.get(f"/api/v1{path}/usage/series", headers=headers)
            assert resp.status_code == 404, (path, resp.text)
    other = world.client.get(
        f"/api/v1{a}/users/{world.a.admin.user_id}/usage/series",
        headers=world.a.employee.headers,
    )
    assert other.status_code == 404
    assert (
        world.client.get(f"/api/v1/pops/{pop}/usage/series", headers=world.a.admin.headers)
    ).status_code == 403
    # Bounds: field-keyed 422, never 500.
    for params, field in (
        ({"since": "2026-12-02", "until": "2026-12-01"}, "since"),
        ({"since": "1999-12-31"}, "since"),
        ({"until": "3000-01-01"}, "until"),
        ({"granularity": "hour", "since": "2026-01-01", "until": "2026-12-01"}, "until"),
        ({"since": "0001-01-01", "until": "9999-12-31"}, "since"),
        ({"since": "nope"}, "since"),
        ({"granularity": "week"}, "granularity"),
    ):
        resp = world.client.get(
            f"/api/v1{a}/usage/series", params=params, headers=world.a.admin.headers
        )
        assert resp.status_code == 422, (params, resp.text)
        assert field in resp.text, (params, resp.text)
    # CSV: the same points.
    resp = world.client.get(
        f"/api/v1{a}/usage/series",
        params={"format": "csv", "granularity": "hour"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(r["rx_bytes"], r["cross_border_tx_bytes"], r["domestic_tx_bytes"]) for r in rows] == [
        ("10", "2", "18")
    ]


def _ledger_rows(runtime: Runtime) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with runtime.db.session(write=False) as session:
        peers = sorted(
            (h.hour, h.tenant_id, h.peer_ref, h.peer_kind, h.gateway_id, h.owner_id, h.pop_id,
             h.rx_bytes, h.tx_bytes)
            for h in session.scalars(select(UsageHourly))
        )  # fmt: skip
        kinds = sorted(
            (h.hour, h.tenant_id, h.peer_kind, h.gateway_id, h.pop_id, h.rx_bytes, h.tx_bytes)
            for h in session.scalars(select(UsageTenantHourly))
        )  # fmt: skip
    return peers, kinds


@both_stores
def test_an_upgrade_rolls_the_reports_already_stored_into_the_ledger(
    world: World, runtime: Runtime, store_url: str
) -> None:
    """Reports stored before revision 0018 are not lost to the ledger: a store taken back to
    0017 (no ledger) and upgraded again has, from its raw reports alone, the hours the
    server wrote as the reports arrived (so the month of an upgrade bills and counts them)."""
    from tongdao.store import migrate

    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    enrolled_days_ago(runtime, 1)
    start = datetime.now(UTC) - timedelta(minutes=75)
    for seq, at in (
        (1, start),
        (2, start + timedelta(seconds=30)),
        (3, start + timedelta(hours=1)),
    ):
        body = report_at(seq, at, [xpeer(world.a.id, dev, 1000 * seq, 10 * seq, 0, 0)])
        assert world.client.post(REPORTS, json=body, headers=gw).json()["stored"] == 1
    written = _ledger_rows(runtime)
    assert len(written[0]) >= 2 and sum(row[-2] for row in written[0]) == 6000
    runtime.db.dispose()
    migrate.downgrade(store_url, "0017_billing")
    migrate.upgrade(store_url)
    assert _ledger_rows(runtime) == written
