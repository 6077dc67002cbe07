"""The scheduled compliance check's records (:mod:`tongdao.compliance.watch`).

* ``compliance_watch``: one row, the operator's settings (the grace period in days).
* ``compliance_breaches``: a rule found unmet for running service (the foreign stake above its
  cap, or no valid B13 licence for a province where tenants are active), from when it was found
  until it was put right; ``grace_until`` is when the affected tenants are suspended.
* ``compliance_suspensions``: a tenant suspended because of a breach, and when that was lifted.
  Only these suspensions are lifted automatically: a tenant suspended for another reason has no
  row here and stays suspended.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import Base, TimestampedModel

DEFAULT_GRACE_DAYS = 7
MAX_GRACE_DAYS = 30


class ComplianceWatch(Base):
    __tablename__ = "compliance_watch"
    __audit_type__ = "compliance_watch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grace_days: Mapped[int] = mapped_column(Integer, default=DEFAULT_GRACE_DAYS)


class ComplianceBreach(TimestampedModel):
    __tablename__ = "compliance_breaches"
    __audit_type__ = "compliance_breach"

    # What is unmet and where: "ownership" (the operator as a whole) or "province:<code>".
    scope: Mapped[str] = mapped_column(String(32), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime]
    grace_until: Mapped[datetime]
    suspended_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None] = mapped_column(index=True)


class ComplianceSuspension(TimestampedModel):
    __tablename__ = "compliance_suspensions"
    __audit_type__ = "compliance_suspension"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    breach_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("compliance_breaches.id"))
    rule_id: Mapped[str] = mapped_column(String(64))
    suspended_at: Mapped[datetime]
    lifted_at: Mapped[datetime | None]
