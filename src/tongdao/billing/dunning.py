"""Dunning: reminders for overdue invoices, and suspension for non-payment.

**Reminders** (the scheduled job ``billing.reminders``, under its lease; ``tongdao billing
remind`` runs it once on the store). An issued invoice past its due date with something still
outstanding after credit notes (whole or partial) and payments
(:func:`tongdao.billing.service.overdue_query`) gets a reminder at 1, 7 and 30
Asia/Shanghai days past due, each step once: a row of ``billing_reminders`` (unique per invoice
and step) records it in the transaction that queues the mails, so a rerun sends nothing twice.
An invoice first found further past due gets only the latest step it reached (a job that did
not run for a week sends the 7-day reminder, not the 1-day one as well). The mail (English and
Chinese in one message) goes to the tenant's active admins and names the invoice number, the
amount still outstanding (total − credit notes − payments) in RMB and the due date; the
tenant's billing page lists the reminders sent. Paid, void and wholly credited invoices are not
overdue: no reminder.

**Suspension for non-payment** is a person's decision, never automatic: the billing clerk
(``nonpayment_suspensions``: create to suspend, update to lift) suspends a tenant that has an
overdue invoice, with a reason; the tenant's state becomes ``suspended`` (its data-plane
service stops on the gateways, as with any suspension: the tenant is data-plane state) and the
audit trail has ``billing_suspend``. Lifting (``billing_lift``, with a reason) puts the tenant
back in service only if it was in service when suspended and nothing else holds it: an open
suspension of the compliance watch (``compliance_suspensions``) keeps it suspended, and the
compliance watch likewise does not lift a tenant that an open non-payment suspension holds,
and counts such a tenant as in service (it holds it too once a breach's grace period ends), so
the lift never puts back in service a tenant that an enforced breach covers.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongdao.audit.recorder import Actor, actor_of, record, set_actor
from tongdao.billing import money, service
from tongdao.billing.models import Invoice, NonPaymentSuspension, Reminder
from tongdao.billing.service import outstanding_sql, overdue_query
from tongdao.errors import Conflict
from tongdao.jobs import lease
from tongdao.mail import service as mail
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, TenantState, User, UserState

if TYPE_CHECKING:
    from tongdao.runtime import Runtime

log = logging.getLogger("tongdao.billing.dunning")

JOB = "billing.reminders"
JOB_ACTOR = Actor(None, f"job:{JOB}")
LEASE_TTL = timedelta(minutes=10)
STEPS = (1, 7, 30)  # days past the due date
# The state reason a suspension for non-payment writes on the tenant (and only it).
NONPAYMENT_REASON = "suspended for non-payment: "


class LeaseHeld(Exception):
    """Another replica (or command) is running the reminders job."""


# --- reminders -------------------------------------------------------------------------------
@dataclass
class ReminderOutcome:
    sent: list[str] = field(default_factory=list)  # "<invoice number>:<step>"
    skipped: int = 0  # overdue invoices with nothing new to send


def step_due(days_past: int, sent: set[int]) -> int | None:
    """The reminder step to send for an invoice ``days_past`` days past due that had the
    steps ``sent`` already: the latest step reached, unless it (or a later one) was sent."""
    reached = [step for step in STEPS if days_past >= step]
    if not reached:
        return None
    latest = reached[-1]
    if any(step >= latest for step in sent):
        return None
    return latest


def tenant_admins(session: Session, tenant_id: uuid.UUID) -> list[str]:
    return [
        user.email
        for user in session.scalars(
            select(User)
            .where(User.tenant_id == tenant_id, User.state == UserState.ACTIVE)
            .order_by(User.email)
        )
        if "tenant_admin" in (user.roles or [])
    ]


def reminder_mail(invoice: Invoice, step: int, outstanding: Decimal) -> tuple[str, str]:
    """(subject, body) of a reminder: English and Chinese in one message."""
    assert invoice.due_on is not None
    amount = f"¥{outstanding:,.2f}"
    due = invoice.due_on.isoformat()
    subject = (
        f"Payment reminder: invoice {invoice.number} is {step} day(s) overdue / "
        f"付款提醒：发票 {invoice.number} 已逾期 {step} 天"
    )
    body = "\n".join(
        [
            f"Invoice {invoice.number} ({invoice.month}) was due on {due} (Asia/Shanghai) and "
            f"{amount} (RMB, VAT included) is still outstanding. Please pay it; if you have "
            "paid already, tell us the payment's reference.",
            "",
            f"发票 {invoice.number}（{invoice.month}）的付款期限为 {due}（北京时间），仍有 "
            f"{amount}（人民币，含增值税）未付。请尽快付款；如已付款，请告知付款凭证号。",
            "",
            f"Invoice / 发票号: {invoice.number}",
            f"Outstanding / 未付金额: {amount}",
            f"Due on / 到期日: {due} (Asia/Shanghai / 北京时间)",
            f"Days overdue / 逾期天数: {step}",
            "",
            "The invoice is in the console under Billing / 请在控制台“账单”中查看该发票。",
        ]
    )
    return subject, body + "\n"


def run_reminders(
    runtime: Runtime, now: datetime | None = None, *, actor: Actor = JOB_ACTOR
) -> ReminderOutcome:
    """Send the reminders due today, one invoice per transaction (see the module)."""
    now = now or runtime.clock()
    today = money.shanghai_today(now)
    outcome = ReminderOutcome()
    with runtime.db.session(write=False) as session:
        ids = list(session.scalars(overdue_query(today).with_only_columns(Invoice.id)))
    for invoice_id in sorted(ids):
        with runtime.db.session() as session:
            set_actor(session, actor)
            invoice = session.scalar(overdue_query(today).where(Invoice.id == invoice_id))
            if invoice is None or invoice.due_on is None:
                continue  # paid or credited meanwhile
            sent = set(
                session.scalars(select(Reminder.step).where(Reminder.invoice_id == invoice_id))
            )
            step = step_due((today - invoice.due_on).days, sent)
            if step is None:
                outcome.skipped += 1
                continue
            outstanding = service.outstanding_of(session, invoice)
            ctx = Ctx(session=session, runtime=runtime)
            subject, body = reminder_mail(invoice, step, outstanding)
            addresses = tenant_admins(session, invoice.tenant_id)
            for address in addresses:
                mail.queue(ctx, address, subject, body)
            session.add(
                Reminder(
                    invoice_id=invoice.id, tenant_id=invoice.tenant_id, step=step,
                    outstanding=outstanding, sent_at=now, recipients=len(addresses),
                )
            )  # fmt: skip
            record(
                session, "billing_reminder_sent", "invoice", invoice.id,
                tenant_id=invoice.tenant_id,
                after={"number": invoice.number, "step": step, "outstanding": str(outstanding),
                       "due_on": invoice.due_on.isoformat(), "recipients": len(addresses)},
            )  # fmt: skip
            session.commit()
            outcome.sent.append(f"{invoice.number}:{step}")
    return outcome


def run_reminders_job(runtime: Runtime, holder: str) -> ReminderOutcome:
    """The reminders under the job's lease; :class:`LeaseHeld` while another holder runs it."""
    db = runtime.db
    if not lease.acquire(db, JOB, holder, runtime.clock(), LEASE_TTL):
        raise LeaseHeld(JOB)
    try:
        outcome = run_reminders(runtime)
    finally:
        lease.release(db, JOB, holder, runtime.clock(), done=runtime.clock().isoformat())
    if outcome.sent:
        log.info("billing reminders: %d sent", len(outcome.sent))
    return outcome


