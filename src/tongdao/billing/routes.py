"""Billing routes: plans, subscriptions, the monthly run, invoices, credit notes, payments."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.responses import Response
from sqlalchemy import select

from tongdao.api.crud import mount
from tongdao.api.deps import Guard, GuardDep
from tongdao.api.errors import ERROR_RESPONSES
from tongdao.api.pagination import Page, PageParams, page_params, paginate
from tongdao.audit.recorder import actor_of
from tongdao.auth.permissions import Action
from tongdao.billing import downloads, dunning, money, service
from tongdao.billing.models import Invoice, Payment, Subscription
from tongdao.billing.schemas import (
    Balance,
    CreditNoteCreate,
    FapiaoRecord,
    InvoiceFilters,
    InvoicePublic,
    PaymentCreate,
    PaymentPublic,
    Reason,
    ReminderPublic,
    RunRequest,
    RunResult,
    SubscriptionCreate,
    SubscriptionPublic,
    SuspensionPublic,
)
from tongdao.tenancy.models import Tenant

router = APIRouter()
invoices = service.InvoiceResource()
mount(router, service.PlanResource(), "/billing/plans", tags=["billing"])

TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
InvoiceId = Annotated[uuid.UUID, Path(description="the invoice's id")]
T = "/tenants/{tenant_id}"
ITEM = T + "/invoices/{object_id}"
_TEXT_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {**spec, "content": {"application/json": {}}} for code, spec in ERROR_RESPONSES.items()
}


def _invoice(
    guard: GuardDep, tenant_id: uuid.UUID, object_id: uuid.UUID, action: Action
) -> tuple[Tenant, Invoice]:
    """The tenant and its invoice: 404 when out of the caller's scope (before any 403)."""
    tenant = guard.tenant(tenant_id)
    if not guard.principal.is_operator and not guard.principal.can("invoices", action):
        invoices.load(guard, tenant, object_id, Action.READ)
    guard.require("invoices", action)
    return tenant, invoices.load(guard, tenant, object_id, action)


def _commit(guard: GuardDep, invoice: Invoice) -> InvoicePublic:
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return InvoicePublic.model_validate(invoice)


# --- subscriptions -------------------------------------------------------------------------
@router.get(T + "/subscriptions", tags=["billing"], operation_id="list_subscriptions")
def list_subscriptions(guard: GuardDep, tenant_id: TenantId) -> Page[SubscriptionPublic]:
    tenant = guard.tenant(tenant_id)
    guard.require("subscriptions", Action.READ)
    rows = list(
        guard.ctx.session.scalars(
            select(Subscription)
            .where(Subscription.tenant_id == tenant.id)
            .order_by(Subscription.starts_on)
        )
    )
    return Page[SubscriptionPublic](
        data=[SubscriptionPublic.model_validate(r) for r in rows], count=len(rows)
    )


@router.post(
    T + "/subscriptions",
    tags=["billing"],
    operation_id="create_subscription",
    status_code=status.HTTP_201_CREATED,
)
def create_subscription(
    guard: GuardDep, tenant_id: TenantId, body: SubscriptionCreate
) -> SubscriptionPublic:
    """Put the tenant on a plan from a day on (mid-month: the month is prorated by day)."""
    tenant = guard.tenant(tenant_id)
    guard.require("subscriptions", Action.CREATE)
    sub = service.subscribe(guard.ctx, tenant, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return SubscriptionPublic.model_validate(sub)


# --- the monthly run -----------------------------------------------------------------------
@router.post("/billing/runs", tags=["billing"], operation_id="run_billing")
def run_billing(guard: GuardDep, body: RunRequest) -> RunResult:
    """Make every tenant's draft invoice for the month; running it again changes nothing."""
    guard.require("invoices", Action.CREATE)
    actor = actor_of(guard.ctx.session)
    guard.ctx.session.rollback()  # the run owns its transactions (one per batch)
    month = service.billable_month(body.month, guard.ctx.runtime.clock())
    runtime = guard.ctx.runtime
    outcome = service.run_month(
        runtime.db, month, actor=actor, batch=runtime.settings.billing_run_batch
    )
    return RunResult(month=outcome.month, created=outcome.created, existing=outcome.existing)


@router.get("/billing/overdue", tags=["billing"], operation_id="list_overdue_invoices")
def list_overdue(
    guard: GuardDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[InvoicePublic]:
    """Issued invoices past their due date (Asia/Shanghai today), all tenants the caller sees."""
    guard.require("invoices", Action.READ)
    today = money.shanghai_today(guard.ctx.runtime.clock())
    stmt = guard.restrict(
        service.overdue_query(today), "invoices", Action.READ, tenant_column=Invoice.tenant_id
    )
    rows, total, cursor = paginate(guard.ctx.session, stmt, Invoice.id, page)
    return Page[InvoicePublic](
        data=[InvoicePublic.model_validate(r) for r in rows], count=total, next_cursor=cursor
    )


# --- invoices ------------------------------------------------------------------------------
@router.get(T + "/invoices", tags=["billing"], operation_id="list_invoices")
def list_invoices(
    guard: GuardDep,
    tenant_id: TenantId,
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[InvoiceFilters, Query()],
) -> Page[InvoicePublic]:
    tenant = guard.tenant(tenant_id)
    guard.require("invoices", Action.READ)
    stmt = invoices.apply_filters(invoices.base_query(guard, tenant, Action.READ), filters)
    rows, total, cursor = paginate(guard.ctx.session, stmt, Invoice.id, page)
    return Page[InvoicePublic](
        data=[InvoicePublic.model_validate(r) for r in rows], count=total, next_cursor=cursor
    )


@router.get(ITEM, tags=["billing"], operation_id="get_invoice")
def get_invoice(guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId) -> InvoicePublic:
    return InvoicePublic.model_validate(_invoice(guard, tenant_id, object_id, Action.READ)[1])


@router.get(
    ITEM + "/csv",
    tags=["billing"],
    operation_id="get_invoice_csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the invoice as CSV"},
        **_TEXT_ERRORS,
    },
)
def invoice_csv(guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId) -> Response:
    return downloads.csv_file(_invoice(guard, tenant_id, object_id, Action.READ)[1])


