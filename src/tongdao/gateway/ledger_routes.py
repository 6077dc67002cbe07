"""Usage time series from the ledger (:mod:`tongdao.gateway.ledger`), as JSON or CSV.

``GET /tenants/{id}/usage/series`` (the tenant), ``.../users/{id}/usage/series`` (a user's
devices, by owner), ``.../devices/{id}/usage/series``, ``.../sites/{id}/usage/series`` and
``GET /pops/{id}/usage/series`` (operator staff): points per hour, day or month of
Asia/Shanghai over a window of Shanghai calendar days ``since..until`` (both included), each
with rx/tx, the cross-border part and the domestic rest. ``format=csv`` gives the same points
as a CSV file (cells through :func:`tongdao.spreadsheet.cell`).

Who sees what (resource ``usage``): operator staff every tenant and PoP; a tenant admin their
own tenant; an employee their own devices only (the tenant series is then the sum of their
devices, a user series only their own, another's device 404). Another tenant's object is 404.
Tenant and PoP series count the tenant peers (``device``, ``site``); inter-PoP transit
(``pop``) carries the same bytes again and is left out.

Cross-border bytes are counted once, at the **domestic end** of a link (the PoP in China), on
the China-side device (and its owner) or site that sent or received them; what the overseas
end (a PoP abroad) reported for its peers is not in any series, total, quota or invoice (a PoP
abroad's series holds only the bytes that stayed abroad). Operator staff read both ends side by
side per link: ``GET /links/{id}/usage/reconciliation`` (:mod:`tongdao.gateway.xbends`).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from tongdao.api.deps import Guard, GuardDep
from tongdao.auth.permissions import Action
from tongdao.billing.money import SHANGHAI, shanghai_today
from tongdao.billing.money import day_start_utc as day_start
from tongdao.errors import NotFound, ValidationError
from tongdao.gateway.ledger import BYTES
from tongdao.gateway.models import TENANT_KINDS, UsageHourly, UsageTenantHourly
from tongdao.gateway.periods import as_utc, exact_sum, joined
from tongdao.gateway.xbends import reconcile
from tongdao.network.models import Device, Link, Site
from tongdao.network.service import get_pop
from tongdao.spreadsheet import cell
from tongdao.tenancy.models import User


def csv_response(names: list[str], rows: Sequence[BaseModel], filename: str) -> Response:
    """``rows`` as a CSV download: a header of ``names``, then each row's fields by name, text
    cells neutralised for spreadsheets (:func:`tongdao.spreadsheet.cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([cell(getattr(row, n)) for n in names])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


router = APIRouter()

Granularity = Literal["hour", "day", "month"]
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)
# The longest window per granularity (points at most ~ 2,300 hours, 1,100 days, 120 months).
MAX_DAYS: dict[str, int] = {"hour": 93, "day": 1096, "month": 3660}
DEFAULT_DAYS: dict[str, int] = {"hour": 1, "day": 30, "month": 365}


class UsagePoint(BaseModel):
    period: str = Field(
        description="hour: YYYY-MM-DDTHH:00+08:00, day: YYYY-MM-DD, month: YYYY-MM (Asia/Shanghai)"
    )
    start: datetime = Field(description="the period's first instant (UTC)")
    rx_bytes: int = Field(description="received by the gateways from the peer(s)")
    tx_bytes: int = Field(description="sent by the gateways to the peer(s)")
    cross_border_rx_bytes: int = Field(
        description="the part of rx_bytes carried over a registered cross-border link, as "
        "measured at its domestic end (counted once)"
    )
    cross_border_tx_bytes: int = Field(
        description="the part of tx_bytes carried over a registered cross-border link, as "
        "measured at its domestic end (counted once)"
    )
    domestic_rx_bytes: int
    domestic_tx_bytes: int


class UsageSeries(BaseModel):
    scope: str = Field(description="tenant | user | device | site | pop")
    id: uuid.UUID
    granularity: Granularity
    since: date = Field(description="first Asia/Shanghai day of the window")
    until: date = Field(description="last Asia/Shanghai day of the window (included)")
    timezone: str = "Asia/Shanghai"
    points: list[UsagePoint] = Field(description="periods with traffic, oldest first")
    rx_bytes: int
    tx_bytes: int
    cross_border_rx_bytes: int
    cross_border_tx_bytes: int


def window(
    since: date | None, until: date | None, granularity: str, now: datetime
) -> tuple[date, date]:
    """Shanghai days ``since..until`` (both included); field-keyed 422 when reversed, too
    long for the granularity or outside 2000-2999."""
    fields: dict[str, str] = {}
    for name, value in (("since", since), ("until", until)):
        if value is not None and not FIRST_DAY <= value <= LAST_DAY:
            fields[name] = f"must lie between {FIRST_DAY} and {LAST_DAY}"
    if fields:
        raise ValidationError(fields)
    end = until or min(shanghai_today(now), LAST_DAY)
    start = since or max(end - timedelta(days=DEFAULT_DAYS[granularity] - 1), FIRST_DAY)
    if start > end:
        raise ValidationError({"since": "must not be after until"})
    limit = MAX_DAYS[granularity]
    if (end - start).days + 1 > limit:
        raise ValidationError({"until": f"at most {limit} days at this granularity"})
    return start, end


def _label(start: datetime, granularity: str) -> tuple[str, datetime]:
    """A UTC hour start as the Shanghai period holding it: label and first instant."""
    local = start.astimezone(SHANGHAI)
    if granularity == "hour":
        return local.strftime("%Y-%m-%dT%H:00+08:00"), start
    if granularity == "day":
        return local.date().isoformat(), day_start(local.date())
    first = local.date().replace(day=1)
    return first.strftime("%Y-%m"), day_start(first)


def hourly_sums(
    session: Session, model: Any, filters: Sequence[ColumnElement[bool]], start: date, end: date
) -> list[tuple[datetime, list[int]]]:
    """Per hour in ``[start 00:00+08, end+1 00:00+08)``: the four byte sums (exact)."""
    aggregates = [agg for name in BYTES for agg in exact_sum(getattr(model, name))]
    stmt: Select[Any] = (
        select(model.hour, *aggregates)
        .where(*filters)
        .where(model.hour >= day_start(start), model.hour < day_start(end + timedelta(days=1)))
        .group_by(model.hour)
        .order_by(model.hour)
    )
    out = []
    for row in session.execute(stmt):
        hour = as_utc(row[0])
        assert hour is not None  # a key column
        values = [joined(row[1 + 2 * i], row[2 + 2 * i]) for i in range(len(BYTES))]
        out.append((hour, values))
    return out


def series(
    session: Session,
    model: Any,
    filters: Sequence[ColumnElement[bool]],
    granularity: str,
    start: date,
    end: date,
) -> list[UsagePoint]:
    """The points of the series: hours summed into Shanghai days or months."""
    buckets: dict[str, tuple[datetime, list[int]]] = {}
    for hour, values in hourly_sums(session, model, filters, start, end):
        label, first = _label(hour, granularity)
        if label in buckets:
            acc = buckets[label][1]
            for i, v in enumerate(values):
                acc[i] += v
        else:
            buckets[label] = (first, list(values))
    points = []
    for label, (first, (rx, tx, xrx, xtx)) in buckets.items():
        points.append(
            UsagePoint(
                period=label,
                start=first,
                rx_bytes=rx,
                tx_bytes=tx,
                cross_border_rx_bytes=xrx,
                cross_border_tx_bytes=xtx,
                domestic_rx_bytes=rx - xrx,
                domestic_tx_bytes=tx - xtx,
            )
        )
    return points


def month_totals(session: Session, tenant_id: uuid.UUID, month: date) -> dict[str, int]:
    """The tenant's bytes in an Asia/Shanghai month (``month``: its first day), from the
    ledger: what the monthly billing run charges traffic and cross-border lines from."""
    last = (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    filters = [
        UsageTenantHourly.tenant_id == tenant_id,
        UsageTenantHourly.peer_kind.in_(TENANT_KINDS),
    ]
    totals = dict.fromkeys(BYTES, 0)
    for _hour, values in hourly_sums(session, UsageTenantHourly, filters, month, last):
        for name, v in zip(BYTES, values, strict=True):
            totals[name] += v
    return totals


def answer(
    scope: str,
    ident: uuid.UUID,
    granularity: Granularity,
    start: date,
    end: date,
    points: list[UsagePoint],
    fmt: str,
) -> UsageSeries | Response:
    if fmt == "csv":
        names = [
            "period",
            "rx_bytes",
            "tx_bytes",
            "cross_border_rx_bytes",
            "cross_border_tx_bytes",
            "domestic_rx_bytes",
            "domestic_tx_bytes",
        ]
        filename = f"usage-{scope}-{ident}-{granularity}-{start}-{end}.csv"
        return csv_response(names, points, filename)
    return UsageSeries(
        scope=scope,
        id=ident,
        granularity=granularity,
        since=start,
        until=end,
        points=points,
        rx_bytes=sum(p.rx_bytes for p in points),
        tx_bytes=sum(p.tx_bytes for p in points),
        cross_border_rx_bytes=sum(p.cross_border_rx_bytes for p in points),
        cross_border_tx_bytes=sum(p.cross_border_tx_bytes for p in points),
    )


def _own_devices(guard: Guard, tenant_id: uuid.UUID) -> list[str]:
    mine = guard.ctx.session.scalars(
        select(Device.id).where(
            Device.tenant_id == tenant_id, Device.user_id == guard.principal.user_id
        )
    )
    return [str(d) for d in mine]


def tenant_series(
    guard: Guard,
    scope: str,
    tenant_id: uuid.UUID,
    object_id: uuid.UUID | None,
    granularity: Granularity,
    since: date | None,
    until: date | None,
) -> tuple[uuid.UUID, date, date, list[UsagePoint]]:
    """A tenant's series (scope tenant) or one of its user's / device's / site's, for the
    guard's principal (see the module); NotFound for what it may not see."""
    tenant = guard.tenant(tenant_id)
    guard.require("usage", Action.READ)
    start, end = window(since, until, granularity, guard.ctx.runtime.clock())
    session = guard.ctx.session
    own = guard.principal.own_only("usage", Action.READ)
    model: Any = UsageHourly
    filters: list[ColumnElement[bool]] = [UsageHourly.tenant_id == tenant.id]
    ident = tenant.id
    if scope == "tenant":
        if own:
            filters += [
                UsageHourly.peer_kind == "device",
                UsageHourly.peer_ref.in_(_own_devices(guard, tenant.id)),
            ]
        else:
            model = UsageTenantHourly
            filters = [
                UsageTenantHourly.tenant_id == tenant.id,
                UsageTenantHourly.peer_kind.in_(TENANT_KINDS),
            ]
    elif scope == "user":
        user = session.get(User, object_id)
        if user is None or user.tenant_id != tenant.id:
            raise NotFound("user not found")
        if own and user.id != guard.principal.user_id:
            raise NotFound("user not found")
        ident = user.id
        filters += [UsageHourly.peer_kind == "device", UsageHourly.owner_id == user.id]
    elif scope == "device":
        device = session.get(Device, object_id)
        if device is None or device.tenant_id != tenant.id:
            raise NotFound("device not found")
        if own and device.user_id != guard.principal.user_id:
            raise NotFound("device not found")
        ident = device.id
        filters += [UsageHourly.peer_kind == "device", UsageHourly.peer_ref == str(device.id)]
    else:
        site = session.get(Site, object_id)
        if site is None or site.tenant_id != tenant.id or own:
            raise NotFound("site not found")
        ident = site.id
        filters += [UsageHourly.peer_kind == "site", UsageHourly.peer_ref == str(site.id)]
    return ident, start, end, series(session, model, filters, granularity, start, end)


GranularityQ = Annotated[Granularity, Query(description="hour | day | month (Asia/Shanghai)")]
SinceQ = Annotated[
    date | None,
    Query(description="first Asia/Shanghai day (default: a day, 30 days or a year back)"),
]
UntilQ = Annotated[
    date | None, Query(description="last Asia/Shanghai day, included (default: today)")
]
FormatQ = Annotated[Literal["json", "csv"], Query(alias="format", description="json | csv")]
_CSV = {200: {"content": {"text/csv": {}}, "description": "the series (JSON or CSV)"}}


@router.get(
    "/tenants/{tenant_id}/usage/series",
    tags=["usage"],
    operation_id="tenant_usage_series",
    response_model=UsageSeries,
    responses=_CSV,  # type: ignore[arg-type]
)
def get_tenant_series(
    guard: GuardDep,
    tenant_id: Annotated[uuid.UUID, Path()],
    granularity: GranularityQ = "day",
    since: SinceQ = None,
    until: UntilQ = None,
    fmt: FormatQ = "json",
) -> UsageSeries | Response:
    """The tenant's usage per hour / day / month of Asia/Shanghai (employees: their own
    devices), domestic and cross-border; cross-border bytes as measured at the domestic end of
    each link, once (the overseas end's: ``/links/{id}/usage/reconciliation``)."""
    ident, start, end, points = tenant_series(
        guard, "tenant", tenant_id, None, granularity, since, until
    )
    return answer("tenant", ident, granularity, start, end, points, fmt)


def _object_route(scope: str, plural: str) -> None:
    def get_object_series(
        guard: GuardDep,
        tenant_id: Annotated[uuid.UUID, Path()],
        object_id: Annotated[uuid.UUID, Path()],
        granularity: GranularityQ = "day",
        since: SinceQ = None,
        until: UntilQ = None,
        fmt: FormatQ = "json",
    ) -> UsageSeries | Response:
        ident, start, end, points = tenant_series(
            guard, scope, tenant_id, object_id, granularity, since, until
        )
        return answer(scope, ident, granularity, start, end, points, fmt)

    get_object_series.__doc__ = (
        f"One {scope}'s usage per hour / day / month of Asia/Shanghai, domestic and "
        "cross-border" + (" (the devices it owns)." if scope == "user" else ".")
    )
    router.add_api_route(
        f"/tenants/{{tenant_id}}/{plural}/{{object_id}}/usage/series",
        get_object_series,
        methods=["GET"],
        tags=["usage"],
        operation_id=f"{scope}_usage_series",
        response_model=UsageSeries,
        responses=_CSV,  # type: ignore[arg-type]
    )


for _scope, _plural in (("user", "users"), ("device", "devices"), ("site", "sites")):
    _object_route(_scope, _plural)


def pop_series(
    guard: Guard,
    pop_id: uuid.UUID,
    granularity: Granularity,
    since: date | None,
    until: date | None,
) -> tuple[uuid.UUID, date, date, list[UsagePoint]]:
    guard.require("usage", Action.READ)
    guard.require("pops", Action.READ)
    pop = get_pop(guard.ctx, pop_id)
    start, end = window(since, until, granularity, guard.ctx.runtime.clock())
    filters = [UsageTenantHourly.pop_id == pop.id, UsageTenantHourly.peer_kind.in_(TENANT_KINDS)]
    points = series(guard.ctx.session, UsageTenantHourly, filters, granularity, start, end)
    return pop.id, start, end, points


@router.get(
    "/pops/{pop_id}/usage/series",
    tags=["usage"],
    operation_id="pop_usage_series",
    response_model=UsageSeries,
    responses=_CSV,  # type: ignore[arg-type]
)
def get_pop_series(
    guard: GuardDep,
    pop_id: Annotated[uuid.UUID, Path()],
    granularity: GranularityQ = "day",
    since: SinceQ = None,
    until: UntilQ = None,
    fmt: FormatQ = "json",
) -> UsageSeries | Response:
    """All tenants' usage through the PoP per hour / day / month of Asia/Shanghai (operator
    staff), domestic and cross-border; inter-PoP transit is left out."""
    ident, start, end, points = pop_series(guard, pop_id, granularity, since, until)
    return answer("pop", ident, granularity, start, end, points, fmt)


# --- the two ends of a cross-border link (operator staff) --------------------------------------
class EndsPoint(BaseModel):
    day: date = Field(description="Asia/Shanghai day")
    tenant_id: uuid.UUID
    domestic_outbound_bytes: int = Field(
        description="China to abroad, measured at the domestic end (billed)"
    )
    domestic_inbound_bytes: int = Field(
        description="abroad to China, measured at the domestic end (billed)"
    )
    overseas_outbound_bytes: int = Field(
        description="China to abroad, as the overseas end delivered it (not billed)"
    )
    overseas_inbound_bytes: int = Field(
        description="abroad to China, as the overseas end received it (not billed)"
    )
    outbound_difference: int = Field(description="domestic less overseas, outbound")
    inbound_difference: int = Field(description="domestic less overseas, inbound")


class LinkEnds(BaseModel):
    link_id: uuid.UUID
    domestic_pop_id: uuid.UUID | None = Field(description="the link's PoP in China")
    overseas_pop_id: uuid.UUID | None = Field(
        description="the link's PoP abroad; None: the link does not cross the border"
    )
    other_links: int = Field(
        description="other cross-border links at either PoP: their bytes are in that end's "
        "figures too (the gateways count per tenant peer, not per link)"
    )
    since: date
    until: date
    timezone: str = "Asia/Shanghai"
    rows: list[EndsPoint] = Field(description="per day and tenant, with traffic")


@router.get(
    "/links/{object_id}/usage/reconciliation",
    tags=["usage"],
    operation_id="link_usage_reconciliation",
    response_model=LinkEnds,
    responses=_CSV,  # type: ignore[arg-type]
)
def get_link_reconciliation(
    guard: GuardDep,
    object_id: Annotated[uuid.UUID, Path(description="the link's id")],
    since: Annotated[
        date | None, Query(description="first Asia/Shanghai day (default: 30 days back)")
    ] = None,
    until: UntilQ = None,
    fmt: FormatQ = "json",
) -> LinkEnds | Response:
    """Cross-border bytes of a link's two ends per Asia/Shanghai day and tenant (operator
    staff): the domestic end's, which usage, quotas and invoices count, beside the overseas
    end's, kept for reconciliation only and never counted for the tenant."""
    guard.require("links", Action.READ)
    guard.require("usage", Action.READ)
    link = guard.ctx.session.get(Link, object_id)
    if link is None:
        raise NotFound("link not found")
    start, end = window(since, until, "day", guard.ctx.runtime.clock())
    ends = reconcile(guard.ctx.session, link, start, end)
    rows = [
        EndsPoint(
            day=r.day,
            tenant_id=r.tenant_id,
            domestic_outbound_bytes=r.domestic_outbound_bytes,
            domestic_inbound_bytes=r.domestic_inbound_bytes,
            overseas_outbound_bytes=r.overseas_outbound_bytes,
            overseas_inbound_bytes=r.overseas_inbound_bytes,
            outbound_difference=r.domestic_outbound_bytes - r.overseas_outbound_bytes,
            inbound_difference=r.domestic_inbound_bytes - r.overseas_inbound_bytes,
        )
        for r in ends.rows
    ]
    if fmt == "csv":
        return csv_response(
            list(EndsPoint.model_fields), rows, f"link-{link.id}-ends-{start}-{end}.csv"
        )
    return LinkEnds(
        link_id=link.id,
        domestic_pop_id=ends.domestic_pop_id,
        overseas_pop_id=ends.overseas_pop_id,
        other_links=ends.other_links,
        since=start,
        until=end,
        rows=rows,
    )
