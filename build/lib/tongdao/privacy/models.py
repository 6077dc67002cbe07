"""Privacy notices (versioned, operator-published) and the consents users give to them.

A notice is immutable once published: a change is a new version. A consent names the notice
version it was given to, when, and how (by the person in their own signed-in session, or
recorded by an admin from a signed form, with a reference to it), with the credential and the
source address of the request. The consent to transfer abroad is
separate from accepting the notice and can be revoked; revoking keeps the record.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class ConsentKind(StrEnum):
    NOTICE = "notice"  # the person was told the purposes and accepted the notice
    TRANSFER_ABROAD = "transfer_abroad"  # the separate consent of PIPL art. 39


class ConsentMethod(StrEnum):
    SELF = "self"  # given by the person through their own account
    RECORDED = "recorded"  # recorded by an admin from a signed form (evidence names it)


class ConsentVia(StrEnum):
    """The credential the consent came with: the caller's signed-in session, or an API token
    (an admin recording a signed form; never the person's own consent)."""

    SESSION = "session"
    API_TOKEN = "api_token"  # noqa: S105 - a kind of credential, not one


class PrivacyNotice(TimestampedModel):
    __tablename__ = "privacy_notices"
    # Publishing a notice that asks for fresh consent changes who may be routed abroad.
    __dataplane__ = True
    __audit_type__ = "privacy_notice"

    version: Mapped[str] = mapped_column(String(32), unique=True)
    seq: Mapped[int] = mapped_column(unique=True)  # publication order
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    transfer_abroad_text: Mapped[str] = mapped_column(Text)
    reconsent_required: Mapped[bool] = mapped_column(default=True)
    published_by: Mapped[uuid.UUID | None]


class Consent(TimestampedModel):
    __tablename__ = "consents"
    __dataplane__ = True  # a transfer-abroad consent given or revoked changes routing
    __audit_type__ = "consent"
    __table_args__ = (Index("ix_consents_user_id_kind", "user_id", "kind"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    notice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("privacy_notices.id", ondelete="RESTRICT")
    )
    kind: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[str | None] = mapped_column(String(200))
    given_at: Mapped[datetime]
    recorded_by: Mapped[uuid.UUID | None]
    # How and from where the request that gave or recorded it came (null before issue 10).
    given_via: Mapped[str | None] = mapped_column(String(16))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[uuid.UUID | None]