@router.get(
    ITEM + "/pdf",
    tags=["billing"],
    operation_id="get_invoice_pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the invoice as PDF"},
        **_TEXT_ERRORS,
    },
)
def invoice_pdf(guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId) -> Response:
    """The invoice as PDF (Chinese text in an embedded WenQuanYi Micro Hei subset)."""
    return downloads.pdf_file(_invoice(guard, tenant_id, object_id, Action.READ)[1])


@router.get(ITEM + "/e-fapiao", tags=["billing"], operation_id="get_invoice_efapiao")
def invoice_efapiao(guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId) -> dict[str, Any]:
    """What a fully digitalised e-fapiao carries (see tongdao.billing.export)."""
    invoice = _invoice(guard, tenant_id, object_id, Action.READ)[1]
    return downloads.efapiao(guard.ctx.session, invoice)


@router.post(ITEM + "/issue", tags=["billing"], operation_id="issue_invoice")
def issue_invoice(guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId) -> InvoicePublic:
    invoice = _invoice(guard, tenant_id, object_id, Action.UPDATE)[1]
    return _commit(guard, service.issue(guard.ctx, invoice))


@router.post(ITEM + "/void", tags=["billing"], operation_id="void_invoice")
def void_invoice(
    guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId, body: Reason
) -> InvoicePublic:
    """Void a draft or an unpaid issued invoice without a fapiao; it keeps its number."""
    invoice = _invoice(guard, tenant_id, object_id, Action.UPDATE)[1]
    return _commit(guard, service.void(guard.ctx, invoice, body.reason))


@router.post(ITEM + "/fapiao", tags=["billing"], operation_id="record_invoice_fapiao")
def record_fapiao(
    guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId, body: FapiaoRecord
) -> InvoicePublic:
    """Record the fapiao number the tax system returned for this invoice."""
    invoice = _invoice(guard, tenant_id, object_id, Action.UPDATE)[1]
    return _commit(guard, service.record_fapiao(guard.ctx, invoice, body.fapiao_number))


@router.post(
    ITEM + "/credit-notes",
    tags=["billing"],
    operation_id="create_credit_note",
    status_code=status.HTTP_201_CREATED,
)
def create_credit_note(
    guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId, body: CreditNoteCreate
) -> InvoicePublic:
    """A credit note (红字) in the credit notes' own gapless series, naming the invoice.

    Without ``lines``: reverses the whole invoice (409 on ``lines`` once anything was
    credited). With ``lines: [{line_id, amount_excl_vat | quantity}]``: credits those lines
    by that amount excluding VAT or that quantity (its share of the line's amount, half up to
    the fen); VAT per line, totals the sums of the lines. Refusals name the field: a line not
    on this invoice or named twice, a zero or negative amount 422 (``lines.<i>.…``); more
    than earlier credit notes left on a line 409 (``lines.<i>.amount_excl_vat`` or
    ``.quantity``); a draft or void invoice 409 (``state``)."""
    invoice = _invoice(guard, tenant_id, object_id, Action.UPDATE)[1]
    requests = (
        None
        if body.lines is None
        else [service.CreditRequest(x.line_id, x.amount_excl_vat, x.quantity) for x in body.lines]
    )
    return _commit(guard, service.credit_note(guard.ctx, invoice, body.reason, requests))


