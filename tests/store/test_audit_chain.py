"""The audit log's hash chain: every record chained at commit, tampering in the database found
and named, concurrent writers never fork it, purge behind a signed checkpoint, erasure."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, insert, select, update

from tests.conftest import both_stores
from tongdao.audit import chain
from tongdao.audit.chain import ChainReport, SigningKey, record_hash, verify_chain
from tongdao.audit.models import AUDIT_EVENTS, CHAIN_HEAD, AuditEvent
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.audit.retention import erase_personal, purge, retention_cutoff
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.errors import Conflict
from tongdao.network.models import Pop
from tongdao.runtime import Runtime
from tongdao.store import migrate

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
USER = uuid.UUID("01900000-0000-7000-8000-000000000001")


def key(runtime: Runtime) -> SigningKey:
    return SigningKey.from_settings(runtime.settings)


def verify(runtime: Runtime) -> ChainReport:
    return verify_chain(runtime.db, key(runtime))


def write(
    runtime: Runtime, n: int, *, at: datetime | None = None, user: uuid.UUID | None = None
) -> None:
    """``n`` explicit events in one transaction (a login-like record with personal fields)."""
    with runtime.db.session() as session:
        for i in range(n):
            record(
                session,
                "login",
                "user",
                user or uuid.uuid4(),
                actor=Actor(user, f"person{i}@a.example", f"198.51.100.{i % 250 + 1}"),
                after={"note": f"event {i}", "n": i},
                occurred_at=at,
            )
        session.commit()


def rows(runtime: Runtime) -> list[Any]:
    with runtime.db.engine.connect() as conn:
        return list(conn.execute(select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq)))


def tamper(runtime: Runtime, stmt: Any) -> None:
    """Change the database behind Tongdao's back (SQLAlchemy Core, own transaction)."""
    with runtime.db.engine.begin() as conn:
        conn.execute(stmt)


def failed(report: ChainReport) -> tuple[str, int | None, int | None]:
    assert not report.ok, report
    assert report.problem is not None
    return report.problem.kind, report.problem.seq, report.problem.id


# --- appending -----------------------------------------------------------------------------
@both_stores
def test_every_record_is_chained_in_commit_order(runtime: Runtime) -> None:
    write(runtime, 3)
    with runtime.db.session() as session:
        set_actor(session, Actor(None, "test"))
        pop = Pop(
            name="p",
            region="CN-BJ",
            country="CN",
            endpoint_host="198.51.100.1",
            port_min=1,
            port_max=2,
        )
        session.add(pop)
        session.flush()  # the hook's event is in the transaction, not yet chained
        assert session.scalar(select(AuditEvent.seq).where(AuditEvent.object_type == "pop")) is None
        session.commit()
    with runtime.db.session() as session:  # a rolled-back transaction leaves no trace
        write_rollback = record(session, "login", "user", uuid.uuid4())
        session.flush()
        session.rollback()
        assert write_rollback.seq is None
    chained = rows(runtime)
    assert [r.seq for r in chained] == [1, 2, 3, 4]
    assert chained[0].prev_hash == chain.GENESIS
    for before, after in itertools.pairwise(chained):
        assert after.prev_hash == before.hash
    assert chained[-1].object_type == "pop" and chained[-1].kind == "change"
    report = verify(runtime)
    assert report.ok, report
    assert (report.checked, report.head_seq, report.head_hash) == (4, 4, chained[-1].hash)


