"""Gateways (a PoP's enrolled agent), one-time enrolment tokens and the config version."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import Base, TimestampedModel


class GatewayEnrolment(TimestampedModel):
    """A one-time, expiring token an operator hands to a new PoP host."""

    __tablename__ = "gateway_enrolments"
    __audit_type__ = "gateway_enrolment"
    __audit_exclude__ = frozenset({"token_hash"})

    pop_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pops.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]


class Gateway(TimestampedModel):
    """The agent running a PoP: its credential (hashed) and what it last applied."""

    __tablename__ = "gateways"
    __audit_type__ = "gateway"
    __audit_exclude__ = frozenset({"credential_hash"})

    pop_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pops.id", ondelete="CASCADE"), index=True)
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str] = mapped_column(String(253), default="")
    agent_version: Mapped[str] = mapped_column(String(32), default="")
    applied_version: Mapped[int] = mapped_column(default=0)
    apply_error: Mapped[str | None] = mapped_column(String(2000))
    revoked_at: Mapped[datetime | None]


class ConfigVersion(Base):
    """A single row counting data-plane changes; each change bumps it in its transaction."""

    __tablename__ = "config_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=0)
