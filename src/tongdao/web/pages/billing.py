"""The billing area: the billing clerk's pages (plans, subscriptions, the monthly run, invoices
and their actions, payments) and the tenant admin's read-only view of their own tenant's.

Every page calls what the API route for the same job calls (:mod:`tongdao.billing.routes`:
the plan resource, :func:`~tongdao.billing.service.subscribe`, the invoice actions, payments,
balance, exports), through the same :class:`~tongdao.api.deps.Guard` checks: the permissions
table decides who reads and who changes (``billing_plans``, ``subscriptions``, ``invoices``,
``payments``); another tenant's invoice or tenant is 404; employees get 403.

The monthly run is the job ``tongdao billing run`` runs
(:func:`tongdao.jobs.scheduler.run_billing_job`, under the job's lease, forced for a month
already done so it reports what is there); while another replica or command holds the
lease the page says so instead of failing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.audit.models import AuditEvent
from tongdao.audit.recorder import actor_of
from tongdao.auth.permissions import Action, Role
from tongdao.billing import downloads, dunning, money, service
from tongdao.billing import routes as api
from tongdao.billing.models import (
    CrossBorderBasis,
    Invoice,
    InvoiceKind,
    InvoiceState,
    LineKind,
    Payment,
    Plan,
    SeatBasis,
    Subscription,
)
from tongdao.billing.schemas import (
    CreditLineRequest,
    FapiaoRecord,
    InvoiceFilters,
    PaymentCreate,
    PlanCreate,
    PlanUpdate,
    Reason,
    RunRequest,
    SubscriptionCreate,
)
from tongdao.errors import DomainError, NotFound, ValidationError
from tongdao.jobs import lease
from tongdao.jobs.scheduler import LeaseHeld, run_billing_job
from tongdao.tenancy.models import Tenant
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
    tenant_options,
    translate_message,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
BASE = "/console/billing"
READERS = frozenset({Role.OPERATOR_ADMIN, Role.BILLING_CLERK, Role.AUDITOR, Role.TENANT_ADMIN})
NAV = [NavItem(BASE, N_("Billing"), READERS)]
PAGE_SIZE = 25

plans = service.PlanResource()
invoices = service.InvoiceResource()

DoneQuery = Annotated[str, Query(max_length=20)]
CursorQuery = Annotated[str, Query(max_length=64)]

STATE_LABELS: dict[str, str] = {
    InvoiceState.DRAFT: N_("draft"),
    InvoiceState.ISSUED: N_("issued"),
    InvoiceState.PAID: N_("paid"),
    InvoiceState.VOID: N_("void"),
}
KIND_LABELS: dict[str, str] = {
    InvoiceKind.INVOICE: N_("invoice"),
    InvoiceKind.CREDIT_NOTE: N_("credit note (红字)"),
}
LINE_LABELS: dict[str, str] = {
    LineKind.BASE: N_("Base fee"),
    LineKind.SEATS: N_("Seats"),
    LineKind.SITES: N_("Sites"),
    LineKind.TRAFFIC: N_("Traffic over the included amount"),
    LineKind.CROSS_BORDER: N_("Cross-border traffic"),
    LineKind.CROSS_BORDER_MBPS: N_("Cross-border committed bandwidth"),
}
UNIT_LABELS: dict[str, str] = {
    "month": N_("month"),
    "seat": N_("seat"),
    "site": N_("site"),
    "GB": N_("GB"),
    "Mbit/s-month": N_("Mbit/s-month"),
}
CROSS_BORDER_BASIS_LABELS: dict[str, str] = {
    CrossBorderBasis.GB: N_("per GB of cross-border traffic"),
    CrossBorderBasis.MBPS: N_("per approved Mbit/s per month (the tenant's authorisations)"),
}
SEAT_BASIS_LABELS: dict[str, str] = {
    SeatBasis.ACCOUNT: N_("per user account in the month"),
    SeatBasis.ACTIVE: N_("per active user (a device handshake in the month)"),
}
PLAN_FIELDS = (
    "name",
    "name_zh",
    "vat_rate",
    "base_fee",
    "seat_price",
    "seat_basis",
    "site_price",
    "included_traffic_gb",
    "traffic_price_per_gb",
    "cross_border_price_per_gb",
    "cross_border_basis",
    "cross_border_price_per_mbps",
    "payment_terms_days",
    "base_tax_code",
    "seat_tax_code",
    "site_tax_code",
    "traffic_tax_code",
    "cross_border_tax_code",
)
PLAN_DEFAULTS = {
    "vat_rate": "0.06",
    "seat_basis": SeatBasis.ACCOUNT.value,
    "payment_terms_days": "30",
    "base_fee": "0.00",
    "seat_price": "0.00",
    "site_price": "0.00",
    "included_traffic_gb": "0",
    "traffic_price_per_gb": "0.00",
    "cross_border_price_per_gb": "0.00",
    "cross_border_basis": CrossBorderBasis.GB.value,
    "cross_border_price_per_mbps": "0.00",
}


# --- common ---------------------------------------------------------------------------------
def _guard(view: View, resource: str, action: Action = Action.READ) -> Guard:
    view.require_principal()
    guard = Guard(view.ctx)
    guard.require(resource, action)
    return guard


def _refusal(view: View, exc: DomainError, known: Sequence[str] = ()) -> dict[str, str]:
    """A refusal's messages keyed by field, translated; what no field shows goes on top."""
    errors: dict[str, str] = {}
    general: list[str] = []
    for key, text in exc.fields.items():
        message = translate_message(view.locale, text)
        field = key.split(".", 1)[0]
        if field != "body" and (not known or field in known):
            errors.setdefault(field, message)
        else:
            general.append(message)
    if not isinstance(exc, ValidationError) or not exc.fields:
        general.insert(0, translate_message(view.locale, exc.message))
    if general:
        errors["form"] = " ".join(dict.fromkeys(general))
    return errors


