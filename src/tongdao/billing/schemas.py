"""Billing schemas: Create / Update / Public per resource, amounts as decimal strings."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tongdao.billing.models import CrossBorderBasis, InvoiceKind, InvoiceState, SeatBasis

Price = Annotated[Decimal, Field(ge=0, le=Decimal("99999999.99"), max_digits=10, decimal_places=2)]
Amount = Annotated[
    Decimal, Field(gt=0, le=Decimal("999999999.99"), max_digits=11, decimal_places=2)
]
TaxCode = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{19}$"),
    Field(description="税收分类编码: 19 digits"),
]
VatRate = Annotated[Decimal, Field(ge=0, le=Decimal("0.17"), max_digits=5, decimal_places=4)]
Month = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]


class PlanBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_zh: Annotated[str, StringConstraints(max_length=100)] = ""
    vat_rate: VatRate = Decimal("0.06")
    base_fee: Price = Decimal("0.00")
    seat_price: Price = Decimal("0.00")
    seat_basis: SeatBasis = SeatBasis.ACCOUNT
    site_price: Price = Decimal("0.00")
    included_traffic_gb: Annotated[int, Field(ge=0, le=10**9)] = 0
    traffic_price_per_gb: Price = Decimal("0.00")
    cross_border_price_per_gb: Price = Decimal("0.00")
    cross_border_basis: CrossBorderBasis = Field(
        default=CrossBorderBasis.GB,
        description="gb: cross-border GB at cross_border_price_per_gb; mbps: the tenant's "
        "approved cross-border Mbit/s at cross_border_price_per_mbps per month",
    )
    cross_border_price_per_mbps: Price = Field(
        default=Decimal("0.00"), description="per approved Mbit/s per month, excluding VAT"
    )
    payment_terms_days: Annotated[int, Field(ge=0, le=365)] = 30


class PlanCreate(PlanBase):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    base_tax_code: TaxCode
    seat_tax_code: TaxCode
    site_tax_code: TaxCode
    traffic_tax_code: TaxCode
    cross_border_tax_code: TaxCode


class PlanUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_zh: Annotated[str, StringConstraints(max_length=100)] | None = None
    vat_rate: VatRate | None = None
    base_fee: Price | None = None
    seat_price: Price | None = None
    seat_basis: SeatBasis | None = None
    site_price: Price | None = None
    included_traffic_gb: Annotated[int, Field(ge=0, le=10**9)] | None = None
    traffic_price_per_gb: Price | None = None
    cross_border_price_per_gb: Price | None = None
    cross_border_basis: CrossBorderBasis | None = None
    cross_border_price_per_mbps: Price | None = None
    payment_terms_days: Annotated[int, Field(ge=0, le=365)] | None = None
    base_tax_code: TaxCode | None = None
    seat_tax_code: TaxCode | None = None
    site_tax_code: TaxCode | None = None
    traffic_tax_code: TaxCode | None = None
    cross_border_tax_code: TaxCode | None = None


class PlanPublic(PlanBase):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    currency: str
    base_tax_code: str
    seat_tax_code: str
    site_tax_code: str
    traffic_tax_code: str
    cross_border_tax_code: str
    created_at: datetime
    updated_at: datetime


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: uuid.UUID | None = Field(description="the plan from starts_on; null ends billing")
    starts_on: date = Field(
        description="first Asia/Shanghai day on this plan",
        ge=date(2000, 1, 1),
        le=date(2999, 12, 1),
    )


class SubscriptionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    plan_id: uuid.UUID | None
    starts_on: date
    created_at: datetime


class InvoiceLinePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="what a credit note's ``lines[].line_id`` names")
    position: int = Field(description="on a credit note: the corrected invoice's line")
    kind: str
    description: str
    tax_code: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    period_start: date
    period_end: date
    amount: Decimal
    vat_rate: Decimal
    vat: Decimal
    usage_key: str


class InvoicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: InvoiceKind
    number: str
    month: str
    state: InvoiceState
    corrects_id: uuid.UUID | None
    reason: str
    currency: str
    subtotal: Decimal
    vat: Decimal
    total: Decimal
    amount_paid: Decimal
    buyer_name: str
    buyer_tax_id: str
    buyer_address_phone: str
    buyer_bank: str
    buyer_account: str
    seller_name: str
    seller_tax_id: str
    issued_on: date | None
    due_on: date | None
    fapiao_number: str | None
    lines: list[InvoiceLinePublic]
    created_at: datetime


class InvoiceFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: InvoiceState | None = None
    kind: InvoiceKind | None = None
    month: Month | None = None


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    month: Month = Field(description="the Asia/Shanghai month, YYYY-MM")


class RunResult(BaseModel):
    month: str
    created: list[str] = Field(description="numbers of the invoices this run made")
    existing: int = Field(description="tenants that already had their invoice for the month")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]


class CreditLineRequest(BaseModel):
    """Credit part of one line of the invoice: an amount excluding VAT, or a quantity (its
    share of the line's amount, half up to the fen). VAT follows per line."""

    model_config = ConfigDict(extra="forbid")

    line_id: uuid.UUID = Field(description="a line of the invoice being corrected")
    amount_excl_vat: Amount | None = Field(
        default=None, description="yuan excluding VAT, at most what is left on the line"
    )
    quantity: (
        Annotated[Decimal, Field(gt=0, le=Decimal("999999999999"), decimal_places=6)] | None
    ) = Field(default=None, description="at most the line's quantity left to credit")

    @model_validator(mode="after")
    def _one_of(self) -> CreditLineRequest:
        if (self.amount_excl_vat is None) == (self.quantity is None):
            raise ValueError("give amount_excl_vat or quantity, not both")
        return self


class CreditNoteCreate(BaseModel):
    """A credit note (红字). Without ``lines`` it reverses the whole invoice (refused, 409 on
    ``lines``, once anything was credited); with them it credits those lines by the amount or
    quantity given, never more than earlier credit notes left on a line (409 naming it)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
    lines: Annotated[list[CreditLineRequest], Field(min_length=1, max_length=200)] | None = None


class FapiaoRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fapiao_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{8,20}$")] = Field(
        description="the number the tax system returned (20 digits for a 全电发票)"
    )


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    received_on: date = Field(ge=date(2000, 1, 1), le=date(2999, 12, 31))
    reference: Annotated[str, StringConstraints(max_length=100)] = ""


class PaymentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    invoice_id: uuid.UUID
    tenant_id: uuid.UUID
    amount: Decimal
    received_on: date = Field(ge=date(2000, 1, 1), le=date(2999, 12, 31))
    reference: str
    created_at: datetime


class Balance(BaseModel):
    tenant_id: uuid.UUID
    invoiced: Decimal = Field(description="issued and paid invoices, credit notes deducted")
    paid: Decimal
    balance: Decimal = Field(description="what the tenant owes (negative: in credit)")
    overdue: Decimal = Field(description="outstanding on invoices past their due date")


class SuspensionPublic(BaseModel):
    """A suspension for non-payment (the billing clerk's), open until ``lifted_at``."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    reason: str
    overdue_total: Decimal = Field(description="overdue amount (RMB, VAT incl.) when suspended")
    suspended_at: datetime
    suspended_by: str
    lifted_at: datetime | None
    lifted_by: str
    lift_reason: str
    tenant_state: str = Field(default="", description="the tenant's state after the action")


class ReminderPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    invoice_id: uuid.UUID
    step: int = Field(description="days past the due date: 1, 7 or 30")
    outstanding: Decimal
    sent_at: datetime
    recipients: int
