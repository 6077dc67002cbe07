"""Routes for access policies."""

from __future__ import annotations

from fastapi import APIRouter

from tongdao.access.service import PolicyResource
from tongdao.api.crud import mount

router = APIRouter()
mount(router, PolicyResource(), "/tenants/{tenant_id}/policies", tags=["policies"])
