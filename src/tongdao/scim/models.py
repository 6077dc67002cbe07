"""SCIM 2.0 provisioning: the tenant's bearer tokens (stored hashed) and what SCIM knows of the
users and groups it provisions beyond Tongdao's own columns (userName, externalId, the name
and e-mail values as sent)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class ScimToken(TimestampedModel):
    __tablename__ = "scim_tokens"
    __audit_type__ = "scim_token"
    __audit_exclude__ = frozenset({"token_hash"})

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the secret, so an admin can tell tokens apart in the list.
    hint: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[uuid.UUID | None]
    revoked_at: Mapped[datetime | None]


class ScimUser(TimestampedModel):
    """A Tongdao user as SCIM provisioned it."""

    __tablename__ = "scim_users"
    __audit_type__ = "scim_user"
    __table_args__ = (UniqueConstraint("tenant_id", "user_name"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    user_name: Mapped[str] = mapped_column(String(320))
    external_id: Mapped[str | None] = mapped_column(String(200))
    # name and emails as the provider sent them (the primary e-mail is also the user's).
    attributes: Mapped[dict[str, Any]]


class ScimGroup(TimestampedModel):
    """A Tongdao group as SCIM provisioned it."""

    __tablename__ = "scim_groups"
    __audit_type__ = "scim_group"

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), unique=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    external_id: Mapped[str | None] = mapped_column(String(200))
