"""The tamper-evident audit log: a hash chain over every audit record, and its verification.

**Chain.** Every :class:`~tongdao.audit.models.AuditEvent` gets, when its transaction
commits, the next ``seq`` (1, 2, 3, ... without gaps), the ``prev_hash`` of the record before
it and its own ``hash`` = SHA-256 of a canonical serialisation (sorted-key, compact JSON) of
``{"v": 1, "seq", "prev_hash", "record": {<hashed fields>}}``. The chain head (last seq and
hash) lives in the one-row table ``audit_chain_head``; a ``before_commit`` hook locks it
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite write transactions are serialised by
``BEGIN IMMEDIATE``), numbers the transaction's records and moves the head, so two concurrent
transactions never fork the chain and the order of seqs is the order of commits. The lock is
the last one a transaction takes and is held only until its commit, so it cannot take part in
a lock cycle with the domain's locks (IPAM, config version, usage reports).

**Personal fields and erasure — the contract with the user-erase code.** The personal columns
(:data:`PERSONAL_FIELDS`: ``actor``, ``source_ip``, ``source_port``, ``before``, ``after``) are
not hashed directly: each record stores a random salt per field (``pi_salts``, not hashed) and
``sha256(salt ‖ field ‖ 0x00 ‖ canonical value)`` per field (``pi_digests``, hashed). To
erase, call :func:`tongdao.audit.retention.erase_personal` in the erasing transaction: it
blanks the fields (all personal fields of records *about* the user, ``user_id``; the
who-fields ``actor``/``source_ip``/``source_port`` of records the user *made*,
``actor_id``), drops their salts (so the remaining digests cannot be brute-forced back to an
address or an email), and appends a chained ``erase`` record naming the user. Verification
recomputes the digest of every field that still has its salt; a blanked field without a salt
passes only when a later ``erase`` record names the record's ``user_id`` or ``actor_id``, so
blanking is itself tamper-evident. Records younger than rule ``logs.retention`` are never
erased (PIPL art. 47: the retention the Cybersecurity Law requires comes first); never blank
personal columns with plain UPDATEs: ``tongdao audit verify`` reports them as edited.

**Checkpoints.** A purge (:mod:`tongdao.audit.retention`) deletes a prefix of the chain and
appends a ``checkpoint`` record whose content (the last purged seq and hash, counts, time) is
signed with HMAC-SHA256 under a key derived (HKDF) from the data key. Verification starts at
the latest checkpoint: its signature must hold, and the first remaining record must follow
the seq and hash it names.

**Verification** (:func:`verify_chain`) walks the records in seq order in one snapshot and
names the first record that was edited (content or personal field), deleted (a gap, or the
head is ahead of the last record), moved (its hash holds only at another seq), inserted
outside the chain (no seq), or a checkpoint whose signature is wrong. Limits: someone who can
rewrite the database *and* recompute every later hash is caught only against an anchor
outside the rewritten part: a signed checkpoint, or the head seq and hash that
``tongdao audit verify`` prints and every export manifest records; keep those.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, Field
from sqlalchemy import Connection, bindparam, event, func, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tongdao.audit.models import AUDIT_EVENTS, CHAIN_HEAD, AuditEvent
from tongdao.config import Settings
from tongdao.errors import TongdaoError
from tongdao.store.engine import Database

log = logging.getLogger("tongdao.audit.chain")

HASH_VERSION = 1
GENESIS = "0" * 64
KINDS = ("change", "event", "session", "export", "erase", "checkpoint")
PERSONAL_FIELDS = ("actor", "source_ip", "source_port", "before", "after")
WHO_FIELDS = ("actor", "source_ip", "source_port")
HASHED_FIELDS = (
    "id",
    "occurred_at",
    "kind",
    "action",
    "object_type",
    "object_id",
    "tenant_id",
    "actor_id",
    "user_id",
    "device_id",
    "pop_id",
    "started_at",
    "ended_at",
    "rx_bytes",
    "tx_bytes",
    "signature",
    "pi_digests",
)
_PENDING = "tongdao.audit_unchained"
_REORDER_WINDOW = 64  # seqs either side tried when a record's hash fails at its place


class ChainError(TongdaoError):
    """The chain cannot be appended to (its head row is missing)."""


# --- canonical form ----------------------------------------------------------------------
def plain(value: Any) -> Any:
    """A JSON-ready value that reads back the same from SQLite and PostgreSQL."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat(timespec="microseconds")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    raise TypeError(f"{type(value).__name__} has no canonical form in the audit chain")


