"""Schemas for privacy notices, consents, identity verification, export and erasure."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tongdao.privacy.models import ConsentKind, ConsentMethod, ConsentVia
from tongdao.schemas import LongName, MultiLine, OneLine, PublicModel, Strict
from tongdao.tenancy.models import IdType, UserState

NoticeVersion = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
    Field(description="e.g. 2026-01 or v3; letters, digits, '.', '_' and '-'"),
]
NoticeText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50_000), MultiLine
]
Evidence = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    OneLine,
    Field(description="where the signed consent is kept, e.g. 'HR form 2026-117'"),
]


# --- notices ---------------------------------------------------------------------------------
class NoticeCreate(Strict):
    model_config = ConfigDict(extra="forbid", str_max_length=50_000)

    version: NoticeVersion
    title: LongName
    text: NoticeText = Field(
        description="the personal-information notice: handler, purposes, means, categories, "
        "retention, how to exercise rights (PIPL art. 17)"
    )
    transfer_abroad_text: NoticeText = Field(
        description="the separate statement asked for the consent to transfer abroad: the "
        "recipient abroad, its contact, purposes, categories of data, how to exercise rights "
        "against it (PIPL art. 39)"
    )
    reconsent_required: bool = Field(
        default=True,
        description="consents given to earlier versions lapse; users must consent again",
    )


class NoticePublic(PublicModel):
    version: str
    seq: int = Field(description="publication order; the highest is the current notice")
    title: str
    text: str
    transfer_abroad_text: str
    reconsent_required: bool
    published_at: datetime


# --- consents --------------------------------------------------------------------------------
class ConsentCreate(Strict):
    kind: ConsentKind = Field(
        description="notice: the person accepted the notice; transfer_abroad: the separate "
        "consent to their traffic and data going abroad (needs the notice accepted first)"
    )
    notice_version: NoticeVersion = Field(description="the current notice's version")
    evidence: Evidence | None = Field(
        default=None,
        description="required when an admin records a consent on the person's behalf",
    )


class ConsentPublic(PublicModel):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    kind: ConsentKind
    notice_version: str
    method: ConsentMethod = Field(
        description="self: given by the person in their own signed-in session; recorded: "
        "recorded by an admin from a signed form (evidence names it)"
    )
    evidence: str | None
    given_at: datetime
    given_via: ConsentVia | None = Field(
        description="the credential of the request: session or api_token (null: before "
        "this was recorded)"
    )
    source_ip: str | None = Field(description="the address the request came from")
    revoked_at: datetime | None
    current: bool = Field(
        description="counts now: not revoked, and no later notice asked for fresh consent"
    )


# --- export and erasure ----------------------------------------------------------------------
class AccountExport(BaseModel):
    email: str
    display_name: str
    roles: list[str]
    state: UserState
    totp_enabled: bool
    created_at: datetime
    erased_at: datetime | None


class IdentityExport(BaseModel):
    legal_name: str | None
    id_type: IdType | None
    id_number: str | None = Field(description="decrypted, for the authorised caller only")
    mobile: str | None
    verified_at: datetime | None


class DeviceExport(BaseModel):
    id: uuid.UUID
    name: str
    public_key: str
    ipv4: str
    ipv6: str
    pop_id: uuid.UUID | None
    state: str
    created_at: datetime


class ConnectionDay(BaseModel):
    device_id: str
    day: date = Field(description="Asia/Shanghai day")
    rx_bytes: int
    tx_bytes: int
    endpoints: list[str] = Field(description="the public addresses the device connected from")
    last_handshake: datetime | None


class RetentionNote(BaseModel):
    rule: str
    months: int = Field(description="calendar months the law keeps logs (rule logs.retention)")
    margin_days: int = Field(description="days the operator keeps them beyond that")
    text: str


class PersonalDataExport(BaseModel):
    exported_at: datetime
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    account: AccountExport
    identity: IdentityExport
    groups: list[str]
    devices: list[DeviceExport]
    consents: list[ConsentPublic]
    connection_days: list[ConnectionDay] = Field(
        description="the connection log of the user's devices, per device and Asia/Shanghai "
        "day (the day holding each record's period end, as the usage ledger counts it)"
    )
    retention: RetentionNote


class ErasureReport(BaseModel):
    user_id: uuid.UUID
    erased_at: datetime
    devices_revoked: int
    consents_revoked: int
    sessions_ended: int
    connection_records_kept: int = Field(
        description="connection records younger than the retention period, kept unchanged"
    )
    kept_until: datetime | None = Field(
        description="when the youngest kept record leaves the retention period"
    )
    endpoints_blanked: int = Field(
        description="older connection records whose public address was blanked"
    )
    consent_addresses_blanked: int = Field(
        description="consents older than the retention period whose source address was "
        "blanked (the consent itself is kept)"
    )
    audit_records_blanked: int = Field(
        description="audit records older than the retention period whose personal fields "
        "were blanked"
    )
    retention: RetentionNote
