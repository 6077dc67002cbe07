"""What a gateway's usage report may claim (issue 10, "agents are trusted too much").

A row counts only for a peer of the state sent to that agent (tenant, key, kind and reference
all matching; a peer removed recently keeps its final bytes); a connector reports its own
tunnel only; bytes are bounded by the period and the PoP's maximum rate; periods by the
previous report and the server's clock; ``seq`` by the last one stored; ``endpoint`` must be
an IP:port. A bad row is dropped (counted in the answer, one warning event per report), the
rest of the report is stored. Reading usage never fails on huge counters or extreme dates.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.api.test_gateway import (
    activate,
    activate_site,
    device,
    enrol,
    make_pop,
    make_site,
    state,
)
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.agent.reporter import Reporter, ReportError
from tongdao.agent.state import StateDir
from tongdao.audit.models import AuditEvent
from tongdao.gateway.models import Gateway, UsageRecord
from tongdao.gateway.usage import CLOCK_SKEW, MAX_SEQ_STEP, RECENTLY_REMOVED
from tongdao.runtime import Runtime
from tongdao.testing.keys import public_key

REPORTS = "/api/v1/gateway/reports"
BIG = 2**63 - 1


def row(
    tenant_id: uuid.UUID | str,
    key: str,
    kind: str,
    ref: str,
    rx: int = 1000,
    tx: int = 2000,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "tenant_id": str(tenant_id),
        "peer_key": key,
        "peer_kind": kind,
        "peer_ref": ref,
        "rx_bytes": rx,
        "tx_bytes": tx,
        "endpoint": "198.51.100.2:51820",
        **extra,
    }


def dev_row(world: World, dev: dict[str, Any], rx: int = 1000, **extra: Any) -> dict[str, Any]:
    return row(world.a.id, dev["public_key"], "device", dev["id"], rx, **extra)


def report(
    seq: int, peers: list[dict[str, Any]], end: datetime | None = None, seconds: float = 30
) -> dict[str, Any]:
    end = end or datetime.now(UTC) - timedelta(seconds=5)
    return {
        "seq": seq,
        "period_start": (end - timedelta(seconds=seconds)).isoformat(),
        "period_end": end.isoformat(),
        "peers": peers,
    }


def post(world: World, gw: dict[str, str], body: dict[str, Any], status: int = 200) -> Any:
    resp = world.client.post(REPORTS, json=body, headers=gw)
    assert resp.status_code == status, resp.text
    return resp.json()


def usage(world: World, tenant: uuid.UUID, **params: Any) -> Any:
    resp = world.client.get(
        f"/api/v1/tenants/{tenant}/usage", params=params, headers=world.a.admin.headers
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def warnings(runtime: Runtime) -> list[AuditEvent]:
    with runtime.db.session(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "usage_rows_dropped")
                .order_by(AuditEvent.id)
            )
        )


def b_device(world: World, pop_id: str) -> dict[str, Any]:
    resp = world.client.post(
        f"/api/v1/tenants/{world.b.id}/devices",
        json={"name": "b-laptop", "public_key": public_key(), "pop_id": pop_id},
        headers=world.b.employee.headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def serving(world: World, **pop: Any) -> tuple[str, dict[str, str], dict[str, Any]]:
    """PoP bj whose gateway was sent a state with one device of tenant A."""
    bj = make_pop(world, "bj")
    if pop:
        resp = world.client.patch(f"/api/v1/pops/{bj}", json=pop, headers=world.admin.headers)
        assert resp.status_code == 200, resp.text
    gw = enrol(world, bj)
    dev = device(world)
    activate(world, world.a.id)
    (iface,) = state(world, gw).tenants
    assert [p.public_key for p in iface.peers] == [dev["public_key"]]
    return bj, gw, dev


# --- 1. rows only for the peers this agent was sent ----------------------------------------------
@both_stores
def test_rows_count_only_for_peers_of_the_state_sent_to_this_agent(
    world: World, runtime: Runtime
) -> None:
    bj, gw, dev = serving(world)
    sh = make_pop(world, "sh", region="CN-SH", host="198.51.100.11")
    elsewhere = device(world, pop_id=sh)  # tenant A's, homed on another PoP
    activate(world, world.b.id)
    theirs = b_device(world, sh)  # tenant B's, at sh: B is not served on bj
    assert [t.tenant_id for t in state(world, gw).tenants] == [world.a.id]
    good = dev_row(world, dev, 1000)
    bad = [
        row(world.b.id, dev["public_key"], "device", dev["id"]),  # another tenant
        row(world.a.id, public_key(), "device", dev["id"]),  # a key never sent
        row(world.a.id, dev["public_key"], "device", str(uuid.uuid4())),  # another reference
        row(world.a.id, dev["public_key"], "site", dev["id"]),  # another kind
        dev_row(world, elsewhere),  # another PoP's device
        row(world.b.id, theirs["public_key"], "device", theirs["id"]),  # B's device
        dev_row(world, dev, 5),  # the same peer twice
    ]
    answer = post(world, gw, report(1, [good, *bad]))
    assert answer["accepted"] is True
    assert answer["stored"] == 1
    assert answer["dropped"] == len(bad)
    assert answer["dropped_reasons"] == {"unknown_peer": 6, "duplicate_peer": 1}
    totals = usage(world, world.a.id)
    assert [(r["key"], r["rx_bytes"]) for r in totals["rows"]] == [(dev["id"], 1000)]
    b_usage = world.client.get(
        f"/api/v1/tenants/{world.b.id}/usage", headers=world.b.admin.headers
    ).json()
    assert b_usage["rows"] == []
    # One warning per report (not per row), naming the gateway and the reasons.
    (event,) = warnings(runtime)
    assert event.object_type == "gateway"
    assert event.after is not None
    assert event.after["dropped"] == len(bad)
    assert event.after["reasons"] == {"unknown_peer": 6, "duplicate_peer": 1}
    # A clean report writes no warning.
    assert post(world, gw, report(2, [dev_row(world, dev, 1)]))["dropped"] == 0
    assert len(warnings(runtime)) == 1
    assert bj


def test_a_report_of_only_bad_rows_still_moves_the_seq(world: World) -> None:
    _bj, gw, _dev = serving(world)
    answer = post(
        world, gw, report(1, [row(world.a.id, public_key(), "device", str(uuid.uuid4()))])
    )
    assert (answer["accepted"], answer["stored"], answer["dropped"]) == (True, 0, 1)
    assert post(world, gw, report(1, []))["duplicate"] is True


def test_a_connector_reports_its_own_tunnel_only(world: World, runtime: Runtime) -> None:
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw = enrol(world, fra)
    activate(world, world.a.id)
    dev = device(world)
    h = world.a.admin.headers
    site = make_site(world, ["198.18.9.0/24"], pop_id=fra)
    activate_site(world, site)
    token = world.client.post(
        f"/api/v1/tenants/{world.a.id}/sites/{site['id']}/enrolments", json={}, headers=h
    ).json()["token"]
    conn = {
        "Authorization": "Bearer "
        + world.client.post("/api/v1/gateway/enrol", json={"token": token}).json()["credential"]
    }
    state(world, gw)
    pop_key = public_key()
    assert (
        world.client.put(
            f"/api/v1/gateway/interfaces/{world.a.id}", json={"public_key": pop_key}, headers=gw
        ).status_code
        == 204
    )
    (iface,) = state(world, conn).tenants
    (pop_peer,) = iface.peers
    answer = post(
        world,
        conn,
        report(
            1,
            [
                row(world.a.id, pop_key, "pop", fra, 10, 20),
                dev_row(world, dev),  # a device of the tenant: not the connector's to report
                row(world.a.id, pop_key, "site", site["id"]),  # its own site, as a site row
            ],
        ),
    )
    assert pop_peer.public_key == pop_key
    assert (answer["stored"], answer["dropped"]) == (1, 2)
    with runtime.db.session(write=False) as session:
        stored = session.execute(select(UsageRecord.peer_kind, UsageRecord.peer_ref)).all()
    assert [(k, r) for k, r in stored] == [("pop", fra)]
    assert usage(world, world.a.id)["rows"] == []


def test_a_removed_peer_keeps_its_final_bytes_for_a_while(world: World, runtime: Runtime) -> None:
    _bj, gw, dev = serving(world)
    resp = world.client.patch(
        f"/api/v1/tenants/{world.a.id}/devices/{dev['id']}",
        json={"state": "revoked"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    assert state(world, gw).tenants[0].peers == ()  # the agent was sent the removal
    # The bytes it moved before the removal still count...
    assert post(world, gw, report(1, [dev_row(world, dev, 700)]))["stored"] == 1
    # ...until RECENTLY_REMOVED after the state without it was sent.
    later = datetime.now(UTC) + RECENTLY_REMOVED + timedelta(minutes=1)
    runtime.clock = lambda: later
    state(world, gw)
    answer = post(world, gw, report(2, [dev_row(world, dev, 800)], end=later))
    assert (answer["stored"], answer["dropped_reasons"]) == (0, {"unknown_peer": 1})
    runtime.clock = lambda: later + timedelta(minutes=10)
    totals = usage(world, world.a.id, since=(later - timedelta(days=1)).isoformat())
    assert totals["rx_bytes"] == 700


# --- 2. bounds on bytes, periods and seq ---------------------------------------------------------
@both_stores
def test_two_rows_at_the_counter_limit_never_break_usage(world: World, runtime: Runtime) -> None:
    """The issue's overflow: two reports of 2^63-1 bytes for one device."""
    _bj, gw, dev = serving(world)
    assert post(world, gw, report(1, [dev_row(world, dev, 1234)]))["stored"] == 1
    for seq in (2, 3):
        answer = post(world, gw, report(seq, [dev_row(world, dev, BIG, tx_bytes=BIG)]))
        assert answer["stored"] == 0, answer
    totals = usage(world, world.a.id)
    assert totals["rx_bytes"] == 1234
    resp = world.client.get(
        f"/api/v1/tenants/{world.a.id}/users/{world.a.employee.user_id}/personal-data",
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 200, resp.text
    assert [d["rx_bytes"] for d in resp.json()["connection_days"]] == [1234]


@both_stores
def test_bytes_are_bounded_by_the_period_and_the_pops_rate(world: World, runtime: Runtime) -> None:
    _bj, gw, dev = serving(world, max_rate_mbps=8)  # 1,000,000 bytes a second
    pops = world.client.get("/api/v1/pops", headers=world.admin.headers).json()["data"]
    assert [p["max_rate_mbps"] for p in pops] == [8]
    # 30 s period + 60 s of slack at 1 MB/s: 90,000,000 bytes each way.
    assert post(world, gw, report(1, [dev_row(world, dev, 90_000_000)]))["stored"] == 1
    answer = post(world, gw, report(2, [dev_row(world, dev, 90_000_001)]))
    assert answer["dropped_reasons"] == {"over_rate": 1}
    answer = post(world, gw, report(3, [dev_row(world, dev, 1, tx_bytes=BIG)]))
    assert answer["dropped_reasons"] == {"over_rate": 1}
    # Two rows of 2^63-1 bytes never reach the store: the usage views stay exact.
    for seq in (4, 5):
        assert post(world, gw, report(seq, [dev_row(world, dev, BIG)]))["stored"] == 0
    assert usage(world, world.a.id)["rx_bytes"] == 90_000_000
    # A new PoP gets the stated default.
    other = make_pop(world, "sh", region="CN-SH", host="198.51.100.11")
    got = world.client.get(f"/api/v1/pops/{other}", headers=world.admin.headers).json()
    assert got["max_rate_mbps"] == 10_000
    bad = world.client.patch(
        f"/api/v1/pops/{other}", json={"max_rate_mbps": 0}, headers=world.admin.headers
    )
    assert bad.status_code == 422
    assert "max_rate_mbps" in bad.json()["error"]["fields"]


def test_periods_are_bounded_by_the_last_report_and_the_servers_clock(
    world: World, runtime: Runtime
) -> None:
    _bj, gw, dev = serving(world)
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**report(1, []), "period_end": "9999-12-31T23:59:59+00:00"}, "period_end"),
        (report(1, [], end=now + CLOCK_SKEW + timedelta(minutes=1)), "period_end"),
        ({**report(1, []), "period_start": "0001-01-01T00:00:00+00:00"}, "period_start"),
        ({**report(1, []), "period_start": "0001-01-01T00:00:00+01:00"}, "period_start"),
        # Before this agent was enrolled (less the skew).
        (report(1, [], end=now - timedelta(minutes=30)), "period_start"),
    ]
    for body, field in cases:
        resp = world.client.post(REPORTS, json=body, headers=gw)
        assert resp.status_code == 422, (field, resp.text)
        assert field in resp.json()["error"]["fields"], (field, resp.text)
    # A handshake outside the period makes its row bad, not the report.
    answer = post(
        world,
        gw,
        report(
            1,
            [
                dev_row(world, dev, 5, last_handshake="9999-01-01T00:00:00+00:00"),
            ],
        ),
    )
    assert answer["dropped_reasons"] == {"invalid": 1}
    # The next period starts where the last one ended (less the skew), or repeats it exactly
    # (the chunks of one big report share their period).
    end = datetime.now(UTC) - timedelta(seconds=5)
    first = report(2, [dev_row(world, dev, 10)], end=end)
    assert post(world, gw, first)["accepted"]
    assert post(world, gw, {**first, "seq": 3, "peers": []})["accepted"]
    early = report(4, [], end=end, seconds=CLOCK_SKEW.total_seconds() + 60)
    resp = world.client.post(REPORTS, json=early, headers=gw)
    assert resp.status_code == 422
    assert "period_start" in resp.json()["error"]["fields"]
    assert post(world, gw, report(4, [], end=end + timedelta(seconds=1), seconds=31))["accepted"]
    with runtime.db.session(write=False) as session:
        sessions_open = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.kind == "session")
        )
    assert sessions_open == 0


