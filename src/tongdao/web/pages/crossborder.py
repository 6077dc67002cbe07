"""Cross-border service pages: a tenant admin applies and follows the application (status,
documents, submission); the compliance officer's queue and decision forms.

Every page calls what the API route for the same job calls (:mod:`tongdao.crossborder.service`
and :mod:`tongdao.crossborder.documents`), with the same Guard checks: another tenant's
application answers 404, a decision by anyone but the compliance officer 403 naming the role.
Uploads are ``multipart/form-data`` (a plain form, no script), read up to the route's 10 MiB
and parsed with the standard library's MIME parser.
"""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.auth.permissions import Action, Role
from tongdao.crossborder import documents as docs
from tongdao.crossborder import letter, service
from tongdao.crossborder import schemas as s
from tongdao.crossborder.models import (
    ApplicationState,
    CrossBorderApplication,
    CrossBorderDocument,
    DocumentKind,
)
from tongdao.errors import Conflict, DomainError, NotFound, PayloadTooLarge, ValidationError
from tongdao.network.models import Link, Pop, Site
from tongdao.network.service import HOME_COUNTRY, crosses_border
from tongdao.tenancy.models import Tenant
from tongdao.web.console import (
    ConsoleRoute,
    Form,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    check_csrf,
    done_notice,
    parse,
    parse_uuid,
    redirect,
    render,
    translate_message,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
NAV = [
    NavItem("/console/crossborder", N_("Cross-border service"), frozenset({Role.TENANT_ADMIN})),
    NavItem(
        "/console/crossborder-queue",
        N_("Cross-border applications"),
        frozenset({Role.COMPLIANCE_OFFICER}),
    ),
]
PAGE_SIZE = 20
DoneQ = Annotated[str, Query(max_length=20)]
NOTICES = {
    "created": N_("The application is saved as a draft. Upload the documents, then submit it."),
    "uploaded": N_("The document is uploaded."),
    "submitted": N_("The application is submitted to the compliance officer."),
    "review": N_("The application is under review."),
    "approved": N_("The authorisation is recorded: the tenant's path abroad is open."),
    "rejected": N_("The application is rejected."),
    "revoked": N_("The authorisation is revoked: the tenant's path abroad is closed."),
}
KIND_LABELS = {
    DocumentKind.BUSINESS_LICENCE.value: N_("Business licence (stamped)"),
    DocumentKind.COMMITMENT_LETTER.value: N_("Commitment letter (signed and stamped)"),
    DocumentKind.OTHER.value: N_("Other evidence"),
}
STEP_LABELS = {
    "none": N_("No application yet: apply below (internal office use only)."),
    "draft": N_("Your application is a draft: upload the documents and submit it."),
    "submitted": N_("Submitted: waiting for the compliance officer's review."),
    "under_review": N_("Under review: the carrier decides; this takes some working days."),
    "rejected": N_("Rejected: see the reason on the application and apply again."),
    "expired": N_("Expired: the path abroad is closed. Apply again."),
    "revoked": N_("Revoked: see the reason on the application. The path abroad is closed."),
    "link_unavailable": N_(
        "Approved, but the link it is on is not active: the path abroad is closed until it is."
    ),
    "not_yet_valid": N_("Approved: the authorisation is valid from its first day."),
    "approved": N_("Authorised: your path abroad is open."),
}
QUEUE_STATES = (
    "submitted",
    "under_review",
    "approved",
    "rejected",
    "expired",
    "revoked",
    "draft",
)
MAX_UPLOAD_BODY = docs.MAX_BYTES + 64 * 1024  # the file and the form's other fields


def _numbers(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A form's whole numbers as numbers (the schemas take strict integers); anything else
    stays text and is refused, keyed, by the schema."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
            data[key] = int(value.strip())
    return data


def _operator(view: View) -> bool:
    return view.principal is not None and view.principal.is_operator


def _errors(view: View, exc: DomainError) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, english in exc.fields.items():
        target = key.split(".")[0] if key.startswith("site_ids") else key
        text = translate_message(view.locale, english)
        out[target] = f"{out[target]}; {text}" if target in out else text
    if not out or not exc.fields or exc.status_code == 409:
        out["form"] = translate_message(view.locale, exc.message)
    return out


def _own_tenant(view: View, action: Action = Action.READ) -> tuple[Guard, Tenant]:
    guard = Guard(view.ctx)
    principal = guard.principal
    if principal.tenant_id is None:
        raise NotFound("tenant not found")
    tenant = guard.tenant(principal.tenant_id)
    guard.require("crossborder", action)
    return guard, tenant


def _load(view: View, app_id: str) -> tuple[Guard, CrossBorderApplication]:
    guard = Guard(view.ctx)
    app = service.get(view.ctx, parse_uuid(app_id, "cross-border application"))
    guard.require("crossborder", Action.READ)
    return guard, app


def _overseas_sites(view: View, tenant_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = view.ctx.session.execute(
        select(Site.id, Site.name, Site.country, Pop.country)
        .outerjoin(Pop, Pop.id == Site.pop_id)
        .where(Site.tenant_id == tenant_id)
        .order_by(Site.name)
    )
    return [
        (str(sid), f"{name} ({pop_country or country})")
        for sid, name, country, pop_country in rows
        if (pop_country or country) != HOME_COUNTRY
    ]


# --- the tenant admin's page -----------------------------------------------------------------
def _index(
    view: View,
    tenant: Tenant,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> Response:
    apps = list(
        view.ctx.session.scalars(
            select(CrossBorderApplication)
            .where(CrossBorderApplication.tenant_id == tenant.id)
            .order_by(CrossBorderApplication.id.desc())
            .limit(PAGE_SIZE)
        )
    )
    st = service.status(view.ctx, tenant.id)
    return render(
        view,
        "crossborder/index.html",
        {
            "status": st,
            "step_label": view._(STEP_LABELS[st.step]),
            "warning": _warning(view, apps),
            "apps": apps,
            "sites": _overseas_sites(view, tenant.id),
            "values": values or {"internal_use_only": ""},
            "errors": errors or {},
            "notice": notice,
            "today": service.today(view.ctx),
        },
        status=status,
        title=view._("Cross-border service"),
    )


def _warning(view: View, apps: list[CrossBorderApplication]) -> str:
    """The expiry warning the job recorded (30 or 7 days before the end), if any."""
    for app in apps:
        if app.state == ApplicationState.APPROVED and app.valid_to is not None:
            left = (app.valid_to - service.today(view.ctx)).days
            if app.warned_7_at is not None or app.warned_30_at is not None:
                return view._(
                    "Your cross-border authorisation ends on %(day)s (in %(days)s days). "
                    "Apply for a renewal in time: after that day the path abroad closes.",
                    day=app.valid_to.isoformat(),
                    days=str(left),
                )
    return ""


@router.get("/console/crossborder")
def index_page(view: UserViewDep, done: DoneQ = "") -> Response:
    _guard, tenant = _own_tenant(view)
    return _index(view, tenant, notice=done_notice(view, done, NOTICES))


FIELDS = (
    "bandwidth_mbps",
    "headcount",
    "manager_name",
    "manager_phone",
    "manager_email",
    "term_start",
    "term_end",
    "notes",
)


@router.post("/console/crossborder")
def create(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard, tenant = _own_tenant(view, Action.CREATE)
    values: dict[str, Any] = {k: form.text(k) for k in FIELDS}
    values["site_ids"] = form.getlist("site_ids")
    values["internal_use_only"] = form.text("internal_use_only")
    data: dict[str, Any] = {k: v for k, v in values.items() if v not in ("", [])}
    data["internal_use_only"] = values["internal_use_only"] == "yes"
    data.setdefault("site_ids", [])
    try:
        _numbers(data, "bandwidth_mbps", "headcount")
        app = service.create(view.ctx, tenant, parse(s.ApplicationCreate, data))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        return _index(view, tenant, values=values, errors=_errors(view, exc), status=422)
    view.ctx.session.commit()
    return redirect(view, f"/console/crossborder/{app.id}?done=created")


@router.get("/console/crossborder/letter.pdf")
def letter_pdf(view: UserViewDep) -> Response:
    Guard(view.ctx).require("crossborder", Action.READ)
    return Response(
        letter.template_pdf(letter.operator_name(view.ctx.session)),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="commitment-letter.pdf"'},
    )


# --- one application ---------------------------------------------------------------------------
def _detail(
    view: View,
    app: CrossBorderApplication,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> Response:
    tenant = view.ctx.session.get(Tenant, app.tenant_id)
    assert tenant is not None
    documents = service.documents(view.ctx.session, app.id)
    sites = {
        str(site.id): site.name
        for site in view.ctx.session.scalars(
            select(Site).where(Site.id.in_([uuid.UUID(i) for i in app.site_ids]))
        )
    }
    link = view.ctx.session.get(Link, app.link_id) if app.link_id else None
    officer = view.can("crossborder_decisions", Action.UPDATE)
    applicant = view.can("crossborder", Action.UPDATE) and not _operator(view)
    today = service.today(view.ctx)
    return render(
        view,
        "crossborder/detail.html",
        {
            "app": app,
            "tenant_name": view.locale.pick(tenant.name_en, tenant.name_zh),
            "documents": documents,
            "kind_labels": {k: view._(v) for k, v in KIND_LABELS.items()},
            "sites": [sites.get(i, i) for i in app.site_ids],
            "link": link,
            "links": _crossing_links(view) if officer else [],
            "officer": officer,
            "applicant": applicant,
            "can_upload": applicant and app.state in service.UPLOAD_STATES,
            "values": values
            or {
                "valid_from": today.isoformat(),
                "valid_to": (today + timedelta(days=365)).isoformat(),
                "approved_mbps": str(app.bandwidth_mbps),
            },
            "errors": errors or {},
            "notice": notice,
            "max_mib": docs.MAX_BYTES // (1024 * 1024),
        },
        status=status,
        title=view._("Cross-border application"),
    )


def _crossing_links(view: View) -> list[tuple[str, str]]:
    out = []
    for link in view.ctx.session.scalars(select(Link).order_by(Link.name)):
        a, b = view.ctx.session.get(Pop, link.pop_a_id), view.ctx.session.get(Pop, link.pop_b_id)
        if a is not None and b is not None and crosses_border(a.country, b.country):
            out.append((str(link.id), f"{link.name} ({link.capacity_mbps} Mbit/s)"))
    return out


@router.get("/console/crossborder/{app_id}")
def detail_page(view: UserViewDep, app_id: str, done: DoneQ = "") -> Response:
    _guard, app = _load(view, app_id)
    return _detail(view, app, notice=done_notice(view, done, NOTICES))


def _multipart(request: Request, body: bytes) -> dict[str, tuple[str | None, str | None, bytes]]:
    """name → (file name, content type, bytes) of a multipart/form-data body."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ValidationError({"file": "send the form as multipart/form-data"})
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    out: dict[str, tuple[str | None, str | None, bytes]] = {}
    if not message.is_multipart():
        raise ValidationError({"file": "the form could not be read"})
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name in out:
            continue
        payload = part.get_payload(decode=True)
        out[name] = (
            part.get_filename(),
            part.get_content_type() if part.get("content-type") else None,
            payload if isinstance(payload, bytes) else b"",
        )
    return out


@router.post("/console/crossborder/{app_id}/documents")
async def upload(request: Request, view: UserViewDep, app_id: str) -> Response:
    from starlette.concurrency import run_in_threadpool

    def allowed() -> None:
        guard, _app = _load(view, app_id)
        guard.require("crossborder", Action.UPDATE)
        if _operator(view):
            raise NotFound("cross-border application not found")
        view.ctx.session.rollback()  # only reads: nothing is held while the body streams in

    # Who may upload is checked before the body is read: nobody else makes the server buffer it.
    await run_in_threadpool(allowed)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPLOAD_BODY:
            break

    def work() -> Response:
        guard, app = _load(view, app_id)
        guard.require("crossborder", Action.UPDATE)
        if _operator(view):
            raise NotFound("cross-border application not found")
        try:  # the CSRF token first (the form's first field, also in a cut-off body)
            parts = _multipart(request, bytes(body))
        except ValidationError:
            parts = {}
        token = parts.get("csrf_token", (None, None, b""))[2].decode(errors="replace")
        check_csrf(view, Form([("csrf_token", token)]))
        try:
            if len(body) > MAX_UPLOAD_BODY:
                raise docs.too_large()
            if "file" not in parts:
                raise ValidationError({"file": "choose a file to upload"})
            kind_text = parts.get("kind", (None, None, b""))[2].decode(errors="replace")
            try:
                kind = DocumentKind(kind_text)
            except ValueError:
                raise ValidationError({"kind": "choose what the document is"}) from None
            filename, ctype, data = parts.get("file", (None, None, b""))
            docs.add(view.ctx, app, kind, filename, ctype, data)
            view.ctx.session.flush()
        except (ValidationError, Conflict, PayloadTooLarge) as exc:
            view.ctx.session.rollback()
            _g, app = _load(view, app_id)
            return _detail(view, app, errors=_errors(view, exc), status=exc.status_code)
        view.ctx.session.commit()
        return redirect(view, f"/console/crossborder/{app.id}?done=uploaded")

    result: Response = await run_in_threadpool(work)
    return result


@router.get("/console/crossborder/documents/{doc_id}")
def document(view: UserViewDep, doc_id: str) -> Response:
    guard = Guard(view.ctx)
    doc = view.ctx.session.get(CrossBorderDocument, parse_uuid(doc_id, "document"))
    if doc is None or not guard.principal.sees_tenant(doc.tenant_id):
        raise NotFound("document not found")
    guard.require("crossborder", Action.READ)
    safe = doc.filename.encode("ascii", "replace").decode().replace("?", "_")
    return Response(
        doc.content,
        media_type=doc.content_type,
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )


def _post_action(view: View, app_id: str, form: Form, action: str) -> Response:
    check_csrf(view, form)
    guard, app = _load(view, app_id)
    try:
        if action == "submit":
            guard.require("crossborder", Action.UPDATE)
            if _operator(view):
                raise NotFound("cross-border application not found")
            service.submit(view.ctx, app)
            done = "submitted"
        elif action == "review":
            service.start_review(view.ctx, app)
            done = "review"
        elif action == "approve":
            service.require_decider(view.ctx)
            data = {
                k: form.text(k)
                for k in ("approval_ref", "link_id", "approved_mbps", "valid_from", "valid_to")
            }
            data = _numbers({k: v for k, v in data.items() if v}, "approved_mbps")
            service.approve(view.ctx, app, parse(s.Approve, data))
            done = "approved"
        elif action == "revoke":
            service.require_decider(view.ctx)
            service.revoke(view.ctx, app, parse(s.Revoke, {"reason": form.text("reason")}))
            done = "revoked"
        else:
            service.require_decider(view.ctx)
            service.reject(view.ctx, app, parse(s.Reject, {"reason": form.text("reason")}))
            done = "rejected"
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        _g, app = _load(view, app_id)
        values = {k: v for k, v in form.pairs if k != "csrf_token"}
        return _detail(view, app, values=values, errors=_errors(view, exc), status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"/console/crossborder/{app.id}?done={done}")


@router.post("/console/crossborder/{app_id}/submit")
def submit(view: UserViewDep, app_id: str, form: FormDep) -> Response:
    return _post_action(view, app_id, form, "submit")


@router.post("/console/crossborder/{app_id}/review")
def review(view: UserViewDep, app_id: str, form: FormDep) -> Response:
    return _post_action(view, app_id, form, "review")


@router.post("/console/crossborder/{app_id}/approve")
def approve(view: UserViewDep, app_id: str, form: FormDep) -> Response:
    return _post_action(view, app_id, form, "approve")


@router.post("/console/crossborder/{app_id}/reject")
def reject(view: UserViewDep, app_id: str, form: FormDep) -> Response:
    return _post_action(view, app_id, form, "reject")


@router.post("/console/crossborder/{app_id}/revoke")
def revoke(view: UserViewDep, app_id: str, form: FormDep) -> Response:
    return _post_action(view, app_id, form, "revoke")


# --- the compliance officer's queue ------------------------------------------------------------
@router.get("/console/crossborder-queue")
def queue_page(
    view: UserViewDep,
    state: Annotated[str, Query(max_length=20)] = "",
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    guard = Guard(view.ctx)
    if not guard.principal.is_operator:
        raise NotFound("page not found")
    guard.require("crossborder", Action.READ)
    stmt = select(CrossBorderApplication)
    if state in QUEUE_STATES:
        stmt = stmt.where(CrossBorderApplication.state == state)
    else:
        state = ""
        stmt = stmt.where(
            CrossBorderApplication.state.in_(
                [ApplicationState.SUBMITTED.value, ApplicationState.UNDER_REVIEW.value]
            )
        )
    rows, total, next_cursor = paginate(
        view.ctx.session,
        stmt,
        CrossBorderApplication.id,
        PageParams(limit=PAGE_SIZE, cursor=cursor),
    )
    names = {
        t.id: view.locale.pick(t.name_en, t.name_zh)
        for t in view.ctx.session.scalars(
            select(Tenant).where(Tenant.id.in_({r.tenant_id for r in rows}))
        )
    }
    return render(
        view,
        "crossborder/queue.html",
        {
            "rows": rows,
            "names": names,
            "total": total,
            "page": {"next_cursor": next_cursor},
            "state": state,
            "states": QUEUE_STATES,
        },
        title=view._("Cross-border applications"),
    )
