"""Usage over time (issue 13): the usage ledger's daily figures for a month as a chart and a
table, domestic and cross-border, and the same as CSV.

The page calls what the API's series route calls
(:func:`tongdao.gateway.ledger_routes.tenant_series`), so the same rules hold: a tenant admin
sees their own tenant, an employee their own devices (the figures are their devices' sum),
operator staff every tenant (they pick one). Days and months are Asia/Shanghai.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.auth.permissions import OPERATOR_ROLES, Action, Role
from tongdao.billing import money
from tongdao.errors import ValidationError
from tongdao.gateway import ledger_routes
from tongdao.gateway.ledger_routes import UsagePoint
from tongdao.tenancy.models import Tenant
from tongdao.web.console import (
    ConsoleRoute,
    NavItem,
    UserViewDep,
    View,
    field_errors,
    parse_uuid,
    render,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
ROLES = frozenset(OPERATOR_ROLES | {Role.TENANT_ADMIN, Role.EMPLOYEE})
NAV = [NavItem("/console/usage-trend", N_("Usage over time"), ROLES)]
CHOICES_LIMIT = 500
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")

TenantQ = Annotated[str, Query(max_length=40)]
MonthQ = Annotated[str, Query(max_length=7)]


def _month(text: str) -> date:
    found = _MONTH.match(text)
    if found is None:
        raise ValidationError({"month": "choose a month like 2026-12"})
    year = int(found.group(1))
    if not 2000 <= year <= 2999:
        raise ValidationError({"month": "choose a month between 2000 and 2999"})
    return date(year, int(found.group(2)), 1)


def _tenant_choices(view: View, guard: Guard) -> list[tuple[str, str]]:
    if not guard.principal.is_operator:
        return []
    rows = view.ctx.session.scalars(select(Tenant).order_by(Tenant.name_en).limit(CHOICES_LIMIT))
    return [(str(t.id), view.locale.pick(t.name_en, t.name_zh)) for t in rows]


def _chosen(
    view: View, tenant: str, month: str
) -> tuple[Guard, Tenant | None, str, list[UsagePoint], dict[str, str]]:
    guard = Guard(view.ctx)
    guard.require("usage", Action.READ)
    principal = guard.principal
    chosen: Tenant | None = None
    if principal.tenant_id is not None:
        chosen = guard.tenant(principal.tenant_id)
    elif tenant:
        chosen = guard.tenant(parse_uuid(tenant, "tenant"))
    current = money.shanghai_today(view.ctx.runtime.clock()).strftime("%Y-%m")
    text = month or current
    points: list[UsagePoint] = []
    errors: dict[str, str] = {}
    try:
        first = _month(text)
        if chosen is not None:
            last = money.next_month(first) - timedelta(days=1)
            _ident, _s, _e, points = ledger_routes.tenant_series(
                guard, "tenant", chosen.id, None, "day", first, last
            )
    except ValidationError as exc:
        errors = {"month": next(iter(field_errors(view, exc).values()))}
    return guard, chosen, text, points, errors


@router.get("/console/usage-trend")
def trend_page(view: UserViewDep, tenant: TenantQ = "", month: MonthQ = "") -> Response:
    guard, chosen, text, points, errors = _chosen(view, tenant, month)
    own = guard.principal.own_only("usage", Action.READ)
    by_day = {p.period: p for p in points}
    days: list[str] = []
    if points:  # the chart has every day of the month, the table the days with traffic
        day = date.fromisoformat(points[0].period).replace(day=1)
        while day.month == date.fromisoformat(points[0].period).month:
            days.append(day.isoformat())
            day += timedelta(days=1)
    chart: dict[str, Any] = {
        "labels": [d[8:] for d in days],
        "domestic": [
            (by_day[d].domestic_rx_bytes + by_day[d].domestic_tx_bytes) if d in by_day else 0
            for d in days
        ],
        "cross_border": [
            (by_day[d].cross_border_rx_bytes + by_day[d].cross_border_tx_bytes)
            if d in by_day
            else 0
            for d in days
        ],
        "names": {"domestic": view._("Domestic"), "cross_border": view._("Cross-border")},
    }
    return render(
        view,
        "ledger/trend.html",
        {
            "operator": guard.principal.is_operator,
            "own": own,
            "tenant": chosen,
            "tenants": _tenant_choices(view, guard),
            "month": text,
            "points": points,
            "chart": chart,
            "errors": errors,
            "total_domestic": sum(chart["domestic"]),
            "total_cross_border": sum(chart["cross_border"]),
        },
        status=422 if errors else 200,
        title=view._("Usage over time"),
    )


@router.get("/console/usage-trend.csv")
def trend_csv(view: UserViewDep, tenant: TenantQ = "", month: MonthQ = "") -> Response:
    _guard, chosen, text, points, errors = _chosen(view, tenant, month)
    if errors or chosen is None:
        return trend_page(view, tenant, month)
    first = _month(text)
    last = money.next_month(first) - timedelta(days=1)
    answer = ledger_routes.answer("tenant", chosen.id, "day", first, last, points, "csv")
    assert isinstance(answer, Response)
    return answer