def test_seq_moves_forward_by_a_bounded_step(world: World, runtime: Runtime) -> None:
    _bj, gw, _dev = serving(world)
    assert post(world, gw, report(5, []))["accepted"]
    resp = world.client.post(REPORTS, json=report(BIG, []), headers=gw)
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["error"]["code"] == "seq_out_of_range"
    assert "seq" in body["error"]["fields"]
    assert body["last_seq"] == 5
    resp = world.client.post(REPORTS, json=report(5 + MAX_SEQ_STEP + 1, []), headers=gw)
    assert resp.status_code == 409
    # The gateway is not wedged: the next seq in range is stored.
    assert post(world, gw, report(5 + MAX_SEQ_STEP, []))["accepted"]
    with runtime.db.session(write=False) as session:
        assert session.scalars(select(Gateway.last_report_seq)).one() == 5 + MAX_SEQ_STEP


# --- 3. endpoints and other agent text -----------------------------------------------------------
@pytest.mark.parametrize(
    ("endpoint", "stored"),
    [
        ("198.51.100.2:51820", "198.51.100.2:51820"),
        ("[FD00:0::02]:51820", "[fd00::2]:51820"),
        ('=HYPERLINK("http://203.0.113.9")', None),
        ("198.51.100.2", None),
        ("198.51.100.2:0", None),
        ("198.51.100.2:65536", None),
        ("[fe80::1%eth0]:51820", None),
        ("fd00::2:51820", None),
        ("pop.example.net:51820", None),
        ("198.51.100.2:51820\n", None),
    ],
)
def test_endpoints_are_ip_and_port(
    world: World, runtime: Runtime, endpoint: str, stored: str | None
) -> None:
    _bj, gw, dev = serving(world)
    answer = post(world, gw, report(1, [dev_row(world, dev, endpoint=endpoint)]))
    with runtime.db.session(write=False) as session:
        endpoints = list(session.scalars(select(UsageRecord.endpoint)))
    if stored is None:
        assert answer["dropped_reasons"] == {"invalid": 1}, endpoint
        assert endpoints == []
    else:
        assert answer["stored"] == 1, answer
        assert endpoints == [stored]


