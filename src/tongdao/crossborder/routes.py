"""Cross-border endpoints: a tenant admin's applications and documents, the compliance
officer's queue and decisions, the tenant's status, and the commitment letter template."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy import select

from tongdao.api.deps import GuardDep
from tongdao.api.pagination import Page, PageParams, page_params, paginate
from tongdao.auth.permissions import Action
from tongdao.crossborder import documents as docs
from tongdao.crossborder import letter, service
from tongdao.crossborder import schemas as s
from tongdao.crossborder.models import CrossBorderApplication, CrossBorderDocument, DocumentKind
from tongdao.errors import NotFound, ValidationError

router = APIRouter(tags=["cross-border"])

TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
AppId = Annotated[uuid.UUID, Path(description="the application's id")]
DocId = Annotated[uuid.UUID, Path(description="the document's id")]
UPLOAD_PATH = "/tenants/{tenant_id}/crossborder/applications/{object_id}/documents"


@router.get(
    "/crossborder/letter-template.pdf",
    operation_id="get_crossborder_letter_template",
    responses={200: {"content": {"application/pdf": {}}}},
)
def letter_template(guard: GuardDep) -> Response:
    """The operator's commitment letter (bilingual) to print, sign, stamp and upload."""
    guard.require("crossborder", Action.READ)
    return Response(
        letter.template_pdf(letter.operator_name(guard.ctx.session)),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="commitment-letter.pdf"'},
    )


@router.get("/tenants/{tenant_id}/crossborder/status", operation_id="get_crossborder_status")
def get_status(guard: GuardDep, tenant_id: TenantId) -> s.CrossBorderStatus:
    """Whether the tenant is carried abroad, and if not, which step is missing."""
    tenant = guard.tenant(tenant_id)
    guard.require("crossborder", Action.READ)
    return service.status(guard.ctx, tenant.id)


@router.get(
    "/tenants/{tenant_id}/crossborder/applications", operation_id="list_crossborder_applications"
)
def list_applications(
    guard: GuardDep, tenant_id: TenantId, page: Annotated[PageParams, Depends(page_params)]
) -> Page[s.ApplicationPublic]:
    tenant = guard.tenant(tenant_id)
    guard.require("crossborder", Action.READ)
    stmt = select(CrossBorderApplication).where(CrossBorderApplication.tenant_id == tenant.id)
    rows, total, cursor = paginate(guard.ctx.session, stmt, CrossBorderApplication.id, page)
    return Page[s.ApplicationPublic](
        data=[service.public(guard.ctx.session, r) for r in rows], count=total, next_cursor=cursor
    )


@router.post(
    "/tenants/{tenant_id}/crossborder/applications",
    status_code=201,
    operation_id="create_crossborder_application",
)
def create_application(
    guard: GuardDep, tenant_id: TenantId, body: s.ApplicationCreate
) -> s.ApplicationPublic:
    """A draft application (tenant admin); upload the documents, then submit it."""
    tenant = guard.tenant(tenant_id)
    guard.require("crossborder", Action.CREATE)
    app = service.create(guard.ctx, tenant, body)
    guard.ctx.session.flush()
    out = service.public(guard.ctx.session, app)
    guard.ctx.session.commit()
    return out


@router.get(
    "/tenants/{tenant_id}/crossborder/applications/{object_id}",
    operation_id="get_crossborder_application",
)
def get_application(guard: GuardDep, tenant_id: TenantId, object_id: AppId) -> s.ApplicationPublic:
    guard.tenant(tenant_id)
    app = service.get(guard.ctx, object_id, tenant_id)
    guard.require("crossborder", Action.READ)
    return service.public(guard.ctx.session, app)


@router.patch(
    "/tenants/{tenant_id}/crossborder/applications/{object_id}",
    operation_id="update_crossborder_application",
)
def update_application(
    guard: GuardDep, tenant_id: TenantId, object_id: AppId, body: s.ApplicationUpdate
) -> s.ApplicationPublic:
    tenant = guard.tenant(tenant_id)
    app = service.get(guard.ctx, object_id, tenant_id)
    guard.require("crossborder", Action.UPDATE)
    service.update(guard.ctx, tenant, app, body)
    guard.ctx.session.flush()
    out = service.public(guard.ctx.session, app)
    guard.ctx.session.commit()
    return out


@router.post(
    "/tenants/{tenant_id}/crossborder/applications/{object_id}/submit",
    operation_id="submit_crossborder_application",
)
def submit_application(
    guard: GuardDep, tenant_id: TenantId, object_id: AppId
) -> s.ApplicationPublic:
    """Send the draft to the compliance officer (it needs a business licence and the signed,
    stamped commitment letter)."""
    guard.tenant(tenant_id)
    app = service.get(guard.ctx, object_id, tenant_id)
    guard.require("crossborder", Action.UPDATE)
    service.submit(guard.ctx, app)
    guard.ctx.session.flush()
    out = service.public(guard.ctx.session, app)
    guard.ctx.session.commit()
    return out


