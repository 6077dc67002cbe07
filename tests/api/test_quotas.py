"""Quotas: a tenant's limits (operator staff), users' overrides (the tenant admin, within the
tenant's), caps counted as reports arrive, 80% / 100% events once per month (mail, metrics),
and the peers' limits in every serving PoP's desired state."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from tests.api.test_gateway import device, enrol, make_pop, state
from tests.api.test_mail_reset import use_relay
from tests.api.test_metrics import LOOPBACK
from tests.api.test_usage import REPORTS, peer, report, serving_gateway
from tests.conftest import both_stores
from tests.support.smtp import SmtpServer
from tests.support.world import World
from tongdao.cli import app as cli
from tongdao.gateway.desired import DesiredState, Peer
from tongdao.gateway.ledger import roll_up
from tongdao.gateway.models import Gateway, UsageRecord
from tongdao.gateway.usage import PeerUsage
from tongdao.jobs.scheduler import Scheduler
from tongdao.quotas import service
from tongdao.quotas.jobs import run_month_job
from tongdao.quotas.models import QuotaEvent
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import User

API = "/api/v1"
CJK = re.compile(r"[\u4e00-\u9fff]")
MB = 1_000_000


def limits(world: World, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    resp = world.client.put(
        f"{API}/tenants/{world.a.id}/limits",
        json=body,
        headers=headers or world.operators["billing_clerk"].headers,
    )
    return resp


def user_limits(world: World, user: uuid.UUID, body: dict[str, Any], headers: Any = None) -> Any:
    return world.client.put(
        f"{API}/tenants/{world.a.id}/users/{user}/limits",
        json=body,
        headers=headers or world.a.admin.headers,
    )


def device_peer(desired: DesiredState, device_id: str) -> Peer:
    (found,) = [p for t in desired.tenants for p in t.peers if p.ref == device_id]
    return found


def only_gateway(world: World, runtime: Runtime) -> uuid.UUID:
    """A PoP serving tenant A and the id of its (only) gateway, for records written directly."""
    serving_gateway(world)
    with runtime.db.session(write=False) as session:
        return session.scalars(select(Gateway.id)).one()


def events(runtime: Runtime) -> list[tuple[str, int]]:
    with runtime.db.session(write=False) as session:
        rows = session.execute(
            select(QuotaEvent.subject, QuotaEvent.level).order_by(
                QuotaEvent.subject, QuotaEvent.level
            )
        )
        return [(str(s), int(lv)) for s, lv in rows]


@both_stores
def stored(session: Any, record: UsageRecord) -> None:
    """``record`` as a stored report leaves it: its raw row and its bytes in the usage
    ledger's hour (what the quota count reads)."""
    session.add(record)
    row = PeerUsage.model_validate(
        {
            "tenant_id": record.tenant_id,
            "peer_key": record.peer_key,
            "peer_kind": record.peer_kind,
            "peer_ref": record.peer_ref,
            "rx_bytes": record.rx_bytes,
            "tx_bytes": record.tx_bytes,
        },
        strict=False,
    )
    roll_up(session, record.gateway_id, None, [row], record.period_end)