def reminders_of(session: Session, tenant_id: uuid.UUID, limit: int = 20) -> list[Reminder]:
    return list(
        session.scalars(
            select(Reminder)
            .where(Reminder.tenant_id == tenant_id)
            .order_by(Reminder.sent_at.desc(), Reminder.id.desc())
            .limit(limit)
        )
    )


# --- suspension for non-payment ----------------------------------------------------------------
def open_suspension(session: Session, tenant_id: uuid.UUID) -> NonPaymentSuspension | None:
    return session.scalar(
        select(NonPaymentSuspension)
        .where(
            NonPaymentSuspension.tenant_id == tenant_id, NonPaymentSuspension.lifted_at.is_(None)
        )
        .limit(1)
    )


def held_for_nonpayment(session: Session, tenant_id: uuid.UUID) -> bool:
    return open_suspension(session, tenant_id) is not None


def overdue_total(session: Session, tenant_id: uuid.UUID, today: date) -> Decimal:
    total = session.scalar(
        select(func.coalesce(func.sum(outstanding_sql()), 0)).where(
            Invoice.id.in_(overdue_query(today).with_only_columns(Invoice.id)),
            Invoice.tenant_id == tenant_id,
        )
    )
    return money.fen(Decimal(total or 0))


def _compliance_hold(session: Session, tenant_id: uuid.UUID) -> str | None:
    """The state reason of the compliance watch's hold on the tenant, if it holds it."""
    from tongdao.compliance.models import ComplianceBreach, ComplianceSuspension
    from tongdao.compliance.watch import state_reason

    breach = session.scalar(
        select(ComplianceBreach)
        .join(ComplianceSuspension, ComplianceSuspension.breach_id == ComplianceBreach.id)
        .where(
            ComplianceSuspension.tenant_id == tenant_id,
            ComplianceSuspension.lifted_at.is_(None),
        )
        .order_by(ComplianceSuspension.suspended_at)
        .limit(1)
    )
    return None if breach is None else state_reason(breach)


