"""Usage reports from gateways (idempotent by seq) and usage totals for tenants and operators."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from tests.api.test_gateway import activate, device, enrol, make_pop, state
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.billing.money import SHANGHAI
from tongdao.gateway import sent
from tongdao.gateway.models import Gateway, GatewayPeer, UsageRecord
from tongdao.gateway.usage import UsageReportIn, store_report
from tongdao.runtime import Ctx, Runtime
from tongdao.testing.keys import public_key

REPORTS = "/api/v1/gateway/reports"


def peer(
    tenant_id: uuid.UUID | str,
    ref: str,
    rx: int,
    tx: int,
    *,
    kind: str = "device",
    key: str | None = None,
    handshake: datetime | None = None,
) -> dict[str, Any]:
    return {
        "tenant_id": str(tenant_id),
        "peer_key": key or public_key(),
        "peer_kind": kind,
        "peer_ref": ref,
        "rx_bytes": rx,
        "tx_bytes": tx,
        "last_handshake": handshake.isoformat() if handshake else None,
        "endpoint": "198.51.100.2:51820",
    }


def report(seq: int, peers: list[dict[str, Any]], end: datetime | None = None) -> dict[str, Any]:
    end = end or datetime.now(UTC) - timedelta(minutes=1)
    return {
        "seq": seq,
        "period_start": (end - timedelta(seconds=30)).isoformat(),
        "period_end": end.isoformat(),
        "peers": peers,
    }


def serving_gateway(world: World) -> tuple[str, dict[str, str]]:
    """A PoP whose gateway serves tenant A (active, with a device, interface allocated)."""
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    device(world)
    activate(world, world.a.id)
    assert [t.tenant_id for t in state(world, gw).tenants] == [world.a.id]
    return pop, gw


def allow(runtime: Runtime, tenant_id: uuid.UUID, key: str, kind: str, ref: str) -> None:
    """Record a peer as sent to the (only) gateway, as the desired-state answer would: for
    site and transit peers whose setup (an active site, a registered link) is beside the
    point of a test about reading totals."""
    with runtime.db.session() as session:
        gateway_id = session.scalars(select(Gateway.id)).one()
        session.add(
            GatewayPeer(
                gateway_id=gateway_id,
                tenant_id=tenant_id,
                peer_key=key,
                peer_kind=kind,
                peer_ref=ref,
            )
        )
        session.commit()
    # The server keeps each agent's recorded peers per sent version; this write (which the
    # server never makes without a new version) must be seen at once.
    sent.KNOWN.clear()


def enrolled_days_ago(runtime: Runtime, days: int) -> None:
    """Back-date the (only) gateway's enrolment, so that reports of earlier periods fit."""
    with runtime.db.session() as session:
        session.execute(update(Gateway).values(created_at=datetime.now(UTC) - timedelta(days=days)))
        session.commit()


def rows(runtime: Runtime) -> int:
    with runtime.db.session(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def usage(world: World, headers: dict[str, str], tenant: uuid.UUID, **params: Any) -> Any:
    resp = world.client.get(f"/api/v1/tenants/{tenant}/usage", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


@both_stores
def test_reports_are_idempotent_by_seq(world: World, runtime: Runtime) -> None:
    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)  # the agent was sent its new peer
    key = dev["public_key"]
    with runtime.db.session(write=False) as session:
        audit_before = session.scalar(select(func.count()).select_from(AuditEvent))
    body = report(1, [peer(world.a.id, dev["id"], 100, 200, key=key)])
    first = world.client.post(REPORTS, json=body, headers=gw)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "accepted": True,
        "duplicate": False,
        "stored": 1,
        "last_seq": 1,
        "dropped": 0,
        "dropped_reasons": {},
    }
    # The same report again (its answer was lost), and an older seq: stored nothing.
    again = world.client.post(REPORTS, json=body, headers=gw)
    assert again.status_code == 200
    assert again.json() == {
        "accepted": False,
        "duplicate": True,
        "stored": 0,
        "last_seq": 1,
        "dropped": 0,
        "dropped_reasons": {},
    }
    assert rows(runtime) == 1
    # A later seq (gaps allowed) is stored; an empty report moves the seq too.
    assert world.client.post(
        REPORTS, json=report(3, [peer(world.a.id, dev["id"], 1, 2, key=key)]), headers=gw
    ).json()["accepted"]
    assert world.client.post(REPORTS, json=report(4, []), headers=gw).json()["stored"] == 0
    assert world.client.post(REPORTS, json=report(2, []), headers=gw).json()["duplicate"]
    assert rows(runtime) == 2
    with runtime.db.session(write=False) as session:
        gateway = session.scalars(select(Gateway)).one()
        assert gateway.last_report_seq == 4
        assert gateway.last_seen_at is not None
        # Telemetry does not flood the audit log.
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before
    totals = usage(world, world.a.admin.headers, world.a.id)
    assert (totals["rx_bytes"], totals["tx_bytes"]) == (101, 202)


