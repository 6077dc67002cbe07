"""Outgoing mail: the operator's SMTP settings and the outbox of messages not yet delivered."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.clock import utcnow
from tongdao.store.base import TimestampedModel

# AEAD purposes (associated data) of the sealed columns; names, not secrets.
PASSWORD_PURPOSE = "mail.smtp_password"  # noqa: S105
BODY_PURPOSE = "mail.body"


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS (port 587)
    TLS = "tls"  # implicit TLS from the first byte (port 465)
    NONE = "none"  # no encryption: only to a loopback relay, or in development


class MailState(StrEnum):
    PENDING = "pending"
    FAILED = "failed"  # gave up after MAX_ATTEMPTS; the body is dropped


class MailSettings(TimestampedModel):
    """The one SMTP relay mail leaves by (operator_admin's, ``PUT /operator/mail``)."""

    __tablename__ = "mail_settings"
    __audit_type__ = "mail_settings"
    __audit_exclude__ = frozenset({"password_sealed"})

    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int]
    security: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(320), default="")
    # Sealed with the runtime cipher (like TOTP secrets); never returned by the API.
    password_sealed: Mapped[str | None] = mapped_column(String(1000))
    sender: Mapped[str] = mapped_column(String(320))


class MailMessage(TimestampedModel):
    """A message written in the transaction that caused it and delivered after it commits.

    The body (it may hold a one-time link) is sealed; a delivered message is deleted.
    ``not_before`` is both the retry time and the lease of the sender that claimed it.
    """

    __tablename__ = "mail_messages"
    __audit_type__ = None  # the change that queued it is audited
    __table_args__ = (Index("ix_mail_messages_state_not_before", "state", "not_before"),)

    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(200))
    body_sealed: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=MailState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(String(500), default="")
