"""Reading the audit log: newest first, filterable; tenant admins see their tenant's events.
Verifying the chain (operator roles) and regulator exports (who reads the log; audited)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from tongdao.api.deps import GuardDep
from tongdao.api.pagination import Page, PageParams, page_params, paginate
from tongdao.audit import chain
from tongdao.audit.export import ExportQuery, write_export
from tongdao.audit.models import AuditEvent
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.audit.schemas import AuditEventPublic, AuditFilters
from tongdao.auth.permissions import Action
from tongdao.errors import NotFound

router = APIRouter(tags=["audit"])
_CHUNK = 1 << 16


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
    for key in ("tenant_id", "object_type", "object_id", "action", "actor", "kind", "user_id"):
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


@router.get("/audit/verify", operation_id="verify_audit_chain")
def verify_audit_chain(guard: GuardDep) -> chain.ChainReport:
    """Walk the whole hash chain (from the latest signed checkpoint) and name the first record
    that was edited, deleted, moved or inserted. Answers 200 either way: see ``ok``."""
    guard.require("audit_chain", Action.READ)
    runtime = guard.ctx.runtime
    return chain.verify_chain(runtime.db, chain.SigningKey.from_settings(runtime.settings))


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
    guard.require("audit", Action.READ)
    principal = guard.principal
    if query.tenant_id is not None and not principal.sees_tenant(query.tenant_id):
        raise NotFound("tenant not found")
    query.check()
    runtime = guard.ctx.runtime
    scope = None if principal.is_operator else principal.tenant_id
    now = runtime.clock()
    handle = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (closed by _stream)
    try:
        with chain.snapshot(runtime.db) as session:
            manifest = write_export(
                session,
                query,
                handle,
                scope=scope,
                caller={"user_id": principal.user_id, "email": principal.email},
                now=now,
            )
        with runtime.db.session() as session:
            set_actor(session, Actor(principal.user_id, principal.email, guard.ctx.source_ip))
            record(
                session,
                "export",
                "audit_log",
                kind="export",
                tenant_id=scope or query.tenant_id,
                after={
                    "format": manifest["format"],
                    "filters": manifest["filters"],
                    "records": manifest["records"],
                    "open_sessions": manifest["open_sessions"],
                    "files": manifest["files"],
                    "chain": manifest["chain"],
                },
            )
            session.commit()
    except BaseException:
        handle.close()
        raise
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        _stream(handle),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="tongdao-audit-{stamp}.zip"'},
    )
