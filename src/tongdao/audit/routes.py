"""Reading the audit log: newest first, filterable; tenant admins see their tenant's events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from tongdao.api.deps import GuardDep
from tongdao.api.pagination import Page, PageParams, page_params, paginate
from tongdao.audit.models import AuditEvent
from tongdao.audit.schemas import AuditEventPublic, AuditFilters
from tongdao.auth.permissions import Action

router = APIRouter(tags=["audit"])


@router.get("/audit/events", operation_id="list_audit_events")
def list_audit_events(
    guard: GuardDep,
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[AuditFilters, Query()],
) -> Page[AuditEventPublic]:
    guard.require("audit", Action.READ)
    stmt = guard.restrict(
        select(AuditEvent), "audit", Action.READ, tenant_column=AuditEvent.tenant_id
    )
    for key in ("tenant_id", "object_type", "object_id", "action", "actor"):
        value = getattr(filters, key)
        if value is not None:
            stmt = stmt.where(getattr(AuditEvent, key) == value)
    if filters.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < filters.until)
    rows, total, cursor = paginate(guard.ctx.session, stmt, AuditEvent.id, page, descending=True)
    return Page[AuditEventPublic](
        data=[AuditEventPublic.model_validate(r) for r in rows], count=total, next_cursor=cursor
    )
