"""Schemas for reading the audit log."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tongdao.schemas import OneLine, UtcDateTime


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int | None = Field(description="place in the hash chain (see GET /audit/verify)")
    occurred_at: datetime
    kind: str = Field(description="change | event | session | export | erase | checkpoint")
    actor_id: uuid.UUID | None
    actor: str | None = Field(description="empty once erased")
    action: str
    object_type: str
    object_id: str | None
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None = Field(description="the user the record is about")
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source_ip: str | None
    source_port: int | None
    device_id: uuid.UUID | None
    pop_id: uuid.UUID | None
    started_at: datetime | None
    ended_at: datetime | None
    rx_bytes: int | None
    tx_bytes: int | None
    prev_hash: str | None
    hash: str | None


class AuditFilters(BaseModel):
    tenant_id: uuid.UUID | None = None
    object_type: Annotated[str, Field(max_length=64), OneLine] | None = None
    object_id: Annotated[str, Field(max_length=64), OneLine] | None = None
    action: Annotated[str, Field(max_length=64), OneLine] | None = None
    actor: Annotated[str, Field(max_length=320), OneLine] | None = None
    kind: Annotated[str, Field(max_length=16), OneLine] | None = None
    user_id: uuid.UUID | None = None
    source_ip: str | None = Field(default=None, max_length=64, description="an IP address")
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None
    machine: bool | None = Field(
        default=None,
        description="false: people's actions only, without what gateways and connectors "
        "record (acknowledgements, polls, usage warnings, connection sessions); true: those "
        "only",
    )

    @field_validator("source_ip")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError as exc:
            raise ValueError("not an IPv4 or IPv6 address") from exc
