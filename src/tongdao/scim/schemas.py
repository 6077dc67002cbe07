"""API schemas of the SCIM tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from tongdao.schemas import Name, PublicModel, Strict


class ScimTokenCreate(Strict):
    name: Name = Field(description="what the token is for, e.g. the identity provider's name")


class ScimTokenPublic(PublicModel):
    tenant_id: uuid.UUID
    name: str
    hint: str = Field(description="the secret's first characters, to tell tokens apart")
    created_by: uuid.UUID | None
    revoked_at: datetime | None


class ScimTokenCreated(BaseModel):
    token: ScimTokenPublic
    secret: str = Field(description="the bearer token; shown this once, stored hashed")
    scim_url: str = Field(description="the tenant URL to give the identity provider")
