"""Schemas for reading the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor: str
    action: str
    object_type: str
    object_id: str | None
    tenant_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source_ip: str | None


class AuditFilters(BaseModel):
    tenant_id: uuid.UUID | None = None
    object_type: str | None = Field(default=None, max_length=64)
    object_id: str | None = Field(default=None, max_length=64)
    action: str | None = Field(default=None, max_length=64)
    actor: str | None = Field(default=None, max_length=320)
    since: datetime | None = None
    until: datetime | None = None