def suspend(ctx: Ctx, tenant: Tenant, reason: str) -> NonPaymentSuspension:
    """Suspend the tenant for non-payment (see the module); 409 keyed by field otherwise."""
    session = ctx.session
    now = ctx.runtime.clock()
    if held_for_nonpayment(session, tenant.id):
        raise Conflict(
            "the tenant is suspended for non-payment already",
            {"tenant": "suspended for non-payment already"},
        )
    if tenant.state not in (TenantState.ACTIVE, TenantState.SUSPENDED):
        raise Conflict(
            f"a {tenant.state} tenant is not in service; only an active tenant is suspended",
            {"tenant": f"the tenant is {tenant.state}, not in service"},
        )
    owed = overdue_total(session, tenant.id, money.shanghai_today(now))
    if owed <= 0:
        raise Conflict(
            "the tenant has no overdue invoice; suspension for non-payment needs one",
            {"tenant": "no overdue invoice"},
        )
    # In service, or suspended only by the compliance watch (which lifts its own): a lift may
    # resume it. A tenant a person suspended for another reason stays suspended after a lift.
    was_active = (
        tenant.state == TenantState.ACTIVE or _compliance_hold(session, tenant.id) is not None
    )
    resumes_now = tenant.state == TenantState.ACTIVE
    row = NonPaymentSuspension(
        tenant_id=tenant.id,
        reason=reason,
        overdue_total=owed,
        was_active=was_active,
        suspended_at=now,
        suspended_by=actor_of(session).label,
    )
    session.add(row)
    if resumes_now:
        tenant.state = TenantState.SUSPENDED
        tenant.state_reason = f"{NONPAYMENT_REASON}{reason}"[:500]
    session.flush()
    record(
        session, "billing_suspend", "tenant", tenant.id, tenant_id=tenant.id,
        after={"reason": reason, "overdue": str(owed), "suspension_id": row.id,
               "was_active": was_active},
    )  # fmt: skip
    return row


def lift(ctx: Ctx, tenant: Tenant, reason: str) -> NonPaymentSuspension:
    """Lift the tenant's suspension for non-payment (see the module); 409 when it has none."""
    session = ctx.session
    row = open_suspension(session, tenant.id)
    if row is None:
        raise Conflict(
            "the tenant is not suspended for non-payment",
            {"tenant": "not suspended for non-payment"},
        )
    row.lifted_at = ctx.runtime.clock()
    row.lifted_by = actor_of(session).label
    row.lift_reason = reason
    hold = _compliance_hold(session, tenant.id)
    still_held = hold is not None
    resumed = row.was_active and not still_held and tenant.state == TenantState.SUSPENDED
    if resumed:
        tenant.state = TenantState.ACTIVE
        tenant.state_reason = ""
    elif hold is not None and tenant.state_reason.startswith(NONPAYMENT_REASON):
        # The watch's hold remains: the suspension is the watch's own again, which it lifts
        # when the rule is met (tongdao.compliance.watch reactivates only its own reason).
        tenant.state_reason = hold
    session.flush()
    record(
        session, "billing_lift", "tenant", tenant.id, tenant_id=tenant.id,
        after={"reason": reason, "suspension_id": row.id, "resumed": resumed,
               "held_by_compliance": still_held},
    )  # fmt: skip
    return row


def suspensions_of(session: Session, tenant_id: uuid.UUID) -> list[NonPaymentSuspension]:
    return list(
        session.scalars(
            select(NonPaymentSuspension)
            .where(NonPaymentSuspension.tenant_id == tenant_id)
            .order_by(NonPaymentSuspension.suspended_at.desc(), NonPaymentSuspension.id.desc())
        )
    )
