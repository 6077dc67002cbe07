"""Retention of the audit log: purging old records behind a signed checkpoint, and erasing
personal fields of old records without breaking the chain.

Both obey rule ``logs.retention`` (:mod:`tongdao.compliance.retention`): nothing younger than
six calendar months and the operator's margin is purged or erased, the refusal names the rule
(HTTP 409 / CLI exit 1).

**Purge** (:func:`purge`, ``tongdao audit purge --before DATE``) first verifies the chain
(purging a broken chain would destroy the evidence, so it refuses), then, under the chain
head's lock, deletes the longest prefix of the chain whose records all occurred before
``DATE`` (seq order is commit order, so a record committed late with an early time stops the
prefix rather than opening a hole) and appends a ``checkpoint`` record: first and last purged
seq, the last purged hash, counts per kind, the time range, ``DATE``, the key id and time,
signed with HMAC-SHA256 (:class:`tongdao.audit.chain.SigningKey`). Verification then starts
after the latest checkpoint.

**Erase** (:func:`erase_personal`): see the contract in :mod:`tongdao.audit.chain`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from tongdao.audit import chain
from tongdao.audit.models import AUDIT_EVENTS, CHAIN_HEAD
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.compliance import retention as rp
from tongdao.compliance.rules import ComplianceRefusal
from tongdao.errors import Conflict
from tongdao.store.engine import Database


def retention_cutoff(now: datetime, margin_days: int = rp.DEFAULT_MARGIN_DAYS) -> datetime:
    """Records that occurred before this may be purged or erased; younger ones may not."""
    return rp.retention_cutoff(now, margin_days)


def _refuse_young(before: datetime, now: datetime, what: str, margin_days: int) -> None:
    cutoff = retention_cutoff(now, margin_days)
    if before > cutoff:
        period = rp.describe(margin_days)
        raise ComplianceRefusal(
            "logs.retention",
            f"records younger than {period} cannot be {what}: the date "
            f"must be on or before {cutoff.isoformat(timespec='seconds')}",
            {"before": f"must be on or before {cutoff.isoformat(timespec='seconds')}"},
        )


class PurgeReport(BaseModel):
    purged: int = Field(description="records deleted")
    first_seq: int | None = None
    through_seq: int | None = None
    checkpoint_seq: int | None = Field(default=None, description="the checkpoint record written")
    counts: dict[str, int] = Field(default_factory=dict, description="purged records per kind")


def purge(
    db: Database,
    key: chain.SigningKey,
    before: datetime,
    *,
    now: datetime,
    margin_days: int = rp.DEFAULT_MARGIN_DAYS,
) -> PurgeReport:
    """Delete the chain's prefix that occurred before ``before`` and sign a checkpoint."""
    _refuse_young(before, now, "purged", margin_days)
    report = chain.verify_chain(db, key)
    if report.problem is not None:
        raise Conflict(
            f"the audit chain does not verify, so nothing was purged (the evidence stays): "
            f"{report.problem.message}"
        )
    t = AUDIT_EVENTS
    head_table = CHAIN_HEAD
    with db.session() as session:
        set_actor(session, Actor(None, "cli:audit purge"))
        head = session.execute(
            select(head_table.c.seq, head_table.c.hash)
            .where(head_table.c.id == 1)
            .with_for_update()
        ).one()
        latest = chain.latest_checkpoint(session)
        start = int(latest["through_seq"]) + 1 if latest is not None else 1
        first_young = session.scalar(
            select(func.min(t.c.seq)).where(t.c.seq.is_not(None), t.c.occurred_at >= before)
        )
        through = int(first_young) - 1 if first_young is not None else int(head.seq)
        if through < start:
            return PurgeReport(purged=0)
        span = (t.c.seq >= start) & (t.c.seq <= through)
        counts = Counter(
            {
                str(kind): int(n)
                for kind, n in session.execute(
                    select(t.c.kind, func.count()).where(span).group_by(t.c.kind)
                )
            }
        )
        oldest, newest = session.execute(
            select(func.min(t.c.occurred_at), func.max(t.c.occurred_at)).where(span)
        ).one()
        through_hash = session.scalar(select(t.c.hash).where(t.c.seq == through))
        if through_hash is None:  # changed since the verification a moment ago
            raise Conflict(f"record seq {through} vanished while purging; nothing was purged")
        content: dict[str, Any] = chain.plain(
            {
                "purged_before": before,
                "first_seq": start,
                "through_seq": through,
                "through_hash": through_hash,
                "records": sum(counts.values()),
                "counts": dict(sorted(counts.items())),
                "oldest": oldest,
                "newest": newest,
                "retention_months": rp.months(),
                "margin_days": margin_days,
                "key_id": key.key_id,
                "signed_at": now,
            }
        )
        session.execute(delete(t).where(t.c.seq <= through))
        checkpoint = record(
            session,
            "purge",
            "audit_log",
            kind="checkpoint",
            after=content,
            signature=key.sign(content),
        )
        session.commit()
        return PurgeReport(
            purged=sum(counts.values()),
            first_seq=start,
            through_seq=through,
            checkpoint_seq=checkpoint.seq,
            counts=dict(counts),
        )


def erase_personal(
    session: Session,
    user_id: uuid.UUID,
    *,
    now: datetime,
    before: datetime | None = None,
    tenant_id: uuid.UUID | None = None,
    margin_days: int = rp.DEFAULT_MARGIN_DAYS,
) -> int:
    """Blank the personal fields of the user's audit records older than ``before`` (default
    and latest: the retention cutoff), in the caller's transaction; returns how many records.

    Records *about* the user (``user_id``) lose every personal field, records the user
    *made* (``actor_id``) their actor label and source address. Checkpoints and erase
    records are left alone. A chained ``erase`` record names the user, so verification
    accepts the blanks (see :mod:`tongdao.audit.chain`).
    """
    cutoff = retention_cutoff(now, margin_days) if before is None else before
    _refuse_young(cutoff, now, "erased", margin_days)
    t = AUDIT_EVENTS
    rows = session.execute(
        select(t.c.id, t.c.user_id, t.c.pi_salts).where(
            or_(t.c.user_id == user_id, t.c.actor_id == user_id),
            t.c.occurred_at < cutoff,
            t.c.seq.is_not(None),
            t.c.kind.not_in(("checkpoint", "erase")),
        )
    ).all()
    batches: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        fields: tuple[str, ...] = (
            chain.PERSONAL_FIELDS if row.user_id == user_id else chain.WHO_FIELDS
        )
        salts = row.pi_salts if isinstance(row.pi_salts, dict) else {}
        batches.setdefault(fields, []).append(
            {"b_id": row.id, "b_salts": {k: v for k, v in salts.items() if k not in fields}}
        )
    for fields, params in batches.items():
        stmt = (
            update(t)
            .where(t.c.id == bindparam("b_id"))
            .values({**dict.fromkeys(fields), "pi_salts": bindparam("b_salts")})
        )
        session.connection().execute(stmt, params)
    record(
        session,
        "erase_personal",
        "user",
        user_id,
        kind="erase",
        tenant_id=tenant_id,
        after={"records": len(rows), "before": chain.plain(cutoff)},
    )
    return len(rows)
