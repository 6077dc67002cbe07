"""Enrolled agents (PoP gateways and site connectors), one-time enrolment tokens, the
data-plane config version and usage records."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import Base, TimestampedModel


class GatewayEnrolment(TimestampedModel):
    """A one-time, expiring token for a new PoP host (pop_id) or site connector (site_id)."""

    __tablename__ = "gateway_enrolments"
    __audit_type__ = "gateway_enrolment"
    __audit_exclude__ = frozenset({"token_hash"})
    __table_args__ = (
        CheckConstraint("(pop_id IS NULL) <> (site_id IS NULL)", name="pop_xor_site"),
    )

    pop_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pops.id", ondelete="CASCADE"), index=True
    )
    site_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]


class RevokedReason(StrEnum):
    REVOKED = "revoked"  # by a person (API or CLI)
    REPLACED = "replaced"  # by a later enrolment of the same PoP or site


class Gateway(TimestampedModel):
    """An enrolled agent: a PoP's gateway (pop_id) or a site's connector (site_id), with its
    credential (hashed) and what it last applied and reported.

    One live credential per PoP and per site: redeeming an enrolment revokes the earlier
    ones (``revoked_reason`` ``replaced``). A connector's row carries its site's tenant, so
    that its changes (enrolment, revocation) show in that tenant's audit log.
    """

    __tablename__ = "gateways"
    __audit_type__ = "gateway"
    __audit_exclude__ = frozenset({"credential_hash"})
    __table_args__ = (
        CheckConstraint("(pop_id IS NULL) <> (site_id IS NULL)", name="pop_xor_site"),
    )

    pop_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pops.id", ondelete="CASCADE"), index=True
    )
    site_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str] = mapped_column(String(253), default="")
    agent_version: Mapped[str] = mapped_column(String(32), default="")
    applied_version: Mapped[int] = mapped_column(default=0)
    apply_error: Mapped[str | None] = mapped_column(String(2000))
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(16))
    # The WireGuard key a connector published as its site's: withdrawn from the site (so the
    # PoP drops the peer) when this credential is revoked or replaced.
    published_key: Mapped[str | None] = mapped_column(String(44))
    last_report_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen_at: Mapped[datetime | None]
    # The period of the last stored report (the next one starts at its end), and the version
    # of the desired state whose peers are in gateway_peers (see tongdao.gateway.sent).
    last_period_start: Mapped[datetime | None]
    last_period_end: Mapped[datetime | None]
    sent_version: Mapped[int | None] = mapped_column(BigInteger)
    # Dropped report rows: when the last usage_rows_dropped event was written, and what was
    # dropped since then and not yet written (see tongdao.gateway.usage).
    dropped_event_at: Mapped[datetime | None]
    dropped_held: Mapped[dict[str, Any] | None]


class ConfigVersion(Base):
    """A single row counting data-plane changes; each change bumps it in its transaction."""

    __tablename__ = "config_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


TENANT_KINDS: tuple[str, ...] = ("device", "site")
"""The peer kinds that are a tenant's own endpoints (its usage); ``pop`` (inter-PoP transit)
carries the same bytes again."""


class UsageRecord(Base):
    """Byte counts of one peer over one report period, as a gateway reported them.

    ``(gateway_id, seq, peer_key)`` is unique: a report retried after a lost answer is not
    counted twice. Deltas are computed by the agent from the engine's cumulative counters,
    so an engine restart (counters back to zero) loses and doubles nothing.
    """

    __tablename__ = "usage_records"
    __table_args__ = (
        # period_end is in the key: on PostgreSQL the table is partitioned by it (a unique
        # constraint must hold the partition key); every row of one report shares it.
        UniqueConstraint(
            "gateway_id", "seq", "peer_key", "period_end", name="uq_usage_records_seq"
        ),
        Index("ix_usage_records_tenant_time", "tenant_id", "period_end"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    gateway_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    tenant_id: Mapped[uuid.UUID]
    peer_key: Mapped[str] = mapped_column(String(44))
    peer_kind: Mapped[str] = mapped_column(String(16))
    peer_ref: Mapped[str] = mapped_column(String(64))
    rx_bytes: Mapped[int] = mapped_column(BigInteger)
    tx_bytes: Mapped[int] = mapped_column(BigInteger)
    # The part of rx/tx carried over a registered cross-border link (0 when none).
    cross_border_rx_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cross_border_tx_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_handshake: Mapped[datetime | None]
    endpoint: Mapped[str | None] = mapped_column(String(64))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]


class GatewayPeer(Base):
    """A peer of a desired state sent to a gateway: the rows its usage reports may carry.

    ``removed_at`` is set when a state without the peer is sent; the row is deleted
    :data:`tongdao.gateway.sent.RECENTLY_REMOVED` later, so the peer's final bytes still
    count (see :mod:`tongdao.gateway.sent`).
    """

    __tablename__ = "gateway_peers"
    __table_args__ = (
        UniqueConstraint(
            "gateway_id",
            "peer_key",
            "tenant_id",
            "peer_kind",
            "peer_ref",
            name="uq_gateway_peers_identity",
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    gateway_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID]
    peer_key: Mapped[str] = mapped_column(String(44))
    peer_kind: Mapped[str] = mapped_column(String(16))
    peer_ref: Mapped[str] = mapped_column(String(64))
    removed_at: Mapped[datetime | None]


class UsageCredit(Base):
    """How much of its PoP's rate one peer (tenant, public key) has been credited at one
    gateway: ``credited_until`` moves forward by each stored row's bytes at that rate (a
    cell-rate bound, see :mod:`tongdao.gateway.usage`), and the period of the peer's last
    stored row, so the same peer for the same period is not counted twice."""

    __tablename__ = "usage_credits"

    gateway_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    peer_key: Mapped[str] = mapped_column(String(44), primary_key=True)
    credited_until: Mapped[datetime]
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]


class UsageHourly(Base):
    """The usage ledger: bytes per Asia/Shanghai hour (stored as its UTC start; UTC+8 has
    no DST, so hours align) × tenant × gateway × peer, written with the report
    (:mod:`tongdao.gateway.ledger`). ``owner_id`` is the device's owner at report time
    (None for sites and transit peers). Cross-border bytes are part of rx/tx.
    On PostgreSQL partitioned by month of ``hour``."""

    __tablename__ = "usage_hourly"
    __table_args__ = (Index("ix_usage_hourly_owner_hour", "owner_id", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    peer_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    peer_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    gateway_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    pop_id: Mapped[uuid.UUID | None]
    owner_id: Mapped[uuid.UUID | None]
    rx_bytes: Mapped[int] = mapped_column(BigInteger)
    tx_bytes: Mapped[int] = mapped_column(BigInteger)
    cross_border_rx_bytes: Mapped[int] = mapped_column(BigInteger)
    cross_border_tx_bytes: Mapped[int] = mapped_column(BigInteger)


class UsageTenantHourly(Base):
    """The ledger summed per hour × tenant × gateway × peer kind: tenant, PoP and billing
    figures read this (a month is hours × gateways rows, whatever the tenant's devices)."""

    __tablename__ = "usage_tenant_hourly"
    __table_args__ = (Index("ix_usage_tenant_hourly_pop_hour", "pop_id", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    gateway_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    peer_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    pop_id: Mapped[uuid.UUID | None]
    rx_bytes: Mapped[int] = mapped_column(BigInteger)
    tx_bytes: Mapped[int] = mapped_column(BigInteger)
    cross_border_rx_bytes: Mapped[int] = mapped_column(BigInteger)
    cross_border_tx_bytes: Mapped[int] = mapped_column(BigInteger)