def test_user_cap_fires_once_blocks_everywhere_and_a_raised_cap_lifts(
    world: World, runtime: Runtime, smtp: SmtpServer
) -> None:
    use_relay(world, smtp.port)
    with runtime.db.session() as session:  # the tenant's admin reads Chinese, the staff English
        admin = session.scalars(select(User).where(User.email == "tenant_admin@a.example")).one()
        admin.language = "zh_CN"
        session.commit()
    _pop, gw = serving_gateway(world)
    other = enrol(world, make_pop(world, "sh", region="CN-SH", host="198.51.100.11"))
    dev = device(world)
    assert device_peer(state(world, gw), dev["id"]).blocked is False
    assert device_peer(state(world, other), dev["id"]).blocked is False
    resp = limits(world, {"user_cap_mb": 1})
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_cap_mb"] == 1 and resp.json()["over_cap"] == "block"
    employee = world.a.employee.user_id
    key = dev["public_key"]
    end = datetime.now(UTC) - timedelta(minutes=3)

    def send(seq: int, rx: int, tx: int, at: datetime) -> None:
        body = report(seq, [peer(world.a.id, dev["id"], rx, tx, key=key)], end=at)
        answer = world.client.post(REPORTS, json=body, headers=gw)
        assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text

    send(1, 500_000, 200_000, end)  # 70%: nothing
    assert events(runtime) == []
    send(2, 100_000, 0, end + timedelta(seconds=30))  # 80%
    assert events(runtime) == [(str(employee), 80)]
    got = smtp.wait_for("tenant_admin@a.example")
    assert "80%" in got.text and "employee@a.example" in got.text
    # Each in their own language, not one bilingual text.
    assert "流量已超过上限的 80%" in got.text and "Traffic" not in got.text
    assert "本月流量已超过上限的 80%" in str(got.message["Subject"])
    clerk = smtp.wait_for("billing_clerk@operator.example")
    assert "passed 80% of their monthly transfer cap" in str(clerk.message["Subject"])
    assert "Traffic continues" in clerk.text and not CJK.search(clerk.text)
    smtp.wait_for("operator_admin@operator.example")
    assert device_peer(state(world, gw), dev["id"]).blocked is False
    send(3, 300_000, 0, end + timedelta(seconds=60))  # 110%: blocked on both PoPs
    assert events(runtime) == [(str(employee), 80), (str(employee), 100)]
    reached = smtp.wait_for("tenant_admin@a.example", count=2)
    assert "已按租户的限额设置在各网关上阻断或限速" in reached.text
    for gateway in (gw, other):
        assert device_peer(state(world, gateway), dev["id"]).blocked is True
    send(4, 100_000, 0, end + timedelta(seconds=90))  # more: no further event or mail
    assert len(events(runtime)) == 2
    view = world.client.get(
        f"{API}/tenants/{world.a.id}/users/{employee}/limits", headers=world.a.admin.headers
    ).json()
    assert view["used_bytes"] == 1_200_000 and view["enforced"] is True
    assert view["effective_cap_mb"] == 1
    listed = world.client.get(
        f"{API}/tenants/{world.a.id}/quota-events", headers=world.a.admin.headers
    ).json()
    assert [(e["level"], e["used_bytes"]) for e in listed["data"]] == [
        (100, 1_100_000),
        (80, 800_000),
    ]
    # The tenant admin may not go above the tenant's per-user cap.
    refused = user_limits(world, employee, {"cap_mb": 5})
    assert refused.status_code == 422
    assert "cap_mb" in refused.json()["error"]["fields"]
    # The operator raises it: the block is lifted on both PoPs at once.
    assert limits(world, {"user_cap_mb": 5}).status_code == 200
    for gateway in (gw, other):
        assert device_peer(state(world, gateway), dev["id"]).blocked is False
    count = len(smtp.received)
    send(5, 4_000_000, 0, end + timedelta(seconds=120))  # past 5 MB: blocked again, no mail
    assert device_peer(state(world, gw), dev["id"]).blocked is True
    assert len(smtp.received) == count


