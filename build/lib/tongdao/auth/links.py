"""One-time links: a secret mailed to a user that lets them choose a password, once.

The secret is 32 random bytes (URL-safe base64); only its SHA-256 is stored. A link is
single-use (consumed with a conditional update whose row count decides, so two concurrent
uses cannot both win), expires (``TONGDAO_RESET_LINK_TTL_SECONDS``, 1 hour;
``TONGDAO_INVITATION_LINK_TTL_SECONDS``, 7 days), and is void once a newer link of the same
purpose is issued to the user or the user's password is set through any link.

The models live here rather than in ``auth/models.py`` to keep this feature in its own files.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.clock import utcnow
from tongdao.runtime import Ctx
from tongdao.store.base import TimestampedModel
from tongdao.store.rows import rows_updated
from tongdao.tenancy.models import User

RESET_PATH = "/console/password/reset"


class LinkPurpose(StrEnum):
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose, not a secret
    INVITATION = "invitation"


class OneTimeLink(TimestampedModel):
    __tablename__ = "one_time_links"
    __audit_type__ = None  # issuing and using one are audited as events on the user

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]


class PasswordResetRequest(TimestampedModel):
    """One anonymous "forgot password" request, for throttling by address and by e-mail."""

    __tablename__ = "password_reset_requests"
    __audit_type__ = None
    __table_args__ = (
        Index("ix_password_reset_requests_email_at", "email", "at"),
        Index("ix_password_reset_requests_ip_at", "source_ip", "at"),
    )

    email: Mapped[str] = mapped_column(String(320))
    source_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ttl(ctx: Ctx, purpose: LinkPurpose) -> timedelta:
    settings = ctx.runtime.settings
    seconds = (
        settings.invitation_link_ttl_seconds
        if purpose is LinkPurpose.INVITATION
        else settings.reset_link_ttl_seconds
    )
    return timedelta(seconds=seconds)


def issue(ctx: Ctx, user: User, purpose: LinkPurpose) -> tuple[OneTimeLink, str]:
    """A new link for ``user``; earlier open links of the same purpose stop working."""
    now = ctx.runtime.clock()
    ctx.session.execute(
        update(OneTimeLink)
        .where(
            OneTimeLink.user_id == user.id,
            OneTimeLink.purpose == purpose.value,
            OneTimeLink.used_at.is_(None),
            OneTimeLink.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    secret = secrets.token_urlsafe(32)
    link = OneTimeLink(
        user_id=user.id,
        purpose=purpose.value,
        token_hash=hash_secret(secret),
        expires_at=now + ttl(ctx, purpose),
        created_by=ctx.user_id,
    )
    ctx.session.add(link)
    ctx.session.flush()
    return link, secret


def url(ctx: Ctx, secret: str) -> str:
    return f"{ctx.runtime.settings.link_base_url}{RESET_PATH}?token={secret}"


def find_open(ctx: Ctx, secret: str) -> OneTimeLink | None:
    """The link behind ``secret`` while it is usable (not used, void or expired)."""
    if not secret or len(secret) > 200:
        return None
    link = ctx.session.scalar(
        select(OneTimeLink).where(OneTimeLink.token_hash == hash_secret(secret))
    )
    if link is None or link.used_at is not None or link.revoked_at is not None:
        return None
    if link.expires_at <= ctx.runtime.clock():
        return None
    return link


def consume(ctx: Ctx, link: OneTimeLink) -> bool:
    """Mark the link used; False when it was used, voided or expired meanwhile."""
    now = ctx.runtime.clock()
    used = rows_updated(
        ctx.session,
        update(OneTimeLink)
        .where(
            OneTimeLink.id == link.id,
            OneTimeLink.used_at.is_(None),
            OneTimeLink.revoked_at.is_(None),
            OneTimeLink.expires_at > now,
        )
        .values(used_at=now),
    )
    return used == 1


def void_open_links(ctx: Ctx, user_id: uuid.UUID) -> None:
    """Every open link of the user stops working (their password was just set)."""
    ctx.session.execute(
        update(OneTimeLink)
        .where(
            OneTimeLink.user_id == user_id,
            OneTimeLink.used_at.is_(None),
            OneTimeLink.revoked_at.is_(None),
        )
        .values(revoked_at=ctx.runtime.clock())
        .execution_options(synchronize_session=False)
    )
