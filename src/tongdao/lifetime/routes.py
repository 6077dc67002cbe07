"""``/api/v1/tenants/{tenant_id}/device-lifetime``: read and set the tenant's device lifetime."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path

from tongdao.api.deps import GuardDep
from tongdao.auth.permissions import Action
from tongdao.lifetime import service
from tongdao.lifetime.schemas import DeviceLifetimeIn, DeviceLifetimePublic, HeldDevice
from tongdao.runtime import Ctx

router = APIRouter()
TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]


def view(ctx: Ctx, tenant_id: uuid.UUID) -> DeviceLifetimePublic:
    current = service.setting(ctx, tenant_id)
    own_only = ctx.principal is not None and ctx.principal.own_only("devices", Action.READ)
    return DeviceLifetimePublic(
        tenant_id=tenant_id,
        days=current.days if current else None,
        since=current.since if current else None,
        held=[
            HeldDevice(device_id=h.device_id, user_id=h.user_id, since=h.since)
            for h in service.holds(ctx, tenant_id)
            if not own_only or (ctx.principal is not None and h.user_id == ctx.principal.user_id)
        ],
    )


@router.get(
    "/tenants/{tenant_id}/device-lifetime",
    tags=["devices"],
    operation_id="get_device_lifetime",
)
def get_lifetime(guard: GuardDep, tenant_id: TenantId) -> DeviceLifetimePublic:
    """The tenant's device lifetime (off by default) and the devices it holds off the
    gateways (an employee sees their own)."""
    tenant = guard.tenant(tenant_id)
    guard.require("device_lifetime", Action.READ)
    return view(guard.ctx, tenant.id)


@router.put(
    "/tenants/{tenant_id}/device-lifetime",
    tags=["devices"],
    operation_id="put_device_lifetime",
)
def put_lifetime(
    guard: GuardDep, tenant_id: TenantId, body: DeviceLifetimeIn
) -> DeviceLifetimePublic:
    """Set the lifetime in days, or null to turn it off (audited)."""
    tenant = guard.tenant(tenant_id)
    guard.require("device_lifetime", Action.UPDATE)
    service.set_days(guard.ctx, tenant, body.days)
    guard.ctx.session.commit()
    return view(guard.ctx, tenant.id)
