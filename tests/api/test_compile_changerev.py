"""Attacks on the compiler's kept device rows (tongdao.gateway.service._DeviceRows) and the
change log they are patched from (tongdao.gateway.changes.LOG): after each write, a
compilation from what is kept must equal one from nothing, on both stores."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from tests.api.test_compile_incremental import _check, _compile, _peer_keys
from tests.api.test_gateway import activate, device, enrol, make_pop
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.gateway import changes, service
from tongdao.gateway.changes import current_version
from tongdao.network.models import Device, DeviceState
from tongdao.runtime import Runtime


@both_stores
def test_a_savepoint_released_in_a_transaction_rolled_back_logs_nothing(
    world: World, runtime: Runtime
) -> None:
    """A savepoint's release is not a commit: a version logged then (and the transaction
    rolled back) is committed next by someone else with other writes, which the kept rows
    would then miss (here: a device disabled by another replica stays a peer)."""
    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    victim, other = device(world), device(world)
    _check(runtime, pop)
    with runtime.db.session(write=False) as session:
        before = current_version(session)
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        with session.begin_nested():
            row = session.get(Device, uuid.UUID(other["id"]))
            assert row is not None
            row.name = "renamed"
        session.rollback()
    with runtime.db.session(write=False) as session:
        assert current_version(session) == before
    assert changes.LOG.since(runtime.db.engine.pool, before, before + 1) is None
    # Another replica (statements past this process's hooks) commits the next version.
    with runtime.db.engine.begin() as conn:
        conn.execute(
            update(Device)
            .where(Device.id == uuid.UUID(victim["id"]))
            .values(state=DeviceState.DISABLED)
        )
        conn.execute(changes._BUMP)
    assert victim["public_key"] not in _peer_keys(_check(runtime, pop))


@both_stores
def test_a_savepoint_rolled_back_keeps_the_version_bumped_before_it(
    world: World, runtime: Runtime
) -> None:
    """The version bumped by the transaction before a savepoint that rolls back is still
    committed with it: logged (with what it wrote) and the feed moved."""
    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    victim, other = device(world), device(world)
    _check(runtime, pop)
    with runtime.db.session(write=False) as session:
        before = current_version(session)
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        row = session.get(Device, uuid.UUID(victim["id"]))
        assert row is not None
        row.state = DeviceState.DISABLED
        session.flush()
        nested = session.begin_nested()
        renamed = session.get(Device, uuid.UUID(other["id"]))
        assert renamed is not None
        renamed.name = "renamed"
        session.flush()
        nested.rollback()
        seen = changes.FEED.generation
        session.commit()
    assert changes.FEED.generation > seen  # long polls woken
    with runtime.db.session(write=False) as session:
        after = current_version(session)
    touched = changes.LOG.since(runtime.db.engine.pool, before, after)
    assert touched is not None and victim["id"] in touched.devices
    assert victim["public_key"] not in _peer_keys(_check(runtime, pop))


@both_stores
def test_a_pop_deleted_rehomes_its_devices_in_the_kept_rows(world: World, runtime: Runtime) -> None:
    """Deleting a PoP sets its devices' PoP to none in the database (ON DELETE SET NULL), not
    through the session: those devices are then served by every PoP in China."""
    bj, sh = make_pop(world, "bj"), make_pop(world, "sh", "CN-SH", "198.51.100.11")
    enrol(world, bj)
    activate(world, world.a.id)
    device(world)
    homed = device(world, pop_id=sh)
    assert homed["public_key"] not in _peer_keys(_check(runtime, bj))
    resp = world.client.delete(f"/api/v1/pops/{sh}", headers=world.admin.headers)
    assert resp.status_code == 204, resp.text
    assert homed["public_key"] in _peer_keys(_check(runtime, bj))


@both_stores
def test_every_write_path_leaves_the_kept_rows_equal_to_a_compilation_from_nothing(
    world: World, runtime: Runtime
) -> None:
    """Write after write through the API (devices created, re-keyed, re-homed, disabled,
    revoked, deleted; their user disabled and enabled; the tenant suspended and resumed; a
    PoP deleted), each PoP's state compiled from what is kept equals one from nothing."""
    from tests.api.test_compile_incremental import _compile
    from tongdao.testing.keys import public_key

    bj, sh = make_pop(world, "bj"), make_pop(world, "sh", "CN-SH", "198.51.100.11")
    gone = make_pop(world, "gz", "CN-GD", "198.51.100.12")
    enrol(world, bj)
    activate(world, world.a.id)
    t = world.a.id
    admin, officer = world.a.admin.headers, world.operators["compliance_officer"].headers
    devices = [device(world), device(world), device(world, pop_id=sh), device(world, pop_id=gone)]
    employee = world.a.employee.user_id

    def patch(path: str, body: dict[str, object], headers: dict[str, str] = admin) -> None:
        resp = world.client.patch(f"/api/v1/{path}", json=body, headers=headers)
        assert resp.status_code == 200, resp.text

    def same() -> None:
        pops = (bj, sh)
        for p in pops:  # allocations for tenants newly served, committed first
            _compile(runtime, p, from_nothing=False)
        kept = [_compile(runtime, p, from_nothing=False) for p in pops]
        fresh = [_compile(runtime, p, from_nothing=True) for p in pops]
        assert kept == fresh
        for p in pops:  # leave rows kept at this version for the next step
            _compile(runtime, p, from_nothing=False)

    same()
    steps: list[tuple[str, dict[str, object], dict[str, str]]] = [
        (f"tenants/{t}/devices/{devices[0]['id']}", {"public_key": public_key()}, admin),
        (f"tenants/{t}/devices/{devices[1]['id']}", {"pop_id": sh}, admin),
        (f"tenants/{t}/devices/{devices[2]['id']}", {"pop_id": bj}, admin),
        (f"tenants/{t}/devices/{devices[0]['id']}", {"state": "disabled"}, admin),
        (f"tenants/{t}/devices/{devices[0]['id']}", {"state": "active"}, admin),
        (f"tenants/{t}/users/{employee}", {"state": "disabled"}, admin),
        (f"tenants/{t}/users/{employee}", {"state": "active"}, admin),
        (f"tenants/{t}", {"state": "suspended"}, officer),
        (f"tenants/{t}", {"state": "active"}, officer),
        (f"tenants/{t}/devices/{devices[1]['id']}", {"state": "revoked"}, admin),
    ]
    for path, body, headers in steps:
        patch(path, body, headers)
        same()
    added = device(world)
    same()
    resp = world.client.delete(f"/api/v1/tenants/{t}/devices/{added['id']}", headers=admin)
    assert resp.status_code == 204, resp.text
    same()
    resp = world.client.delete(f"/api/v1/pops/{gone}", headers=world.admin.headers)
    assert resp.status_code == 204, resp.text
    same()


