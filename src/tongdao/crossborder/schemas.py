"""Request and response bodies of the cross-border endpoints."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tongdao.crossborder.models import ApplicationState, DocumentKind
from tongdao.schemas import (
    Description,
    Email,
    MultiLine,
    Name,
    PublicModel,
    Reference,
    Strict,
)
from tongdao.schemas import OneLine as _OneLine

Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=5, max_length=32), _OneLine
]
Mbps = Annotated[int, Field(strict=True, ge=1, le=1_000_000, description="Mbit/s")]
Headcount = Annotated[int, Field(strict=True, ge=1, le=1_000_000)]


class ApplicationCreate(Strict):
    """What a tenant admin applies with (a draft: documents are uploaded next, then it is
    submitted)."""

    internal_use_only: bool = Field(
        description="the undertaking: internal office use only, no telecom business (must be true)"
    )
    site_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)
    bandwidth_mbps: Mbps
    headcount: Headcount
    manager_name: Name
    manager_phone: Phone
    manager_email: Email
    term_start: date
    term_end: date
    notes: Description = ""


class ApplicationUpdate(Strict):
    """Changes to a draft (every field optional)."""

    site_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=50)
    bandwidth_mbps: Mbps | None = None
    headcount: Headcount | None = None
    manager_name: Name | None = None
    manager_phone: Phone | None = None
    manager_email: Email | None = None
    term_start: date | None = None
    term_end: date | None = None
    notes: Description | None = None


class Approve(Strict):
    """The carrier's approval as the compliance officer records it."""

    approval_ref: Reference = Field(description="the carrier's approval reference")
    link_id: uuid.UUID = Field(description="the registered link the bandwidth is on")
    approved_mbps: Mbps
    valid_from: date
    valid_to: date
    reason: Description = ""


class Reject(Strict):
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), MultiLine
    ] = Field(description="why, for the tenant and the record")


class Revoke(Strict):
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), MultiLine
    ] = Field(description="why the authorisation is revoked, for the tenant and the record")


class DocumentPublic(PublicModel):
    application_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: DocumentKind
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: uuid.UUID | None


class ApplicationPublic(PublicModel):
    tenant_id: uuid.UUID
    state: ApplicationState
    purpose: str
    internal_use_only: bool
    site_ids: list[uuid.UUID]
    bandwidth_mbps: int
    headcount: int
    manager_name: str
    manager_phone: str
    manager_email: str
    term_start: date
    term_end: date
    notes: str
    submitted_at: datetime | None
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    reason: str
    approval_ref: str | None
    link_id: uuid.UUID | None
    approved_mbps: int | None
    valid_from: date | None
    valid_to: date | None
    expired_at: datetime | None
    documents: list[DocumentPublic] = []


class ApplicationFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: ApplicationState | None = None
    tenant_id: uuid.UUID | None = None


class CrossBorderStatus(BaseModel):
    """Where a tenant stands: whether it may use the path abroad and, if not, the step missing."""

    tenant_id: uuid.UUID
    authorised: bool
    step: Literal[
        "none",
        "draft",
        "submitted",
        "under_review",
        "rejected",
        "expired",
        "revoked",
        "link_unavailable",
        "approved",
        "not_yet_valid",
    ]
    message: str
    application_id: uuid.UUID | None = None
    valid_to: date | None = None
    approved_mbps: int | None = None
