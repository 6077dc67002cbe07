"""Request and response bodies of the quota routes. Caps are in MB (10^6 bytes), rates in
Mbit/s (10^6 bits a second), each direction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from tongdao.schemas import Strict

CapMb = Annotated[int | None, Field(ge=1, le=1_000_000_000, description="MB a month")]
RateMbps = Annotated[int | None, Field(ge=1, le=100_000, description="Mbit/s, each direction")]


class TenantLimitsIn(Strict):
    tenant_cap_mb: CapMb = None
    user_cap_mb: CapMb = Field(default=None, description="each user's cap, unless overridden")
    user_rate_mbps: RateMbps = Field(
        default=None, description="each user's bandwidth, shared by their devices on a PoP"
    )
    over_cap: Literal["block", "throttle"] = Field(
        default="block", description="what happens to traffic over a cap"
    )
    throttle_mbps: RateMbps = Field(default=None, description="the rate over a cap (throttle)")


class TenantLimitsPublic(BaseModel):
    tenant_cap_mb: int | None
    user_cap_mb: int | None
    user_rate_mbps: int | None
    over_cap: Literal["block", "throttle"]
    throttle_mbps: int | None
    tenant_id: uuid.UUID
    month: str = Field(description="the current Asia/Shanghai month, YYYY-MM")
    used_bytes: int = Field(description="the tenant's bytes this month (devices and sites)")
    enforced: bool = Field(description="the tenant is over its cap: blocked or throttled now")


class UserLimitsIn(Strict):
    cap_mb: CapMb = None
    rate_mbps: RateMbps = None


class UserLimitsPublic(BaseModel):
    cap_mb: int | None = Field(description="the user's override (MB)")
    rate_mbps: int | None = Field(description="the user's override (Mbit/s)")
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    effective_cap_mb: int | None = Field(description="the override, else the tenant's per-user")
    effective_rate_mbps: int | None
    month: str
    used_bytes: int = Field(description="the user's devices' bytes this month")
    enforced: bool = Field(description="the user is over their cap: blocked or throttled now")


class QuotaEventPublic(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    subject: str = Field(description="tenant, or the user's id")
    user_id: uuid.UUID | None
    month: str
    level: int = Field(description="80 or 100 (% of the cap)")
    used_bytes: int
    cap_bytes: int
    created_at: datetime
    lifted_at: datetime | None
