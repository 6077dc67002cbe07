"""Credentials: API and session tokens (stored hashed) and login attempts for throttling."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.clock import utcnow
from tongdao.store.base import TimestampedModel


class ApiToken(TimestampedModel):
    __tablename__ = "api_tokens"
    __audit_type__ = "api_token"
    __audit_exclude__ = frozenset({"token_hash"})

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # "api" or "session"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class LoginAttempt(TimestampedModel):
    __tablename__ = "login_attempts"
    __audit_type__ = None  # logins are audited as events of their own
    __table_args__ = (
        Index("ix_login_attempts_email_time", "email", "created_at"),
        Index("ix_login_attempts_ip_time", "source_ip", "created_at"),
    )

    email: Mapped[str] = mapped_column(String(320))
    source_ip: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool]
    at: Mapped[datetime] = mapped_column(default=utcnow)
