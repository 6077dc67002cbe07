"""Reading the audit log: newest first, filterable; tenant admins see their tenant's events.
Verifying the chain (operator roles) and regulator exports (who reads the log; audited)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from tongdao.api.deps import GuardDep
from tongdao.api.pagination import Page, PageParams, page_params, paginate
from tongdao.audit import chain, reading
from tongdao.audit.export import ExportQuery
from tongdao.audit.models import AuditEvent
from tongdao.audit.schemas import AuditEventPublic, AuditFilters

router = APIRouter(tags=["audit"])
_CHUNK = 1 << 16


@router.get("/audit/events", operation_id="list_audit_events")
def list_audit_events(
    guard: GuardDep,
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[AuditFilters, Query()],
) -> Page[AuditEventPublic]:
    stmt = reading.events_query(guard, filters)
    rows, total, cursor = paginate(guard.ctx.session, stmt, AuditEvent.id, page, descending=True)
    return Page[AuditEventPublic](
        data=[AuditEventPublic.model_validate(r) for r in rows], count=total, next_cursor=cursor
    )


@router.get("/audit/verify", operation_id="verify_audit_chain")
def verify_audit_chain(guard: GuardDep) -> chain.ChainReport:
    """Walk the whole hash chain (from the latest signed checkpoint) and name the first record
    that was edited, deleted, moved or inserted. Answers 200 either way: see ``ok``."""
    return reading.verify(guard)


def _stream(handle: IO[bytes]) -> Iterator[bytes]:
    try:
        handle.seek(0)
        while chunk := handle.read(_CHUNK):
            yield chunk
    finally:
        handle.close()


@router.get(
    "/audit/export",
    operation_id="export_audit",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "a zip: records.csv or records.jsonl, and manifest.json",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def export_audit(guard: GuardDep, query: Annotated[ExportQuery, Query()]) -> StreamingResponse:
    """Export records (by tenant, user, source IP, time range) for a regulator, with a
    manifest of counts and SHA-256 hashes. Tenant admins export their own tenant only. The
    export itself is recorded in the audit log."""
    handle, filename = reading.export(guard, query)
    return StreamingResponse(
        _stream(handle),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