@both_stores
def test_a_compilation_inside_a_transaction_that_rolls_back_keeps_nothing_of_it(
    world: World, runtime: Runtime
) -> None:
    """Compiled in a transaction that wrote a device (and so bumped the version) but rolled
    back: the rows it read are not the store's at that version, which the next commit takes."""
    from tongdao.network.models import Pop
    from tongdao.runtime import Ctx

    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    disabled, other = device(world), device(world)
    _set(runtime, disabled["id"], state=DeviceState.DISABLED)
    _check(runtime, pop)
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        row = session.get(Device, uuid.UUID(disabled["id"]))
        assert row is not None
        row.state = DeviceState.ACTIVE
        session.flush()
        here = session.get(Pop, uuid.UUID(pop))
        assert here is not None
        inside = service.compile_desired(
            Ctx(session=session, runtime=runtime), here, current_version(session)
        )
        assert disabled["public_key"] in _peer_keys(inside)
        session.rollback()
    _set(runtime, other["id"], name="renamed")  # commits the version the rollback gave up
    assert disabled["public_key"] not in _peer_keys(_check(runtime, pop))


def _set(runtime: Runtime, device_id: str, **values: object) -> None:
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        row = session.get(Device, uuid.UUID(device_id))
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)
        session.commit()


@both_stores
def test_a_compilation_after_another_data_plane_write_rolled_back_keeps_nothing_of_it(
    world: World, runtime: Runtime
) -> None:
    """The same with no device written: the transaction's version (read inside it) is taken
    by the next commit, a device disabled, which the rows kept at that version would miss."""
    from tongdao.network.models import Pop
    from tongdao.runtime import Ctx

    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    victim = device(world)
    _check(runtime, pop)
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        here = session.get(Pop, uuid.UUID(pop))
        assert here is not None
        here.endpoint_host = "198.51.100.99"
        session.flush()
        service.compile_desired(
            Ctx(session=session, runtime=runtime), here, current_version(session)
        )
        session.rollback()
    _set(runtime, victim["id"], state=DeviceState.DISABLED)
    assert victim["public_key"] not in _peer_keys(_check(runtime, pop))


@both_stores
def test_a_session_closed_unfinished_bumps_again_in_its_next_transaction(
    world: World, runtime: Runtime
) -> None:
    """Closed without commit or rollback (no rollback event): its bump is gone with the
    transaction, so the next transaction of the same session bumps (and logs) its own."""
    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    victim, other = device(world), device(world)
    _check(runtime, pop)
    with runtime.db.session(write=False) as reading:
        before = current_version(reading)
    session = runtime.db.new_session()
    try:
        set_actor(session, SYSTEM)
        row = session.get(Device, uuid.UUID(other["id"]))
        assert row is not None
        row.name = "renamed"
        session.flush()
        session.close()
        set_actor(session, SYSTEM)
        row = session.get(Device, uuid.UUID(victim["id"]))
        assert row is not None
        row.state = DeviceState.DISABLED
        session.commit()
    finally:
        session.close()
    with runtime.db.session(write=False) as reading:
        assert current_version(reading) == before + 1
    assert victim["public_key"] not in _peer_keys(_check(runtime, pop))


@both_stores
def test_a_write_the_log_cannot_see_is_served_at_most_until_the_next_full_read(
    world: World, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQL typed into a running store (no version bump, past the session's hooks) is not in
    the log; the kept rows are read in full again once they are ``full_every`` old."""
    pop = make_pop(world, "bj")
    enrol(world, pop)
    activate(world, world.a.id)
    victim, other = device(world), device(world)
    _check(runtime, pop)
    with runtime.db.engine.begin() as conn:  # by hand: no bump, no hook
        conn.execute(
            update(Device)
            .where(Device.id == uuid.UUID(victim["id"]))
            .values(state=DeviceState.DISABLED)
        )
    _set(runtime, other["id"], name="renamed")  # a logged change of another device
    kept = _compile(runtime, pop, from_nothing=False)
    assert victim["public_key"] in _peer_keys(kept)  # within full_every: still served
    monkeypatch.setattr(service._DEVICE_ROWS, "_full_every", 0.0)
    _set(runtime, other["id"], name="renamed again")
    assert victim["public_key"] not in _peer_keys(_compile(runtime, pop, from_nothing=False))
