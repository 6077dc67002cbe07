"""The compiler's per-tenant device rows, kept between compilations and patched from the change
log (tongdao.gateway.changes.LOG), on both stores: whatever happened in between, a
compilation equals one made from nothing (rows read in full). Versions skipped, a user whose
devices drop out, a change committed outside this process (another replica: no log entry),
and a restart (nothing kept)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from tests.api.test_gateway import activate, device, enrol, make_pop, state
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.gateway import changes, service
from tongdao.gateway.changes import ChangeLog, Touched, current_version
from tongdao.gateway.desired import DesiredState
from tongdao.network.models import Device, DeviceState, Pop
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import User, UserState


def _compile(runtime: Runtime, pop_id: str, *, from_nothing: bool) -> DesiredState:
    if from_nothing:
        service._DEVICE_ROWS.clear()
    with runtime.db.session() as session:
        pop = session.get(Pop, uuid.UUID(pop_id))
        assert pop is not None
        out = service.compile_desired(
            Ctx(session=session, runtime=runtime), pop, current_version(session)
        )
        # Committed, as the gateway's long poll does: an interface allocated for a tenant
        # newly served stays, so the next compilation has nothing pending and uses what it
        # kept (a rolled-back allocation would make every compilation read in full).
        session.commit()
        return out


def _peer_keys(desired: DesiredState) -> set[str]:
    return {p.public_key for t in desired.tenants for p in t.peers}


def _set_device(runtime: Runtime, device_id: str, to: DeviceState) -> None:
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        row = session.get(Device, uuid.UUID(device_id))
        assert row is not None
        row.state = to
        session.commit()


def _check(runtime: Runtime, pop_id: str) -> DesiredState:
    """A compilation from what is kept equals one from nothing; returns it (and keeps it)."""
    _compile(runtime, pop_id, from_nothing=False)  # allocates for tenants newly served
    kept = _compile(runtime, pop_id, from_nothing=False)
    fresh = _compile(runtime, pop_id, from_nothing=True)
    assert kept == fresh
    assert [p.ref for t in kept.tenants for p in t.peers] == [
        p.ref for t in fresh.tenants for p in t.peers
    ]
    return kept


@both_stores
def test_kept_device_rows_follow_every_change(world: World, runtime: Runtime) -> None:
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    first = [device(world) for _ in range(3)]
    base = _check(runtime, pop)
    assert _peer_keys(base) == {d["public_key"] for d in first}

    # One change, then two versions skipped at once (a new device, one disabled).
    added = device(world)
    assert added["public_key"] in _peer_keys(_check(runtime, pop))
    another = device(world)
    _set_device(runtime, first[0]["id"], DeviceState.DISABLED)
    now = _check(runtime, pop)
    assert another["public_key"] in _peer_keys(now)
    assert first[0]["public_key"] not in _peer_keys(now)

    # A user disabled: all their devices drop out, though no device row changed.
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        employee = session.get(User, world.a.employee.user_id)
        assert employee is not None
        employee.state = UserState.DISABLED
        session.commit()
    assert _peer_keys(_check(runtime, pop)) == set()
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        employee = session.get(User, world.a.employee.user_id)
        assert employee is not None
        employee.state = UserState.ACTIVE
        session.commit()
    assert len(_peer_keys(_check(runtime, pop))) == 4

    # Another replica (here: a statement past this process's session hooks) disables a device
    # and bumps the version: no log entry for that version, so the tenant is read in full.
    with runtime.db.engine.begin() as conn:
        conn.execute(
            update(Device)
            .where(Device.id == uuid.UUID(added["id"]))
            .values(state=DeviceState.DISABLED)
        )
        conn.execute(changes._BUMP)
    assert added["public_key"] not in _peer_keys(_check(runtime, pop))

    # A restart: nothing kept, nothing logged.
    service._DEVICE_ROWS.clear()
    changes.LOG.clear()
    _set_device(runtime, added["id"], DeviceState.ACTIVE)
    assert added["public_key"] in _peer_keys(_check(runtime, pop))

    # And what the gateway gets through the API is the same.
    got, fresh = state(world, gw), _compile(runtime, pop, from_nothing=True)
    assert got.tenants == fresh.tenants  # (its first compilation allocated the interface: +1)


@both_stores
def test_the_log_names_what_each_version_wrote(world: World, runtime: Runtime) -> None:
    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    with runtime.db.session(write=False) as session:
        before = current_version(session)
    made = device(world)
    with runtime.db.session(write=False) as session:
        after = current_version(session)
        owner = session.scalar(select(Device.user_id).where(Device.id == uuid.UUID(made["id"])))
    touched = changes.LOG.since(runtime.db.engine.pool, before, after)
    assert touched is not None
    assert made["id"] in touched.devices
    assert owner is not None


def test_the_log_answers_only_without_gaps() -> None:
    from sqlalchemy import create_engine

    engine, other = create_engine("sqlite://").pool, create_engine("sqlite://").pool
    log = ChangeLog(limit=3)
    log.record(engine, 5, Touched(devices={"d5"}))
    log.record(engine, 6, Touched(users={"u6"}))
    assert log.since(engine, 6, 6) == Touched()
    assert log.since(engine, 4, 6) == Touched(devices={"d5"}, users={"u6"})
    assert log.since(engine, 3, 6) is None  # version 4 was not committed here
    assert log.since(engine, 6, 7) is None  # nor 7 (yet)
    assert log.since(engine, 6, 5) is None  # an older snapshot than what is kept
    assert log.since(other, 4, 6) is None  # another store
    assert log.since(other, 6, 6) == Touched()
    for v in (7, 8, 9):
        log.record(engine, v, Touched())
    assert log.since(engine, 5, 9) is None  # 6 left the bounded log
    assert log.since(engine, 6, 9) == Touched()
    # A bulk change names too many ids to keep: whoever asks across it reads in full.
    bulk = Touched()
    bulk.add(devices=(f"d{i}" for i in range(changes.TOUCHED_AT_MOST + 1)))
    assert bulk.too_many and not bulk.devices
    log.record(engine, 10, bulk)
    assert log.since(engine, 9, 10) is None
    log.record(engine, 11, Touched(devices={f"d{i}" for i in range(changes.TOUCHED_AT_MOST)}))
    log.record(engine, 12, Touched(users={"u12"}))
    assert log.since(engine, 10, 11) is not None
    assert log.since(engine, 10, 12) is None  # together over the limit
