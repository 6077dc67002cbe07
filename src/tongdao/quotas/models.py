"""A tenant's limits, a user's overrides, and the 80% / 100% events of a month.

All three are data-plane models: a change bumps the desired-state version, so every PoP
serving the tenant compiles its peers' limits again (:mod:`tongdao.gateway.changes`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class OverCap(StrEnum):
    BLOCK = "block"  # traffic of the capped user (or the whole tenant) is dropped
    THROTTLE = "throttle"  # held to throttle_mbps until the month ends


class TenantLimits(TimestampedModel):
    """Set by operator staff (operator admin, billing clerk) per tenant; absent: no limits."""

    __tablename__ = "tenant_limits"
    __audit_type__ = "tenant_limits"
    __dataplane__ = True

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), unique=True
    )
    tenant_cap_bytes: Mapped[int | None] = mapped_column(BigInteger)
    user_cap_bytes: Mapped[int | None] = mapped_column(BigInteger)
    user_rate_mbps: Mapped[int | None] = mapped_column()
    over_cap: Mapped[str] = mapped_column(String(16), default=OverCap.BLOCK)
    throttle_mbps: Mapped[int | None] = mapped_column()


class UserLimits(TimestampedModel):
    """A tenant admin's (or operator staff's) override for one user, within the tenant's."""

    __tablename__ = "user_limits"
    __audit_type__ = "user_limits"
    __dataplane__ = True

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    cap_bytes: Mapped[int | None] = mapped_column(BigInteger)
    rate_mbps: Mapped[int | None] = mapped_column()


class QuotaEvent(TimestampedModel):
    """A subject (the tenant, or one user: ``subject`` is ``tenant`` or the user's id) passed
    80% or 100% of its cap in an Asia/Shanghai month; at most one per level and month.

    A 100% event with ``lifted_at`` unset is what the gateways enforce; it is lifted when the
    month ends (the ``quotas.month`` job) or when the cap is raised above the month's bytes,
    and set again (no second mail) if the bytes reach the cap once more."""

    __tablename__ = "quota_events"
    __audit_type__ = "quota_event"
    __dataplane__ = True
    __table_args__ = (UniqueConstraint("tenant_id", "subject", "month", "level"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))
    level: Mapped[int] = mapped_column()
    used_bytes: Mapped[int] = mapped_column(BigInteger)
    cap_bytes: Mapped[int] = mapped_column(BigInteger)
    lifted_at: Mapped[datetime | None] = mapped_column()
