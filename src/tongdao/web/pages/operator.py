"""The operator admin's pages: the operations dashboard, PoPs and their gateways, links,
staff and tenants.

Every page calls what the API route for the same job calls (the CRUD resources of
``network``, ``tenancy``, the gateway credential service, the staff reset and unlock
services), through the same :class:`~tongdao.api.deps.Guard`: reads are open to the operator
roles the permissions table lets read, changes to those it lets change (the operator admin).
Tenant roles get 403 (404 for another tenant's object).

A gateway is *online* when its last contact, the last usage report it sent
(``gateways.last_seen_at``, written every 30 s by the agent's reporter), is at most
:data:`OFFLINE_AFTER` old.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, or_, select

from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.auth import reset
from tongdao.auth import service as auth_service
from tongdao.auth.permissions import OPERATOR_ROLES, Action, Role
from tongdao.auth.targets import staff_member
from tongdao.compliance import licensing
from tongdao.errors import DomainError, NotFound, PermissionDenied, ValidationError
from tongdao.gateway import service as gateway_service
from tongdao.gateway import usage
from tongdao.gateway.changes import current_version
from tongdao.gateway.models import Gateway, GatewayPeer
from tongdao.gateway.schemas import EnrolmentCreate
from tongdao.mail import schemas as mail_schemas
from tongdao.mail import service as mail_service
from tongdao.mail.models import SmtpSecurity
from tongdao.network import schemas as net
from tongdao.network.models import Device, Link, Pop, PopState, PopTenantInterface
from tongdao.network.service import LinkResource, PopResource, get_pop
from tongdao.operator.service import compliance_status
from tongdao.privacy.service import current_notice
from tongdao.tenancy import schemas as ten
from tongdao.tenancy.models import Tenant, TenantState, User, UserState
from tongdao.tenancy.service import (
    TENANT_TRANSITIONS,
    VETTING_STATES,
    StaffResource,
    TenantResource,
    UserResource,
)
from tongdao.web.console import (
    ConsoleRoute,
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
from tongdao.web.i18n import N_, SHANGHAI
from tongdao.web.pages import compliance_watch

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
OPERATORS = frozenset(OPERATOR_ROLES)
NAV = [NavItem("/console/operator", N_("Operations"), OPERATORS)]

BASE = "/console/operator"
OFFLINE_AFTER = timedelta(minutes=3)  # six missed 30-second reports
PAGE_SIZE = 25
STATE_DIR = "/var/lib/tongdao"
# The compliance area's page that fixes licence and ownership problems (branch s17-compliance).
LICENCES_PAGE = "/console/compliance/licences"
SHAREHOLDERS_PAGE = "/console/compliance/licences#holders-title"

pops = PopResource()
links = LinkResource()
tenants = TenantResource()
staff = StaffResource()
tenant_users = UserResource()

OPERATOR_ROLE_LABELS: dict[str, str] = {
    Role.OPERATOR_ADMIN: N_("operator admin"),
    Role.COMPLIANCE_OFFICER: N_("compliance officer"),
    Role.BILLING_CLERK: N_("billing clerk"),
    Role.AUDITOR: N_("auditor"),
}
TENANT_STATE_ORDER = [
    TenantState.APPLIED,
    TenantState.UNDER_REVIEW,
    TenantState.APPROVED,
    TenantState.ACTIVE,
    TenantState.SUSPENDED,
    TenantState.REJECTED,
    TenantState.TERMINATED,
]
# What each move of a tenant is called on its button.
TENANT_ACTIONS: dict[str, str] = {
    TenantState.UNDER_REVIEW: N_("Start review"),
    TenantState.APPROVED: N_("Approve"),
    TenantState.REJECTED: N_("Reject"),
    TenantState.ACTIVE: N_("Activate"),
    TenantState.SUSPENDED: N_("Suspend"),
    TenantState.TERMINATED: N_("Terminate"),
}


# --- common ---------------------------------------------------------------------------------
def _guard(view: View, resource: str, action: Action = Action.READ) -> Guard:
    """The caller's guard, for operator staff whose roles allow ``action`` on ``resource``."""
    view.require_principal()
    guard = Guard(view.ctx)
    if not guard.principal.is_operator:
        raise PermissionDenied("these pages are for the operator's staff")
    guard.require(resource, action)
    return guard


def _refusal(view: View, exc: DomainError, known: Sequence[str] = ()) -> dict[str, str]:
    """A refusal's messages keyed by field, translated; an item of a list field (``dns_servers.1``)
    is shown on its field. The refusal's own message goes to the form's error unless it is
    only the fields' messages (a schema's), and so does what no field of the form shows."""
    errors: dict[str, str] = {}
    general: list[str] = []
    for key, text in exc.fields.items():
        message = translate_message(view.locale, text)
        field = key.split(".", 1)[0]
        if field == "body":
            general.append(message)
        elif not known or field in known:
            errors.setdefault(field, message)
        else:
            general.append(f"{key}: {message}")
    if not isinstance(exc, ValidationError) or not exc.fields:
        general.insert(0, translate_message(view.locale, exc.message))
    if general:
        errors["form"] = " ".join(dict.fromkeys(general))
    return errors


