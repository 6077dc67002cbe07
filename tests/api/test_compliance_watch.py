"""The scheduled compliance check (tongdao.compliance.watch) with a fake clock (each run is
given its time; the API's tokens live by the real one): an unmet rule
alerts at once, service runs through the grace period, the affected tenants are suspended at
its end (and leave the gateway's desired state), and putting the rule right lifts exactly
those suspensions."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.test_gateway import activate, device, enrol, make_pop, state
from tests.api.test_mail_reset import use_relay
from tests.conftest import both_stores
from tests.support.smtp import SmtpServer
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.compliance import watch
from tongdao.runtime import Runtime
from tongdao.web.i18n import Locale

API = "/api/v1"
OFFICER = "compliance_officer@operator.example"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def near(seconds: int, expected: int) -> bool:
    return expected - 120 <= seconds <= expected


def tenant(world: World, tid: uuid.UUID) -> dict[str, Any]:
    resp = world.client.get(f"{API}/tenants/{tid}", headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.db.session(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
            )
        )


def holders(world: World) -> dict[bool, str]:
    """Shareholder ids by foreign flag."""
    h = world.operators["compliance_officer"].headers
    data = world.client.get(f"{API}/operator/shareholders", headers=h).json()["data"]
    return {row["foreign"]: row["id"] for row in data}


def set_stake(world: World, holder_id: str, percent: str) -> None:
    resp = world.client.patch(
        f"{API}/operator/shareholders/{holder_id}",
        json={"stake_percent": percent},
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 200, resp.text


def foreign_majority(world: World) -> None:
    """A transfer of 2% from the domestic holder to the foreign one: foreign 51%."""
    ids = holders(world)
    set_stake(world, ids[False], "49")
    set_stake(world, ids[True], "51")


def foreign_minority(world: World) -> None:
    ids = holders(world)
    set_stake(world, ids[True], "49")
    set_stake(world, ids[False], "51")


@both_stores
def test_a_foreign_majority_alerts_then_suspends_after_the_grace_period_and_lifts(
    world: World, runtime: Runtime, smtp: SmtpServer
) -> None:
    use_relay(world, smtp.port)
    t0 = now()
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    # Tenant B: active, then suspended by a person for another reason.
    activate(world, world.b.id)
    resp = world.client.patch(
        f"{API}/tenants/{world.b.id}",
        json={"state": "suspended", "state_reason": "unpaid invoices"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    assert [p.public_key for p in state(world, gw).tenants[0].peers] == [dev["public_key"]]
    assert watch.check(runtime, t0).open == []

    foreign_majority(world)
    outcome = watch.check(runtime, t0)
    assert outcome.opened == ["ownership"] and outcome.suspended == []
    # At once: an event, a mail to the compliance officer, the dashboard with its countdown.
    (found,) = events(runtime, "compliance_breach")
    assert found.after is not None and found.after["rule"] == "ownership.foreign_cap"
    assert found.actor == "job:compliance.watch"
    mail = smtp.wait_for(OFFICER)
    assert "ownership.foreign_cap" in mail.message["Subject"]
    deadline = Locale("en").when(t0 + timedelta(days=7))
    assert "51" in mail.text and deadline in mail.text
    dash = world.client.get(f"{API}/operator/compliance", headers=world.admin.headers).json()
    (breach,) = dash["watch"]["breaches"]
    assert breach["rule"] == "ownership.foreign_cap" and near(breach["seconds_left"], 7 * 86400)
    assert "Foreign Investment Access" in breach["source"]
    # New activations are refused meanwhile; running service goes on.
    resp = world.client.patch(
        f"{API}/tenants/{world.b.id}", json={"state": "active"}, headers=world.admin.headers
    )
    assert resp.status_code == 409 and "ownership.foreign_cap" in resp.json()["error"]["message"]
    assert len(state(world, gw).tenants) == 1

    # A second run in the grace period alerts no more and suspends nobody.
    outcome = watch.check(runtime, t0 + timedelta(days=7) - timedelta(seconds=1))
    assert outcome.opened == [] and outcome.suspended == []
    assert len(events(runtime, "compliance_breach")) == 1
    assert tenant(world, world.a.id)["state"] == "active"

    # The grace period ends: A is suspended, audited naming the rule; its peers leave the
    # gateway's desired state. B (suspended by a person) is not the job's.
    outcome = watch.check(runtime, t0 + timedelta(days=7))
    assert outcome.suspended == [world.a.id]
    a = tenant(world, world.a.id)
    assert a["state"] == "suspended" and "ownership.foreign_cap" in a["state_reason"]
    (suspend,) = events(runtime, "compliance_suspend")
    assert suspend.object_id == str(world.a.id) and suspend.after is not None
    assert suspend.after["rule"] == "ownership.foreign_cap"
    changed = [e for e in events(runtime, "update") if e.object_id == str(world.a.id)]
    assert changed[-1].actor == "job:compliance.watch"
    assert state(world, gw).tenants == ()
    # Running again changes nothing.
    assert watch.check(runtime, t0 + timedelta(days=7, hours=1)).suspended == []
    assert len(events(runtime, "compliance_suspend")) == 1

    # Putting the register right lifts the job's suspension, and only that one.
    foreign_minority(world)
    outcome = watch.check(runtime, t0 + timedelta(days=8))
    assert outcome.resolved == ["ownership"] and outcome.lifted == [world.a.id]
    assert tenant(world, world.a.id)["state"] == "active"
    b = tenant(world, world.b.id)
    assert b["state"] == "suspended" and b["state_reason"] == "unpaid invoices"
    assert len(events(runtime, "compliance_lift")) == 1
    assert [p.public_key for p in state(world, gw).tenants[0].peers] == [dev["public_key"]]
    dash = world.client.get(f"{API}/operator/compliance/watch", headers=world.admin.headers)
    assert dash.json()["breaches"] == []


def test_the_only_licence_expiring_starts_the_grace_period(world: World, runtime: Runtime) -> None:
    activate(world, world.a.id)
    officer = world.operators["compliance_officer"].headers
    (lic,) = world.client.get(f"{API}/operator/licences", headers=officer).json()["data"]
    valid_to = date.fromisoformat(lic["valid_to"])
    # The last valid day (Shanghai), then the day after.
    last = datetime(valid_to.year, valid_to.month, valid_to.day, 15, 59, tzinfo=UTC)
    assert watch.check(runtime, last).open == []
    outcome = watch.check(runtime, last + timedelta(minutes=1))
    assert outcome.opened == ["licence"]
    dash = world.client.get(f"{API}/operator/compliance/watch", headers=officer).json()
    assert dash["breaches"][0]["rule"] == "licence.validity"
    assert "expired on" in dash["breaches"][0]["detail"]
    assert watch.check(runtime, last + timedelta(days=7, minutes=1)).suspended == [world.a.id]
    # A renewal lifts it.
    start = valid_to + timedelta(days=1)
    resp = world.client.post(
        f"{API}/operator/licences",
        json={**{k: lic[k] for k in ("service_codes", "issuing_authority", "provinces")},
              "number": "B1-20260002", "valid_from": start.isoformat(),
              "valid_to": date(start.year + 4, start.month, 1).isoformat()},
        headers=officer,
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    assert watch.check(runtime, last + timedelta(days=8)).lifted == [world.a.id]


@pytest.mark.parametrize("days", [0, 31, -1, True, False, "7", "1_0", 7.0, 7.5, None, [7]])
def test_the_grace_period_is_one_to_thirty_days(world: World, days: object) -> None:
    """A whole number from 1 to 30, given as a number: not a boolean or a string (true would
    have been 1 day, "1_0" 10 days)."""
    h = world.operators["compliance_officer"].headers
    resp = world.client.put(
        f"{API}/operator/compliance/watch", json={"grace_days": days}, headers=h
    )
    assert resp.status_code == 422
    assert list(resp.json()["error"]["fields"]) == ["grace_days"]
    got = world.client.get(f"{API}/operator/compliance/watch", headers=h).json()
    assert got["grace_days"] == 7


def test_the_operator_sets_the_grace_period_and_open_deadlines_follow(
    world: World, runtime: Runtime
) -> None:
    activate(world, world.a.id)
    foreign_majority(world)
    watch.check(runtime, now())
    h = world.admin.headers
    resp = world.client.put(f"{API}/operator/compliance/watch", json={"grace_days": 30}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["grace_days"] == 30
    assert near(resp.json()["breaches"][0]["seconds_left"], 30 * 86400)
    for who in ("billing_clerk", "auditor"):
        resp = world.client.put(
            f"{API}/operator/compliance/watch",
            json={"grace_days": 3},
            headers=world.operators[who].headers,
        )
        assert resp.status_code == 403
    resp = world.client.get(f"{API}/operator/compliance/watch", headers=world.a.admin.headers)
    assert resp.status_code == 403


def test_the_scheduler_runs_the_check_under_its_lease(world: World, runtime: Runtime) -> None:
    from tongdao.jobs import lease
    from tongdao.jobs.scheduler import Scheduler

    t0 = now()
    activate(world, world.a.id)
    foreign_majority(world)
    scheduler = Scheduler(runtime, 0)
    assert lease.acquire(runtime.db, watch.JOB, "someone-else", t0, timedelta(minutes=5))
    assert scheduler.compliance() is None  # held elsewhere: skipped
    assert events(runtime, "compliance_breach") == []
    lease.release(runtime.db, watch.JOB, "someone-else", t0)
    scheduler.tick()
    assert len(events(runtime, "compliance_breach")) == 1


def test_a_province_left_uncovered_suspends_only_its_tenants(
    world: World, runtime: Runtime
) -> None:
    """The national licence lapses while a Guangdong one stays valid: only the Beijing tenant
    (A) is affected, named by rule licence.region_covered; the Shenzhen one (B) runs on."""
    officer = world.operators["compliance_officer"].headers
    activate(world, world.a.id)
    activate(world, world.b.id)
    today = date.today()
    resp = world.client.post(
        f"{API}/operator/licences",
        json={
            "number": "粤B1-20250001",
            "service_codes": ["B13"],
            "issuing_authority": "广东省通信管理局",
            "provinces": ["44"],
            "valid_from": (today - timedelta(days=30)).isoformat(),
            "valid_to": date(today.year + 3, 1, 1).isoformat(),
        },
        headers=officer,
    )
    assert resp.status_code == 201, resp.text
    national = next(
        lic
        for lic in world.client.get(f"{API}/operator/licences", headers=officer).json()["data"]
        if lic["provinces"] == ["*"]
    )
    t0 = now()
    assert watch.check(runtime, t0).open == []
    ended = today - timedelta(days=1)
    resp = world.client.patch(
        f"{API}/operator/licences/{national['id']}",
        json={"valid_to": ended.isoformat()},
        headers=officer,
    )
    assert resp.status_code == 200, resp.text
    outcome = watch.check(runtime, t0)
    assert outcome.opened == ["province:11"]
    with runtime.db.session(write=False) as session:
        status = watch.status(session, t0)
    assert status.breaches[0].rule == "licence.region_covered"
    assert "Beijing (11)" in status.breaches[0].detail
    outcome = watch.check(runtime, t0 + timedelta(days=7))
    assert outcome.suspended == [world.a.id]
    assert tenant(world, world.b.id)["state"] == "active"


@both_stores
def test_a_change_to_the_register_is_checked_at_once_not_at_the_next_tick(
    world: World, runtime: Runtime
) -> None:
    """A server's scheduler (ticking hourly here, so no tick falls in the test) runs the check
    as soon as a change to the shareholder register commits: the breach, its audit event and
    its mail do not wait for the next tick."""
    from tongdao.jobs.scheduler import Scheduler

    activate(world, world.a.id)
    scheduler = Scheduler(runtime, 3600).start()
    try:
        assert events(runtime, "compliance_breach") == []
        foreign_majority(world)
        deadline = time.monotonic() + 30
        while not events(runtime, "compliance_breach") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [e.object_id for e in events(runtime, "compliance_breach")] != []
    finally:
        scheduler.stop()


def gd_licence(world: World, valid_to: date) -> dict[str, Any]:
    """A B13 licence covering Guangdong (44) only; tenant B is in Shenzhen, A in Beijing."""
    today = date.today()
    resp = world.client.post(
        f"{API}/operator/licences",
        json={
            "number": "粤B1-20250001",
            "service_codes": ["B13"],
            "issuing_authority": "广东省通信管理局",
            "provinces": ["44"],
            "valid_from": (today - timedelta(days=30)).isoformat(),
            "valid_to": valid_to.isoformat(),
        },
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def lapse(world: World, licence_id: str) -> None:
    resp = world.client.patch(
        f"{API}/operator/licences/{licence_id}",
        json={"valid_to": (date.today() - timedelta(days=1)).isoformat()},
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 200, resp.text


def national(world: World) -> str:
    h = world.operators["compliance_officer"].headers
    data = world.client.get(f"{API}/operator/licences", headers=h).json()["data"]
    return str(next(lic["id"] for lic in data if lic["provinces"] == ["*"]))


@both_stores
def test_a_breach_growing_worse_keeps_its_tenants_suspended(world: World, runtime: Runtime) -> None:
    """Beijing is left uncovered and its tenant (A) suspended; then the Guangdong licence lapses
    too, so no licence is valid at all. The province's breach gives way to the licence breach,
    but A stays suspended (its hold moves to the new breach, no new grace period), while B, in
    service until now, gets its grace period."""
    activate(world, world.a.id)
    activate(world, world.b.id)
    gd = gd_licence(world, date(date.today().year + 3, 1, 1))
    t0 = now()
    lapse(world, national(world))
    assert watch.check(runtime, t0).opened == ["province:11"]
    assert watch.check(runtime, t0 + timedelta(days=7)).suspended == [world.a.id]

    lapse(world, gd["id"])
    outcome = watch.check(runtime, t0 + timedelta(days=8))
    assert outcome.opened == ["licence"] and outcome.resolved == ["province:11"]
    assert outcome.lifted == [] and outcome.suspended == []
    a = tenant(world, world.a.id)
    assert a["state"] == "suspended" and "licence.validity" in a["state_reason"]
    assert tenant(world, world.b.id)["state"] == "active"  # B's grace period runs
    with runtime.db.session(write=False) as session:
        (breach,) = watch.status(session, t0 + timedelta(days=8)).breaches
    assert breach.scope == "licence" and breach.suspended_tenants == 1
    moved = events(runtime, "compliance_suspend")[-1]
    assert moved.object_id == str(world.a.id) and moved.after is not None
    assert moved.after["rule"] == "licence.validity" and moved.after["moved_from"]
    (lift,) = events(runtime, "compliance_lift")
    assert lift.after is not None and lift.after["still_held"] is True

    # The new breach's grace period ends: B is suspended now; A was already.
    outcome = watch.check(runtime, t0 + timedelta(days=15))
    assert outcome.suspended == [world.b.id]
    # A renewed national licence lifts both.
    resp = world.client.patch(
        f"{API}/operator/licences/{national(world)}",
        json={"valid_to": date(date.today().year + 3, 1, 1).isoformat()},
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 200, resp.text
    outcome = watch.check(runtime, t0 + timedelta(days=16))
    assert outcome.resolved == ["licence"]
    assert sorted(outcome.lifted) == sorted([world.a.id, world.b.id])
    assert tenant(world, world.a.id)["state"] == "active"


@both_stores
def test_a_breach_narrowing_lifts_only_the_tenants_nothing_covers_any_more(
    world: World, runtime: Runtime
) -> None:
    """No valid licence: A (Beijing) and B (Shenzhen) are suspended at the end of the grace
    period. A licence covering Guangdong only is recorded: B goes back into service, A stays
    suspended because nothing covers Beijing."""
    activate(world, world.a.id)
    activate(world, world.b.id)
    t0 = now()
    lapse(world, national(world))
    assert watch.check(runtime, t0).opened == ["licence"]
    outcome = watch.check(runtime, t0 + timedelta(days=7))
    assert sorted(outcome.suspended) == sorted([world.a.id, world.b.id])

    gd_licence(world, date(date.today().year + 3, 1, 1))
    outcome = watch.check(runtime, t0 + timedelta(days=8))
    assert outcome.resolved == ["licence"] and outcome.opened == ["province:11"]
    assert outcome.lifted == [world.b.id]
    a = tenant(world, world.a.id)
    assert a["state"] == "suspended" and "licence.region_covered" in a["state_reason"]
    assert tenant(world, world.b.id)["state"] == "active"
    # No new grace period for A: the province's breach holds it from now on ...
    with runtime.db.session(write=False) as session:
        (breach,) = watch.status(session, t0 + timedelta(days=8)).breaches
    assert breach.scope == "province:11" and breach.suspended_tenants == 1
    # ... and its own grace period ending changes nothing for A.
    assert watch.check(runtime, t0 + timedelta(days=15)).suspended == []
    assert tenant(world, world.a.id)["state"] == "suspended"


@both_stores
def test_a_person_suspending_a_tenant_the_watch_holds_is_not_undone(
    world: World, runtime: Runtime
) -> None:
    """The job suspends A; an operator admin suspends it again with a reason of their own. When
    the rule is met again the job's hold ends, but A stays suspended with the person's reason."""
    activate(world, world.a.id)
    t0 = now()
    foreign_majority(world)
    watch.check(runtime, t0)
    assert watch.check(runtime, t0 + timedelta(days=7)).suspended == [world.a.id]
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}",
        json={"state": "suspended", "state_reason": "unpaid invoices; keep suspended"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    foreign_minority(world)
    outcome = watch.check(runtime, t0 + timedelta(days=8))
    assert outcome.resolved == ["ownership"] and outcome.lifted == []
    a = tenant(world, world.a.id)
    assert a["state"] == "suspended" and a["state_reason"] == "unpaid invoices; keep suspended"
    (lift,) = events(runtime, "compliance_lift")
    assert lift.after is not None and lift.after["still_held"] is False
    with runtime.db.session(write=False) as session:
        assert watch.status(session, t0 + timedelta(days=8)).breaches == []
    # A later breach does not take it over either: it is not in service.
    foreign_majority(world)
    watch.check(runtime, t0 + timedelta(days=9))
    assert watch.check(runtime, t0 + timedelta(days=16)).suspended == []
    a = tenant(world, world.a.id)
    assert a["state_reason"] == "unpaid invoices; keep suspended"