def _given(values: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value != ""}


def _page_params(cursor: str) -> PageParams:
    return PageParams(limit=PAGE_SIZE, cursor=cursor or None)


def _labels(view: View) -> dict[str, Any]:
    """What templates use to name states, kinds, lines and units in the person's language."""
    gettext = view.locale.gettext

    def label(table: Mapping[str, str], value: str) -> str:
        return gettext(table[value]) if value in table else value

    return {
        "state_label": lambda v: label(STATE_LABELS, v),
        "kind_label": lambda v: label(KIND_LABELS, v),
        "line_label": lambda v: label(LINE_LABELS, v),
        "unit_label": lambda v: label(UNIT_LABELS, v),
        "basis_label": lambda v: label(SEAT_BASIS_LABELS, v),
        "xb_basis_label": lambda v: label(CROSS_BORDER_BASIS_LABELS, v),
        "rate": lambda v: f"{(Decimal(v) * 100).normalize():f}%",
        "qty": lambda v: f"{Decimal(v).normalize():f}",
        # A line's period ends before ``period_end`` (exclusive): its last day.
        "last_day": lambda d: (d - timedelta(days=1)).isoformat(),
    }


def _tenant_names(view: View, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = view.ctx.session.execute(
        select(Tenant.id, Tenant.name_en, Tenant.name_zh).where(Tenant.id.in_(set(ids)))
    )
    return {tid: view.locale.pick(en, zh) for tid, en, zh in rows}


def _plan_names(view: View) -> dict[uuid.UUID, str]:
    rows = view.ctx.session.execute(select(Plan.id, Plan.name, Plan.name_zh))
    return {pid: view.locale.pick(name, zh) for pid, name, zh in rows}


def _render(
    view: View, template: str, context: Mapping[str, Any], *, status: int = 200, title: str = ""
) -> Response:
    values = {
        **_labels(view),
        "can_plans": view.can("billing_plans", Action.CREATE),
        "can_run": view.can("invoices", Action.CREATE),
        "is_operator": bool(view.principal and view.principal.is_operator),
        **context,
    }
    return render(view, template, values, status=status, title=title)


# --- overview -------------------------------------------------------------------------------
@router.get(BASE)
def overview_page(view: UserViewDep) -> Response:
    """Balances and overdue invoices: all tenants for operator staff, their own for a tenant."""
    guard = _guard(view, "invoices")
    session = view.ctx.session
    today = money.shanghai_today(view.ctx.runtime.clock())
    overdue_stmt = guard.restrict(
        service.overdue_query(today), "invoices", Action.READ, tenant_column=Invoice.tenant_id
    )
    overdue = list(session.scalars(overdue_stmt.order_by(Invoice.due_on, Invoice.id).limit(50)))
    if guard.principal.is_operator:
        billed = list(session.scalars(select(Invoice.tenant_id).distinct())) + list(
            session.scalars(select(Subscription.tenant_id).distinct())
        )
        tenant_ids = list(dict.fromkeys(billed))
    else:
        tenant_ids = [guard.principal.tenant_id] if guard.principal.tenant_id else []
    names = _tenant_names(view, [*tenant_ids, *(i.tenant_id for i in overdue)])
    rows: list[tuple[Decimal, str, dict[str, Any]]] = []
    for tid in tenant_ids[:200]:
        figures = service.balance(session, tid, today)
        name = names.get(tid, "")
        rows.append((-figures["balance"], name, {"tenant_id": tid, "name": name, **figures}))
    balances = [row for _, _, row in sorted(rows, key=lambda r: (r[0], r[1]))]
    return _render(
        view,
        "billing/overview.html",
        {
            "balances": balances,
            "overdue": overdue,
            "names": names,
            "today": today,
            "own_tenant": None if guard.principal.is_operator else guard.principal.tenant_id,
            "tenants": tenant_options(view),
        },
        title=view._("Billing"),
    )


# --- plans ----------------------------------------------------------------------------------
PLAN_NOTICES = {
    "created": N_("The plan is created. Subscribe tenants to it from their billing page."),
    "saved": N_("The plan is saved. Invoices already made keep their prices."),
}


def _plans_page(
    view: View,
    *,
    cursor: str = "",
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    guard = _guard(view, "billing_plans")
    stmt = plans.base_query(guard, None, Action.READ)
    rows, total, next_cursor = paginate(view.ctx.session, stmt, Plan.id, _page_params(cursor))
    return _render(
        view,
        "billing/plans.html",
        {
            "plans": rows,
            "total": total,
            "next_cursor": next_cursor,
            "values": values or PLAN_DEFAULTS,
            "errors": errors or {},
            "notice": notice,
            "basis_options": _basis_options(view),
            "xb_basis_options": _xb_basis_options(view),
        },
        status=status,
        title=view._("Plans"),
    )


def _basis_options(view: View) -> list[tuple[str, str]]:
    return [(str(b), view.locale.gettext(SEAT_BASIS_LABELS[b])) for b in SeatBasis]


def _xb_basis_options(view: View) -> list[tuple[str, str]]:
    gettext = view.locale.gettext
    return [(str(b), gettext(CROSS_BORDER_BASIS_LABELS[b])) for b in CrossBorderBasis]


@router.get(BASE + "/plans")
def plans_page(view: UserViewDep, cursor: CursorQuery = "", done: DoneQuery = "") -> Response:
    return _plans_page(view, cursor=cursor, notice=done_notice(view, done, PLAN_NOTICES))


@router.post(BASE + "/plans")
def create_plan(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "billing_plans", Action.CREATE)
    values = {name: form.text(name) for name in PLAN_FIELDS}
    try:
        data = parse(PlanCreate, _given(values))
        plan = plans.create(view.ctx, None, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, PLAN_FIELDS)
        return _plans_page(view, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/plans/{plan.id}?done=created")


def _plan_page(
    view: View,
    plan_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    view.require_principal()
    guard = Guard(view.ctx)
    # No such plan: 404 for anyone, before what their roles allow (as for another's object).
    plan = plans.load(guard, None, parse_uuid(plan_id, "plan"), Action.READ)
    guard.require("billing_plans", Action.READ)
    current = {name: _text(getattr(plan, name)) for name in PLAN_FIELDS}
    return _render(
        view,
        "billing/plan.html",
        {
            "plan": plan,
            "values": values or current,
            "errors": errors or {},
            "notice": notice,
            "basis_options": _basis_options(view),
            "xb_basis_options": _xb_basis_options(view),
        },
        status=status,
        title=view.locale.pick(plan.name, plan.name_zh),
    )


def _text(value: object) -> str:
    return "" if value is None else str(value)


@router.get(BASE + "/plans/{plan_id}")
def plan_page(view: UserViewDep, plan_id: str, done: DoneQuery = "") -> Response:
    return _plan_page(view, plan_id, notice=done_notice(view, done, PLAN_NOTICES))


@router.post(BASE + "/plans/{plan_id}")
def update_plan(view: UserViewDep, plan_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _guard(view, "billing_plans", Action.UPDATE)
    plan = plans.load(guard, None, parse_uuid(plan_id, "plan"), Action.UPDATE)
    names = [name for name in PLAN_FIELDS if name != "name"]  # the name is fixed once made
    values = {name: form.text(name) for name in names}
    try:
        data = parse(PlanUpdate, {k: v for k, v in values.items() if v != "" or k == "name_zh"})
        plans.update(view.ctx, plan, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, PLAN_FIELDS)
        return _plan_page(
            view,
            plan_id,
            values={**values, "name": plan.name},
            errors=errors,
            status=exc.status_code,
        )
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/plans/{plan.id}?done=saved")


# --- a tenant's billing: subscriptions, balance, payments -------------------------------------
TENANT_NOTICES = {
    "subscribed": N_("The subscription is saved. The month is prorated by day from its start."),
    "suspended": N_("The tenant is suspended for non-payment; its service has stopped."),
    "lifted": N_("The suspension for non-payment is lifted."),
}


def _tenant_page(
    view: View,
    tenant_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
    form: str = "",
) -> Response:
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))  # another tenant: 404 first
    guard.require("subscriptions", Action.READ)
    session = view.ctx.session
    subs = list(
        session.scalars(
            select(Subscription)
            .where(Subscription.tenant_id == tenant.id)
            .order_by(Subscription.starts_on)
        )
    )
    today = money.shanghai_today(view.ctx.runtime.clock())
    current = next((s for s in reversed(subs) if s.starts_on <= today), None)
    plan_names = _plan_names(view)
    recent = list(
        session.scalars(
            invoices.base_query(guard, tenant, Action.READ).order_by(Invoice.id.desc()).limit(12)
        )
    )
    can_pay = view.can("payments", Action.READ)
    payments = (
        list(
            session.scalars(
                select(Payment)
                .where(Payment.tenant_id == tenant.id)
                .order_by(Payment.received_on.desc(), Payment.id.desc())
                .limit(12)
            )
        )
        if can_pay
        else []
    )
    reminders = dunning.reminders_of(session, tenant.id, limit=12)
    can_suspensions = view.can("nonpayment_suspensions", Action.READ)
    suspensions = dunning.suspensions_of(session, tenant.id)[:5] if can_suspensions else []
    numbers = _numbers(view, [p.invoice_id for p in payments] + [r.invoice_id for r in reminders])
    return _render(
        view,
        "billing/tenant.html",
        {
            "tenant": tenant,
            "subscriptions": subs,
            "current": current,
            "plan_names": plan_names,
            "plan_options": sorted(
                ((str(pid), name) for pid, name in plan_names.items()), key=lambda o: o[1]
            ),
            "balance": service.balance(session, tenant.id, today),
            "invoices": recent,
            "payments": payments,
            "numbers": numbers,
            "can_subscribe": view.can("subscriptions", Action.CREATE),
            "reminders": reminders,
            "suspensions": suspensions,
            "open_suspension": next((x for x in suspensions if x.lifted_at is None), None),
            "can_suspend": view.can("nonpayment_suspensions", Action.CREATE),
            "can_lift": view.can("nonpayment_suspensions", Action.UPDATE),
            "form": form,
            # The plan picker starts on the plan of today (empty would end billing).
            "values": values
            or {
                "plan_id": str(current.plan_id) if current and current.plan_id else "",
                "starts_on": money.next_month(today.replace(day=1)).isoformat(),
            },
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
        title=view.locale.pick(tenant.name_en, tenant.name_zh),
    )


def _numbers(view: View, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = view.ctx.session.execute(
        select(Invoice.id, Invoice.number).where(Invoice.id.in_(set(ids)))
    )
    return {row.id: row.number for row in rows}


@router.get(BASE + "/tenants")
def pick_tenant(view: UserViewDep, tenant: Annotated[str, Query(max_length=40)] = "") -> Response:
    """The overview's tenant picker (a GET form): on to that tenant's billing page."""
    guard = _guard(view, "invoices")
    if not tenant:
        return redirect(view, BASE)
    chosen = guard.tenant(parse_uuid(tenant, "tenant"))
    return redirect(view, f"{BASE}/tenants/{chosen.id}")


@router.get(BASE + "/tenants/{tenant_id}")
def tenant_page(view: UserViewDep, tenant_id: str, done: DoneQuery = "") -> Response:
    return _tenant_page(view, tenant_id, notice=done_notice(view, done, TENANT_NOTICES))


@router.post(BASE + "/tenants/{tenant_id}/subscriptions")
def create_subscription(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("subscriptions", Action.CREATE)
    values = {"plan_id": form.text("plan_id"), "starts_on": form.text("starts_on")}
    try:
        data = parse(
            SubscriptionCreate,
            {"plan_id": values["plan_id"] or None, "starts_on": values["starts_on"]},
        )
        service.subscribe(view.ctx, tenant, data)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, ("plan_id", "starts_on"))
        return _tenant_page(view, tenant_id, values=values, errors=errors, status=422)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=subscribed")


def _nonpayment(view: View, tenant_id: str, form: Any, name: str) -> Response:
    """Suspend (``suspend``) or lift (``lift``) for non-payment, as the API's routes do; a
    refusal shows next to the reason on the action's own form."""
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("nonpayment_suspensions", Action.CREATE if name == "suspend" else Action.UPDATE)
    values = {"reason": form.text("reason")}
    try:
        reason = parse(Reason, values).reason
        if name == "suspend":
            dunning.suspend(view.ctx, tenant, reason)
        else:
            dunning.lift(view.ctx, tenant, reason)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, ("reason",))
        return _tenant_page(
            view, tenant_id, values=values, errors=errors, status=exc.status_code, form=name
        )
    view.ctx.session.commit()
    done = "suspended" if name == "suspend" else "lifted"
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done={done}")


@router.post(BASE + "/tenants/{tenant_id}/suspension")
def suspend_for_nonpayment(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    return _nonpayment(view, tenant_id, form, "suspend")


@router.post(BASE + "/tenants/{tenant_id}/suspension/lift")
def lift_nonpayment(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    return _nonpayment(view, tenant_id, form, "lift")


# --- the monthly run ------------------------------------------------------------------------
def _run_page(
    view: View,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    outcome: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    _guard(view, "invoices", Action.CREATE)
    today = money.shanghai_today(view.ctx.runtime.clock())
    last = money.previous_month(today.replace(day=1)).strftime("%Y-%m")
    return _render(
        view,
        "billing/run.html",
        {
            "values": values or {"month": last},
            "errors": errors or {},
            "outcome": outcome,
            "last_done": lease.last_done(view.ctx.runtime.db, "billing.monthly"),
        },
        status=status,
        title=view._("Monthly billing run"),
    )


@router.get(BASE + "/run")
def run_page(view: UserViewDep) -> Response:
    return _run_page(view)


@router.post(BASE + "/run")
def run_billing(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard(view, "invoices", Action.CREATE)
    values = {"month": form.text("month")}
    try:
        # The service's own check first: its refusal says how a month is written.
        month = service.billable_month(values["month"], view.ctx.runtime.clock())
        parse(RunRequest, values)
    except ValidationError as exc:
        return _run_page(view, values=values, errors=_refusal(view, exc, ("month",)), status=422)
    actor = actor_of(view.ctx.session)
    view.ctx.session.rollback()  # the run owns its transactions (one per batch)
    holder = f"console:{lease.holder_id()}"
    try:
        outcome = run_billing_job(view.ctx.runtime, month, holder, force=True, actor=actor)
    except LeaseHeld:
        message = view._(
            "Another billing run holds the job's lease (the server's scheduler, or the command "
            "tongdao billing run elsewhere). Wait for it to finish, then run again: nothing is "
            "made twice."
        )
        return _run_page(view, values=values, errors={"form": message}, status=409)
    assert outcome is not None  # forced: never skipped
    result = {"month": outcome.month, "created": outcome.created, "existing": outcome.existing}
    return _run_page(view, values=values, outcome=result)


# --- invoices -------------------------------------------------------------------------------
@router.get(BASE + "/invoices")
def invoices_page(
    view: UserViewDep,
    tenant: Annotated[str, Query(max_length=40)] = "",
    month: Annotated[str, Query(max_length=10)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
    cursor: CursorQuery = "",
) -> Response:
    guard = _guard(view, "invoices")
    errors: dict[str, str] = {}
    status = 200
    try:
        filters = parse(InvoiceFilters, _given({"state": state, "month": month, "kind": kind}))
    except ValidationError as exc:
        errors = _refusal(view, exc, ("state", "month", "kind"))
        filters, status = InvoiceFilters(), 422
    chosen: Tenant | None = None
    if tenant:
        try:
            chosen = guard.tenant(uuid.UUID(tenant))
        except (ValueError, NotFound):
            errors["tenant"] = view._("no such tenant")
            status = 422
    stmt = (
        invoices.base_query(guard, chosen, Action.READ)
        if chosen is not None
        else guard.restrict(
            select(Invoice), "invoices", Action.READ, tenant_column=Invoice.tenant_id
        )
    )
    stmt = invoices.apply_filters(stmt, filters)
    rows, total, next_cursor = paginate(
        view.ctx.session, stmt, Invoice.id, _page_params(cursor), descending=True
    )
    query = urlencode(
        [
            (k, v)
            for k, v in (("tenant", tenant), ("month", month), ("state", state), ("kind", kind))
            if v
        ]
    )
    return _render(
        view,
        "billing/invoices.html",
        {
            "invoices": rows,
            "total": total,
            "next_cursor": next_cursor,
            "query": query,
            "names": _tenant_names(view, [i.tenant_id for i in rows]),
            "filters": {"tenant": tenant, "month": month, "state": state},
            "errors": errors,
            "tenants": tenant_options(view),
            "state_options": [(str(s), view.locale.gettext(STATE_LABELS[s])) for s in InvoiceState],
        },
        status=status,
        title=view._("Invoices"),
    )


INVOICE_NOTICES = {
    "issued": N_("The invoice is issued. Send its e-fapiao data to the tax system."),
    "voided": N_("The invoice is void. It keeps its number."),
    "fapiao": N_("The fapiao number is recorded."),
    "credited": N_("The credit note (红字) is made."),
    "paid": N_("The payment is recorded."),
}
ACTION_FIELDS = ("reason", "fapiao_number", "amount", "received_on", "reference")


def _load(view: View, tenant_id: str, invoice_id: str, action: Action) -> tuple[Guard, Invoice]:
    view.require_principal()
    guard = Guard(view.ctx)
    tid = parse_uuid(tenant_id, "tenant")
    iid = parse_uuid(invoice_id, "invoice")
    return guard, api._invoice(guard, tid, iid, action)[1]


def _invoice_page(
    view: View,
    tenant_id: str,
    invoice_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    form: str = "",
    status: int = 200,
    notice: str = "",
) -> Response:
    invoice = _load(view, tenant_id, invoice_id, Action.READ)[1]
    session = view.ctx.session
    corrects = session.get(Invoice, invoice.corrects_id) if invoice.corrects_id else None
    credit_notes = service.credit_notes_of(session, invoice.id)
    credited = service.credited_lines(session, invoice)
    creditable: list[dict[str, Any]] = [
        {
            "line": line,
            "field": f"credit_{line.position}",
            "qty_field": f"credit_qty_{line.position}",
            "left": line.amount - credited.get(line.position, service.Credited()).amount,
            "qty_left": line.quantity - credited.get(line.position, service.Credited()).quantity,
        }
        for line in invoice.lines
    ]
    payments = (
        list(
            session.scalars(
                select(Payment)
                .where(Payment.invoice_id == invoice.id)
                .order_by(Payment.received_on, Payment.id)
            )
        )
        if view.can("payments", Action.READ)
        else []
    )
    history = list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "invoice", AuditEvent.object_id == str(invoice.id))
            .order_by(AuditEvent.id)
            .limit(50)
        )
    )
    can_update = view.can("invoices", Action.UPDATE)
    today = money.shanghai_today(view.ctx.runtime.clock())
    return _render(
        view,
        "billing/invoice.html",
        {
            "invoice": invoice,
            "tenant_name": view.locale.pick(*_names_of(view, invoice.tenant_id)),
            "corrects": corrects,
            "credit_notes": credit_notes,
            "creditable": creditable,
            "can_credit": any(row["left"] > 0 for row in creditable),
            "credited_total": service.credited_total(session, invoice.id),
            "payments": payments,
            "history": [_history_row(view, e) for e in history],
            # What the tenant still owes on it: total − credit notes − payments.
            "outstanding": service.outstanding_of(session, invoice),
            "can_update": can_update,
            "can_pay": view.can("payments", Action.CREATE),
            "base": f"{BASE}/tenants/{invoice.tenant_id}/invoices/{invoice.id}",
            "values": values or {"received_on": today.isoformat()},
            "errors": errors or {},
            "form": form,
            "notice": notice,
        },
        status=status,
        title=invoice.number,
    )


def _names_of(view: View, tenant_id: uuid.UUID) -> tuple[str, str]:
    tenant = view.ctx.session.get(Tenant, tenant_id)
    return (tenant.name_en, tenant.name_zh) if tenant is not None else ("", "")


HISTORY_ACTIONS = {
    "billing_invoice_made": N_("made by the monthly run"),
    "create": N_("made"),
    "update": N_("changed"),
}


def _history_row(view: View, event: AuditEvent) -> dict[str, Any]:
    after = event.after or {}
    what = HISTORY_ACTIONS.get(event.action)

    def text(key: str) -> str:
        # Only what the change wrote: a creation's snapshot carries unset columns as non-text.
        value = after.get(key)
        return value if isinstance(value, str) else ""

    lines = after.get("lines")  # a run-made invoice's record carries its lines
    return {
        "when": event.occurred_at,
        "actor": event.actor or "—",
        "action": view.locale.gettext(what) if what else event.action,
        "lines": len(lines) if isinstance(lines, list) else 0,
        "state": text("state"),
        "fapiao_number": text("fapiao_number"),
        "reason": text("reason"),
    }


@router.get(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}")
def invoice_page(
    view: UserViewDep, tenant_id: str, invoice_id: str, done: DoneQuery = ""
) -> Response:
    notice = done_notice(view, done, INVOICE_NOTICES)
    return _invoice_page(view, tenant_id, invoice_id, notice=notice)


def _act(view: View, tenant_id: str, invoice_id: str, form: Any, name: str, done: str) -> Response:
    """One invoice action, as its API route does it; a refusal on the action's own form."""
    check_csrf(view, form)
    invoice = _load(view, tenant_id, invoice_id, Action.UPDATE)[1]
    values = {key: form.text(key) for key in ACTION_FIELDS}
    if name == "credit":
        for x in invoice.lines:
            for key in (f"credit_{x.position}", f"credit_qty_{x.position}"):
                values[key] = form.text(key)
    try:
        if name == "issue":
            service.issue(view.ctx, invoice)
        elif name == "void":
            service.void(view.ctx, invoice, parse(Reason, {"reason": values["reason"]}).reason)
        elif name == "fapiao":
            number = parse(FapiaoRecord, {"fapiao_number": values["fapiao_number"]})
            service.record_fapiao(view.ctx, invoice, number.fapiao_number)
        else:
            reason = parse(Reason, {"reason": values["reason"]}).reason
            service.credit_note(view.ctx, invoice, reason, _credit_requests(invoice, values))
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, _credit_fields(invoice, values, exc), [*ACTION_FIELDS, *values])
        return _invoice_page(
            view,
            tenant_id,
            invoice_id,
            values=values,
            errors=errors,
            form=name,
            status=exc.status_code,
        )
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{invoice.tenant_id}/invoices/{invoice.id}?done={done}")


def _credit_requests(invoice: Invoice, values: Mapping[str, str]) -> list[Any] | None:
    """The console's credit form: an amount (yuan, excl. VAT) or a quantity per line, each
    checked as the API's body checks it (a refusal next to that line's field); none given:
    the whole invoice."""
    requests = []
    for line in invoice.lines:
        amount = values.get(f"credit_{line.position}", "")
        quantity = values.get(f"credit_qty_{line.position}", "")
        if not amount and not quantity:
            continue
        body: dict[str, Any] = {"line_id": line.id}
        if amount:
            body["amount_excl_vat"] = amount
        if quantity:
            body["quantity"] = quantity
        try:
            parsed = parse(CreditLineRequest, body)
        except ValidationError as exc:
            raise ValidationError(
                {_line_field(line.position, key): text for key, text in exc.fields.items()}
            ) from exc
        requests.append(service.CreditRequest(line.id, parsed.amount_excl_vat, parsed.quantity))
    return requests or None


def _line_field(position: int, key: str) -> str:
    """The form field of a line's credit for a refusal's key (``quantity``, ``lines.0.
    quantity``: the quantity's field; the amount's field otherwise)."""
    return f"credit_qty_{position}" if key.endswith("quantity") else f"credit_{position}"


def _credit_fields(invoice: Invoice, values: Mapping[str, str], exc: DomainError) -> DomainError:
    """A service refusal about ``lines.<i>`` of the request, keyed by that line's form field."""
    if not any(key.startswith("lines.") for key in exc.fields):
        return exc
    given = [
        line.position
        for line in invoice.lines
        if values.get(f"credit_{line.position}") or values.get(f"credit_qty_{line.position}")
    ]
    fields: dict[str, str] = {}
    for key, text in exc.fields.items():
        parts = key.split(".")
        if (
            parts[0] == "lines"
            and len(parts) > 1
            and parts[1].isdigit()
            and int(parts[1]) < len(given)
        ):
            fields[_line_field(given[int(parts[1])], key)] = text
        else:
            fields[key] = text
    exc.fields = fields
    return exc


@router.post(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/issue")
def issue_invoice(view: UserViewDep, tenant_id: str, invoice_id: str, form: FormDep) -> Response:
    return _act(view, tenant_id, invoice_id, form, "issue", "issued")


@router.post(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/void")
def void_invoice(view: UserViewDep, tenant_id: str, invoice_id: str, form: FormDep) -> Response:
    return _act(view, tenant_id, invoice_id, form, "void", "voided")


@router.post(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/fapiao")
def record_fapiao(view: UserViewDep, tenant_id: str, invoice_id: str, form: FormDep) -> Response:
    return _act(view, tenant_id, invoice_id, form, "fapiao", "fapiao")


@router.post(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/credit-notes")
def credit_note(view: UserViewDep, tenant_id: str, invoice_id: str, form: FormDep) -> Response:
    return _act(view, tenant_id, invoice_id, form, "credit", "credited")


@router.post(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/payments")
def record_payment(view: UserViewDep, tenant_id: str, invoice_id: str, form: FormDep) -> Response:
    """A payment (full or partial), checked as the API's route checks it."""
    check_csrf(view, form)
    view.require_principal()
    invoice = api.payable_invoice(
        Guard(view.ctx), parse_uuid(tenant_id, "tenant"), parse_uuid(invoice_id, "invoice")
    )
    values = {key: form.text(key) for key in ACTION_FIELDS}
    try:
        body = parse(
            PaymentCreate,
            {k: values[k] for k in ("amount", "received_on", "reference")},
        )
        service.record_payment(view.ctx, invoice, body.amount, body.received_on, body.reference)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _refusal(view, exc, ACTION_FIELDS)
        return _invoice_page(
            view,
            tenant_id,
            invoice_id,
            values=values,
            errors=errors,
            form="pay",
            status=exc.status_code,
        )
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{invoice.tenant_id}/invoices/{invoice.id}?done=paid")


# --- downloads: the API's bytes -------------------------------------------------------------
@router.get(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/pdf")
def invoice_pdf(view: UserViewDep, tenant_id: str, invoice_id: str) -> Response:
    return downloads.pdf_file(_load(view, tenant_id, invoice_id, Action.READ)[1])


@router.get(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/csv")
def invoice_csv(view: UserViewDep, tenant_id: str, invoice_id: str) -> Response:
    return downloads.csv_file(_load(view, tenant_id, invoice_id, Action.READ)[1])


@router.get(BASE + "/tenants/{tenant_id}/invoices/{invoice_id}/e-fapiao")
def invoice_efapiao(view: UserViewDep, tenant_id: str, invoice_id: str) -> Response:
    invoice = _load(view, tenant_id, invoice_id, Action.READ)[1]
    return downloads.efapiao_file(view.ctx.session, invoice)


# --- payments -------------------------------------------------------------------------------
@router.get(BASE + "/payments")
def payments_page(
    view: UserViewDep,
    tenant: Annotated[str, Query(max_length=40)] = "",
    cursor: CursorQuery = "",
) -> Response:
    guard = _guard(view, "payments")
    errors: dict[str, str] = {}
    stmt = guard.restrict(select(Payment), "payments", Action.READ, tenant_column=Payment.tenant_id)
    status = 200
    if tenant:
        try:
            chosen = guard.tenant(uuid.UUID(tenant))
            stmt = stmt.where(Payment.tenant_id == chosen.id)
        except (ValueError, NotFound):
            errors["tenant"] = view._("no such tenant")
            status = 422
    rows, total, next_cursor = paginate(
        view.ctx.session, stmt, Payment.id, _page_params(cursor), descending=True
    )
    return _render(
        view,
        "billing/payments.html",
        {
            "payments": rows,
            "total": total,
            "next_cursor": next_cursor,
            "names": _tenant_names(view, [p.tenant_id for p in rows]),
            "numbers": _numbers(view, [p.invoice_id for p in rows]),
            "filters": {"tenant": tenant},
            "errors": errors,
            "tenants": tenant_options(view),
        },
        status=status,
        title=view._("Payments"),
    )
