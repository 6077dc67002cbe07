"""API schemas of the device lifetime."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from tongdao.schemas import Strict

Days = Annotated[int, Field(ge=1, le=3650, strict=True)]


class DeviceLifetimeIn(Strict):
    days: Days | None = Field(
        description="days without a sign-in after which a device leaves the gateways; "
        "null turns the lifetime off (and gives back the devices it held)"
    )


class HeldDevice(BaseModel):
    device_id: uuid.UUID
    user_id: uuid.UUID
    since: datetime


class DeviceLifetimePublic(BaseModel):
    tenant_id: uuid.UUID
    days: int | None = Field(description="null: off (the default)")
    since: datetime | None = Field(description="when the lifetime was turned on")
    held: list[HeldDevice] = Field(
        description="devices the lifetime disabled; each comes back when its user signs in"
    )