def test_savepoints_are_chained_with_their_transaction(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        record(session, "login", "user", uuid.uuid4())
        kept = session.begin_nested()
        record(session, "login", "user", uuid.uuid4())
        kept.commit()
        lost = session.begin_nested()
        gone = record(session, "login", "user", uuid.uuid4())
        lost.rollback()
        assert session.scalar(select(func.max(AuditEvent.seq))) is None  # not yet
        session.commit()
    assert gone.seq is None
    assert [r.seq for r in rows(runtime)] == [1, 2]
    assert verify(runtime).ok


@both_stores
def test_concurrent_writers_never_fork_the_chain(runtime: Runtime) -> None:
    threads_n, per_thread = 6, 5
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(per_thread):
                write(runtime, 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    chained = rows(runtime)
    assert [r.seq for r in chained] == list(range(1, threads_n * per_thread * 2 + 1))
    assert len({r.prev_hash for r in chained}) == len(chained)  # no two share a predecessor
    assert verify(runtime).ok


# --- tampering, named ----------------------------------------------------------------------
T = AUDIT_EVENTS


@both_stores
@pytest.mark.parametrize(
    "values",
    [
        {"action": "logout"},  # content
        {"occurred_at": NOW},
        {"tenant_id": uuid.uuid4()},
        {"source_ip": "203.0.113.66"},  # personal fields, through their digests
        {"actor": "someone-else@a.example"},
        {"after": {"note": "rewritten", "n": 2}},
    ],
    ids=lambda v: next(iter(v)),
)
def test_an_edited_row_is_named(runtime: Runtime, values: dict[str, Any]) -> None:
    write(runtime, 5)
    target = rows(runtime)[2]
    assert verify(runtime).ok
    tamper(runtime, update(T).where(T.c.id == target.id).values(**values))
    kind, seq, rid = failed(verify(runtime))
    assert (kind, seq, rid) == ("edited", target.seq, target.id)


@both_stores
def test_a_deleted_row_is_named(runtime: Runtime) -> None:
    write(runtime, 5)
    chained = rows(runtime)
    tamper(runtime, sa.delete(T).where(T.c.id == chained[1].id))
    report = verify(runtime)
    assert failed(report) == ("deleted", 2, None)
    assert report.problem is not None
    assert f"seq 2 deleted: the chain goes on at seq 3 (id {chained[2].id})" in (
        report.problem.message
    )


@both_stores
def test_deleting_the_newest_rows_is_found_by_the_head(runtime: Runtime) -> None:
    write(runtime, 4)
    tamper(runtime, sa.delete(T).where(T.c.seq >= 3))
    assert failed(verify(runtime)) == ("deleted", 3, None)


@both_stores
def test_reordered_rows_are_named(runtime: Runtime) -> None:
    write(runtime, 5)
    a, b = rows(runtime)[1:3]
    with runtime.db.engine.begin() as conn:  # swap seq 2 and 3
        conn.execute(update(T).where(T.c.id == a.id).values(seq=-1))
        conn.execute(update(T).where(T.c.id == b.id).values(seq=a.seq))
        conn.execute(update(T).where(T.c.id == a.id).values(seq=b.seq))
    report = verify(runtime)
    assert failed(report) == ("moved", a.seq, b.id)
    assert report.problem is not None and f"written as seq {b.seq}" in report.problem.message


@both_stores
def test_an_edit_with_its_hash_recomputed_is_named_by_the_next_link(runtime: Runtime) -> None:
    write(runtime, 5)
    target = rows(runtime)[2]
    fields = dict(target._mapping) | {"action": "logout"}
    rehashed = record_hash(fields, target.seq, target.prev_hash)
    tamper(runtime, update(T).where(T.c.id == target.id).values(action="logout", hash=rehashed))
    assert failed(verify(runtime)) == ("edited", target.seq, target.id)


@both_stores
def test_a_row_inserted_outside_the_chain_is_named(runtime: Runtime) -> None:
    write(runtime, 2)
    with runtime.db.engine.begin() as conn:
        forged = conn.execute(
            insert(T)
            .values(
                occurred_at=NOW,
                kind="event",
                actor="x",
                action="login",
                object_type="user",
            )
            .returning(T.c.id)
        ).scalar_one()
    assert failed(verify(runtime)) == ("inserted", None, forged)


# --- retention: purge behind a signed checkpoint ---------------------------------------------
def test_retention_is_six_calendar_months_and_the_margin() -> None:
    assert rule("logs.retention").param("months") == 6
    # 2026-11-22 20:00 in Shanghai: six months back is 2026-05-22, then the margin.
    assert retention_cutoff(NOW, 0) == datetime(2026, 5, 22, 12, 0, tzinfo=UTC)
    assert retention_cutoff(NOW, 7) == datetime(2026, 5, 15, 12, 0, tzinfo=UTC)


# 31 August (Shanghai) back six months is the last day of February, not the 180 days that
# would end on 3 or 4 March and purge records younger than six months.
@pytest.mark.parametrize(
    ("now", "six_months_back"),
    [
        (datetime(2026, 8, 31, 4, 0, tzinfo=UTC), datetime(2026, 2, 28, 4, 0, tzinfo=UTC)),
        (datetime(2028, 8, 31, 4, 0, tzinfo=UTC), datetime(2028, 2, 29, 4, 0, tzinfo=UTC)),
        # 31 August 23:30 in Shanghai is still 31 August there (15:30 UTC)
        (datetime(2026, 8, 31, 15, 30, tzinfo=UTC), datetime(2026, 2, 28, 15, 30, tzinfo=UTC)),
        # 1 September 01:00 in Shanghai is 31 August 17:00 UTC: Shanghai's calendar decides
        (datetime(2026, 8, 31, 17, 0, tzinfo=UTC), datetime(2026, 2, 28, 17, 0, tzinfo=UTC)),
        (datetime(2027, 3, 31, 4, 0, tzinfo=UTC), datetime(2026, 9, 30, 4, 0, tzinfo=UTC)),
    ],
)
@both_stores
def test_purge_at_month_ends_keeps_six_calendar_months(
    runtime: Runtime, now: datetime, six_months_back: datetime
) -> None:
    margin = 3
    cutoff = six_months_back - timedelta(days=margin)
    assert retention_cutoff(now, margin) == cutoff
    # A record from a day after the 180-day cut would allow is still inside six months.
    assert now - timedelta(days=180) > cutoff
    runtime.clock = lambda: now
    write(runtime, 2, at=cutoff - timedelta(days=1))
    write(runtime, 1, at=cutoff + timedelta(hours=1))
    with pytest.raises(ComplianceRefusal) as refused:
        purge(runtime.db, key(runtime), now - timedelta(days=180), now=now, margin_days=margin)
    assert refused.value.rule.id == "logs.retention"
    assert "6 calendar months and a margin of 3 days" in refused.value.message
    assert len(rows(runtime)) == 3
    report = purge(runtime.db, key(runtime), cutoff, now=now, margin_days=margin)
    assert report.purged == 2
    assert verify(runtime).problem is None


def test_purge_refuses_records_younger_than_the_retention(runtime: Runtime) -> None:
    write(runtime, 3, at=OLD)
    too_young = retention_cutoff(NOW) + timedelta(seconds=1)
    with pytest.raises(ComplianceRefusal) as refused:
        purge(runtime.db, key(runtime), too_young, now=NOW)
    assert refused.value.rule.id == "logs.retention"
    assert "logs.retention" in refused.value.message and "before" in refused.value.fields
    assert len(rows(runtime)) == 3


@both_stores
def test_purge_leaves_the_rest_verifiable(runtime: Runtime) -> None:
    write(runtime, 4, at=OLD)
    write(runtime, 2, at=OLD + timedelta(days=100))
    write(runtime, 3)  # recent
    first = purge(runtime.db, key(runtime), OLD + timedelta(days=1), now=NOW)
    assert (first.purged, first.first_seq, first.through_seq) == (4, 1, 4)
    assert first.counts == {"event": 4}
    report = verify(runtime)
    assert report.ok, report
    assert (report.first_seq, report.checkpoint_seq, report.purged_through_seq) == (5, 10, 4)
    # A second purge: the first checkpoint goes too, the second one anchors the chain.
    second = purge(runtime.db, key(runtime), retention_cutoff(NOW), now=NOW)
    assert (second.purged, second.first_seq, second.through_seq) == (2, 5, 6)
    report = verify(runtime)
    assert report.ok, report
    assert report.checkpoint_seq == second.checkpoint_seq and report.first_seq == 7
    # Nothing more to purge: no new checkpoint.
    assert purge(runtime.db, key(runtime), retention_cutoff(NOW), now=NOW).purged == 0
    # Deleting the first record after the checkpoint is a gap.
    tamper(runtime, sa.delete(T).where(T.c.seq == 7))
    assert failed(verify(runtime)) == ("deleted", 7, None)


@both_stores
@pytest.mark.parametrize("forgery", ["signature", "content"])
def test_a_forged_checkpoint_fails_verification(runtime: Runtime, forgery: str) -> None:
    write(runtime, 3, at=OLD)
    write(runtime, 1)
    done = purge(runtime.db, key(runtime), OLD + timedelta(days=1), now=NOW)
    cp = next(r for r in rows(runtime) if r.kind == "checkpoint")
    if forgery == "signature":
        change: dict[str, Any] = {"signature": "0" * 64}
    else:  # claim fewer records were purged, re-signed with a key that is not the server's
        content = dict(cp.after) | {"through_seq": 2}
        change = {"after": content, "signature": SigningKey("k1", b"\x01" * 32).sign(content)}
    tamper(runtime, update(T).where(T.c.id == cp.id).values(**change))
    report = verify(runtime)
    assert failed(report) == ("checkpoint", done.checkpoint_seq, cp.id)
    # Another data key cannot verify either.
    other = SigningKey.derive("k2", b"\x02" * 32)
    assert not verify_chain(runtime.db, other).ok


@both_stores
def test_checkpoints_still_verify_after_a_data_key_rotation(runtime: Runtime) -> None:
    write(runtime, 2, at=OLD)
    write(runtime, 1)
    old_key = runtime.settings.data_key_bytes
    purge(runtime.db, key(runtime), OLD + timedelta(days=1), now=NOW)
    rotated = SigningKey.derive("k2", b"\x02" * 32, {"k1": old_key})
    assert verify_chain(runtime.db, rotated).ok
    without_old = SigningKey.derive("k2", b"\x02" * 32)
    report = verify_chain(runtime.db, without_old)
    assert report.problem is not None and "which this server does not have" in (
        report.problem.message
    )


@both_stores
def test_purge_refuses_a_broken_chain(runtime: Runtime) -> None:
    write(runtime, 4, at=OLD)
    target = rows(runtime)[1]
    tamper(runtime, update(T).where(T.c.id == target.id).values(action="x"))
    with pytest.raises(Conflict, match=f"record seq {target.seq}"):
        purge(runtime.db, key(runtime), OLD + timedelta(days=1), now=NOW)
    assert len(rows(runtime)) == 4


def test_purge_stops_at_a_young_record_committed_among_old_ones(runtime: Runtime) -> None:
    write(runtime, 2, at=OLD)
    write(runtime, 1)  # young, seq 3
    write(runtime, 2, at=OLD)  # old again, after it in the chain
    done = purge(runtime.db, key(runtime), retention_cutoff(NOW), now=NOW)
    assert (done.purged, done.through_seq) == (2, 2)
    assert verify(runtime).ok


# --- erasure of personal fields --------------------------------------------------------------
@both_stores
def test_erasure_blanks_personal_fields_and_keeps_the_chain(runtime: Runtime) -> None:
    write(runtime, 3, at=OLD, user=USER)  # about and by USER
    write(runtime, 2, user=USER)  # young: kept, the retention comes first
    other = uuid.uuid4()
    write(runtime, 2, at=OLD, user=other)
    with runtime.db.session() as session:
        assert erase_personal(session, USER, now=NOW) == 3
        session.commit()
    by_user = [r for r in rows(runtime) if r.user_id == USER and r.kind == "event"]
    erased = [r for r in by_user if r.occurred_at < retention_cutoff(NOW)]
    assert len(erased) == 3
    for r in erased:
        assert (r.actor, r.source_ip, r.after) == (None, None, None)
        assert set(r.pi_salts) == set()  # nothing left to brute-force the digests with
    assert all(r.source_ip for r in by_user if r not in erased)
    erase = next(r for r in rows(runtime) if r.kind == "erase")
    assert erase.user_id == USER and erase.after["records"] == 3
    assert verify(runtime).ok
    # Blanking without an erase record is tampering.
    victim = next(r for r in rows(runtime) if r.user_id == other)
    tamper(runtime, update(T).where(T.c.id == victim.id).values(source_ip=None))
    assert failed(verify(runtime)) == ("edited", victim.seq, victim.id)


def test_erasure_refuses_records_younger_than_the_retention(runtime: Runtime) -> None:
    with runtime.db.session() as session, pytest.raises(ComplianceRefusal) as refused:
        erase_personal(session, USER, now=NOW, before=NOW - timedelta(days=1))
    assert refused.value.rule.id == "logs.retention"


# --- the migration chains what was there before --------------------------------------------
@both_stores
def test_the_migration_chains_existing_rows(store_url: str, runtime: Runtime) -> None:
    migrate.downgrade(store_url, "0006_declared_networks")
    old = sa.table(
        "audit_events",
        sa.column("occurred_at", sa.DateTime()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("object_type", sa.String()),
        sa.column("object_id", sa.String()),
        sa.column("after", sa.JSON()),
        sa.column("source_ip", sa.String()),
    )
    user = uuid.uuid4()
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(old),
                [
                    {
                        "occurred_at": OLD + timedelta(minutes=i),
                        "actor": "noc@operator.example",
                        "action": action,
                        "object_type": "user",
                        "object_id": str(user),
                        "after": {"i": i},
                        "source_ip": "192.0.2.1",
                    }
                    for i, action in enumerate(("create", "login", "update"))
                ],
            )
    finally:
        engine.dispose()
    migrate.upgrade(store_url)
    chained = rows(runtime)
    assert [(r.seq, r.kind, r.user_id) for r in chained] == [
        (1, "change", user),
        (2, "event", user),
        (3, "change", user),
    ]
    assert verify(runtime).ok
    write(runtime, 1)  # and appends go on from the migrated head
    assert verify(runtime).ok
    with runtime.db.engine.connect() as conn:
        assert conn.execute(select(CHAIN_HEAD.c.seq)).scalar_one() == 4
        assert conn.execute(select(func.count()).select_from(T)).scalar_one() == 4