# --- payments ------------------------------------------------------------------------------
def payable_invoice(guard: Guard, tenant_id: uuid.UUID, object_id: uuid.UUID) -> Invoice:
    """The invoice a payment is recorded against: another tenant's answers 404 before a
    caller without the payments grant gets 403 (the API's route and the console's page)."""
    tenant = guard.tenant(tenant_id)
    if not guard.principal.is_operator and not guard.principal.can("payments", Action.CREATE):
        invoices.load(guard, tenant, object_id, Action.READ)
    guard.require("payments", Action.CREATE)
    invoice: Invoice = invoices.load(guard, tenant, object_id, Action.READ)
    return invoice


@router.post(
    ITEM + "/payments",
    tags=["billing"],
    operation_id="record_payment",
    status_code=status.HTTP_201_CREATED,
)
def record_payment(
    guard: GuardDep, tenant_id: TenantId, object_id: InvoiceId, body: PaymentCreate
) -> PaymentPublic:
    invoice = payable_invoice(guard, tenant_id, object_id)
    payment = service.record_payment(
        guard.ctx, invoice, body.amount, body.received_on, body.reference
    )
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return PaymentPublic.model_validate(payment)


@router.get(T + "/payments", tags=["billing"], operation_id="list_payments")
def list_payments(
    guard: GuardDep, tenant_id: TenantId, page: Annotated[PageParams, Depends(page_params)]
) -> Page[PaymentPublic]:
    tenant = guard.tenant(tenant_id)
    guard.require("payments", Action.READ)
    stmt = select(Payment).where(Payment.tenant_id == tenant.id)
    rows, total, cursor = paginate(guard.ctx.session, stmt, Payment.id, page)
    return Page[PaymentPublic](
        data=[PaymentPublic.model_validate(r) for r in rows], count=total, next_cursor=cursor
    )


@router.get(T + "/balance", tags=["billing"], operation_id="get_balance")
def get_balance(guard: GuardDep, tenant_id: TenantId) -> Balance:
    """What the tenant owes: issued invoices less credit notes and payments; overdue part."""
    tenant = guard.tenant(tenant_id)
    guard.require("invoices", Action.READ)
    today = money.shanghai_today(guard.ctx.runtime.clock())
    return Balance(tenant_id=tenant.id, **service.balance(guard.ctx.session, tenant.id, today))


# --- dunning: reminders and suspension for non-payment ----------------------------------------
@router.get(T + "/billing/reminders", tags=["billing"], operation_id="list_reminders")
def list_reminders(guard: GuardDep, tenant_id: TenantId) -> Page[ReminderPublic]:
    """The payment reminders sent for the tenant's overdue invoices (newest first, 20)."""
    tenant = guard.tenant(tenant_id)
    guard.require("invoices", Action.READ)
    rows = dunning.reminders_of(guard.ctx.session, tenant.id)
    return Page[ReminderPublic](
        data=[ReminderPublic.model_validate(r) for r in rows], count=len(rows)
    )


def _suspension(row: object, tenant: Tenant) -> SuspensionPublic:
    out = SuspensionPublic.model_validate(row)
    out.tenant_state = tenant.state
    return out


@router.get(
    T + "/billing/suspensions", tags=["billing"], operation_id="list_nonpayment_suspensions"
)
def list_suspensions(guard: GuardDep, tenant_id: TenantId) -> Page[SuspensionPublic]:
    """The tenant's suspensions for non-payment, newest first (open: ``lifted_at`` null)."""
    tenant = guard.tenant(tenant_id)
    guard.require("nonpayment_suspensions", Action.READ)
    rows = dunning.suspensions_of(guard.ctx.session, tenant.id)
    return Page[SuspensionPublic](data=[_suspension(r, tenant) for r in rows], count=len(rows))


@router.post(
    T + "/billing/suspension",
    tags=["billing"],
    operation_id="suspend_for_nonpayment",
    status_code=status.HTTP_201_CREATED,
)
def suspend_for_nonpayment(guard: GuardDep, tenant_id: TenantId, body: Reason) -> SuspensionPublic:
    """Suspend the tenant for non-payment (the billing clerk's decision, with a reason): 409
    unless it has an overdue invoice. Its service stops on the gateways."""
    tenant = guard.tenant(tenant_id)
    guard.require("nonpayment_suspensions", Action.CREATE)
    row = dunning.suspend(guard.ctx, tenant, body.reason)
    guard.ctx.session.commit()
    return _suspension(row, tenant)


@router.post(
    T + "/billing/suspension/lift", tags=["billing"], operation_id="lift_nonpayment_suspension"
)
def lift_nonpayment(guard: GuardDep, tenant_id: TenantId, body: Reason) -> SuspensionPublic:
    """Lift the tenant's suspension for non-payment, with a reason; it goes back in service
    unless something else (the compliance watch, a person) holds it suspended."""
    tenant = guard.tenant(tenant_id)
    guard.require("nonpayment_suspensions", Action.UPDATE)
    row = dunning.lift(guard.ctx, tenant, body.reason)
    guard.ctx.session.commit()
    return _suspension(row, tenant)
