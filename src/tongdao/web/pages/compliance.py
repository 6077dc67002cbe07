"""The compliance officer's pages: the work queue (tenants to vet, declared networks to decide,
tenant admins' identities to verify), licences and the shareholder register, the
compliance dashboard, and the privacy notices (published by the operator admin or the
compliance officer: ``notices`` create).

Each page calls what the API route for the same job calls: tenants through
:class:`~tongdao.tenancy.service.TenantResource` (``PATCH /tenants/{id}``), declarations
through :func:`tongdao.network.declared.decide` (``POST /declarations/{id}/approve|reject``),
identities through :func:`tongdao.tenancy.service.verify_identity` (``POST
.../identity-verification``), licences and shareholders through the operator resources
(``/operator/licences``, ``/operator/shareholders``) and the dashboard through
:func:`tongdao.operator.service.compliance_status` (``GET /operator/compliance``), notices
through :func:`tongdao.privacy.service.publish_notice` (``POST /privacy-notices``). A refusal
of the rules shows next to its field, with the rule it names.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import func, select

from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.auth.permissions import OPERATOR_ROLES, Action, Role
from tongdao.compliance import kyc, licensing
from tongdao.compliance import provinces as pv
from tongdao.compliance.rules import rule
from tongdao.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationError
from tongdao.network import declared
from tongdao.network.models import DeclarationState, PrefixDeclaration, Site, SitePurpose
from tongdao.network.schemas import Approval, DeclarationFilters, Rejection
from tongdao.operator import service as operator
from tongdao.operator.models import Licence, Shareholder
from tongdao.operator.schemas import LicenceCreate, ShareholderCreate, ShareholderUpdate
from tongdao.privacy import service as privacy
from tongdao.privacy.models import PrivacyNotice
from tongdao.privacy.schemas import NoticeCreate
from tongdao.tenancy import schemas as ts
from tongdao.tenancy.models import Tenant, TenantState, User
from tongdao.tenancy.service import (
    TENANT_TRANSITIONS,
    TenantResource,
    UserResource,
    identity_missing,
    verify_identity,
    withdraw_verification,
)
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
from tongdao.web.pages import compliance_watch

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
OFFICER = frozenset({Role.COMPLIANCE_OFFICER})
NAV = [
    NavItem("/console/compliance", N_("Work queue"), OFFICER),
    # Published by the operator admin or the compliance officer; read by all operator staff.
    NavItem("/console/privacy-notices", N_("Privacy notices"), frozenset(OPERATOR_ROLES)),
]

PAGE_SIZE = 20
QUEUES = ("tenants", "networks", "identities")
# The states a tenant waits in for vetting, and the moves the queue offers.
AWAITING = (TenantState.APPLIED, TenantState.UNDER_REVIEW)
DECISIONS = (
    TenantState.UNDER_REVIEW,
    TenantState.APPROVED,
    TenantState.REJECTED,
    TenantState.ACTIVE,
)
PURPOSES = {
    SitePurpose.OFFICE: N_("office"),
    SitePurpose.HQ: N_("headquarters"),
    SitePurpose.DATACENTER: N_("data centre"),
}
ID_TYPES = {
    "prc_resident_id": N_("PRC resident ID card"),
    "passport": N_("passport"),
    "foreign_permanent_residence": N_("foreign permanent residence ID card"),
}
# A tenant's states as its vetting reads them ("applied" is an application received, not a
# configuration applied); the others as everywhere in the console.
TENANT_STATES = {"applied": N_("application received")}
ROLE_NAMES = {"tenant_admin": N_("Tenant admin"), "employee": N_("Employee")}
NOTICES = {
    "under_review": N_("The tenant is under review."),
    "approved": N_("The tenant is approved."),
    "rejected": N_("The tenant is rejected; the reason is recorded."),
    "active": N_("The tenant is active."),
    "vetting": N_("The vetting record is saved."),
    "declaration-approved": N_("The network is approved; it is routed from now on."),
    "declaration-rejected": N_("The network is rejected; the reason is recorded."),
    "verified": N_("The identity is verified; the user's pending devices are active."),
    "withdrawn": N_("The verification is withdrawn; the user's devices wait again."),
    "licence": N_("The licence is recorded."),
    "shareholder": N_("The shareholder is recorded."),
    "shareholder-saved": N_("The shareholder is saved."),
}


# --- helpers -----------------------------------------------------------------------------------


def _guard(view: View) -> Guard:
    view.require_principal()
    return Guard(view.ctx)


def _officer(guard: Guard) -> None:
    """The work queue is for whoever decides all three kinds of item: the compliance officer."""
    guard.require("tenants", Action.UPDATE)
    guard.require("declarations", Action.UPDATE)
    guard.require("identity", Action.UPDATE)


def tenant_state(view: View, value: str) -> str:
    label = TENANT_STATES.get(value)
    return view.locale.gettext(label) if label else view.locale.state(value)


def _errors(view: View, exc: DomainError, known: frozenset[str]) -> dict[str, str]:
    """A refusal's messages next to the fields shown; the rest (and a rule's explanation)
    above the form."""
    errors: dict[str, str] = {}
    rest: list[str] = []
    for key, text in exc.fields.items():
        name = key.split(".", 1)[0]
        message = translate_message(view.locale, text)
        if name in known:
            errors.setdefault(name, message)
        else:
            rest.append(message)
    if isinstance(exc, Conflict | PermissionDenied) or rest or not errors:
        errors["form"] = translate_message(view.locale, exc.message)
    return errors


def province_name(view: View, code: str) -> str:
    if code == pv.NATIONWIDE:
        return view._("nationwide")
    province = pv.PROVINCES.get(code)
    if view.locale.language == "zh_CN" and province is not None:
        return province.label_zh
    return pv.label(code)


def cap_label(view: View, service_code: str) -> str:
    """The foreign-stake cap of a service code in the reader's language ("" when none)."""
    cap = licensing.foreign_cap(service_code)
    if cap is None:
        return ""
    if cap.inclusive:
        return view._("at most %(percent)s%%", percent=cap.percent)
    return view._("below %(percent)s%%", percent=cap.percent)


