"""Credentials: API and session tokens (stored hashed), login attempts for throttling, and the
last TOTP time step each user spent (so a code is accepted once)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.clock import utcnow
from tongdao.store.base import Base, TimestampedModel


class ApiToken(TimestampedModel):
    __tablename__ = "api_tokens"
    __audit_type__ = "api_token"
    __audit_exclude__ = frozenset({"token_hash", "user_agent"})

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # "api" or "session"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Where a session was signed in from (sessions only; shown in GET /auth/sessions).
    source_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(200), default=None)
    # The second factor the sign-in behind it passed ("totp", "webauthn"), or None for a
    # password alone; an API token takes its creator's (tongdao.auth.second_factor).
    second_factor: Mapped[str | None] = mapped_column(String(16), default=None)


class LoginAttempt(TimestampedModel):
    __tablename__ = "login_attempts"
    __audit_type__ = None  # logins are audited as events of their own
    __table_args__ = (
        Index("ix_login_attempts_email_time", "email", "created_at"),
        Index("ix_login_attempts_ip_time", "source_ip", "created_at"),
        Index("ix_login_attempts_email_ip_at", "email", "source_ip", "at"),
    )

    email: Mapped[str] = mapped_column(String(320))
    source_ip: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when a failure stops counting against the account: the same account signed in from
    # the same address, or an admin unlocked it. Cleared failures still count per address.
    cleared_at: Mapped[datetime | None] = mapped_column(default=None)


class TotpStep(Base):
    """The last TOTP time step accepted for a user: a code of that step or an earlier one is
    refused, so a code seen once (shoulder, phishing proxy, log) cannot be replayed."""

    __tablename__ = "totp_steps"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    last_step: Mapped[int] = mapped_column(BigInteger)