@both_stores
def test_tenant_cap_throttles_sites_and_devices_and_rates_are_per_user(
    world: World, runtime: Runtime, app: FastAPI
) -> None:
    _pop, gw = serving_gateway(world)
    dev = device(world)
    mine = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "admin-laptop", "public_key": peer(world.a.id, "x", 0, 0)["peer_key"]},
        headers=world.a.admin.headers,
    )
    assert mine.status_code == 201, mine.text
    body = {"tenant_cap_mb": 2, "user_rate_mbps": 50, "over_cap": "throttle", "throttle_mbps": 20}
    assert limits(world, body).status_code == 200
    # The admin holds one user to less (within the tenant's 50).
    resp = user_limits(world, world.a.employee.user_id, {"rate_mbps": 10})
    assert resp.status_code == 200, resp.text
    assert resp.json()["effective_rate_mbps"] == 10
    assert user_limits(world, world.a.employee.user_id, {"rate_mbps": 80}).status_code == 422
    desired = state(world, gw)
    first = device_peer(desired, dev["id"])
    assert (first.rate_mbps, first.limit_group) == (10, str(world.a.employee.user_id))
    admins = device_peer(desired, mine.json()["id"])
    assert (admins.rate_mbps, admins.limit_group) == (50, str(world.a.admin.user_id))
    end = datetime.now(UTC) - timedelta(minutes=2)
    body = report(1, [peer(world.a.id, dev["id"], 2_500_000, 0, key=dev["public_key"])], end=end)
    assert world.client.post(REPORTS, json=body, headers=gw).json()["stored"] == 1
    assert events(runtime) == [("tenant", 80), ("tenant", 100)]
    desired = state(world, gw)
    # Throttled, and each user keeps the stricter of their own limit and the throttle: the
    # employee's 10 still holds under the tenant's 20 (both policers apply), and the admin's
    # 50 gives way to the 20 all the tenant's peers share.
    held = device_peer(desired, dev["id"])
    assert (held.blocked, held.rate_mbps, held.limit_group) == (False, 10, str(first.limit_group))
    assert held.tenant_rate_mbps == 20
    held = device_peer(desired, mine.json()["id"])
    assert (held.blocked, held.rate_mbps, held.tenant_rate_mbps) == (False, 50, 20)
    view = world.client.get(f"{API}/tenants/{world.a.id}/limits", headers=world.a.admin.headers)
    assert view.json()["enforced"] is True and view.json()["used_bytes"] == 2_500_000
    # Metrics: counted, no tenant or person in a label.
    with TestClient(app, client=LOOPBACK) as local:
        text = local.get("/metrics").text
    assert 'tongdao_quota_subjects{level="100",subject="tenant"} 1.0' in text
    assert 'tongdao_quota_enforced{subject="tenant"} 1.0' in text
    assert str(world.a.id) not in text


def test_refusals_are_field_keyed_and_scoped(world: World) -> None:
    resp = limits(world, {"over_cap": "throttle"})
    assert resp.status_code == 422
    assert list(resp.json()["error"]["fields"]) == ["throttle_mbps"]
    resp = limits(world, {"tenant_cap_mb": 10, "user_cap_mb": 20})
    assert list(resp.json()["error"]["fields"]) == ["user_cap_mb"]
    resp = limits(world, {"tenant_cap_mb": 0})
    assert resp.status_code == 422
    # A tenant admin reads, never sets, the tenant's limits; another tenant's: 404.
    assert limits(world, {"tenant_cap_mb": 10}, world.a.admin.headers).status_code == 403
    assert limits(world, {"tenant_cap_mb": 10}, world.b.admin.headers).status_code == 404
    other = user_limits(world, world.b.employee.user_id, {"cap_mb": 1})
    assert other.status_code == 404
    assert user_limits(world, world.a.employee.user_id, {"cap_mb": 1}, world.a.employee.headers)
    own = user_limits(world, world.a.employee.user_id, {"cap_mb": 1}, world.a.employee.headers)
    assert own.status_code == 403


@both_stores
def test_month_to_date_counts_the_shanghai_month(world: World, runtime: Runtime) -> None:
    """A report counts in the Asia/Shanghai month of its period's end (a period ending at
    midnight belongs to the month before, as ``since < period_end <= until`` everywhere):
    16:00:01 UTC on 30 November is 00:00:01 on 1 December in Beijing. The bytes are put in the
    usage ledger as a stored report puts them (``stored``), which is what the count reads."""
    gid = only_gateway(world, runtime)
    dev = device(world)
    tenant = world.a.id
    employee = world.a.employee.user_id
    with runtime.db.session() as session:
        for end, rx in (
            (datetime(2026, 11, 30, 15, 59, tzinfo=UTC), 1),  # 23:59 on 30 Nov, Beijing
            (datetime(2026, 11, 30, 16, 0, tzinfo=UTC), 10),  # ends at 00:00 on 1 Dec: November's
            (datetime(2026, 11, 30, 16, 0, 1, tzinfo=UTC), 20),  # 00:00:01: December's
            (datetime(2026, 12, 31, 15, 59, tzinfo=UTC), 100),
            (datetime(2026, 12, 31, 16, 1, tzinfo=UTC), 1000),  # January's
        ):
            stored(
                session,
                UsageRecord(
                    gateway_id=gid,
                    seq=int(rx),
                    tenant_id=tenant,
                    peer_key=dev["public_key"],
                    peer_kind="device",
                    peer_ref=dev["id"],
                    rx_bytes=rx,
                    tx_bytes=rx,
                    period_start=end - timedelta(seconds=30),
                    period_end=end,
                ),
            )
        session.flush()
        assert service.month_to_date(session, tenant, month="2026-11") == 22
        assert service.month_to_date(session, tenant, month="2026-12") == 240
        assert service.month_to_date(session, tenant, employee, month="2026-12") == 240
        assert service.month_to_date(session, tenant, world.a.admin.user_id, month="2026-12") == 0
        assert service.month_to_date(session, tenant, month="2027-01") == 2000
        session.rollback()