@router.post(
    UPLOAD_PATH,
    status_code=201,
    operation_id="upload_crossborder_document",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in docs.ACCEPTED
            },
        }
    },
)
async def upload_document(
    request: Request,
    guard: GuardDep,
    tenant_id: TenantId,
    object_id: AppId,
    kind: Annotated[
        str | None,
        Query(max_length=32, description="business_licence, commitment_letter or other"),
    ] = None,
    filename: Annotated[str | None, Query(max_length=200)] = None,
) -> s.DocumentPublic:
    """Upload one document as the request body (PDF, PNG or JPEG, at most 10 MiB; the type is
    checked from the content)."""
    from starlette.concurrency import run_in_threadpool

    def allowed() -> None:
        guard.tenant(tenant_id)
        app = service.get(guard.ctx, object_id, tenant_id)
        guard.require("crossborder", Action.UPDATE)  # 404 / 403 before the request's own errors
        docs.check_open(guard.ctx.session, app)
        guard.ctx.session.rollback()  # only reads: no lock is held while the body streams in

    # Who may upload is checked before the body is read (nobody else makes the server buffer
    # 10 MiB); the body is read before the store is written: on SQLite a write request's first
    # write takes the write lock, which a slow upload must not hold.
    await run_in_threadpool(allowed)
    data = await docs.read_limited(request.stream(), request.headers.get("content-length"))

    def store() -> s.DocumentPublic:
        guard.tenant(tenant_id)
        app = service.get(guard.ctx, object_id, tenant_id)
        guard.require("crossborder", Action.UPDATE)
        try:
            document_kind = DocumentKind(kind or "")
        except ValueError:
            raise ValidationError(
                {"kind": "one of " + ", ".join(k.value for k in DocumentKind)}
            ) from None
        doc = docs.add(
            guard.ctx, app, document_kind, filename, request.headers.get("content-type"), data
        )
        guard.ctx.session.flush()
        out = s.DocumentPublic.model_validate(doc)
        guard.ctx.session.commit()
        return out

    result: s.DocumentPublic = await run_in_threadpool(store)
    return result


@router.get(
    "/tenants/{tenant_id}/crossborder/documents/{object_id}",
    operation_id="get_crossborder_document",
    responses={200: {"content": {t: {} for t in docs.ACCEPTED}}},
)
def get_document(guard: GuardDep, tenant_id: TenantId, object_id: DocId) -> Response:
    """A document as uploaded (its SHA-256 in ``X-Content-SHA256``)."""
    guard.tenant(tenant_id)
    doc = guard.ctx.session.get(CrossBorderDocument, object_id)
    if doc is None or doc.tenant_id != tenant_id:
        raise NotFound("document not found")
    guard.require("crossborder", Action.READ)
    ascii_name = doc.filename.encode("ascii", "replace").decode().replace("?", "_")
    return Response(
        doc.content,
        media_type=doc.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{ascii_name}"',
            "X-Content-SHA256": doc.sha256,
        },
    )


# --- the compliance officer's queue and decisions --------------------------------------------
@router.get("/crossborder/applications", operation_id="list_all_crossborder_applications")
def queue(
    guard: GuardDep,
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[s.ApplicationFilters, Query()],
) -> Page[s.ApplicationPublic]:
    """Every tenant's applications (operator roles; a tenant admin sees their own), oldest
    first; ``state=submitted`` is the compliance officer's queue."""
    guard.require("crossborder", Action.READ)
    stmt = guard.restrict(
        select(CrossBorderApplication),
        "crossborder",
        Action.READ,
        tenant_column=CrossBorderApplication.tenant_id,
    )
    if filters.state is not None:
        stmt = stmt.where(CrossBorderApplication.state == filters.state.value)
    if filters.tenant_id is not None:
        stmt = stmt.where(CrossBorderApplication.tenant_id == filters.tenant_id)
    rows, total, cursor = paginate(guard.ctx.session, stmt, CrossBorderApplication.id, page)
    return Page[s.ApplicationPublic](
        data=[service.public(guard.ctx.session, r) for r in rows], count=total, next_cursor=cursor
    )


def _decided(guard: GuardDep, app: CrossBorderApplication) -> s.ApplicationPublic:
    guard.ctx.session.flush()
    out = service.public(guard.ctx.session, app)
    guard.ctx.session.commit()
    return out


@router.post(
    "/crossborder/applications/{object_id}/review", operation_id="review_crossborder_application"
)
def review(guard: GuardDep, object_id: AppId) -> s.ApplicationPublic:
    """The compliance officer takes the application into review (and to the carrier)."""
    app = service.get(guard.ctx, object_id)
    service.start_review(guard.ctx, app)
    return _decided(guard, app)


@router.post(
    "/crossborder/applications/{object_id}/approve", operation_id="approve_crossborder_application"
)
def approve(guard: GuardDep, object_id: AppId, body: s.Approve) -> s.ApplicationPublic:
    """Record the carrier's approval: reference, link, bandwidth and validity. 409 naming the
    numbers when the link's capacity would be exceeded."""
    app = service.get(guard.ctx, object_id)
    service.approve(guard.ctx, app, body)
    return _decided(guard, app)


@router.post(
    "/crossborder/applications/{object_id}/reject", operation_id="reject_crossborder_application"
)
def reject(guard: GuardDep, object_id: AppId, body: s.Reject) -> s.ApplicationPublic:
    app = service.get(guard.ctx, object_id)
    service.reject(guard.ctx, app, body)
    return _decided(guard, app)


@router.post(
    "/crossborder/applications/{object_id}/revoke", operation_id="revoke_crossborder_application"
)
def revoke(guard: GuardDep, object_id: AppId, body: s.Revoke) -> s.ApplicationPublic:
    """The compliance officer revokes an approval (with the reason): its bandwidth on the link
    is free again and the tenant's path abroad closes."""
    app = service.get(guard.ctx, object_id)
    service.revoke(guard.ctx, app, body)
    return _decided(guard, app)
