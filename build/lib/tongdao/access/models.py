"""Access policy: default deny; each policy's rules allow traffic from sources to targets."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class Policy(TimestampedModel):
    __tablename__ = "policies"
    __dataplane__ = True
    __audit_type__ = "policy"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    rules: Mapped[list[Any]]