def canonical(value: Any) -> bytes:
    """Sorted-key, compact, ASCII JSON: the bytes that are hashed and signed."""
    return json.dumps(
        plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def field_digest(salt: str, field: str, value: Any) -> str:
    data = bytes.fromhex(salt) + field.encode() + b"\x00" + canonical(value)
    return hashlib.sha256(data).hexdigest()


def seal_personal(ev: AuditEvent) -> None:
    """Give a new record its per-field salts and digests of the personal fields."""
    salts: dict[str, str] = {}
    digests: dict[str, str] = {}
    for name in PERSONAL_FIELDS:
        salt = os.urandom(16).hex()
        salts[name] = salt
        digests[name] = field_digest(salt, name, getattr(ev, name))
    ev.pi_salts = salts
    ev.pi_digests = digests


def record_hash(fields: Mapping[Any, Any], seq: int, prev_hash: str) -> str:
    """The hash of a record at ``seq`` after ``prev_hash`` (``fields``: its hashed fields)."""
    doc = {
        "v": HASH_VERSION,
        "seq": seq,
        "prev_hash": prev_hash,
        "record": {name: fields[name] for name in HASHED_FIELDS},
    }
    return hashlib.sha256(canonical(doc)).hexdigest()


def _fields(ev: AuditEvent) -> dict[str, Any]:
    return {name: getattr(ev, name) for name in (*HASHED_FIELDS, *PERSONAL_FIELDS)}


# --- appending -----------------------------------------------------------------------------
def track(session: Session, ev: AuditEvent) -> None:
    """Note a new record of this transaction; it is chained when the transaction commits."""
    session.info.setdefault(_PENDING, []).append(ev)


def append(session: Session, events: Sequence[AuditEvent]) -> None:
    """Number and hash ``events`` (already flushed) after the chain head, under its lock.

    The chain fields go out in one Core UPDATE (executemany) and are set on the objects as
    their committed values, rather than through another ORM flush (issue 10: every write
    request pays for this under the write lock).
    """
    conn = session.connection()
    head = conn.execute(_HEAD_FOR_UPDATE).one_or_none()
    if head is None:
        raise ChainError("the audit chain head row is missing; run `tongdao admin migrate`")
    seq, prev = int(head.seq), str(head.hash)
    rows: list[dict[str, Any]] = []
    for ev in sorted(events, key=lambda e: e.id):
        seq += 1
        digest = record_hash(_fields(ev), seq, prev)
        rows.append({"b_id": ev.id, "b_seq": seq, "b_prev": prev, "b_hash": digest})
        set_committed_value(ev, "seq", seq)
        set_committed_value(ev, "prev_hash", prev)
        set_committed_value(ev, "hash", digest)
        prev = digest
    conn.execute(_CHAIN_FIELDS, rows)
    conn.execute(_MOVE_HEAD, {"b_seq": seq, "b_hash": prev})


_HEAD_FOR_UPDATE = (
    select(CHAIN_HEAD.c.seq, CHAIN_HEAD.c.hash).where(CHAIN_HEAD.c.id == 1).with_for_update()
)
_CHAIN_FIELDS = (
    update(AUDIT_EVENTS)
    .where(AUDIT_EVENTS.c.id == bindparam("b_id"))
    .values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"))
)
_MOVE_HEAD = (
    update(CHAIN_HEAD)
    .where(CHAIN_HEAD.c.id == 1)
    .values(seq=bindparam("b_seq"), hash=bindparam("b_hash"))
)


@event.listens_for(Session, "before_commit")
def _chain_on_commit(session: Session) -> None:
    session.flush()  # the last changes, and the events the flush hook writes for them
    if session.in_nested_transaction():
        return  # a savepoint: chained when the outermost transaction commits
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    events = [ev for ev in pending if inspect(ev).persistent and ev.seq is None]
    if events:
        append(session, events)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the transaction goes on
    left = session.info.pop(_PENDING, None)
    if left:  # another before_commit hook wrote events after ours: they are not chained
        log.error("%d audit events committed outside the chain", len(left))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's events just stop being persistent
        session.info.pop(_PENDING, None)


# --- checkpoint signing ----------------------------------------------------------------------
@dataclass(frozen=True)
class SigningKey:
    """The HMAC keys of checkpoints, derived (HKDF) from the data keys: the current one signs,
    previous ones (after a data-key rotation) still verify what they signed."""

    key_id: str
    secret: bytes
    previous: Mapping[str, bytes] = field(default_factory=dict)

    @staticmethod
    def _derive(data_key: bytes) -> bytes:
        hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"tongdao audit checkpoint v1")
        return hkdf.derive(data_key)

    @classmethod
    def derive(
        cls, key_id: str, data_key: bytes, previous: Mapping[str, bytes] | None = None
    ) -> SigningKey:
        older = {kid: cls._derive(key) for kid, key in (previous or {}).items() if kid != key_id}
        return cls(key_id, cls._derive(data_key), older)

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKey:
        keys = settings.data_keys
        return cls.derive(settings.data_key_id, keys[settings.data_key_id], keys)

    def sign(self, content: Mapping[str, Any]) -> str:
        return hmac.new(self.secret, canonical(content), hashlib.sha256).hexdigest()

    def check(self, content: Mapping[str, Any] | None, signature: str | None) -> str | None:
        """None when the signature holds, else why not."""
        if not isinstance(content, Mapping) or not signature:
            return "it has no signed content"
        key_id = content.get("key_id")
        secret = self.secret if key_id == self.key_id else self.previous.get(str(key_id))
        if secret is None:
            return f"it is signed with key {key_id!r}, which this server does not have"
        expected = hmac.new(secret, canonical(content), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "its signature is wrong (forged or edited)"
        return None


# --- verification --------------------------------------------------------------------------
ProblemKind = Literal["edited", "deleted", "moved", "inserted", "checkpoint", "head"]


class ChainProblem(BaseModel):
    kind: ProblemKind = Field(description="edited | deleted | moved | inserted | checkpoint | head")
    seq: int | None = Field(description="the seq of the first bad record (or of the missing one)")
    id: int | None = Field(description="its id, when it is still there")
    message: str


class ChainReport(BaseModel):
    ok: bool
    checked: int = Field(description="records whose hash was recomputed")
    first_seq: int | None = Field(description="the first record still kept")
    last_seq: int | None
    head_seq: int = Field(description="the chain head: the last seq ever written")
    head_hash: str
    checkpoint_seq: int | None = Field(description="the latest checkpoint (purge), if any")
    purged_through_seq: int | None = Field(description="records up to here were purged")
    problem: ChainProblem | None = None


@contextmanager
def snapshot(db: Database) -> Iterator[Session]:
    """A session that reads one consistent snapshot (REPEATABLE READ on PostgreSQL; on SQLite
    a read transaction in WAL mode is one already)."""
    with db.engine.connect() as conn:
        if not db.is_sqlite:
            conn.execution_options(isolation_level="REPEATABLE READ")
        with Session(bind=conn) as session:
            try:
                yield session
            finally:
                session.rollback()


def verify_chain(db: Database, key: SigningKey) -> ChainReport:
    """Walk the whole chain in one snapshot; see the module's docstring."""
    with snapshot(db) as session:
        return Walk(session, key).run()


def _problem(kind: ProblemKind, seq: int | None, id_: int | None, message: str) -> ChainProblem:
    return ChainProblem(kind=kind, seq=seq, id=id_, message=message)


class Walk:
    """One verification pass (kept as an object so that each check reads on its own)."""

    def __init__(self, session: Session, key: SigningKey) -> None:
        self.session = session
        self.key = key
        self.table = AUDIT_EVENTS
        self.checked = 0
        self.first_seq: int | None = None
        self.last: tuple[int, int, str] | None = None  # seq, id, hash of the last good record

    def run(self) -> ChainReport:
        t = self.table
        head_table = CHAIN_HEAD
        head = self.session.execute(
            select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
        ).one_or_none()
        self.head_seq, self.head_hash = (int(head.seq), str(head.hash)) if head else (0, "")
        self.checkpoint_seq: int | None = None
        self.purged_through: int | None = None
        if head is None:
            return self.report(_problem("head", None, None, "the chain head row is missing"))
        start = self.start()
        if isinstance(start, ChainProblem):
            return self.report(start)
        start_seq, start_hash = start
        self.erasures: dict[uuid.UUID, int] = {
            user: int(seq)
            for user, seq in self.session.execute(
                select(t.c.user_id, func.max(t.c.seq))
                .where(t.c.kind == "erase", t.c.seq.is_not(None), t.c.user_id.is_not(None))
                .group_by(t.c.user_id)
            )
        }
        rows = self.session.execute(
            select(t)
            .where(t.c.seq.is_not(None))
            .order_by(t.c.seq)
            .execution_options(yield_per=2000)
        )
        try:
            problem = self.walk(rows, start_seq, start_hash)
        finally:
            rows.close()  # a server-side cursor on PostgreSQL, maybe left mid-way
        if problem is not None:
            return self.report(problem)
        prev_hash = self.last[2] if self.last else start_hash
        last_seq = self.last[0] if self.last else start_seq - 1
        if self.head_seq > last_seq:
            gap = (
                f"seq {last_seq + 1}"
                if self.head_seq == last_seq + 1
                else f"seqs {last_seq + 1}..{self.head_seq}"
            )
            return self.report(
                _problem(
                    "deleted",
                    last_seq + 1,
                    None,
                    f"record {gap} deleted from the end: the chain head is at seq {self.head_seq}",
                )
            )
        if self.head_hash != prev_hash:
            seq_id = self.last or (last_seq, None, "")
            return self.report(
                _problem(
                    "edited",
                    seq_id[0],
                    seq_id[1],
                    f"record seq {seq_id[0]} (id {seq_id[1]}) was edited and its hash "
                    "recomputed: it no longer matches the chain head",
                )
            )
        orphan = self.session.scalar(
            select(t.c.id).where(t.c.seq.is_(None)).order_by(t.c.id).limit(1)
        )
        if orphan is not None:
            return self.report(
                _problem(
                    "inserted",
                    None,
                    int(orphan),
                    f"record id {orphan} is not in the chain (it has no seq): inserted "
                    "outside Tongdao",
                )
            )
        return self.report(None)

    def walk(self, rows: Iterable[Any], start_seq: int, start_hash: str) -> ChainProblem | None:
        """Check the records in seq order; the first problem, if any."""
        expected, prev_hash = start_seq, start_hash
        prev: tuple[int, int] | None = None  # seq, id of the previous record
        for row in rows:
            m = row._mapping
            seq, rid = int(m["seq"]), int(m["id"])
            if seq < start_seq:
                return _problem(
                    "inserted",
                    seq,
                    rid,
                    f"record seq {seq} (id {rid}) is older than what checkpoint seq "
                    f"{self.checkpoint_seq} purged (through seq {start_seq - 1}): inserted",
                )
            if seq > self.head_seq:
                return _problem(
                    "inserted",
                    seq,
                    rid,
                    f"record seq {seq} (id {rid}) is beyond the chain head (seq "
                    f"{self.head_seq}): inserted outside the chain",
                )
            if seq > expected:
                gap = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
                return _problem(
                    "deleted",
                    expected,
                    None,
                    f"record {gap} deleted: the chain goes on at seq {seq} (id {rid})",
                )
            problem = self.check(m, seq, rid, prev_hash, prev, start_seq)
            if problem is not None:
                return problem
            self.checked += 1
            if self.first_seq is None:
                self.first_seq = seq
            self.last = (seq, rid, str(m["hash"]))
            prev, prev_hash, expected = (seq, rid), str(m["hash"]), seq + 1
        return None

    def start(self) -> tuple[int, str] | ChainProblem:
        """Where the walk starts: after the latest checkpoint, or at seq 1."""
        t = self.table
        cp = self.session.execute(
            select(t.c.id, t.c.seq, t.c.after, t.c.signature)
            .where(t.c.kind == "checkpoint", t.c.seq.is_not(None))
            .order_by(t.c.seq.desc())
            .limit(1)
        ).one_or_none()
        if cp is None:
            return 1, GENESIS
        self.checkpoint_seq = int(cp.seq)
        why = self.key.check(cp.after, cp.signature)
        if why is not None:
            return _problem(
                "checkpoint", cp.seq, cp.id, f"checkpoint seq {cp.seq} (id {cp.id}): {why}"
            )
        through = int(cp.after["through_seq"])
        self.purged_through = through
        return through + 1, str(cp.after["through_hash"])

    def check(
        self,
        m: Mapping[Any, Any],
        seq: int,
        rid: int,
        prev_hash: str,
        prev: tuple[int, int] | None,
        start_seq: int,
    ) -> ChainProblem | None:
        try:
            computed = record_hash(m, seq, m["prev_hash"])
        except (TypeError, ValueError):
            computed = None
        if computed != m["hash"]:
            original = self.original_seq(m, seq)
            if original is not None:
                return _problem(
                    "moved",
                    seq,
                    rid,
                    f"record seq {seq} (id {rid}) was written as seq {original}: records were "
                    "reordered (or one before it deleted and the rest renumbered)",
                )
            return _problem(
                "edited",
                seq,
                rid,
                f"record seq {seq} (id {rid}) was edited: its content no longer matches its hash",
            )
        if m["prev_hash"] != prev_hash:
            if prev is None:
                where = (
                    "the start of the chain"
                    if start_seq == 1
                    else f"checkpoint seq {self.checkpoint_seq} (purged through seq "
                    f"{start_seq - 1})"
                )
                return _problem(
                    "edited",
                    seq,
                    rid,
                    f"record seq {seq} (id {rid}) does not follow {where}: it or the records "
                    "before it were replaced",
                )
            return _problem(
                "edited",
                prev[0],
                prev[1],
                f"record seq {prev[0]} (id {prev[1]}) was edited and its hash recomputed: "
                f"record seq {seq} (id {rid}) no longer links to it",
            )
        why = self.personal_problem(m, seq)
        if why is not None:
            return _problem("edited", seq, rid, f"record seq {seq} (id {rid}) was edited: {why}")
        if m["kind"] == "checkpoint":
            why = self.key.check(m["after"], m["signature"])
            if why is not None:
                return _problem("checkpoint", seq, rid, f"checkpoint seq {seq} (id {rid}): {why}")
        return None

    def original_seq(self, m: Mapping[Any, Any], seq: int) -> int | None:
        """The seq at which the record's hash holds, if it was moved."""
        candidates = [s for d in range(1, _REORDER_WINDOW + 1) for s in (seq - d, seq + d) if s > 0]
        before = self.session.scalar(
            select(self.table.c.seq).where(self.table.c.hash == m["prev_hash"]).limit(1)
        )
        if before is not None:
            candidates.insert(0, int(before) + 1)
        for s in candidates:
            try:
                if s != seq and record_hash(m, s, m["prev_hash"]) == m["hash"]:
                    return s
            except (TypeError, ValueError):
                return None
        return None

    def personal_problem(self, m: Mapping[Any, Any], seq: int) -> str | None:
        digests = m["pi_digests"]
        salts = m["pi_salts"] if isinstance(m["pi_salts"], Mapping) else {}
        if not isinstance(digests, Mapping):
            return "its personal-field digests are missing"
        for name in PERSONAL_FIELDS:
            digest, salt, value = digests.get(name), salts.get(name), m[name]
            if not isinstance(digest, str):
                return f"{name} has no digest"
            if isinstance(salt, str):
                try:
                    same = field_digest(salt, name, value) == digest
                except (TypeError, ValueError):
                    same = False
                if not same:
                    return f"{name} does not match its digest"
                continue
            erased_by = max(
                self.erasures.get(m["user_id"], 0) if m["user_id"] else 0,
                self.erasures.get(m["actor_id"], 0) if m["actor_id"] else 0,
            )
            if value is not None or erased_by <= seq:
                return f"{name} was blanked or its salt removed without an erase record"
        return None

    def report(self, problem: ChainProblem | None) -> ChainReport:
        return ChainReport(
            ok=problem is None,
            checked=self.checked,
            first_seq=self.first_seq,
            last_seq=self.last[0] if self.last else None,
            head_seq=self.head_seq,
            head_hash=self.head_hash,
            checkpoint_seq=self.checkpoint_seq,
            purged_through_seq=self.purged_through,
            problem=problem,
        )


def head(session: Session) -> tuple[int, str]:
    """The chain head (seq, hash) as this transaction sees it."""
    head_table = CHAIN_HEAD
    row = session.execute(
        select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
    ).one_or_none()
    return (int(row.seq), str(row.hash)) if row else (0, GENESIS)


def chain_rows(
    conn: Connection, rows: Iterable[Mapping[str, Any]], seq: int, prev: str
) -> tuple[int, str]:
    """Chain rows written before the chain existed (the migration does, in id order, page by
    page): give each its salts, digests, seq and hashes after ``(seq, prev)``; returns the new
    head. ``rows`` carry every hashed and personal field except the digests."""
    t = AUDIT_EVENTS
    for row in rows:
        fields = dict(row)
        salts = {name: os.urandom(16).hex() for name in PERSONAL_FIELDS}
        fields["pi_digests"] = {
            name: field_digest(salts[name], name, fields[name]) for name in PERSONAL_FIELDS
        }
        seq += 1
        digest = record_hash(fields, seq, prev)
        conn.execute(
            update(t)
            .where(t.c.id == fields["id"])
            .values(
                seq=seq,
                prev_hash=prev,
                hash=digest,
                pi_salts=salts,
                pi_digests=fields["pi_digests"],
            )
        )
        prev = digest
    return seq, prev


def latest_checkpoint(session: Session) -> dict[str, Any] | None:
    """The content (``after``) of the newest chained checkpoint: what the last purge left
    (``through_seq``, ``through_hash``), or None when nothing was ever purged."""
    t = AUDIT_EVENTS
    after = session.execute(
        select(t.c.after)
        .where(t.c.kind == "checkpoint", t.c.seq.is_not(None))
        .order_by(t.c.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    return after if isinstance(after, dict) else None
