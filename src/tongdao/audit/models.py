"""The audit log: one chained row per change, explicit event, connection session, export,
erasure and checkpoint, written in the transaction that made it (see :mod:`tongdao.audit.chain`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Index, Integer, String, Table, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.clock import utcnow
from tongdao.store.base import Base


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_time", "tenant_id", "occurred_at"),
        Index("ix_audit_events_object", "object_type", "object_id"),
    )

    # Sequential key: the order in which events were written (ids may skip).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # change (the flush hook) | event (login, decision) | session (connection) | export |
    # erase (personal data blanked) | checkpoint (signed, written by a purge)
    kind: Mapped[str] = mapped_column(String(16), default="change")
    actor_id: Mapped[uuid.UUID | None]
    actor: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(128))
    tenant_id: Mapped[uuid.UUID | None]
    # The user the record is about (a user's record, their device, their connection, login).
    user_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    source_ip: Mapped[str | None] = mapped_column(String(64), index=True)
    source_port: Mapped[int | None]
    # Connection sessions (kind "session"): device, PoP, start, end and bytes.
    device_id: Mapped[uuid.UUID | None]
    pop_id: Mapped[uuid.UUID | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    rx_bytes: Mapped[int | None] = mapped_column(BigInteger)
    tx_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Checkpoints: HMAC-SHA256 of the checkpoint's content (hex).
    signature: Mapped[str | None] = mapped_column(String(64))
    # Personal fields are hashed through salted per-field digests, so that they can be
    # blanked (erasure) without breaking the chain; see tongdao.audit.chain.
    pi_digests: Mapped[dict[str, Any] | None]
    pi_salts: Mapped[dict[str, Any] | None]
    # The chain. NULL only inside the transaction that writes the event: the chain fields
    # are filled at commit, under the chain head's lock.
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The single row holding the chain's last seq and hash; appends lock it."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class OpenConnection(Base):
    """A connection session still in progress, derived from a PoP gateway's usage reports.

    One per (gateway, peer key). When it ends (inactivity, endpoint change, another peer on
    the key) the row is deleted and a chained ``session`` record is written.
    """

    __tablename__ = "open_connections"
    __table_args__ = (UniqueConstraint("gateway_id", "peer_key"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    gateway_id: Mapped[uuid.UUID]
    pop_id: Mapped[uuid.UUID | None]
    tenant_id: Mapped[uuid.UUID]
    peer_key: Mapped[str] = mapped_column(String(44))
    peer_kind: Mapped[str] = mapped_column(String(16))
    peer_ref: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[uuid.UUID | None]
    user_id: Mapped[uuid.UUID | None]
    endpoint: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    last_active_at: Mapped[datetime]
    rx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


# The tables, typed for Core statements (bulk updates, the chain walk).
AUDIT_EVENTS = cast(Table, AuditEvent.__table__)
CHAIN_HEAD = cast(Table, AuditChainHead.__table__)
OPEN_CONNECTIONS = cast(Table, OpenConnection.__table__)