def _page_params(cursor: str) -> PageParams:
    return PageParams(limit=PAGE_SIZE, cursor=cursor or None)


def _tenant_names(view: View, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = view.ctx.session.execute(
        select(Tenant.id, Tenant.name_en, Tenant.name_zh).where(Tenant.id.in_(ids))
    )
    return {tid: view.locale.pick(en, zh) for tid, en, zh in rows}


# --- the work queue ----------------------------------------------------------------------------


def _tenant_queue(
    view: View, guard: Guard, state: str, q: str, cursor: str
) -> tuple[list[Any], int, str | None]:
    resource = TenantResource()
    filters = parse(ts.TenantFilters, {"state": state or None, "q": q or None})
    stmt = resource.apply_filters(resource.base_query(guard, None, Action.READ), filters)
    if not state:
        stmt = stmt.where(Tenant.state.in_([str(s) for s in AWAITING]))
    rows, total, next_cursor = paginate(view.ctx.session, stmt, Tenant.id, _page_params(cursor))
    return resource.to_public_many(view.ctx, rows), total, next_cursor


def _network_queue(
    view: View, guard: Guard, state: str, cursor: str
) -> tuple[list[PrefixDeclaration], int, str | None]:
    resource = declared.DeclarationResource()
    filters = parse(DeclarationFilters, {"state": state or DeclarationState.PENDING})
    stmt = resource.apply_filters(resource.base_query(guard, None, Action.READ), filters)
    return paginate(view.ctx.session, stmt, PrefixDeclaration.id, _page_params(cursor))


def _identity_query(guard: Guard, email: str) -> Any:
    resource = UserResource()
    filters = parse(
        ts.UserFilters,
        {"identity_verified": False, "role": Role.TENANT_ADMIN, "email": email or None},
    )
    stmt = resource.apply_filters(resource.base_query(guard, None, Action.READ), filters)
    return stmt.where(User.tenant_id.is_not(None), User.erased_at.is_(None))


def _count(view: View, stmt: Any) -> int:
    return int(
        view.ctx.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
        or 0
    )


@router.get("/console/compliance")
def work_queue(
    view: UserViewDep,
    queue: Annotated[str, Query(max_length=20)] = "tenants",
    state: Annotated[str, Query(max_length=20)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    guard = _guard(view)
    _officer(guard)
    if queue not in QUEUES:
        queue = "tenants"
    errors: dict[str, str] = {}
    counts = {
        "tenants": _count(
            view,
            TenantResource()
            .base_query(guard, None, Action.READ)
            .where(Tenant.state.in_([str(s) for s in AWAITING])),
        ),
        "networks": _count(
            view,
            declared.DeclarationResource()
            .base_query(guard, None, Action.READ)
            .where(PrefixDeclaration.state == DeclarationState.PENDING),
        ),
        "identities": _count(view, _identity_query(guard, "")),
    }
    items: list[Any] = []
    total = 0
    next_cursor: str | None = None
    names: dict[uuid.UUID, str] = {}
    sites: dict[uuid.UUID, str] = {}
    try:
        if queue == "tenants":
            if state and state not in {s.value for s in TenantState}:
                raise ValidationError({"state": N_("not a tenant state")})
            items, total, next_cursor = _tenant_queue(view, guard, state, q, cursor)
        elif queue == "networks":
            if state and state not in {s.value for s in DeclarationState}:
                raise ValidationError({"state": N_("not a declaration state")})
            items, total, next_cursor = _network_queue(view, guard, state, cursor)
            names = _tenant_names(view, {d.tenant_id for d in items})
            site_ids = {d.site_id for d in items}
            if site_ids:
                sites = dict(
                    view.ctx.session.execute(
                        select(Site.id, Site.name).where(Site.id.in_(site_ids))
                    ).all()
                )
        else:
            stmt = _identity_query(guard, q)
            users, total, next_cursor = paginate(
                view.ctx.session, stmt, User.id, _page_params(cursor)
            )
            items = [(u, identity_missing(u)) for u in users]
            names = _tenant_names(view, {u.tenant_id for u in users if u.tenant_id})
    except ValidationError as exc:
        errors = _errors(view, exc, frozenset({"state", "q", "cursor"}))
        items, total, next_cursor = [], 0, None
    query = {"queue": queue, "state": state, "q": q}
    base_query = urlencode({k: v for k, v in query.items() if v})
    return render(
        view,
        "compliance/queue.html",
        {
            "tenant_state": lambda value: tenant_state(view, value),
            "queue": queue,
            "counts": counts,
            "items": items,
            "total": total,
            "page": {"next_cursor": next_cursor},
            "base_query": base_query,
            "state": state,
            "q": q,
            "names": names,
            "sites": sites,
            "purposes": PURPOSES,
            "errors": errors,
            "tenant_states": [(s.value, tenant_state(view, s.value)) for s in TenantState],
            "declaration_states": [(s.value, view.locale.state(s.value)) for s in DeclarationState],
        },
        status=422 if errors else 200,
        title=view._("Work queue"),
    )


# --- a tenant's vetting ------------------------------------------------------------------------


def _tenant(view: View, tenant_id: str) -> tuple[Guard, Tenant]:
    guard = _guard(view)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))  # 404 before any 403
    _officer(guard)
    return guard, tenant


def _tenant_page(
    view: View,
    tenant: Tenant,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    public = TenantResource().to_public(view.ctx, tenant)
    found = kyc.kyc_refusal(tenant)
    blocker = None
    if found is not None:
        blocker = {
            "rule": found[0].rule_id,
            "message": translate_message(view.locale, found[0].detail),
            "field": found[1],
        }
    else:
        place = licensing.tenant_place(tenant.name_en, tenant.division_code)
        coverage = licensing.coverage_refusal(
            list(view.ctx.session.scalars(select(Licence))),
            licensing.china_today(view.ctx.runtime.clock()),
            place,
        )
        if coverage is not None:
            blocker = {
                "rule": coverage.rule_id,
                "message": translate_message(view.locale, coverage.detail),
                "field": "state",
            }
    current = TenantState(tenant.state)
    moves = [s.value for s in DECISIONS if s in TENANT_TRANSITIONS[current]]
    province = pv.province_of_division(tenant.division_code)
    beijing_prefix = str(rule("kyc.foreign_invested_beijing").param("division_prefix"))
    return render(
        view,
        "compliance/tenant.html",
        {
            "tenant_state": lambda value: tenant_state(view, value),
            "tenant": public,
            "blocker": blocker,
            "moves": moves,
            "province": province_name(view, province) if province else "—",
            "fie_required": tenant.division_code.startswith(beijing_prefix),
            "errors": errors or {},
            "values": values or {},
            "notice": notice,
        },
        status=status,
        title=view.locale.pick(tenant.name_en, tenant.name_zh),
    )


@router.get("/console/compliance/tenants/{tenant_id}")
def tenant_page(
    view: UserViewDep, tenant_id: str, done: Annotated[str, Query(max_length=30)] = ""
) -> Response:
    _, tenant = _tenant(view, tenant_id)
    return _tenant_page(view, tenant, notice=done_notice(view, done, NOTICES))


def _update_tenant(
    view: View, guard: Guard, tenant: Tenant, data: dict[str, Any], values: dict[str, Any]
) -> Response | None:
    """PATCH /tenants/{id} as the API does it; a refusal re-renders the page."""
    resource = TenantResource()
    known = frozenset(
        {"state", "state_reason", "uscc_verified", "foreign_invested", "foreign_invested_evidence"}
    )
    try:
        body = parse(ts.TenantUpdate, data)
        obj = resource.load(guard, None, tenant.id, Action.UPDATE)
        resource.update(view.ctx, obj, body)
        view.ctx.session.flush()
    except (ValidationError, Conflict, PermissionDenied) as exc:
        view.ctx.session.rollback()
        fresh = view.ctx.session.get(Tenant, tenant.id)
        assert fresh is not None
        status = 422 if isinstance(exc, ValidationError) else exc.status_code
        return _tenant_page(
            view, fresh, errors=_errors(view, exc, known), values=values, status=status
        )
    view.ctx.session.commit()
    return None


@router.post("/console/compliance/tenants/{tenant_id}/vetting")
def save_vetting(view: UserViewDep, form: FormDep, tenant_id: str) -> Response:
    check_csrf(view, form)
    guard, tenant = _tenant(view, tenant_id)
    data: dict[str, Any] = {
        "foreign_invested": form.get("foreign_invested") == "yes",
        "foreign_invested_evidence": form.text("foreign_invested_evidence"),
    }
    if not tenant.uscc_checksum_ok:
        data["uscc_verified"] = form.get("uscc_verified") == "yes"
    refused = _update_tenant(view, guard, tenant, data, {**data, "form": "vetting"})
    if refused is not None:
        return refused
    return redirect(view, f"/console/compliance/tenants/{tenant.id}?done=vetting")


@router.post("/console/compliance/tenants/{tenant_id}/decision")
def decide_tenant(view: UserViewDep, form: FormDep, tenant_id: str) -> Response:
    check_csrf(view, form)
    guard, tenant = _tenant(view, tenant_id)
    state = form.text("state")
    reason = form.get("state_reason").strip()
    data = {"state": state, "state_reason": reason}
    refused = _update_tenant(view, guard, tenant, data, {"state_reason": reason})
    if refused is not None:
        return refused
    done = state if state in NOTICES else "vetting"
    return redirect(view, f"/console/compliance/tenants/{tenant.id}?done={done}")


# --- a declared network ------------------------------------------------------------------------


def _declaration(view: View, declaration_id: str) -> tuple[Guard, PrefixDeclaration]:
    guard = _guard(view)
    object_id = parse_uuid(declaration_id, "declaration")
    # Out of the caller's scope (another tenant's) or missing: 404, before any 403.
    decl = declared.DeclarationResource().load(guard, None, object_id, Action.READ)
    _officer(guard)
    return guard, decl


def _declaration_page(
    view: View,
    decl: PrefixDeclaration,
    *,
    errors: dict[str, str] | None = None,
    reason: str = "",
    status: int = 200,
    notice: str = "",
) -> Response:
    site = view.ctx.session.get(Site, decl.site_id)
    tenant = view.ctx.session.get(Tenant, decl.tenant_id)
    others = list(
        view.ctx.session.scalars(
            select(PrefixDeclaration)
            .where(PrefixDeclaration.site_id == decl.site_id, PrefixDeclaration.id != decl.id)
            .order_by(PrefixDeclaration.cidr)
        )
    )
    decider = view.ctx.session.get(User, decl.decided_by) if decl.decided_by else None
    return render(
        view,
        "compliance/network.html",
        {
            "tenant_state": lambda value: tenant_state(view, value),
            "decl": decl,
            "site": site,
            "tenant": tenant,
            "others": others,
            "decider": decider,
            "purposes": PURPOSES,
            "errors": errors or {},
            "reason": reason,
            "notice": notice,
        },
        status=status,
        title=view._("Declared network %(cidr)s", cidr=decl.cidr),
    )


@router.get("/console/compliance/networks/{declaration_id}")
def network_page(
    view: UserViewDep, declaration_id: str, done: Annotated[str, Query(max_length=30)] = ""
) -> Response:
    _g, decl = _declaration(view, declaration_id)
    return _declaration_page(view, decl, notice=done_notice(view, done, NOTICES))


def _decide(view: View, form: Any, declaration_id: str, state: DeclarationState) -> Response:
    check_csrf(view, form)
    guard, decl = _declaration(view, declaration_id)
    reason = form.get("reason").strip()
    schema: type[BaseModel] = Approval if state == DeclarationState.APPROVED else Rejection
    try:
        body = parse(schema, {"reason": reason})
        loaded = declared.DeclarationResource().load(guard, None, decl.id, Action.UPDATE)
        declared.decide(view.ctx, loaded, state, body.reason)
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        fresh = view.ctx.session.get(PrefixDeclaration, decl.id)
        assert fresh is not None
        status = 422 if isinstance(exc, ValidationError) else exc.status_code
        errors = _errors(view, exc, frozenset({"reason"}))
        return _declaration_page(view, fresh, errors=errors, reason=reason, status=status)
    view.ctx.session.commit()
    return redirect(view, f"/console/compliance/networks/{decl.id}?done=declaration-{state.value}")


@router.post("/console/compliance/networks/{declaration_id}/approve")
def approve_network(view: UserViewDep, form: FormDep, declaration_id: str) -> Response:
    return _decide(view, form, declaration_id, DeclarationState.APPROVED)


@router.post("/console/compliance/networks/{declaration_id}/reject")
def reject_network(view: UserViewDep, form: FormDep, declaration_id: str) -> Response:
    return _decide(view, form, declaration_id, DeclarationState.REJECTED)


# --- an identity -------------------------------------------------------------------------------


def _identity(view: View, user_id: str) -> tuple[Guard, User]:
    guard = _guard(view)
    user = view.ctx.session.get(User, parse_uuid(user_id, "user"))
    if user is None or user.tenant_id is None:
        raise NotFound("user not found")
    guard.tenant(user.tenant_id)  # another tenant's user: 404, before any 403
    _officer(guard)
    return guard, user


def _identity_page(
    view: View,
    user: User,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    public = UserResource().to_public(view.ctx, user)
    tenant = view.ctx.session.get(Tenant, user.tenant_id)
    verifier = (
        view.ctx.session.get(User, user.identity_verified_by) if user.identity_verified_by else None
    )
    return render(
        view,
        "compliance/identity.html",
        {
            "user": public,
            "tenant": tenant,
            "missing": identity_missing(user),
            "verifier": verifier,
            "id_types": ID_TYPES,
            "role_names": ROLE_NAMES,
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
        title=view._("Identity of %(name)s", name=user.display_name),
    )


@router.get("/console/compliance/identities/{user_id}")
def identity_page(
    view: UserViewDep, user_id: str, done: Annotated[str, Query(max_length=30)] = ""
) -> Response:
    _g, user = _identity(view, user_id)
    return _identity_page(view, user, notice=done_notice(view, done, NOTICES))


def _identity_change(view: View, form: Any, user_id: str, verify: bool) -> Response:
    check_csrf(view, form)
    _g, user = _identity(view, user_id)
    try:
        if verify:
            verify_identity(view.ctx, user)
        else:
            withdraw_verification(view.ctx, user)
        view.ctx.session.flush()
    except (ValidationError, Conflict, PermissionDenied) as exc:
        view.ctx.session.rollback()
        fresh = view.ctx.session.get(User, user.id)
        assert fresh is not None
        known = frozenset({"legal_name", "id_type", "id_number", "mobile", "roles"})
        status = 422 if isinstance(exc, ValidationError) else exc.status_code
        return _identity_page(view, fresh, errors=_errors(view, exc, known), status=status)
    view.ctx.session.commit()
    done = "verified" if verify else "withdrawn"
    return redirect(view, f"/console/compliance/identities/{user.id}?done={done}")


@router.post("/console/compliance/identities/{user_id}/verify")
def verify_user(view: UserViewDep, form: FormDep, user_id: str) -> Response:
    return _identity_change(view, form, user_id, verify=True)


@router.post("/console/compliance/identities/{user_id}/withdraw")
def withdraw_user(view: UserViewDep, form: FormDep, user_id: str) -> Response:
    return _identity_change(view, form, user_id, verify=False)


# --- licences and the shareholder register -----------------------------------------------------

LICENCE_FIELDS = frozenset(
    {"number", "service_codes", "issuing_authority", "provinces", "valid_from", "valid_to"}
)
HOLDER_FIELDS = frozenset({"name", "foreign", "stake_percent"})


def _licences_page(
    view: View,
    guard: Guard,
    cursor: str = "",
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    holder_errors: dict[str, str] | None = None,
    holder_values: dict[str, Any] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    resource = operator.LicenceResource()
    stmt = resource.base_query(guard, None, Action.READ)
    try:
        rows, total, next_cursor = paginate(
            view.ctx.session, stmt, Licence.id, _page_params(cursor)
        )
    except ValidationError:
        raise NotFound(N_("no such page of licences")) from None
    licences = resource.to_public_many(view.ctx, rows)
    holders = list(
        view.ctx.session.scalars(
            operator.ShareholderResource()
            .base_query(guard, None, Action.READ)
            .order_by(Shareholder.stake_percent.desc(), Shareholder.name)
        )
    )
    status_now = operator.compliance_status(view.ctx)
    province_options = [(pv.NATIONWIDE, view._("nationwide"))] + [
        (code, province_name(view, code)) for code in pv.PROVINCES
    ]
    return render(
        view,
        "compliance/licences.html",
        {
            "licences": licences,
            "total": total,
            "page": {"next_cursor": next_cursor},
            "holders": holders,
            "ownership": status_now.ownership,
            "cap": cap_label(view, status_now.ownership.service_code),
            "can_edit": guard.principal.can("operator", Action.CREATE),
            "province_options": province_options,
            "province_name": lambda code: province_name(view, code),
            "errors": errors or {},
            "values": values or {},
            "holder_errors": holder_errors or {},
            "holder_values": holder_values or {},
            "notice": notice,
        },
        status=status,
        title=view._("Licences and shareholders"),
    )


def _operator_reader(view: View) -> Guard:
    guard = _guard(view)
    guard.require("operator", Action.READ)
    return guard


@router.get("/console/compliance/licences")
def licences_page(
    view: UserViewDep,
    cursor: Annotated[str, Query(max_length=64)] = "",
    done: Annotated[str, Query(max_length=30)] = "",
) -> Response:
    guard = _operator_reader(view)
    return _licences_page(view, guard, cursor, notice=done_notice(view, done, NOTICES))


def _split(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").replace("，", " ").split() if part]


@router.post("/console/compliance/licences")
def add_licence(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _operator_reader(view)
    guard.require("operator", Action.CREATE)
    codes = form.text("service_codes")
    values: dict[str, Any] = {
        "number": form.text("number"),
        "service_codes": codes,
        "issuing_authority": form.text("issuing_authority"),
        "provinces": form.getlist("provinces"),
        "valid_from": form.text("valid_from"),
        "valid_to": form.text("valid_to"),
    }
    data: dict[str, Any] = {
        **values,
        "service_codes": _split(codes),
        "valid_from": values["valid_from"] or None,
        "valid_to": values["valid_to"] or None,
    }
    try:
        body = parse(LicenceCreate, data)
        operator.LicenceResource().create(view.ctx, None, body)
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        status = 422 if isinstance(exc, ValidationError) else exc.status_code
        return _licences_page(
            view,
            guard,
            errors=_errors(view, exc, LICENCE_FIELDS),
            values=values,
            status=status,
        )
    view.ctx.session.commit()
    return redirect(view, "/console/compliance/licences?done=licence")


def _holder_data(form: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    values = {
        "name": form.text("name"),
        "foreign": form.get("foreign"),
        "stake_percent": form.text("stake_percent"),
    }
    data = {
        "name": values["name"],
        "foreign": {"yes": True, "no": False}.get(values["foreign"]),
        "stake_percent": values["stake_percent"] or None,
    }
    return values, data


@router.post("/console/compliance/shareholders")
def add_shareholder(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _operator_reader(view)
    guard.require("operator", Action.CREATE)
    values, data = _holder_data(form)
    try:
        body = parse(ShareholderCreate, data)
        operator.ShareholderResource().create(view.ctx, None, body)
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        status = 422 if isinstance(exc, ValidationError) else exc.status_code
        return _licences_page(
            view,
            guard,
            holder_errors=_errors(view, exc, HOLDER_FIELDS),
            holder_values=values,
            status=status,
        )
    view.ctx.session.commit()
    return redirect(view, "/console/compliance/licences?done=shareholder")


def _shareholder(view: View, holder_id: str) -> tuple[Guard, Shareholder]:
    guard = _guard(view)
    object_id = parse_uuid(holder_id, "shareholder")
    holder = operator.ShareholderResource().load(guard, None, object_id, Action.READ)
    guard.require("operator", Action.UPDATE)
    return guard, holder


def _shareholder_page(
    view: View,
    holder: Shareholder,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    shown = values or {
        "name": holder.name,
        "foreign": "yes" if holder.foreign else "no",
        "stake_percent": str(holder.stake_percent),
    }
    return render(
        view,
        "compliance/shareholder.html",
        {"holder": holder, "values": shown, "errors": errors or {}},
        status=status,
        title=view._("Shareholder %(name)s", name=holder.name),
    )


@router.get("/console/compliance/shareholders/{holder_id}")
def shareholder_page(view: UserViewDep, holder_id: str) -> Response:
    _g, holder = _shareholder(view, holder_id)
    return _shareholder_page(view, holder)


@router.post("/console/compliance/shareholders/{holder_id}")
def edit_shareholder(view: UserViewDep, form: FormDep, holder_id: str) -> Response:
    check_csrf(view, form)
    guard, holder = _shareholder(view, holder_id)
    values, data = _holder_data(form)
    resource = operator.ShareholderResource()
    try:
        body = parse(ShareholderUpdate, data)
        resource.update(view.ctx, resource.load(guard, None, holder.id, Action.UPDATE), body)
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        fresh = view.ctx.session.get(Shareholder, holder.id)
        assert fresh is not None
        status = 422 if isinstance(exc, ValidationError) else exc.status_code
        return _shareholder_page(
            view, fresh, errors=_errors(view, exc, HOLDER_FIELDS), values=values, status=status
        )
    view.ctx.session.commit()
    return redirect(view, "/console/compliance/licences?done=shareholder-saved")


# --- the compliance dashboard ------------------------------------------------------------------


@router.get("/console/compliance/dashboard")
def dashboard(view: UserViewDep, done: Annotated[str, Query(max_length=30)] = "") -> Response:
    guard = _operator_reader(view)
    return dashboard_page(view, guard, notice=done_notice(view, done, compliance_watch.NOTICES))


def dashboard_page(
    view: View,
    guard: Guard,
    *,
    watch_errors: dict[str, str] | None = None,
    watch_values: dict[str, Any] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    status_now = operator.compliance_status(view.ctx)
    return render(
        view,
        "compliance/dashboard.html",
        {
            # The scheduled check's breaches and grace period (pages.compliance_watch).
            **compliance_watch.context(view, guard, errors=watch_errors, values=watch_values),
            "notice": notice,
            "status": status_now,
            "covered": [province_name(view, code) for code in status_now.covered_provinces],
            "is_officer": guard.principal.can("declarations", Action.UPDATE),
            "tr": lambda text: translate_message(view.locale, text),
            "cap": cap_label(view, status_now.ownership.service_code),
            "privacy_notice": privacy.current_notice(view.ctx.session)
            if guard.principal.can("notices", Action.READ)
            else None,
            "can_publish": guard.principal.can("notices", Action.CREATE),
        },
        status=status,
        title=view._("Compliance dashboard"),
    )


# --- privacy notices ---------------------------------------------------------------------------
# ``GET /api/v1/privacy-notices`` (list), ``GET .../{id}`` through the same rows, and ``POST
# /api/v1/privacy-notices`` (publish) call what these pages call: the rows newest first and
# :func:`tongdao.privacy.service.publish_notice` under the guard's "notices" grants.

NOTICES_PAGE = "/console/privacy-notices"
NOTICE_FIELDS = frozenset(
    {"version", "title", "text", "transfer_abroad_text", "reconsent_required"}
)
# The texts may be long (50,000 characters each, in Chinese 9 bytes each once URL-encoded): this
# form is read with a larger limit than the console's, and nothing in it is cut short.
NOTICE_FORM_BYTES = 2 * 50_000 * 9 + 64 * 1024
VERSION_FORM = N_(
    "use only letters, digits, “.”, “_” and “-”, starting with a letter or a digit (no spaces)"
)
NOTICE_DONE = {
    "published": N_(
        "The notice is published. People are asked to accept it the next time they open "
        "their privacy page; consents to earlier versions still count."
    ),
    "published-reconsent": N_(
        "The notice is published. Consents to earlier versions have lapsed: traffic abroad "
        "stops for everyone until they accept this version and consent again."
    ),
}


async def _notice_form(request: Request) -> Form:
    body = await request.body()
    if len(body) > NOTICE_FORM_BYTES:
        raise ValidationError({"form": "the form is too large"})
    try:
        pairs = parse_qsl(
            body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=20
        )
    except ValueError as exc:
        raise ValidationError({"form": "the form has too many fields"}) from exc
    return Form(pairs)


NoticeFormDep = Annotated[Form, Depends(_notice_form)]


def _notice_reader(view: View, action: Action = Action.READ) -> Guard:
    """Operator staff whose roles allow ``action`` on notices (tenant people read the current
    notice on their own privacy page)."""
    guard = _guard(view)
    if not guard.principal.is_operator:
        raise PermissionDenied("these pages are for the operator's staff")
    guard.require("notices", action)
    return guard


def _publishers(view: View, notices: list[PrivacyNotice]) -> dict[uuid.UUID, str]:
    ids = {n.published_by for n in notices if n.published_by is not None}
    if not ids:
        return {}
    rows = view.ctx.session.execute(
        select(User.id, User.display_name, User.email).where(User.id.in_(ids))
    )
    return {uid: name or email for uid, name, email in rows}


@router.get(NOTICES_PAGE)
def notices_page(
    view: UserViewDep,
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
    done: Annotated[str, Query(max_length=30)] = "",
) -> Response:
    guard = _notice_reader(view)
    session = view.ctx.session
    current = privacy.current_notice(session)
    stmt = select(PrivacyNotice)
    q = q.strip()
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            PrivacyNotice.version.ilike(pattern, escape="\\")
            | PrivacyNotice.title.ilike(pattern, escape="\\")
        )
    try:
        rows, total, next_cursor = paginate(
            session, stmt, PrivacyNotice.seq, _page_params(cursor), descending=True
        )
    except ValidationError:
        raise NotFound(N_("no such page of privacy notices")) from None
    return render(
        view,
        "compliance/notices.html",
        {
            "notices": rows,
            "total": total,
            "page": {"next_cursor": next_cursor},
            "base_query": urlencode({"q": q}) if q else "",
            "q": q,
            "current": current,
            "publishers": _publishers(view, rows),
            "can_publish": guard.principal.can("notices", Action.CREATE),
            "notice": view.locale.gettext(NOTICE_DONE[done]) if done in NOTICE_DONE else "",
        },
        title=view._("Privacy notices"),
    )


def _new_notice_page(
    view: View,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    session = view.ctx.session
    current = privacy.current_notice(session)
    if values is None:
        # A new version is most often an edit of the current one: start from its texts.
        values = {"reconsent_required": True}
        if current is not None:
            values.update(
                title=current.title,
                text=current.text,
                transfer_abroad_text=current.transfer_abroad_text,
            )
    tenant_ids = list(session.scalars(select(Tenant.id)))
    consenting = len(privacy.abroad_consenting_users(session, tenant_ids))
    return render(
        view,
        "compliance/notice_new.html",
        {
            "values": values,
            "errors": errors or {},
            "current": current,
            "consenting": consenting,
            "max_chars": 50_000,
        },
        status=status,
        title=view._("Publish a privacy notice"),
    )


@router.get(NOTICES_PAGE + "/new")
def new_notice_page(view: UserViewDep) -> Response:
    _notice_reader(view, Action.CREATE)
    return _new_notice_page(view)


@router.post(NOTICES_PAGE)
def publish_notice(view: UserViewDep, form: NoticeFormDep) -> Response:
    check_csrf(view, form)
    _notice_reader(view, Action.CREATE)
    reconsent = form.get("reconsent_required") == "yes"
    values: dict[str, Any] = {
        "version": form.text("version"),
        "title": form.text("title"),
        # A browser sends a textarea's line breaks as CRLF: stored as the person's lines.
        "text": form.get("text").replace("\r\n", "\n"),
        "transfer_abroad_text": form.get("transfer_abroad_text").replace("\r\n", "\n"),
        "reconsent_required": reconsent,
    }
    try:
        body = parse(NoticeCreate, values)
        privacy.publish_notice(view.ctx, body)
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        status = 422 if isinstance(exc, ValidationError) else exc.status_code
        errors = _errors(view, exc, NOTICE_FIELDS)
        if "should match pattern" in exc.fields.get("version", ""):
            # The schema's refusal names a regular expression: say it in words.
            errors["version"] = view._(VERSION_FORM)
        return _new_notice_page(view, values=values, errors=errors, status=status)
    view.ctx.session.commit()
    done = "published-reconsent" if body.reconsent_required else "published"
    return redirect(view, f"{NOTICES_PAGE}?done={done}")


@router.get(NOTICES_PAGE + "/{notice_id}")
def notice_page(view: UserViewDep, notice_id: str) -> Response:
    notice = view.ctx.session.get(PrivacyNotice, parse_uuid(notice_id, "privacy notice"))
    if notice is None:
        raise NotFound("privacy notice not found")
    _notice_reader(view)
    current = privacy.current_notice(view.ctx.session)
    return render(
        view,
        "compliance/notice.html",
        {
            "item": notice,
            "publisher": _publishers(view, [notice]).get(notice.published_by)
            if notice.published_by
            else None,
            "is_current": current is not None and current.id == notice.id,
            "can_publish": view.can("notices", Action.CREATE),
        },
        title=view._("Privacy notice %(version)s", version=notice.version),
    )