def test_bad_reports_are_422_field_keyed_and_store_nothing(world: World, runtime: Runtime) -> None:
    """The report itself (seq, period, the peers list) must be right; bad rows are dropped
    one by one instead (tests/api/test_usage_bounds.py)."""
    _pop, gw = serving_gateway(world)
    (dev,) = state(world, gw).tenants[0].peers
    good = peer(world.a.id, dev.ref, 1, 1, key=dev.public_key)
    cases: list[tuple[dict[str, Any], str]] = [
        (report(0, []), "seq"),
        ({**report(1, []), "period_end": "2026-01-01T00:00:00"}, "period_end"),  # naive
        ({**report(1, []), "peers": {"0": good}}, "peers"),
        ({**report(1, []), "surprise": 1}, "surprise"),
    ]
    for body, field in cases:
        resp = world.client.post(REPORTS, json=body, headers=gw)
        assert resp.status_code == 422, (field, resp.text)
        assert field in resp.json()["error"]["fields"], (field, resp.text)
    body = report(1, [good])
    body["period_start"], body["period_end"] = body["period_end"], body["period_start"]
    resp = world.client.post(REPORTS, json=body, headers=gw)
    assert resp.status_code == 422, resp.text
    assert rows(runtime) == 0
    # Nothing moved the seq: seq 1 is still free.
    ok = world.client.post(REPORTS, json=report(1, [good]), headers=gw)
    assert ok.json()["accepted"] is True
    assert rows(runtime) == 1
    # Users are not gateways.
    assert (
        world.client.post(REPORTS, json=report(2, []), headers=world.admin.headers).status_code
        == 401
    )


@both_stores
def test_concurrent_retries_store_once(world: World, runtime: Runtime) -> None:
    gw = serving_gateway(world)[1]
    devices = [device(world) for _ in range(5)]
    state(world, gw)
    with runtime.db.session(write=False) as session:
        gateway_id = session.scalars(select(Gateway.id)).one()
    body = UsageReportIn.model_validate(
        report(1, [peer(world.a.id, d["id"], 10, 20, key=d["public_key"]) for d in devices])
    )
    answers: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def post() -> None:
        try:
            barrier.wait(timeout=10)
            with runtime.db.session() as session:
                gateway = session.get(Gateway, gateway_id)
                assert gateway is not None
                answers.append(store_report(Ctx(session=session, runtime=runtime), gateway, body))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(a.accepted for a in answers) == [False] * 5 + [True]
    assert all(a.duplicate for a in answers if not a.accepted)
    assert rows(runtime) == 5