def test_malformed_rows_are_dropped_not_the_report(world: World) -> None:
    _bj, gw, dev = serving(world)
    bad: list[Any] = [
        {**dev_row(world, dev), "rx_bytes": -1},
        {**dev_row(world, dev), "peer_kind": "printer"},
        {**dev_row(world, dev), "peer_key": "not-a-key"},
        {**dev_row(world, dev), "peer_ref": "x" * 65},
        {**dev_row(world, dev), "surprise": 1},
        "not an object",
    ]
    answer = post(world, gw, report(1, [*bad, dev_row(world, dev, 3)]))
    assert (answer["stored"], answer["dropped_reasons"]) == (1, {"invalid": len(bad)})


def test_the_body_is_read_from_its_bytes_with_fastapis_errors(
    world: World, runtime: Runtime
) -> None:
    """The report is validated from the request's bytes (not FastAPI's JSON): what is not a
    report is a field-keyed 422 and stores nothing; ids in another accepted spelling are
    stored in canonical form."""
    _bj, gw, dev = serving(world)
    json_type = {**gw, "Content-Type": "application/json"}
    for content, headers in [
        (b"", json_type),
        (b"{not json", json_type),
        (b"[]", json_type),
        (b'{"seq": 0, "period_start": "x", "period_end": "y"}', json_type),
        (
            json.dumps(report(1, [dev_row(world, dev)])).encode(),
            {**gw, "Content-Type": "text/plain"},
        ),
    ]:
        resp = world.client.post(REPORTS, content=content, headers=headers)
        assert resp.status_code == 422, (content, resp.text)
        assert resp.json()["error"]["fields"], (content, resp.text)
    upper = {**dev_row(world, dev, 7), "peer_ref": dev["id"].upper()}
    upper["tenant_id"] = str(world.a.id).upper()
    answer = post(world, gw, report(1, [upper]))
    assert (answer["stored"], answer["dropped"]) == (1, 0)
    with runtime.db.session(write=False) as session:
        refs = set(session.scalars(select(UsageRecord.peer_ref)))
    assert refs == {dev["id"]}