def _values(form: Any, names: Sequence[str]) -> dict[str, str]:
    return {name: form.text(name) for name in names}


def _given(values: Mapping[str, str]) -> dict[str, str]:
    """The fields filled in (an empty optional field takes the API's default)."""
    return {key: value for key, value in values.items() if value != ""}


def _month_start(now: datetime) -> datetime:
    local = now.astimezone(SHANGHAI)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first.astimezone(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _state_options(view: View, states: Sequence[str]) -> list[tuple[str, str]]:
    return [(state, _state_label(view, state)) for state in states]


# States the frame's list does not name yet.
EXTRA_STATES = {"draining": N_("draining")}


def _state_label(view: View, state: str) -> str:
    if state in EXTRA_STATES:
        return view.locale.gettext(EXTRA_STATES[state])
    return view.locale.state(state)


def _page_params(cursor: str) -> PageParams:
    return PageParams(limit=PAGE_SIZE, cursor=cursor or None)


DoneQuery = Annotated[str, Query(max_length=20)]
CursorQuery = Annotated[str, Query(max_length=64)]


# --- gateways' health -------------------------------------------------------------------------
@dataclass
class GatewayHealth:
    gateway: Gateway
    online: bool
    last_contact: datetime | None
    peers: int
    in_step: bool


@dataclass
class PopRow:
    pop: Pop
    gateways: list[GatewayHealth]
    bytes_month: int


def _health(view: View, gateway: Gateway, version: int, now: datetime) -> GatewayHealth:
    seen = _aware(gateway.last_seen_at)
    peers = view.ctx.session.scalar(
        select(func.count())
        .select_from(GatewayPeer)
        .where(GatewayPeer.gateway_id == gateway.id, GatewayPeer.removed_at.is_(None))
    )
    return GatewayHealth(
        gateway=gateway,
        online=seen is not None and now - seen <= OFFLINE_AFTER,
        last_contact=seen,
        peers=int(peers or 0),
        in_step=gateway.applied_version >= version,
    )


def _pop_bytes(guard: Guard, pop: Pop, since: datetime) -> int:
    """Bytes through the PoP since ``since``: what ``GET /pops/{id}/usage`` answers."""
    summary = usage.get_pop_usage(guard, pop.id, since=since, until=None, group_by="tenant")
    return summary.rx_bytes + summary.tx_bytes


def _live_gateways(view: View, pop_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Gateway]]:
    found: dict[uuid.UUID, list[Gateway]] = {pid: [] for pid in pop_ids}
    if pop_ids:
        for gateway in view.ctx.session.scalars(
            select(Gateway)
            .where(Gateway.pop_id.in_(pop_ids), Gateway.revoked_at.is_(None))
            .order_by(Gateway.created_at, Gateway.id)
        ):
            assert gateway.pop_id is not None
            found[gateway.pop_id].append(gateway)
    return found


# --- the dashboard -----------------------------------------------------------------------------
@dataclass
class Alert:
    kind: str  # gateway_offline, no_gateway, licence_expiring, ownership, licence
    text: str
    link: str
    link_text: str


