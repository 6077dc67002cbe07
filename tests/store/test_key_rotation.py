"""Data-key rotation: every sealed value is re-encrypted under the new key, in committed
batches, resumably and idempotently; the old key is needed only until it is done."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from tests.conftest import TEST_DATA_KEY, both_stores, make_settings
from tests.support.world import World
from tongdao.api.app import create_app
from tongdao.audit.models import AuditEvent
from tongdao.cli import app as cli_app
from tongdao.config import load_settings
from tongdao.crypto import FieldCipher
from tongdao.errors import ConfigurationError
from tongdao.privacy.keys import RotationError, count_by_key, rotate
from tongdao.runtime import Runtime
from tongdao.tenancy.models import User

KEY2 = base64.b64encode(os.urandom(32)).decode()
KEY0 = base64.b64encode(os.urandom(32)).decode()


class Stop(Exception):
    """Stands for a rotation killed half-way."""


def runtime_with(store_url: str, tmp_path: Path, key: str, key_id: str, previous: str) -> Runtime:
    settings = make_settings(
        tmp_path,
        store_url,
        data_key=key,
        data_key_id=key_id,
        previous_data_keys=previous or None,
    )
    return Runtime.from_settings(settings)


def sealed(rt: Runtime) -> dict[uuid.UUID, tuple[str | None, str | None]]:
    with rt.db.session() as session:
        rows = session.execute(select(User.id, User.id_number_sealed, User.totp_secret_sealed))
        return {r[0]: (r[1], r[2]) for r in rows}


def opened(rt: Runtime) -> dict[uuid.UUID, tuple[str | None, str | None]]:
    def o(value: str | None, purpose: str) -> str | None:
        return None if value is None else rt.cipher.open(value, purpose)

    return {
        uid: (o(n, "user.id_number"), o(t, "user.totp_secret"))
        for uid, (n, t) in sealed(rt).items()
    }


@both_stores
def test_rotation_reencrypts_every_sealed_value(
    world: World, store_url: str, tmp_path: Path
) -> None:
    # A TOTP secret next to the ID numbers the world's tenant users have.
    resp = world.client.post("/api/v1/auth/totp", headers=world.a.employee.headers)
    assert resp.status_code == 200, resp.text
    before = opened(world.runtime)
    assert sum(n is not None for n, _ in before.values()) == 4
    assert sum(t is not None for _, t in before.values()) == 1
    assert count_by_key(world.runtime.db) == {"k1": 5}

    new = runtime_with(store_url, tmp_path, KEY2, "k2", f"k1:{TEST_DATA_KEY}")
    try:
        # Killed after its first committed batch: that batch stays done.
        calls: list[int] = []

        def stop_once(column: str, done: int) -> None:
            calls.append(done)
            if len(calls) == 1:
                raise Stop

        with pytest.raises(Stop):
            rotate(new.db, new.cipher, batch_size=2, progress=stop_once)
        assert count_by_key(new.db) == {"k1": 3, "k2": 2}
        report = rotate(new.db, new.cipher, batch_size=2)
        moved = {column: n for column, n in report.reencrypted.items() if n}
        assert moved == {"users.id_number_sealed": 2, "users.totp_secret_sealed": 1}
        assert report.by_key == {"k2": 5} and report.remaining == 0
        assert opened(new) == before  # same plaintexts, new ciphertexts
        # Idempotent: nothing left to do, nothing written, no second audit event.
        snapshot = sealed(new)
        again = rotate(new.db, new.cipher)
        assert sum(again.reencrypted.values()) == 0
        assert sealed(new) == snapshot
        with new.db.session() as session:
            events = session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "rotate_data_key")
                .order_by(AuditEvent.id)
            ).all()
        # The run that stopped is on record too, as not completed.
        assert [e.after["completed"] for e in events if e.after] == [False, True]
        assert all(e.object_id == "k2" for e in events)
    finally:
        new.db.dispose()

    # The old key is no longer needed: a server with the new key alone opens everything.
    alone = runtime_with(store_url, tmp_path, KEY2, "k2", "")
    try:
        assert opened(alone) == before
        with TestClient(create_app(alone)) as client:
            emp = world.a.employee
            url = f"/api/v1/tenants/{world.a.id}/users/{emp.user_id}/personal-data"
            resp = client.get(url, headers=emp.headers)
            assert resp.status_code == 200, resp.text
            assert resp.json()["identity"]["id_number"] == before[emp.user_id][0]
    finally:
        alone.db.dispose()


def test_a_value_under_an_unknown_key_stops_the_rotation_until_its_key_is_given(
    world: World, store_url: str, tmp_path: Path
) -> None:
    stray = world.a.admin.user_id
    old = FieldCipher("k0", {"k0": base64.b64decode(KEY0)})
    with world.runtime.db.session() as session:
        session.execute(
            update(User)
            .where(User.id == stray)
            .values(id_number_sealed=old.seal("E7654321", "user.id_number"))
        )
        session.commit()
    new = runtime_with(store_url, tmp_path, KEY2, "k2", f"k1:{TEST_DATA_KEY}")
    try:
        with pytest.raises(RotationError, match="k0") as info:
            rotate(new.db, new.cipher)
        assert "TONGDAO_PREVIOUS_DATA_KEYS" in str(info.value)
        assert count_by_key(new.db).get("k0") == 1
    finally:
        new.db.dispose()
    both = runtime_with(store_url, tmp_path, KEY2, "k2", f"k1:{TEST_DATA_KEY},k0:{KEY0}")
    try:
        assert rotate(both.db, both.cipher).remaining == 0
        assert opened(both)[stray][0] == "E7654321"
    finally:
        both.db.dispose()


def test_the_command_checks_and_rotates(world: World, store_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env: dict[str, Any] = {
        "TONGDAO_ENV": "test",
        "TONGDAO_DATA_DIR": str(tmp_path),
        "TONGDAO_DATABASE_URL": store_url,
        "TONGDAO_DATA_KEY": KEY2,
        "TONGDAO_DATA_KEY_ID": "k2",
        "TONGDAO_PREVIOUS_DATA_KEYS": f"k1:{TEST_DATA_KEY}",
    }
    check = runner.invoke(cli_app, ["admin", "rotate-data-key", "--check"], env=env)
    assert check.exit_code == 1, check.output
    assert "key k1: 4 value(s)" in check.stdout
    done = runner.invoke(cli_app, ["admin", "rotate-data-key", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert '"remaining_under_old_keys": 0' in done.stdout
    check = runner.invoke(cli_app, ["admin", "rotate-data-key", "--check"], env=env)
    assert check.exit_code == 0, check.output
    assert "previous keys may be dropped" in check.stdout
    # Misconfiguration is refused before anything is touched.
    bad = runner.invoke(
        cli_app,
        ["admin", "rotate-data-key"],
        env={**env, "TONGDAO_PREVIOUS_DATA_KEYS": "k2:" + KEY2},
    )
    assert bad.exit_code == 2 and "new id" in bad.output
    with world.runtime.db.session() as session:
        assert session.execute(text("SELECT count(*) FROM users")).scalar_one() > 0


@pytest.mark.parametrize(
    ("previous", "problem"),
    [
        ("k1", "<key id>:<base64 key>"),
        ("k:1:" + KEY0, "key 'k'"),
        (f"k0:{KEY0},k0:{KEY0}", "twice"),
        ("k0:not-base64!", "key 'k0'"),
        (f"k1:{KEY0}", "new id"),
    ],
    # ids without the random keys: every xdist worker must collect the same test names
    ids=["no-colon", "colon-in-id", "twice", "not-base64", "current-id"],
)
def test_previous_keys_are_checked(previous: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem.replace("<", ".").replace(">", ".")):
        load_settings(env="test", data_key=KEY2, data_key_id="k1", previous_data_keys=previous)
    with pytest.raises(ConfigurationError):
        load_settings(env="test", data_key=KEY2, data_key_id="bad:id")
