"""Routes for tenants, their users and groups, and operator staff."""

from __future__ import annotations

from fastapi import APIRouter

from tongdao.api.crud import mount
from tongdao.tenancy.service import GroupResource, StaffResource, TenantResource, UserResource

router = APIRouter()
mount(router, TenantResource(), "/tenants", tags=["tenants"])
mount(router, UserResource(), "/tenants/{tenant_id}/users", tags=["users"])
mount(router, GroupResource(), "/tenants/{tenant_id}/groups", tags=["groups"])
mount(router, StaffResource(), "/operator/staff", tags=["operator"])
