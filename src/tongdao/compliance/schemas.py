"""Schemas of the scheduled compliance check (:mod:`tongdao.compliance.watch`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from tongdao.compliance.models import DEFAULT_GRACE_DAYS, MAX_GRACE_DAYS
from tongdao.schemas import Strict


class WatchSettings(Strict):
    grace_days: int = Field(
        strict=True,  # a whole number: not true, "7" or "1_0"
        ge=1,
        le=MAX_GRACE_DAYS,
        description="days running service continues after a rule is found unmet before the "
        f"affected tenants are suspended (default {DEFAULT_GRACE_DAYS}, at most "
        f"{MAX_GRACE_DAYS})",
    )


class WatchOutcome(BaseModel):
    opened: list[str] = Field(default_factory=list, description="scopes found unmet this run")
    open: list[str] = Field(default_factory=list, description="scopes unmet after this run")
    resolved: list[str] = Field(default_factory=list, description="scopes put right")
    suspended: list[uuid.UUID] = Field(default_factory=list)
    lifted: list[uuid.UUID] = Field(default_factory=list)


class BreachPublic(BaseModel):
    id: uuid.UUID
    scope: str
    rule: str
    source: str
    detail: str
    detected_at: datetime
    grace_until: datetime
    seconds_left: int = Field(description="until the affected tenants are suspended (0: past)")
    suspended_at: datetime | None
    suspended_tenants: int = Field(description="tenants this breach holds suspended")


class WatchStatus(BaseModel):
    grace_days: int
    max_grace_days: int = MAX_GRACE_DAYS
    breaches: list[BreachPublic]
