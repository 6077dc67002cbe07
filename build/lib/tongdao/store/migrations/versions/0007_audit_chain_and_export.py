"""audit chain and export

Adds the hash chain to the audit log (seq, prev_hash, hash, per-field digests of personal
fields), the record kinds and connection-session columns, the chain head, and the open
connection sessions derived from usage reports. Existing audit rows are chained in id order.

Revision ID: 0007_audit_chain_and_export
Revises: 0006_declared_networks
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tongdao.store.base

revision: str = "0007_audit_chain_and_export"
down_revision: str | None = "0006_declared_networks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAGE = 1000


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def _subject(object_type: str, object_id: str | None, snapshot: Any) -> uuid.UUID | None:
    """The user an old record is about: a user's own record, or an object holding user_id."""
    value = object_id if object_type == "user" else None
    if value is None and isinstance(snapshot, dict):
        value = snapshot.get("user_id")
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.create_table(
        "open_connections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("pop_id", sa.Uuid(), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("peer_key", sa.String(length=44), nullable=False),
        sa.Column("peer_kind", sa.String(length=16), nullable=False),
        sa.Column("peer_ref", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint", sa.String(length=64), nullable=True),
        sa.Column("started_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_active_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rx_bytes", sa.BigInteger(), nullable=False),
        sa.Column("tx_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open_connections")),
        sa.UniqueConstraint(
            "gateway_id", "peer_key", name=op.f("uq_open_connections_gateway_id_peer_key")
        ),
    )
    with op.batch_alter_table("open_connections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_open_connections_last_active_at"), ["last_active_at"], unique=False
        )

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("user_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("source_port", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("device_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("pop_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("started_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("ended_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("rx_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("tx_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("signature", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pi_digests", _json(), nullable=True))
        batch_op.add_column(sa.Column("pi_salts", _json(), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.alter_column("actor", existing_type=sa.String(length=320), nullable=True)
        batch_op.create_index(batch_op.f("ix_audit_events_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_source_ip"), ["source_ip"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_seq"), ["seq"])

    _chain_existing_rows()

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("kind", existing_type=sa.String(length=16), nullable=False)


def _chain_existing_rows() -> None:
    """Give every existing audit row its kind and subject user, then chain them in id order."""
    from tongdao.audit.chain import GENESIS, HASHED_FIELDS, PERSONAL_FIELDS, chain_rows
    from tongdao.audit.models import AUDIT_EVENTS, CHAIN_HEAD

    conn = op.get_bind()
    t = AUDIT_EVENTS
    conn.execute(
        sa.update(t)
        .values(kind=sa.case((t.c.action.in_(("login", "login_failed")), "event"), else_="change"))
        .where(t.c.kind.is_(None))
    )
    columns = [t.c[name] for name in dict.fromkeys((*HASHED_FIELDS, *PERSONAL_FIELDS))]
    seq, prev, last_id = 0, GENESIS, None
    while True:
        stmt = sa.select(*columns).order_by(t.c.id).limit(_PAGE)
        if last_id is not None:
            stmt = stmt.where(t.c.id > last_id)
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
        if not rows:
            break
        for row in rows:
            snapshot = row["after"] if row["after"] is not None else row["before"]
            row["user_id"] = _subject(row["object_type"], row["object_id"], snapshot)
            if row["user_id"] is not None:
                conn.execute(sa.update(t).where(t.c.id == row["id"]).values(user_id=row["user_id"]))
            row["pi_digests"] = None
        seq, prev = chain_rows(conn, rows, seq, prev)
        last_id = rows[-1]["id"]
    conn.execute(sa.insert(CHAIN_HEAD).values(id=1, seq=seq, hash=prev))


def downgrade() -> None:
    conn = op.get_bind()
    events = sa.table("audit_events", sa.column("actor", sa.String(320)))
    conn.execute(sa.update(events).where(events.c.actor.is_(None)).values(actor=""))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_seq"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_audit_events_source_ip"))
        batch_op.drop_index(batch_op.f("ix_audit_events_user_id"))
        batch_op.alter_column("actor", existing_type=sa.String(length=320), nullable=False)
        for name in (
            "hash",
            "prev_hash",
            "seq",
            "pi_salts",
            "pi_digests",
            "signature",
            "tx_bytes",
            "rx_bytes",
            "ended_at",
            "started_at",
            "pop_id",
            "device_id",
            "source_port",
            "user_id",
            "kind",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("open_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_open_connections_last_active_at"))
    op.drop_table("open_connections")
    op.drop_table("audit_chain_head")
