"""Billing fixtures: a plan, tenants on it, and a service context on the store."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tests.support.world import uscc_for
from tongdao.auth.permissions import Role
from tongdao.auth.principal import ALL_SCOPES, Principal
from tongdao.billing.models import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    Plan,
    Subscription,
)
from tongdao.billing.service import take_number
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy import schemas as ts
from tongdao.tenancy.models import Tenant
from tongdao.tenancy.service import TenantResource

TAX_CODE = "3040201000000000000"


def plan_body(name: str = "Remote 50", **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base_fee": "1000.00",
        "seat_price": "35.50",
        "site_price": "300.00",
        "traffic_price_per_gb": "8.00",
        "cross_border_price_per_gb": "40.00",
        "included_traffic_gb": 500,
        "base_tax_code": TAX_CODE,
        "seat_tax_code": TAX_CODE,
        "site_tax_code": TAX_CODE,
        "traffic_tax_code": TAX_CODE,
        "cross_border_tax_code": TAX_CODE,
        **overrides,
    }


def ctx_for(runtime: Runtime, session: Session, role: Role = Role.OPERATOR_ADMIN) -> Ctx:
    principal = Principal(
        uuid.uuid4(), f"{role}@test", None, frozenset({role}), ALL_SCOPES, uuid.uuid4()
    )
    return Ctx(session=session, runtime=runtime, principal=principal)


def add_plan(runtime: Runtime, name: str = "Remote 50", **overrides: Any) -> uuid.UUID:
    body = plan_body(name, **overrides)
    with runtime.db.session() as session:
        plan = Plan(**{k: Decimal(v) if "price" in k or "fee" in k else v for k, v in body.items()})
        plan.vat_rate = Decimal("0.06")
        session.add(plan)
        session.commit()
        return plan.id


def add_tenants(runtime: Runtime, count: int, first: int = 500) -> list[uuid.UUID]:
    ids = []
    for n in range(first, first + count):
        with runtime.db.session() as session:
            data = ts.TenantCreate(name_en=f"Billed {n}", uscc=uscc_for(n), ipv4_pool_prefixlen=26)
            tenant: Tenant = TenantResource().create(ctx_for(runtime, session), None, data)
            session.commit()
            ids.append(tenant.id)
    return ids


def subscribe(runtime: Runtime, tenant_id: uuid.UUID, plan_id: uuid.UUID | None, day: date) -> None:
    with runtime.db.session() as session:
        session.add(Subscription(tenant_id=tenant_id, plan_id=plan_id, starts_on=day))
        session.commit()


def billing_invoice(session: Session, tenant_id: uuid.UUID, *, issued: bool = False) -> Invoice:
    """An invoice of one line for the tenant, numbered from the series (a draft, or issued)."""
    number = take_number(session, InvoiceKind.INVOICE)
    line = InvoiceLine(
        tenant_id=tenant_id, position=1, kind="base", description="base fee", tax_code=TAX_CODE,
        unit="month", quantity=Decimal(1), unit_price=Decimal("100.00"),
        period_start=date(2026, 11, 1), period_end=date(2026, 12, 1), amount=Decimal("100.00"),
        vat_rate=Decimal("0.06"), vat=Decimal("6.00"),
    )  # fmt: skip
    invoice = Invoice(
        tenant_id=tenant_id, kind=InvoiceKind.INVOICE, number=number,
        dedupe_key=f"test:{number}", month="2026-11",
        state=InvoiceState.ISSUED if issued else InvoiceState.DRAFT,
        subtotal=Decimal("100.00"), vat=Decimal("6.00"), total=Decimal("106.00"),
        amount_paid=Decimal("0.00"), buyer_name="Buyer", buyer_tax_id="91110000802100433B",
        issued_on=date(2026, 12, 1) if issued else None,
        due_on=date(2026, 12, 31) if issued else None, lines=[line],
    )  # fmt: skip
    session.add(invoice)
    session.flush()
    return invoice