def test_a_new_month_lifts_the_blocks_and_counts_afresh(world: World, runtime: Runtime) -> None:
    """A fake clock: reaching the cap late on 30 November (Beijing) blocks; the quotas.month
    job at 00:00 on 1 December lifts it; December's first bytes are counted from zero."""
    _pop, gw = serving_gateway(world)
    with runtime.db.session(write=False) as session:
        gid = session.scalars(select(Gateway.id)).one()
    dev = device(world)
    assert limits(world, {"user_cap_mb": 1}).status_code == 200
    now = datetime(2026, 11, 30, 15, 50, tzinfo=UTC)  # 23:50 in Beijing
    runtime.clock = lambda: now
    with runtime.db.session() as session:
        ctx = Ctx(runtime=runtime, session=session)
        for seq, end in ((1, now - timedelta(minutes=1)),):
            stored(
                session,
                UsageRecord(
                    gateway_id=gid,
                    seq=seq,
                    tenant_id=world.a.id,
                    peer_key=dev["public_key"],
                    peer_kind="device",
                    peer_ref=dev["id"],
                    rx_bytes=MB,
                    tx_bytes=0,
                    period_start=end - timedelta(seconds=30),
                    period_end=end,
                ),
            )
        fired = service.check_report(ctx, [(world.a.id, "device", dev["id"])], end)
        assert sorted(e.level for e in fired) == [80, 100]
        session.commit()
    assert device_peer(state(world, gw), dev["id"]).blocked is True
    later = datetime(2026, 11, 30, 16, 0, 5, tzinfo=UTC)  # 00:00:05 on 1 December
    runtime.clock = lambda: later
    # The block is of November: December's state no longer carries it, and the job lifts it.
    assert run_month_job(runtime, "replica-1") == 1
    assert run_month_job(runtime, "replica-2") is None  # done for December: runs once
    assert device_peer(state(world, gw), dev["id"]).blocked is False
    with runtime.db.session(write=False) as session:
        lifted = session.scalars(select(QuotaEvent.lifted_at).where(QuotaEvent.level == 100))
        assert list(lifted) == [later]
    # The command runs the same job (forced): nothing more to lift.
    url = runtime.settings.resolved_database_url
    out = CliRunner().invoke(cli, ["quotas", "lift", "--database-url", url])
    assert out.exit_code == 0, out.output
    assert "0 blocks" in out.output
    with runtime.db.session() as session:
        assert service.month_to_date(session, world.a.id, month=service.month_of(later)) == 0