# --- 4. reading never fails ----------------------------------------------------------------------
@both_stores
def test_usage_views_and_export_survive_counters_at_the_limit(
    world: World, runtime: Runtime
) -> None:
    """Rows stored before the bounds existed: sums stay exact, never a 500."""
    bj, _gw, dev = serving(world)
    now = datetime.now(UTC) - timedelta(minutes=1)
    with runtime.db.session() as session:
        gateway_id = session.scalars(select(Gateway.id)).one()
        for seq in (1, 2, 3):
            session.add(
                UsageRecord(
                    gateway_id=gateway_id,
                    seq=seq,
                    tenant_id=world.a.id,
                    peer_key=dev["public_key"],
                    peer_kind="device",
                    peer_ref=dev["id"],
                    rx_bytes=BIG,
                    tx_bytes=BIG,
                    endpoint="198.51.100.2:51820",
                    period_start=now - timedelta(seconds=30),
                    period_end=now,
                )
            )
        session.commit()
    total = 3 * BIG
    for group_by in ("device", "day"):
        got = usage(world, world.a.id, group_by=group_by)
        assert (got["rx_bytes"], got["tx_bytes"]) == (total, total), group_by
        assert [r["rx_bytes"] for r in got["rows"]] == [total]
    resp = world.client.get(f"/api/v1/pops/{bj}/usage", headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["rx_bytes"] == total
    resp = world.client.get(
        f"/api/v1/tenants/{world.a.id}/users/{world.a.employee.user_id}/personal-data",
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 200, resp.text
    (day,) = resp.json()["connection_days"]
    assert (day["rx_bytes"], day["tx_bytes"]) == (total, total)


@pytest.mark.parametrize(
    "params",
    [
        {"until": "0001-01-01T00:00:00Z"},
        {"until": "0001-01-01T00:30:00+01:00"},
        {"since": "0001-01-01T00:00:00Z"},
        {"until": "9999-12-31T23:59:59Z"},
        {"since": "9999-12-31T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
    ],
)
def test_usage_window_at_extreme_dates_is_422(world: World, params: dict[str, str]) -> None:
    bj = make_pop(world, "bj")
    for url, headers in (
        (f"/api/v1/tenants/{world.a.id}/usage", world.a.admin.headers),
        (f"/api/v1/pops/{bj}/usage", world.admin.headers),
    ):
        resp = world.client.get(url, params=params, headers=headers)
        assert resp.status_code == 422, (url, params, resp.text)
        assert set(resp.json()["error"]["fields"]) & {"since", "until"}, resp.text


# --- 3. cumulative bounds: what one peer may be credited per gateway over time -------------------
@both_stores
def test_a_period_replayed_with_a_new_seq_is_not_credited_again(
    world: World, runtime: Runtime
) -> None:
    """The chunks of one report share its period, each peer once; the same peer again for
    the same period (a replay with seq+1, seq+2, ...) is a duplicate, not more bytes."""
    _bj, gw, dev = serving(world)
    second = device(world)
    (iface,) = state(world, gw).tenants
    assert len(iface.peers) == 2
    first = report(1, [dev_row(world, dev, 1000)])
    assert post(world, gw, first)["stored"] == 1
    # A genuine second chunk of the same report: same period, another peer. Counts.
    chunk = {**first, "seq": 2, "peers": [dev_row(world, second, 500)]}
    assert post(world, gw, chunk)["stored"] == 1
    # The same period again, peer already credited for it: dropped, however often.
    for seq in range(3, 8):
        answer = post(world, gw, {**first, "seq": seq})
        assert answer["accepted"] is True
        assert (answer["stored"], answer["dropped_reasons"]) == (0, {"duplicate_peer": 1})
    totals = {r["key"]: r["rx_bytes"] for r in usage(world, world.a.id)["rows"]}
    assert totals == {dev["id"]: 1000, second["id"]: 500}


@both_stores
def test_overlapping_back_to_back_reports_share_one_allowance(
    world: World, runtime: Runtime
) -> None:
    """Each report may start up to CLOCK_SKEW before the previous end; reports claiming that
    stretch again and again earn nothing more: a peer's bytes per gateway stay within the
    PoP's rate over the time reported plus one slack, while honest reports lose nothing."""
    _bj, gw, dev = serving(world, max_rate_mbps=8)  # 1,000,000 bytes a second
    end = datetime.now(UTC) - timedelta(minutes=4)
    # 30 s + 60 s of slack: the whole allowance.
    assert post(world, gw, report(1, [dev_row(world, dev, 90_000_000)], end=end))["stored"] == 1
    seq = 2
    for _ in range(5):  # [end - 5 min, end] over and over: 6 minutes each, if it counted
        back = report(seq, [dev_row(world, dev, 300_000_000)], end=end, seconds=300)
        answer = post(world, gw, back)
        assert (answer["stored"], answer["dropped_reasons"]) == (0, {"over_rate": 1})
        seq += 1
    # Nor does creeping forward a second at a time, each claiming the last 5 minutes.
    # The allowance grows with the period's end, one second's worth (1 MB) per second.
    stored = []
    for step in range(1, 4):
        back = report(
            seq, [dev_row(world, dev, 2_000_000)], end=end + timedelta(seconds=step), seconds=300
        )
        stored.append(post(world, gw, back)["stored"])
        seq += 1
    assert stored == [0, 1, 0]
    # An honest next period gets its full rate: nothing of real traffic is lost.
    nxt = end + timedelta(seconds=3)
    honest = report(seq, [dev_row(world, dev, 30_000_000)], end=nxt + timedelta(seconds=30))
    assert post(world, gw, honest)["stored"] == 1
    total = usage(world, world.a.id)["rx_bytes"]
    # At most the rate over [first start, last end] plus one slack of 60 s.
    assert total == 90_000_000 + 2_000_000 + 30_000_000 <= 1_000_000 * (30 + 3 + 30 + 60)


@both_stores
def test_dropped_row_warnings_are_rate_limited_per_gateway(world: World, runtime: Runtime) -> None:
    """Junk rows in report after report write one audit event per gateway per
    DROPPED_EVENT_EVERY; the next one counts the reports and rows in between."""
    from tongdao.gateway.usage import DROPPED_EVENT_EVERY

    _bj, gw, dev = serving(world)
    junk = row(world.a.id, public_key(), "device", str(uuid.uuid4()))
    for seq in range(1, 6):
        answer = post(world, gw, report(seq, [dev_row(world, dev, 1), junk]))
        assert answer["dropped_reasons"] == {"unknown_peer": 1}  # the answer still says
    (event,) = warnings(runtime)
    assert event.after is not None
    assert (event.after["reports"], event.after["dropped"]) == (1, 1)
    later = datetime.now(UTC) + DROPPED_EVENT_EVERY + timedelta(seconds=1)
    runtime.clock = lambda: later
    post(world, gw, report(6, [junk, junk], end=later))
    _first, second = warnings(runtime)
    assert second.after is not None
    # Reports 2-5 (one junk row each) were held back, then report 6's two rows.
    assert (second.after["reports"], second.after["dropped"]) == (5, 6)
    assert second.after["reasons"] == {"unknown_peer": 6}


@both_stores
def test_an_honest_agent_loses_no_bytes(world: World, runtime: Runtime, tmp_path: Path) -> None:
    """The real reporter against the real endpoint: chunks sharing one period, a lost answer
    (the retry is a duplicate), a control plane down for a tick (two reports back to back),
    an engine restart; every byte the engine moved at up to 5/6 of the PoP's rate counts,
    and the server drops nothing."""
    from tests.agent.test_reporter import ScriptedEngine

    _bj, gw, dev = serving(world, max_rate_mbps=8)  # 1,000,000 bytes a second
    devices = [dev, device(world), device(world)]
    desired = state(world, gw)
    (iface,) = desired.tenants
    agent_state = StateDir(tmp_path / "agent")
    agent_state.save_applied(desired)
    engine = ScriptedEngine()
    lose = {5}  # the second chunk of the second report: stored, its answer lost once
    down = [False]

    def sender(body: dict[str, Any]) -> dict[str, Any]:
        if down[0]:
            raise ReportError("connection refused")
        resp = world.client.post(REPORTS, json=body, headers=gw)
        if resp.status_code >= 300:
            raise ReportError(resp.text, resp.status_code)
        if body["seq"] in lose:
            lose.discard(body["seq"])
            raise ReportError("read timeout")
        return dict(resp.json())

    clock = [time.time() - 100]
    agent = Reporter(engine, agent_state, sender, max_peers=1, clock=lambda: clock[0])
    counters = dict.fromkeys(range(3), 0)
    moved = dict.fromkeys(range(3), 0)

    def tick(step: int, restart: bool = False) -> bool:
        for i, d in enumerate(devices):
            if restart:
                counters[i] = 0
            counters[i] += step * (i + 1)
            moved[i] += step * (i + 1)
            engine.set(d["public_key"], counters[i], counters[i] // 2, ifname=iface.ifname)
        clock[0] += 30
        return agent.tick()

    assert tick(0)  # the first sample: nothing moved yet
    assert tick(8_000_000)  # 8, 16 and 24 MB in 30 s: three chunks of one period
    assert not tick(8_000_000)  # an answer lost: the chunk waits for the next tick
    assert tick(8_000_000)  # resent, answered "duplicate"; then the rest and the new report
    down[0] = True
    assert not tick(8_000_000)
    down[0] = False
    assert tick(8_000_000)  # the pending report, then what accrued meanwhile
    assert tick(8_000_000, restart=True)  # the engine restarted: counters from zero
    assert agent.counters.reports_duplicate == 1
    assert agent.counters.rows_dropped == {}
    until = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    totals = {r["key"]: r["rx_bytes"] for r in usage(world, world.a.id, until=until)["rows"]}
    assert totals == {d["id"]: moved[i] for i, d in enumerate(devices)}
