"""Plans, subscriptions, invoices and their lines, credit notes, payments, number series."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import cast

from sqlalchemy import ForeignKey, Numeric, String, Table, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongdao.store.base import Base, TimestampedModel

Money = Numeric(14, 2)
Quantity = Numeric(18, 6)
Rate = Numeric(5, 4)


class SeatBasis(StrEnum):
    ACCOUNT = "account"  # every user account of the tenant in the month
    ACTIVE = "active"  # users with a device handshake in the month


class CrossBorderBasis(StrEnum):
    """How a plan prices cross-border service (one basis per plan, never both)."""

    GB = "gb"  # the usage ledger's cross-border GB at ``cross_border_price_per_gb``
    MBPS = "mbps"  # committed Mbit/s per month at ``cross_border_price_per_mbps``


class InvoiceState(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


class InvoiceKind(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"  # 红字: negative lines, names the invoice it corrects


class LineKind(StrEnum):
    BASE = "base"
    SEATS = "seats"
    SITES = "sites"
    TRAFFIC = "traffic"  # usage ledger: domestic GB over the included traffic
    CROSS_BORDER = "cross_border"  # usage ledger: cross-border GB
    CROSS_BORDER_MBPS = "committed_mbps"  # cross-border: approved Mbit/s of the authorisations


class Plan(TimestampedModel):
    __tablename__ = "billing_plans"
    __audit_type__ = "billing_plan"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100), default="")
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    vat_rate: Mapped[Decimal] = mapped_column(Rate)
    base_fee: Mapped[Decimal] = mapped_column(Money)
    seat_price: Mapped[Decimal] = mapped_column(Money)
    seat_basis: Mapped[str] = mapped_column(String(16), default=SeatBasis.ACCOUNT)
    site_price: Mapped[Decimal] = mapped_column(Money)
    included_traffic_gb: Mapped[int] = mapped_column(default=0)
    traffic_price_per_gb: Mapped[Decimal] = mapped_column(Money)
    cross_border_price_per_gb: Mapped[Decimal] = mapped_column(Money)
    cross_border_basis: Mapped[str] = mapped_column(String(8), default=CrossBorderBasis.GB)
    # Per approved (committed) Mbit/s per month, excluding VAT; ``cross_border_tax_code``.
    cross_border_price_per_mbps: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    payment_terms_days: Mapped[int] = mapped_column(default=30)
    # 税收分类编码 (19 digits) per plan item, carried by every line of that item.
    base_tax_code: Mapped[str] = mapped_column(String(19))
    seat_tax_code: Mapped[str] = mapped_column(String(19))
    site_tax_code: Mapped[str] = mapped_column(String(19))
    traffic_tax_code: Mapped[str] = mapped_column(String(19))
    cross_border_tax_code: Mapped[str] = mapped_column(String(19))


class Subscription(TimestampedModel):
    """From ``starts_on`` (an Asia/Shanghai day) the tenant is on ``plan_id`` (None: no plan)
    until the tenant's next subscription starts."""

    __tablename__ = "billing_subscriptions"
    __audit_type__ = "billing_subscription"
    __table_args__ = (UniqueConstraint("tenant_id", "starts_on"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    plan_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_plans.id", ondelete="RESTRICT")
    )
    starts_on: Mapped[date]


class NumberSeries(Base):
    """A gapless number series: the next number is taken in the transaction that uses it."""

    __tablename__ = "billing_number_series"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16))
    last_value: Mapped[int] = mapped_column(default=0)


