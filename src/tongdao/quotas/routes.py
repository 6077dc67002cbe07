"""Quota routes: a tenant's limits (operator staff set them), a user's override (the tenant's
admin, within the tenant's), and the 80% / 100% events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from tongdao.api.deps import Guard, GuardDep
from tongdao.api.pagination import Page
from tongdao.auth.permissions import Action
from tongdao.errors import NotFound
from tongdao.quotas import service
from tongdao.quotas.schemas import (
    QuotaEventPublic,
    TenantLimitsIn,
    TenantLimitsPublic,
    UserLimitsIn,
    UserLimitsPublic,
)
from tongdao.tenancy.models import User

router = APIRouter()

TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
UserId = Annotated[uuid.UUID, Path(description="the user's id")]
T = "/tenants/{tenant_id}"


def tenant_user(guard: Guard, tenant_id: uuid.UUID, user_id: uuid.UUID, action: Action) -> User:
    """The tenant's user: 404 when either is out of the caller's sight, then 403."""
    tenant = guard.tenant(tenant_id)
    user = guard.ctx.session.scalar(
        select(User).where(User.id == user_id, User.tenant_id == tenant.id)
    )
    if user is None:
        raise NotFound("user not found")
    guard.require("user_limits", action)
    return user


@router.get(T + "/limits", tags=["quotas"], operation_id="get_tenant_limits")
def get_tenant_limits(guard: GuardDep, tenant_id: TenantId) -> TenantLimitsPublic:
    """The tenant's transfer caps and bandwidth limits, and its bytes this month."""
    tenant = guard.tenant(tenant_id)
    guard.require("tenant_limits", Action.READ)
    return service.tenant_view(guard.ctx, tenant.id)


@router.put(T + "/limits", tags=["quotas"], operation_id="put_tenant_limits")
def put_tenant_limits(
    guard: GuardDep, tenant_id: TenantId, body: TenantLimitsIn
) -> TenantLimitsPublic:
    """Set the tenant's limits (operator admin, billing clerk). Every PoP serving the tenant
    receives the new limits; a raised cap lifts a block at once."""
    tenant = guard.tenant(tenant_id)
    guard.require("tenant_limits", Action.UPDATE)
    service.put_tenant_limits(guard.ctx, tenant.id, body)
    guard.ctx.session.commit()
    return service.tenant_view(guard.ctx, tenant.id)


@router.get(T + "/users/{user_id}/limits", tags=["quotas"], operation_id="get_user_limits")
def get_user_limits(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> UserLimitsPublic:
    """A user's override, the values in force, and the user's bytes this month."""
    user = tenant_user(guard, tenant_id, user_id, Action.READ)
    return service.user_view(guard.ctx, tenant_id, user.id)


@router.put(T + "/users/{user_id}/limits", tags=["quotas"], operation_id="put_user_limits")
def put_user_limits(
    guard: GuardDep, tenant_id: TenantId, user_id: UserId, body: UserLimitsIn
) -> UserLimitsPublic:
    """Set a user's cap and bandwidth (the tenant's admin or operator staff), within the
    tenant's per-user values; both empty removes the override."""
    user = tenant_user(guard, tenant_id, user_id, Action.UPDATE)
    service.put_user_limits(guard.ctx, tenant_id, user.id, body)
    guard.ctx.session.commit()
    return service.user_view(guard.ctx, tenant_id, user.id)


@router.get(T + "/quota-events", tags=["quotas"], operation_id="list_quota_events")
def list_quota_events(guard: GuardDep, tenant_id: TenantId) -> Page[QuotaEventPublic]:
    """The tenant's 80% / 100% events, newest first (the last 200)."""
    tenant = guard.tenant(tenant_id)
    guard.require("quota_events", Action.READ)
    rows = service.events(guard.ctx.session, tenant.id)
    return Page[QuotaEventPublic](data=rows, count=len(rows))