@router.get("/console/operator")
def dashboard(view: UserViewDep) -> Response:
    guard = _guard(view, "pops")
    session = view.ctx.session
    now = view.ctx.runtime.clock()
    version = current_version(session)
    since = _month_start(now)
    all_pops = list(session.scalars(select(Pop).order_by(Pop.name).limit(200)))
    live = _live_gateways(view, [p.id for p in all_pops])
    rows = [
        PopRow(
            pop=pop,
            gateways=[_health(view, g, version, now) for g in live[pop.id]],
            bytes_month=_pop_bytes(guard, pop, since),
        )
        for pop in all_pops
    ]
    alerts: list[Alert] = []
    for row in rows:
        if row.pop.state != PopState.ACTIVE:
            continue
        target = f"{BASE}/pops/{row.pop.id}"
        if not row.gateways:
            alerts.append(
                Alert(
                    "no_gateway",
                    view._("PoP %(pop)s has no enrolled gateway.", pop=row.pop.name),
                    target,
                    view._("Enrol a gateway"),
                )
            )
        for health in row.gateways:
            if not health.online:
                alerts.append(
                    Alert(
                        "gateway_offline",
                        view._(
                            "The gateway of PoP %(pop)s is offline (last contact: %(when)s).",
                            pop=row.pop.name,
                            when=view.locale.when(health.last_contact)
                            if health.last_contact
                            else view._("never"),
                        ),
                        target,
                        view._("Open the PoP"),
                    )
                )
    counts: dict[str, int] = {}
    if view.can("tenants"):
        counts = {
            str(state): int(n)
            for state, n in session.execute(
                select(Tenant.state, func.count()).group_by(Tenant.state)
            )
        }
    status = None
    if view.can("operator"):
        status = compliance_status(view.ctx)
        # The scheduled compliance check's breaches first, with their countdown.
        for item in compliance_watch.breach_views(view, status.watch):
            alerts.insert(
                0,
                Alert(
                    "breach",
                    compliance_watch.alert_text(view, item),
                    f"{compliance_watch.DASHBOARD}#watch",
                    view._("Open the compliance dashboard"),
                ),
            )
        for warning in status.warnings:
            alerts.append(
                Alert(
                    "licence_expiring",
                    view._(
                        "Licence %(number)s expires on %(day)s, in %(days)s days.",
                        number=warning.number,
                        day=warning.valid_to.isoformat(),
                        days=warning.days_to_expiry,
                    ),
                    LICENCES_PAGE,
                    view._("Renew the licence"),
                )
            )
        for problem in status.problems:
            ownership = problem.rule.startswith("ownership.")
            alerts.append(
                Alert(
                    "ownership" if ownership else "licence",
                    translate_message(view.locale, problem.message),
                    SHAREHOLDERS_PAGE if ownership else LICENCES_PAGE,
                    view._("Fix the shareholder register")
                    if ownership
                    else view._("Open the licences"),
                )
            )
    if view.can("notices", Action.CREATE) and current_notice(session) is None:
        # A fresh install: nobody can consent to transfer abroad until a notice is published.
        alerts.append(
            Alert(
                "privacy_notice",
                view._(
                    "No privacy notice is published: people cannot accept one or consent to "
                    "transfer abroad, so none of their traffic is carried abroad."
                ),
                "/console/privacy-notices/new",
                view._("Publish the privacy notice"),
            )
        )
    return render(
        view,
        "operator/dashboard.html",
        {
            "rows": rows,
            "version": version,
            "month_start": since,
            "alerts": alerts,
            "counts": counts,
            "tenant_states": [str(s) for s in TENANT_STATE_ORDER],
            "status": status,
            "foreign_cap": _cap_text(view, status.service_code) if status else "",
            "offline_minutes": int(OFFLINE_AFTER.total_seconds() // 60),
        },
        title=view._("Operations"),
    )


def _cap_text(view: View, code: str) -> str:
    cap = licensing.foreign_cap(code)
    if cap is None:
        return ""
    if cap.inclusive:
        return view._("at most %(percent)s%%", percent=cap.percent)
    return view._("below %(percent)s%%", percent=cap.percent)


# --- PoPs ----------------------------------------------------------------------------------------
POP_FIELDS = (
    "name",
    "region",
    "country",
    "endpoint_host",
    "port_min",
    "port_max",
    "state",
    "max_rate_mbps",
)
POP_NOTICES = {"created": N_("The PoP is created. Enrol its gateway next.")}


def _pops_page(
    view: View,
    *,
    state: str = "",
    cursor: str = "",
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    guard = _guard(view, "pops")
    filter_errors: dict[str, str] = {}
    try:
        filters = parse(net.PopFilters, _given({"state": state}))
    except ValidationError as exc:
        # The create form below has its own "state": the filter's is "filter_state".
        filter_errors = {"filter_state": _refusal(view, exc, ("state",)).get("state", "")}
        filters, status = net.PopFilters(), 422
    stmt = pops.apply_filters(pops.base_query(guard, None, Action.READ), filters)
    rows, total, next_cursor = paginate(view.ctx.session, stmt, Pop.id, _page_params(cursor))
    live = _live_gateways(view, [p.id for p in rows])
    return render(
        view,
        "operator/pops.html",
        {
            "pops": rows,
            "live": live,
            "total": total,
            "next_cursor": next_cursor,
            "state": state,
            "filter_errors": filter_errors,
            "values": values or {"port_min": "51820", "port_max": "52819", "state": "active"},
            "errors": errors or {},
            "notice": notice,
            "pop_states": _state_options(view, [str(s) for s in PopState]),
            "can_create": view.can("pops", Action.CREATE),
        },
        status=status,
        title=view._("PoPs"),
    )


@router.get("/console/operator/pops")
def pops_page(
    view: UserViewDep,
    state: Annotated[str, Query(alias="filter_state", max_length=20)] = "",
    cursor: CursorQuery = "",
    done: DoneQuery = "",
) -> Response:
    return _pops_page(view, state=state, cursor=cursor, notice=done_notice(view, done, POP_NOTICES))


@router.post("/console/operator/pops")
def create_pop(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "pops", Action.CREATE)
    values = _values(form, POP_FIELDS)
    try:
        data = parse(net.PopCreate, {**_given(values), "name": values["name"]})
        pop = pops.create(view.ctx, None, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, POP_FIELDS)
        return _pops_page(view, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/pops/{pop.id}?done=created")


POP_DETAIL_NOTICES = {
    "created": N_("The PoP is created. Enrol its gateway next."),
    "revoked": N_("The gateway's credential is revoked."),
    "disabled": N_("The PoP is disabled: its gateway is refused until it is enabled again."),
    "enabled": N_("The PoP is enabled."),
}


def _pop_page(
    view: View,
    pop_id: str,
    *,
    notice: str = "",
    errors: Mapping[str, str] | None = None,
    enrolment: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    view.require_principal()
    pop = get_pop(view.ctx, parse_uuid(pop_id, "PoP"))  # no such PoP: 404 for anyone
    guard = _guard(view, "pops")
    session = view.ctx.session
    now = view.ctx.runtime.clock()
    version = current_version(session)
    credentials = list(
        session.scalars(
            select(Gateway).where(Gateway.pop_id == pop.id).order_by(Gateway.created_at, Gateway.id)
        )
    )
    health = {g.id: _health(view, g, version, now) for g in credentials if g.revoked_at is None}
    interfaces = session.scalar(
        select(func.count())
        .select_from(PopTenantInterface)
        .where(PopTenantInterface.pop_id == pop.id)
    )
    pop_links = list(
        session.scalars(
            select(Link)
            .where(or_(Link.pop_a_id == pop.id, Link.pop_b_id == pop.id))
            .order_by(Link.name)
        )
    )
    return render(
        view,
        "operator/pop.html",
        {
            "pop": pop,
            "credentials": credentials,
            "health": health,
            "version": version,
            "interfaces": int(interfaces or 0),
            "links": pop_links,
            "pop_names": _pop_names(view),
            "bytes_month": _pop_bytes(guard, pop, _month_start(now)),
            "month_start": _month_start(now),
            "notice": notice,
            "errors": errors or {},
            "enrolment": enrolment,
            "can_update": view.can("pops", Action.UPDATE),
            "ttl_hours": "24",
        },
        status=status,
        title=pop.name,
    )


@router.get("/console/operator/pops/{pop_id}")
def pop_page(view: UserViewDep, pop_id: str, done: DoneQuery = "") -> Response:
    return _pop_page(view, pop_id, notice=done_notice(view, done, POP_DETAIL_NOTICES))


def enrol_command(server: str, token: str) -> str:
    """The command line that enrols and runs the gateway agent on the PoP's host (README)."""
    return f"tongdao gateway run --server {server} --token {token} --state-dir {STATE_DIR}"


@router.post("/console/operator/pops/{pop_id}/enrolments")
def create_enrolment(view: UserViewDep, pop_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "pops", Action.UPDATE)
    pop = get_pop(view.ctx, parse_uuid(pop_id, "PoP"))
    try:
        data = parse(EnrolmentCreate, _given({"ttl_hours": form.text("ttl_hours")}))
    except ValidationError as exc:
        return _pop_page(view, pop_id, errors=_refusal(view, exc, ("ttl_hours",)), status=422)
    enrolment, secret = gateway_service.create_enrolment(
        view.ctx, pop, timedelta(hours=data.ttl_hours)
    )
    view.ctx.session.commit()
    server = view.ctx.runtime.settings.link_base_url
    shown = {
        "token": secret,
        "expires_at": enrolment.expires_at,
        "command": enrol_command(server, secret),
    }
    # Shown once, in this answer only: the store keeps the token's hash.
    return _pop_page(view, pop_id, enrolment=shown, status=201)


@router.post("/console/operator/pops/{pop_id}/gateways/{gateway_id}/revoke")
def revoke_gateway(view: UserViewDep, pop_id: str, gateway_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "pops", Action.UPDATE)
    pop = get_pop(view.ctx, parse_uuid(pop_id, "PoP"))
    gateway = view.ctx.session.get(Gateway, parse_uuid(gateway_id, "gateway"))
    if gateway is None or gateway.pop_id != pop.id:
        raise NotFound("gateway not found")
    gateway_service.revoke(view.ctx, gateway)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/pops/{pop.id}?done=revoked")


@router.post("/console/operator/pops/{pop_id}/state")
def set_pop_state(view: UserViewDep, pop_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _guard(view, "pops", Action.UPDATE)
    pop = pops.load(guard, None, parse_uuid(pop_id, "PoP"), Action.UPDATE)
    try:
        data = parse(net.PopUpdate, {"state": form.text("state")})
        pops.update(view.ctx, pop, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        return _pop_page(
            view, pop_id, errors=_refusal(view, exc, ("state",)), status=exc.status_code
        )
    view.ctx.session.commit()
    done = "enabled" if pop.state == PopState.ACTIVE else "disabled"
    return redirect(view, f"{BASE}/pops/{pop.id}?done={done}")


# --- links ---------------------------------------------------------------------------------------
LINK_FIELDS = (
    "name",
    "pop_a_id",
    "pop_b_id",
    "circuit_ref",
    "approval_ref",
    "capacity_mbps",
    "state",
)
LINK_NOTICES = {"created": N_("The link is recorded.")}


def _pop_names(view: View) -> dict[uuid.UUID, str]:
    return {row.id: row.name for row in view.ctx.session.execute(select(Pop.id, Pop.name))}


def _links_page(
    view: View,
    *,
    cursor: str = "",
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    guard = _guard(view, "links")
    stmt = links.base_query(guard, None, Action.READ)
    rows, total, next_cursor = paginate(view.ctx.session, stmt, Link.id, _page_params(cursor))
    names = _pop_names(view)
    countries = {
        row.id: row.country for row in view.ctx.session.execute(select(Pop.id, Pop.country))
    }
    return render(
        view,
        "operator/links.html",
        {
            "links": rows,
            "total": total,
            "next_cursor": next_cursor,
            "pop_names": names,
            "countries": countries,
            "pop_options": sorted(((str(k), v) for k, v in names.items()), key=lambda kv: kv[1]),
            "values": values or {"state": "active"},
            "errors": errors or {},
            "notice": notice,
            "link_states": _state_options(view, ["active", "disabled"]),
            "can_create": view.can("links", Action.CREATE),
        },
        status=status,
        title=view._("Links"),
    )


@router.get("/console/operator/links")
def links_page(view: UserViewDep, cursor: CursorQuery = "", done: DoneQuery = "") -> Response:
    return _links_page(view, cursor=cursor, notice=done_notice(view, done, LINK_NOTICES))


@router.post("/console/operator/links")
def create_link(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "links", Action.CREATE)
    values = _values(form, LINK_FIELDS)
    try:
        data = parse(
            net.LinkCreate,
            {
                **_given(values),
                **{
                    k: values[k]
                    for k in ("name", "pop_a_id", "pop_b_id", "circuit_ref", "capacity_mbps")
                },
            },
        )
        links.create(view.ctx, None, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, LINK_FIELDS)
        return _links_page(view, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/links?done=created")


LINK_EDIT_FIELDS = ("name", "circuit_ref", "approval_ref", "capacity_mbps", "state")
LINK_DETAIL_NOTICES = {"saved": N_("The link is saved.")}


def _link_page(
    view: View,
    link_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    view.require_principal()
    link = view.ctx.session.get(Link, parse_uuid(link_id, "link"))
    if link is None:
        raise NotFound("link not found")  # 404 for anyone, before the role check
    _guard(view, "links")
    shown = values or {
        "name": link.name,
        "circuit_ref": link.circuit_ref,
        "approval_ref": link.approval_ref or "",
        "capacity_mbps": str(link.capacity_mbps),
        "state": link.state,
    }
    return render(
        view,
        "operator/link.html",
        {
            "link": link,
            "pop_names": _pop_names(view),
            "values": shown,
            "errors": errors or {},
            "notice": notice,
            "link_states": _state_options(view, ["active", "disabled"]),
            "can_update": view.can("links", Action.UPDATE),
        },
        status=status,
        title=link.name,
    )


@router.get("/console/operator/links/{link_id}")
def link_page(view: UserViewDep, link_id: str, done: DoneQuery = "") -> Response:
    return _link_page(view, link_id, notice=done_notice(view, done, LINK_DETAIL_NOTICES))


@router.post("/console/operator/links/{link_id}")
def update_link(view: UserViewDep, link_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _guard(view, "links", Action.UPDATE)
    link = links.load(guard, None, parse_uuid(link_id, "link"), Action.UPDATE)
    values = _values(form, LINK_EDIT_FIELDS)
    # An emptied approval reference is sent as null: it clears it (refused while the link
    # crosses the border and is active), as PATCH /links/{id} with null does.
    data_in: dict[str, Any] = {**values, "approval_ref": values["approval_ref"] or None}
    try:
        links.update(view.ctx, link, parse(net.LinkUpdate, data_in))
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, LINK_EDIT_FIELDS)
        return _link_page(view, link_id, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/links/{link.id}?done=saved")


# --- staff ---------------------------------------------------------------------------------------
STAFF_NOTICES = {
    "invited": N_("The invitation is on its way: they choose their own password from the link."),
}
STAFF_MEMBER_NOTICES = {
    "invited": N_("The invitation is on its way: they choose their own password from the link."),
    "roles": N_("The roles are changed."),
    "disabled": N_("The account is disabled."),
    "enabled": N_("The account is enabled."),
    "reset": N_(
        "Their sessions ended and the old password stopped working; a link to choose a new "
        "one is on its way to them."
    ),
    "unlocked": N_("The failed sign-ins against this account are cleared."),
}


def _role_options(view: View) -> list[tuple[str, str]]:
    return [(str(role), view.locale.gettext(label)) for role, label in OPERATOR_ROLE_LABELS.items()]


def _staff_page(
    view: View,
    *,
    state: str = "",
    cursor: str = "",
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    guard = _guard(view, "staff")
    filter_errors: dict[str, str] = {}
    try:
        filters = parse(ten.StaffFilters, _given({"state": state}))
    except ValidationError as exc:
        filter_errors = _refusal(view, exc, ("state",))
        filters, status = ten.StaffFilters(), 422
    stmt = staff.apply_filters(staff.base_query(guard, None, Action.READ), filters)
    rows, total, next_cursor = paginate(view.ctx.session, stmt, User.id, _page_params(cursor))
    return render(
        view,
        "operator/staff.html",
        {
            "people": rows,
            "total": total,
            "next_cursor": next_cursor,
            "state": state,
            "filter_errors": filter_errors,
            "values": values or {"roles": []},
            "errors": errors or {},
            "notice": notice,
            "role_options": _role_options(view),
            "role_labels": OPERATOR_ROLE_LABELS,
            "user_states": _state_options(view, [str(s) for s in UserState]),
            "can_create": view.can("staff", Action.CREATE),
        },
        status=status,
        title=view._("Staff"),
    )


@router.get("/console/operator/staff")
def staff_page(
    view: UserViewDep,
    state: Annotated[str, Query(max_length=20)] = "",
    cursor: CursorQuery = "",
    done: DoneQuery = "",
) -> Response:
    return _staff_page(
        view, state=state, cursor=cursor, notice=done_notice(view, done, STAFF_NOTICES)
    )


@router.post("/console/operator/staff")
def invite_staff(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "staff", Action.CREATE)
    values: dict[str, Any] = _values(form, ("email", "display_name"))
    values["roles"] = form.getlist("roles")
    try:
        data = parse(ten.StaffCreate, values)
        person = staff.create(view.ctx, None, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, ("email", "display_name", "roles"))
        return _staff_page(view, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/staff/{person.id}?done=invited")


def _staff_member(view: View, staff_id: str) -> User:
    person = view.ctx.session.scalar(
        select(User).where(
            User.id == parse_uuid(staff_id, "staff member"), User.tenant_id.is_(None)
        )
    )
    if person is None:
        raise NotFound("staff member not found")
    return person


def _staff_member_page(
    view: View,
    staff_id: str,
    *,
    notice: str = "",
    errors: Mapping[str, str] | None = None,
    roles: Sequence[str] | None = None,
    status: int = 200,
) -> Response:
    view.require_principal()
    person = _staff_member(view, staff_id)  # no such staff member: 404 for anyone
    _guard(view, "staff")
    return render(
        view,
        "operator/staff_member.html",
        {
            "person": person,
            "roles": list(person.roles) if roles is None else list(roles),
            "role_options": _role_options(view),
            "role_labels": OPERATOR_ROLE_LABELS,
            "notice": notice,
            "errors": errors or {},
            "can_update": view.can("staff", Action.UPDATE),
            "is_self": view.principal is not None and view.principal.user_id == person.id,
        },
        status=status,
        title=person.display_name,
    )


@router.get("/console/operator/staff/{staff_id}")
def staff_member_page(view: UserViewDep, staff_id: str, done: DoneQuery = "") -> Response:
    return _staff_member_page(view, staff_id, notice=done_notice(view, done, STAFF_MEMBER_NOTICES))


def _update_staff(view: View, staff_id: str, data: dict[str, Any], done: str) -> Response:
    guard = _guard(view, "staff", Action.UPDATE)
    person = staff_member(guard, parse_uuid(staff_id, "staff member"))
    try:
        staff.update(view.ctx, person, parse(ten.StaffUpdate, data))
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, ("roles", "state"))
        roles = data.get("roles")
        return _staff_member_page(
            view, staff_id, errors=errors, roles=roles, status=exc.status_code
        )
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/staff/{person.id}?done={done}")


@router.post("/console/operator/staff/{staff_id}/roles")
def change_staff_roles(view: UserViewDep, staff_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    return _update_staff(view, staff_id, {"roles": form.getlist("roles")}, "roles")


@router.post("/console/operator/staff/{staff_id}/state")
def change_staff_state(view: UserViewDep, staff_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    state = form.text("state")
    done = "disabled" if state == UserState.DISABLED else "enabled"
    return _update_staff(view, staff_id, {"state": state}, done)


@router.post("/console/operator/staff/{staff_id}/password-reset")
def reset_staff_password(view: UserViewDep, staff_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _guard(view, "staff", Action.UPDATE)
    person = staff_member(guard, parse_uuid(staff_id, "staff member"))
    try:
        reset.admin_reset(view.ctx, person)
    except DomainError as exc:
        view.ctx.session.rollback()
        return _staff_member_page(
            view, staff_id, errors=_refusal(view, exc, ("state",)), status=exc.status_code
        )
    view.ctx.session.commit()
    if view.principal is not None and person.id == view.principal.user_id:
        return redirect(None, "/console/sign-in")  # their own sessions just ended
    return redirect(view, f"{BASE}/staff/{person.id}?done=reset")


@router.post("/console/operator/staff/{staff_id}/sign-in-unlock")
def unlock_staff(view: UserViewDep, staff_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _guard(view, "staff", Action.UPDATE)
    person = staff_member(guard, parse_uuid(staff_id, "staff member"))
    auth_service.unlock_sign_in(view.ctx, person)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/staff/{person.id}?done=unlocked")


# --- tenants -------------------------------------------------------------------------------------
TENANT_FIELDS = (
    "name_en",
    "name_zh",
    "uscc",
    "contact_name",
    "contact_email",
    "contact_phone",
    "dns_servers",
    "ipv4_pool_prefixlen",
    "foreign_invested_evidence",
)
TENANT_NOTICES = {"created": N_("The tenant is created. It waits for vetting.")}
TENANT_DETAIL_NOTICES = {
    "created": N_("The tenant is created. It waits for vetting."),
    "state": N_("The tenant's state is changed."),
    "invited": N_(
        "The invitation is on its way: a one-time link to choose a password goes to their "
        "e-mail address."
    ),
}
# The roles a tenant's user can hold, as the operator invites them (a new tenant's first
# tenant admin, typically).
TENANT_ROLE_LABELS: dict[str, str] = {
    Role.TENANT_ADMIN: N_("Tenant admin"),
    Role.EMPLOYEE: N_("Employee"),
}
INVITE_FIELDS = ("email", "display_name", "roles")
USCC_SHAPE = re.compile(r"[0-9A-Za-z]{18}")


def _tenants_page(
    view: View,
    *,
    state: str = "",
    q: str = "",
    cursor: str = "",
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    guard = _guard(view, "tenants")
    filter_errors: dict[str, str] = {}
    search = q.strip()
    wanted = {
        "state": state,
        **({"uscc": search} if USCC_SHAPE.fullmatch(search) else {"q": search}),
    }
    try:
        filters = parse(ten.TenantFilters, _given(wanted))
    except ValidationError as exc:
        filter_errors = _refusal(view, exc, ("state", "q"))
        if "uscc" in exc.fields:
            filter_errors["q"] = translate_message(view.locale, exc.fields["uscc"])
        filters, status = ten.TenantFilters(), 422
    stmt = tenants.apply_filters(tenants.base_query(guard, None, Action.READ), filters)
    rows, total, next_cursor = paginate(view.ctx.session, stmt, Tenant.id, _page_params(cursor))
    query = "&".join(f"{k}={v}" for k, v in (("state", state), ("q", search)) if v)
    return render(
        view,
        "operator/tenants.html",
        {
            "tenants": rows,
            "total": total,
            "next_cursor": next_cursor,
            "state": state,
            "q": search,
            "base_query": query,
            "filter_errors": filter_errors,
            "values": values or {"ipv4_pool_prefixlen": "22"},
            "errors": errors or {},
            "notice": notice,
            "tenant_states": _state_options(view, [str(s) for s in TENANT_STATE_ORDER]),
            "can_create": view.can("tenants", Action.CREATE),
        },
        status=status,
        title=view._("Tenants"),
    )


@router.get("/console/operator/tenants")
def tenants_page(
    view: UserViewDep,
    state: Annotated[str, Query(max_length=20)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    cursor: CursorQuery = "",
    done: DoneQuery = "",
) -> Response:
    return _tenants_page(
        view, state=state, q=q, cursor=cursor, notice=done_notice(view, done, TENANT_NOTICES)
    )


def _dns(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text) if part]


@router.post("/console/operator/tenants")
def create_tenant(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "tenants", Action.CREATE)
    values: dict[str, Any] = _values(form, TENANT_FIELDS)
    values["foreign_invested"] = form.get("foreign_invested") == "yes"
    data_in: dict[str, Any] = {
        **_given({k: v for k, v in values.items() if isinstance(v, str)}),
        "name_en": values["name_en"],
        "uscc": values["uscc"],
        "dns_servers": _dns(values["dns_servers"]),
    }
    if values["foreign_invested"]:
        data_in["foreign_invested"] = True
    try:
        data = parse(ten.TenantCreate, data_in)
        tenant = tenants.create(view.ctx, None, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, (*TENANT_FIELDS, "foreign_invested"))
        return _tenants_page(view, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=created")


def _tenant(view: View, tenant_id: str, action: Action = Action.READ) -> tuple[Guard, Tenant]:
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))  # another tenant's: 404 first
    _guard(view, "tenants", action)
    return guard, tenant


def _tenant_page(
    view: View,
    tenant_id: str,
    *,
    notice: str = "",
    errors: Mapping[str, str] | None = None,
    reason: str = "",
    invite_values: Mapping[str, Any] | None = None,
    invite_errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    _, tenant = _tenant(view, tenant_id)
    session = view.ctx.session
    users = session.scalar(
        select(func.count()).select_from(User).where(User.tenant_id == tenant.id)
    )
    devices = session.scalar(
        select(func.count()).select_from(Device).where(Device.tenant_id == tenant.id)
    )
    from tongdao.compliance import kyc

    found = kyc.kyc_refusal(tenant)
    current = TenantState(tenant.state)
    moves = (
        []
        if current is TenantState.TERMINATED
        else [
            *sorted(TENANT_TRANSITIONS[current], key=TENANT_STATE_ORDER.index),
            TenantState.TERMINATED,
        ]
    )
    if view.principal is None or Role.COMPLIANCE_OFFICER not in view.principal.roles:
        # Vetting (review, approval, rejection) is the compliance officer's (its queue).
        moves = [m for m in moves if m not in VETTING_STATES]
    return render(
        view,
        "operator/tenant.html",
        {
            "tenant": tenant,
            "users": int(users or 0),
            "devices": int(devices or 0),
            "vetting_problem": translate_message(view.locale, found[0].detail) if found else "",
            "moves": [(str(m), TENANT_ACTIONS[m]) for m in moves],
            "notice": notice,
            "errors": errors or {},
            "reason": reason,
            "can_update": view.can("tenants", Action.UPDATE),
            "can_invite": view.can("users", Action.CREATE),
            "invite_values": invite_values or {"roles": [str(Role.TENANT_ADMIN)]},
            "invite_errors": invite_errors or {},
            "tenant_role_options": [
                (str(role), view.locale.gettext(label))
                for role, label in TENANT_ROLE_LABELS.items()
            ],
        },
        status=status,
        title=view.locale.pick(tenant.name_en, tenant.name_zh),
    )


@router.get("/console/operator/tenants/{tenant_id}")
def tenant_page(view: UserViewDep, tenant_id: str, done: DoneQuery = "") -> Response:
    return _tenant_page(view, tenant_id, notice=done_notice(view, done, TENANT_DETAIL_NOTICES))


@router.post("/console/operator/tenants/{tenant_id}/state")
def change_tenant_state(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    guard, tenant = _tenant(view, tenant_id, Action.UPDATE)
    obj = tenants.load(guard, None, tenant.id, Action.UPDATE)
    reason = form.text("state_reason")
    try:
        data = parse(
            ten.TenantUpdate,
            {"state": form.text("state"), **({"state_reason": reason} if reason else {})},
        )
        tenants.update(view.ctx, obj, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, ("state", "state_reason"))
        return _tenant_page(view, tenant_id, errors=errors, reason=reason, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{obj.id}?done=state")


@router.post("/console/operator/tenants/{tenant_id}/users")
def invite_tenant_user(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    """Invite one of a tenant's people (its first tenant admin, typically): what the API's
    ``POST /tenants/{id}/users`` does, through the same resource (the invitation mail)."""
    check_csrf(view, form)
    guard, tenant = _tenant(view, tenant_id)
    guard.require("users", Action.CREATE)
    values: dict[str, Any] = _values(form, ("email", "display_name"))
    values["roles"] = form.getlist("roles")
    try:
        data = parse(ten.UserCreate, values)
        tenant_users.create(view.ctx, tenant, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, INVITE_FIELDS)
        return _tenant_page(
            view,
            tenant_id,
            invite_values=values,
            invite_errors=errors,
            status=exc.status_code,
        )
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=invited")


# --- outgoing mail -----------------------------------------------------------------------------
MAIL_FIELDS = ("host", "port", "security", "sender", "username", "password")
MAIL_NOTICES = {
    "saved": N_("The mail settings are saved. Messages waiting are sent with them at once."),
}
DELIVERY_LABELS = {
    "smtp": N_("through the SMTP relay below"),
    "outbox": N_("no relay yet: messages are written to the outbox directory (development)"),
    "held": N_("no relay yet: messages wait until one is set"),
}
SECURITY_LABELS = {
    SmtpSecurity.STARTTLS: N_("STARTTLS (usually port 587)"),
    SmtpSecurity.TLS: N_("TLS from the start (usually port 465)"),
    SmtpSecurity.NONE: N_("none (only to a relay on this machine)"),
}


def _mail_page(
    view: View,
    *,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    guard = _guard(view, "mail")
    current = mail_service.settings_public(guard.ctx)
    if values is None:
        values = {
            "host": current.host or "",
            "port": str(current.port or 587),
            "security": str(current.security or SmtpSecurity.STARTTLS),
            "sender": current.sender or "",
            "username": current.username or "",
        }
    return render(
        view,
        "operator/mail.html",
        {
            "current": current,
            "delivery": view.locale.gettext(DELIVERY_LABELS[current.delivery]),
            "security": (
                view.locale.gettext(SECURITY_LABELS[current.security]) if current.security else ""
            ),
            "values": values,
            "errors": errors or {},
            "notice": notice,
            "security_options": [
                (str(k), view.locale.gettext(label)) for k, label in SECURITY_LABELS.items()
            ],
            "can_update": view.can("mail", Action.UPDATE),
        },
        status=status,
        title=view._("Outgoing mail"),
    )


@router.get("/console/operator/mail")
def mail_page(view: UserViewDep, done: DoneQuery = "") -> Response:
    return _mail_page(view, notice=done_notice(view, done, MAIL_NOTICES))


@router.post("/console/operator/mail")
def save_mail(view: UserViewDep, form: FormDep) -> Response:
    """What the API's ``PUT /operator/mail`` does: the password is write-only; left empty it
    keeps the stored one, and "clear" forgets it."""
    check_csrf(view, form)
    guard = _guard(view, "mail", Action.UPDATE)
    values: dict[str, Any] = _values(form, ("host", "port", "security", "sender", "username"))
    data_in: dict[str, Any] = dict(values)
    password = form.get("password")
    if form.get("clear_password") == "yes":
        data_in["password"] = ""
    elif isinstance(password, str) and password != "":
        data_in["password"] = password
    try:
        data = parse(mail_schemas.MailSettingsUpdate, data_in)
        mail_service.put_settings(guard.ctx, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, MAIL_FIELDS)
        return _mail_page(view, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    mail_service.mailer_of(view.ctx.runtime).wake()
    return redirect(view, f"{BASE}/mail?done=saved")


__all__ = ["NAV", "enrol_command", "router"]
