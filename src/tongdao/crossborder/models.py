"""A tenant's application for cross-border service, its documents, and the authorisation the
compliance officer records on it (the carrier's approval: reference, bandwidth, validity).

One row is the whole life of an application: ``draft`` (being filled in, documents uploaded)
→ ``submitted`` → ``under_review`` → ``approved`` (an authorisation on one registered link)
or ``rejected``; an approval whose validity has ended becomes ``expired`` (the scheduled job,
:mod:`tongdao.crossborder.expiry`); the compliance officer may revoke an approval
(``revoked``), and terminating the tenant revokes its approvals and rejects its open
applications. The row is a data-plane model: every change of its state recompiles the
gateways' desired state, which carries a tenant across the border only under an approved,
unexpired authorisation.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class ApplicationState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REVOKED = "revoked"


class DocumentKind(StrEnum):
    BUSINESS_LICENCE = "business_licence"
    COMMITMENT_LETTER = "commitment_letter"
    OTHER = "other"


# What a submission needs (the carriers' lists: a stamped licence and a signed, stamped letter).
REQUIRED_DOCUMENTS = (DocumentKind.BUSINESS_LICENCE, DocumentKind.COMMITMENT_LETTER)
PURPOSE_INTERNAL_OFFICE = "internal_office_use"


class CrossBorderApplication(TimestampedModel):
    __tablename__ = "crossborder_applications"
    __dataplane__ = True
    __audit_type__ = "crossborder_application"
    __table_args__ = (Index("ix_crossborder_applications_state_tenant", "state", "tenant_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), default=ApplicationState.DRAFT)
    purpose: Mapped[str] = mapped_column(String(32), default=PURPOSE_INTERNAL_OFFICE)
    # The tenant's explicit undertaking: internal office use only, no telecom business.
    internal_use_only: Mapped[bool]
    site_ids: Mapped[list[str]]  # the overseas sites the service is for
    bandwidth_mbps: Mapped[int]  # requested
    headcount: Mapped[int]
    manager_name: Mapped[str] = mapped_column(String(100))
    manager_phone: Mapped[str] = mapped_column(String(32))
    manager_email: Mapped[str] = mapped_column(String(320))
    term_start: Mapped[date]
    term_end: Mapped[date]
    notes: Mapped[str] = mapped_column(String(500), default="")
    submitted_at: Mapped[datetime | None]
    submitted_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # The compliance officer's decision.
    decided_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(String(500), default="")
    approval_ref: Mapped[str | None] = mapped_column(String(100))
    link_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("links.id", ondelete="SET NULL"), index=True
    )
    approved_mbps: Mapped[int | None]
    valid_from: Mapped[date | None]  # Asia/Shanghai days, both included
    valid_to: Mapped[date | None]
    # Set by the scheduled job: the validity began (the path opened), the warnings sent, the
    # validity ended (the path closed).
    opened_at: Mapped[datetime | None]
    warned_30_at: Mapped[datetime | None]
    warned_7_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]


class CrossBorderDocument(TimestampedModel):
    """An uploaded document, kept in the store (the servers stay stateless) with its SHA-256."""

    __tablename__ = "crossborder_documents"
    __audit_type__ = "crossborder_document"
    __audit_exclude__ = frozenset({"content"})

    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("crossborder_applications.id", ondelete="RESTRICT"), index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
