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
from tongdao.billing.models import Plan, Subscription
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