@both_stores
def test_unique_key_backstop_answers_duplicate(world: World, runtime: Runtime) -> None:
    """A row of the seq (and its period: the key holds period_end, the partition key on
    PostgreSQL) already there, whatever the seq column says: duplicate, not 409."""
    _pop, gw = serving_gateway(world)
    (dev,) = state(world, gw).tenants[0].peers
    key = dev.public_key
    now = datetime.now(UTC) - timedelta(minutes=1)
    with runtime.db.session() as session:
        gateway_id = session.scalars(select(Gateway.id)).one()
        session.add(
            UsageRecord(
                gateway_id=gateway_id,
                seq=5,
                tenant_id=world.a.id,
                peer_key=key,
                peer_kind="device",
                peer_ref=dev.ref,
                rx_bytes=1,
                tx_bytes=1,
                period_start=now - timedelta(seconds=30),
                period_end=now,
            )
        )
        session.commit()
    resp = world.client.post(
        REPORTS, json=report(5, [peer(world.a.id, dev.ref, 7, 7, key=key)], now), headers=gw
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["duplicate"] is True
    assert rows(runtime) == 1
    with runtime.db.session(write=False) as session:
        assert session.get(Gateway, gateway_id).last_report_seq == 0  # type: ignore[union-attr]


@both_stores
def test_tenant_usage_totals_and_scoping(world: World, runtime: Runtime) -> None:
    pop, gw = serving_gateway(world)
    mine = device(world)  # the employee's
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/devices",
        json={"name": "admin-laptop", "public_key": public_key()},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    theirs = resp.json()
    assert theirs["user_id"] == str(world.a.admin.user_id)
    state(world, gw)  # the agent was sent both devices
    site_ref, site_key = str(uuid.uuid4()), public_key()
    transit_ref, transit_key = str(uuid.uuid4()), public_key()
    allow(runtime, world.a.id, site_key, "site", site_ref)
    allow(runtime, world.a.id, transit_key, "pop", transit_ref)
    enrolled_days_ago(runtime, 2)
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1, hours=1)
    hs = now - timedelta(minutes=3)
    key_mine = mine["public_key"]
    posts = [
        report(1, [peer(world.a.id, mine["id"], 50, 50, key=key_mine)], end=yesterday),
        report(
            2,
            [
                peer(world.a.id, mine["id"], 100, 1000, key=key_mine, handshake=hs),
                peer(world.a.id, theirs["id"], 7, 70, key=theirs["public_key"]),
                peer(world.a.id, site_ref, 5000, 6000, kind="site", key=site_key),
                peer(world.a.id, transit_ref, 999_999, 999_999, kind="pop", key=transit_key),
            ],
            end=now - timedelta(minutes=2),
        ),
        report(
            3, [peer(world.a.id, mine["id"], 1, 10, key=key_mine)], end=now - timedelta(minutes=1)
        ),
    ]
    for body in posts:
        answer = world.client.post(REPORTS, json=body, headers=gw).json()
        assert answer["accepted"] and not answer["dropped"], answer

    # Tenant admin: every device, over the default window (the last day).
    by_device = usage(world, world.a.admin.headers, world.a.id)
    got = {r["key"]: (r["peer_kind"], r["rx_bytes"], r["tx_bytes"]) for r in by_device["rows"]}
    assert got == {mine["id"]: ("device", 101, 1010), theirs["id"]: ("device", 7, 70)}
    assert (by_device["rx_bytes"], by_device["tx_bytes"]) == (108, 1080)
    row = next(r for r in by_device["rows"] if r["key"] == mine["id"])
    assert datetime.fromisoformat(row["last_handshake"]) == hs
    # A wider window takes yesterday's report in.
    since = (now - timedelta(days=2)).isoformat()
    wide = usage(world, world.a.admin.headers, world.a.id, since=since)
    assert wide["rx_bytes"] == 158
    sites = usage(world, world.a.admin.headers, world.a.id, group_by="site")
    assert [(r["key"], r["rx_bytes"]) for r in sites["rows"]] == [(site_ref, 5000)]
    days = usage(world, world.a.admin.headers, world.a.id, since=since, group_by="day")
    per_day: dict[str, int] = {}
    for r in days["rows"]:
        assert r["peer_kind"] in ("device", "site")  # transit (pop) peers are not the tenant's
        per_day[r["key"]] = per_day.get(r["key"], 0) + r["rx_bytes"]
    expected: dict[str, int] = {}

    def day(end: datetime) -> str:  # the Asia/Shanghai day, like the ledger's
        return (end - timedelta(microseconds=1)).astimezone(SHANGHAI).date().isoformat()

    for end, rx in ((now - timedelta(minutes=2), 107 + 5000), (now - timedelta(minutes=1), 1)):
        expected[day(end)] = expected.get(day(end), 0) + rx
    expected[day(yesterday)] = 50
    assert per_day == expected
    assert sum(per_day.values()) == 5158

    # The employee: their own device only, whatever they group by.
    own = usage(world, world.a.employee.headers, world.a.id)
    assert [(r["key"], r["rx_bytes"]) for r in own["rows"]] == [(mine["id"], 101)]
    assert own["rx_bytes"] == 101
    assert theirs["id"] not in str(own)
    assert usage(world, world.a.employee.headers, world.a.id, group_by="site")["rows"] == []
    own_days = usage(world, world.a.employee.headers, world.a.id, since=since, group_by="day")
    assert sum(r["rx_bytes"] for r in own_days["rows"]) == 151

    # Another tenant: 404; an operator: everything; a bad window: 422.
    for headers in (world.b.admin.headers, world.b.employee.headers):
        resp = world.client.get(f"/api/v1/tenants/{world.a.id}/usage", headers=headers)
        assert resp.status_code == 404
    assert usage(world, world.b.admin.headers, world.b.id)["rows"] == []
    assert usage(world, world.operators["auditor"].headers, world.a.id)["rx_bytes"] == 108
    resp = world.client.get(
        f"/api/v1/tenants/{world.a.id}/usage",
        params={"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 422
    assert "since" in resp.json()["error"]["fields"]

    # Operators per PoP: per tenant and kind, transit included; tenants may not look.
    resp = world.client.get(f"/api/v1/pops/{pop}/usage", headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    pop_rows = {(r["key"], r["peer_kind"]): r["rx_bytes"] for r in resp.json()["rows"]}
    assert pop_rows == {
        (str(world.a.id), "device"): 108,
        (str(world.a.id), "site"): 5000,
        (str(world.a.id), "pop"): 999_999,
    }
    resp = world.client.get(f"/api/v1/pops/{pop}/usage", headers=world.a.admin.headers)
    assert resp.status_code == 403
    resp = world.client.get(f"/api/v1/pops/{uuid.uuid4()}/usage", headers=world.admin.headers)
    assert resp.status_code == 404


@both_stores
def test_days_are_asia_shanghai_days_like_the_ledgers(world: World, runtime: Runtime) -> None:
    """Records ending at 23:59:30 and at 00:00 (Beijing) are the day before's, one at 00:30
    the new day's, as the ledger counts them; by UTC day all three were 30 November."""
    _pop, _gw = serving_gateway(world)
    dev = device(world)
    with runtime.db.session() as session:
        gateway_id = session.scalars(select(Gateway.id)).one()
        for seq, end in enumerate(
            (
                datetime(2026, 11, 30, 15, 59, 30, tzinfo=UTC),
                datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
                datetime(2026, 11, 30, 16, 30, tzinfo=UTC),
            ),
            start=1,
        ):
            session.add(
                UsageRecord(
                    gateway_id=gateway_id,
                    seq=seq,
                    tenant_id=world.a.id,
                    peer_key=dev["public_key"],
                    peer_kind="device",
                    peer_ref=dev["id"],
                    rx_bytes=10**seq,
                    tx_bytes=0,
                    period_start=end - timedelta(seconds=30),
                    period_end=end,
                )
            )
        session.commit()
    window = {"since": "2026-11-29T00:00:00Z", "until": "2026-12-02T00:00:00Z"}
    days = usage(world, world.a.admin.headers, world.a.id, group_by="day", **window)
    assert [(r["key"], r["rx_bytes"]) for r in days["rows"]] == [
        ("2026-11-30", 110),
        ("2026-12-01", 1000),
    ]
