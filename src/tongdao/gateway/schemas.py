"""Schemas for enrolment, gateway credentials, key publication and acknowledgements."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tongdao.schemas import MultiLine, OneLine, Strict, WireGuardKey

ACK_ERROR_MAX = 2000  # characters of an agent's apply error


class EnrolmentCreate(Strict):
    ttl_hours: Annotated[int, Field(ge=1, le=168)] = 24


class EnrolmentCreated(BaseModel):
    pop_id: uuid.UUID
    site_id: uuid.UUID | None = None
    token: str = Field(description="one-time; shown once; only its hash is stored")
    expires_at: datetime


class EnrolRequest(Strict):
    token: Annotated[str, Field(min_length=8, max_length=100)]
    hostname: Annotated[str, Field(max_length=253), OneLine] = ""
    agent_version: Annotated[str, Field(max_length=32), OneLine] = ""


class EnrolResponse(BaseModel):
    gateway_id: uuid.UUID
    pop_id: uuid.UUID | None
    site_id: uuid.UUID | None = None
    credential: str = Field(description="the gateway's bearer credential; shown once")


class GatewayPublic(BaseModel):
    """An agent credential (a PoP's gateway or a site's connector); never the secret."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    pop_id: uuid.UUID | None
    site_id: uuid.UUID | None
    tenant_id: uuid.UUID | None = Field(description="a connector's tenant (its site's)")
    hostname: str
    agent_version: str
    applied_version: int
    apply_error: str | None
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = Field(description="its last usage report")
    published_key: str | None = Field(description="a connector's key for its site, if it set it")
    revoked_at: datetime | None
    revoked_reason: Literal["revoked", "replaced"] | None = Field(
        description="revoked by a person, or replaced by a later enrolment of its PoP or site"
    )


class KeyPublish(Strict):
    public_key: WireGuardKey


class Ack(Strict):
    version: Annotated[int, Field(ge=0)]
    error: Annotated[str, Field(max_length=ACK_ERROR_MAX), MultiLine] | None = None


class SitePath(BaseModel):
    """The path from a PoP where the tenant's devices connect to the site's PoP."""

    from_pop: str
    to_pop: str
    up: bool
    reason: str
    link: str | None = None
    approval_ref: str | None = None
    # Across the border: the tenant's step towards (or in) its cross-border authorisation on
    # the link (none, draft, submitted, under_review, rejected, expired, approved, ...).
    crossborder_step: str | None = None