def test_a_late_report_counts_in_the_month_it_measured(world: World, runtime: Runtime) -> None:
    """A report for 23:59 on 30 November (Beijing) that the server stores at 00:00:30 on
    1 December: its bytes are November's in the ledger, so its cap event is November's too
    (the server clock's month would find December empty and fire nothing)."""
    _pop, gw = serving_gateway(world)
    dev = device(world)
    assert limits(world, {"user_cap_mb": 2}).status_code == 200
    state(world, gw)  # the gateway was sent the device's peer
    arrived = datetime(2026, 11, 30, 16, 0, 30, tzinfo=UTC)  # 00:00:30 on 1 December
    runtime.clock = lambda: arrived
    with runtime.db.session() as session:  # enrolled an hour before
        session.scalars(select(Gateway)).one().created_at = arrived - timedelta(hours=1)
        session.commit()
    end = datetime(2026, 11, 30, 15, 59, 30, tzinfo=UTC)  # 23:59:30 on 30 November
    body = report(1, [peer(world.a.id, dev["id"], 2_500_000, 0, key=dev["public_key"])], end=end)
    resp = world.client.post(REPORTS, json=body, headers=gw)
    assert resp.status_code == 200 and resp.json()["stored"] == 1, resp.text
    with runtime.db.session(write=False) as session:
        rows = session.execute(
            select(QuotaEvent.month, QuotaEvent.level).order_by(QuotaEvent.level)
        )
        assert [(str(m), int(lv)) for m, lv in rows] == [("2026-11", 80), ("2026-11", 100)]
    assert service.report_month(end) == "2026-11"
    assert service.report_month(datetime(2026, 11, 30, 16, 0, tzinfo=UTC)) == "2026-11"
    assert service.report_month(datetime(2026, 11, 30, 16, 0, 1, tzinfo=UTC)) == "2026-12"


def test_overshoot_stays_within_the_bound(world: World, runtime: Runtime) -> None:
    """A fake clock and a simulated user on 3 PoPs, each at the user's rate, each reporting
    every interval: the cap is found at the first report that reaches it, and what the user
    moved until every PoP enforces it (one more interval of traffic at most, plus the apply
    time) stays within ``overshoot_bound``."""
    interval, rate_mbps, pops, apply_s = 30.0, 20, 3, 2.0
    cap = 500 * MB
    per_report = int(rate_mbps * 125_000 * interval)
    gid = only_gateway(world, runtime)
    dev = device(world)
    assert limits(world, {"user_cap_mb": cap // MB, "user_rate_mbps": rate_mbps}).status_code == 200
    start = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    moved = 0
    enforced_at: int | None = None
    with runtime.db.session() as session:
        ctx = Ctx(runtime=runtime, session=session)
        for tick in range(1, 100):
            now = start + timedelta(seconds=interval * tick)
            for pop in range(pops):
                moved += per_report  # this PoP carried a full interval at the rate
                stored(
                    session,
                    UsageRecord(
                        gateway_id=gid,
                        seq=tick * 10 + pop,
                        tenant_id=world.a.id,
                        peer_key=dev["public_key"],
                        peer_kind="device",
                        peer_ref=dev["id"],
                        rx_bytes=per_report,
                        tx_bytes=0,
                        period_start=now - timedelta(seconds=interval),
                        period_end=now,
                    ),
                )
                fired = service.check_report(ctx, [(world.a.id, "device", dev["id"])], now)
                if any(e.level == 100 for e in fired):
                    enforced_at = tick
            if enforced_at is not None:
                # Until the new state is applied everywhere: the apply time at the rate.
                moved += int(pops * rate_mbps * 125_000 * apply_s)
                break
        session.rollback()
    assert enforced_at is not None
    overshoot = moved - cap
    bound = service.overshoot_bound(interval, rate_mbps, pops, apply_s)
    assert 0 < overshoot <= bound, (overshoot, bound)


def test_the_servers_scheduler_runs_the_month_job(world: World, runtime: Runtime) -> None:
    """``tongdao server``'s scheduler tick lifts last month's blocks (under the job's lease)."""
    _pop, gw = serving_gateway(world)
    dev = device(world)
    assert limits(world, {"user_cap_mb": 1}).status_code == 200
    with runtime.db.session() as session:
        session.add(
            QuotaEvent(
                tenant_id=world.a.id,
                subject=str(world.a.employee.user_id),
                user_id=world.a.employee.user_id,
                month="2026-11",
                level=100,
                used_bytes=MB,
                cap_bytes=MB,
            )
        )
        session.commit()
    runtime.clock = lambda: datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # still November
    assert device_peer(state(world, gw), dev["id"]).blocked is True
    runtime.clock = lambda: datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    Scheduler(runtime, interval=0).tick()
    with runtime.db.session(write=False) as session:
        assert session.scalar(select(QuotaEvent.lifted_at)) is not None
    assert device_peer(state(world, gw), dev["id"]).blocked is False