class Invoice(TimestampedModel):
    __tablename__ = "billing_invoices"
    __audit_type__ = "invoice"
    __table_args__ = (UniqueConstraint("kind", "number"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default=InvoiceKind.INVOICE)
    number: Mapped[str] = mapped_column(String(32))
    # "invoice:<tenant>:<month>" (one invoice per tenant and month, also under racing runs),
    # "credit_note:<number>" for a credit note.
    dedupe_key: Mapped[str] = mapped_column(String(80), unique=True)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM, Asia/Shanghai
    state: Mapped[str] = mapped_column(String(16), default=InvoiceState.DRAFT, index=True)
    corrects_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="RESTRICT")
    )
    reason: Mapped[str] = mapped_column(String(500), default="")
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    subtotal: Mapped[Decimal] = mapped_column(Money)
    vat: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    amount_paid: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    # Buyer (special VAT fapiao): copied from the tenant's billing profile when made.
    buyer_name: Mapped[str] = mapped_column(String(200))
    buyer_tax_id: Mapped[str] = mapped_column(String(18))
    buyer_address_phone: Mapped[str] = mapped_column(String(300), default="")
    buyer_bank: Mapped[str] = mapped_column(String(200), default="")
    buyer_account: Mapped[str] = mapped_column(String(64), default="")
    # Seller: the operator's profile when made.
    seller_name: Mapped[str] = mapped_column(String(200), default="")
    seller_tax_id: Mapped[str] = mapped_column(String(18), default="")
    seller_address_phone: Mapped[str] = mapped_column(String(300), default="")
    issued_on: Mapped[date | None]
    due_on: Mapped[date | None]
    payment_terms_days: Mapped[int] = mapped_column(default=30)
    # The number the tax system returned for the fapiao (20 digits for a 全电发票).
    fapiao_number: Mapped[str | None] = mapped_column(String(20))
    voided_at: Mapped[datetime | None]

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )


class InvoiceLine(TimestampedModel):
    """One line: quantity × unit price over the days it covers, prorated; VAT per line.

    ``usage_key`` names what the quantity was counted from: ``store:users`` / ``store:sites``,
    or the usage ledger's days (``ledger:domestic:20261101-20261201``, ``ledger:cross_border:...``).
    """

    __tablename__ = "billing_invoice_lines"
    __audit_type__ = "invoice_line"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(200))
    tax_code: Mapped[str] = mapped_column(String(19))
    unit: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    period_start: Mapped[date]
    period_end: Mapped[date]  # exclusive
    amount: Mapped[Decimal] = mapped_column(Money)
    vat_rate: Mapped[Decimal] = mapped_column(Rate)
    vat: Mapped[Decimal] = mapped_column(Money)
    usage_key: Mapped[str] = mapped_column(String(64), default="")

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class Payment(TimestampedModel):
    __tablename__ = "billing_payments"
    __audit_type__ = "payment"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="RESTRICT"), index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    amount: Mapped[Decimal] = mapped_column(Money)
    received_on: Mapped[date]
    reference: Mapped[str] = mapped_column(String(100), default="")


class Reminder(TimestampedModel):
    """A reminder sent for an overdue invoice at one step (days past its due date: 1, 7, 30);
    one per invoice and step, so a rerun of the job sends nothing twice."""

    __tablename__ = "billing_reminders"
    __audit_type__ = "billing_reminder"
    __table_args__ = (UniqueConstraint("invoice_id", "step"),)

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="RESTRICT"), index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    step: Mapped[int]  # days past due: 1, 7 or 30
    outstanding: Mapped[Decimal] = mapped_column(Money)  # what the mail named
    sent_at: Mapped[datetime]
    recipients: Mapped[int] = mapped_column(default=0)


class NonPaymentSuspension(TimestampedModel):
    """A tenant suspended for non-payment by a person (the billing clerk), with the reason,
    until lifted by a person. ``was_active``: the tenant was in service when suspended, or
    held only by the compliance watch (a lift puts it back in service only then, and only when
    nothing else holds it)."""

    __tablename__ = "billing_suspensions"
    __audit_type__ = "billing_suspension"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    reason: Mapped[str] = mapped_column(String(500))
    overdue_total: Mapped[Decimal] = mapped_column(Money)
    was_active: Mapped[bool]
    suspended_at: Mapped[datetime]
    suspended_by: Mapped[str] = mapped_column(String(200), default="")
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str] = mapped_column(String(200), default="")
    lift_reason: Mapped[str] = mapped_column(String(500), default="")


# The tables, typed for Core statements (the monthly run writes a batch at once).
INVOICES = cast(Table, Invoice.__table__)
INVOICE_LINES = cast(Table, InvoiceLine.__table__)
