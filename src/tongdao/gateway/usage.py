"""Per-peer usage: gateways report byte deltas, tenants and operators read totals.

Reports (``POST /gateway/reports``, gateway credential) carry, per WireGuard peer, the bytes
moved since the previous report (the agent turns the engine's cumulative counters into
deltas, see :mod:`tongdao.agent.reporter`). ``rx_bytes`` is what the gateway received from the
peer (the peer's upload), ``tx_bytes`` what it sent to the peer.

Idempotency: every report has a ``seq``, increasing per gateway. The gateway row's
``last_report_seq`` moves forward with a compare-and-set ``UPDATE ... WHERE last_report_seq <
seq`` in the same transaction that stores the report's rows, so a report is stored exactly
once: a retry (seq already seen) or a concurrent twin (the other transaction's UPDATE waits
for the row lock, then finds the new seq) answers ``{"accepted": false, "duplicate": true}``
and stores nothing. The unique ``(gateway_id, seq, peer_key)`` constraint is the backstop and
is answered the same way, never 409/500. Reports may skip seqs (an agent that dropped a
rejected report goes on with the next one).

``last_report_seq`` and ``last_seen_at`` are telemetry: they are written with a Core
``UPDATE`` that bypasses the audit hook, so a report every 30 s per gateway does not flood
the audit log. The connection log is derived from the reports of PoP gateways in the same
transaction (:mod:`tongdao.audit.sessions`): one chained audit record per connection session
(tenant, user, device, public source IP:port, PoP, start, end, bytes) when it ends.

Reading (``GET /tenants/{id}/usage``) covers the tenant's own endpoints, peers of kind
``device`` and ``site``; the inter-PoP transit peers (``pop``) carry the same bytes again and
show only in the operators' ``GET /pops/{id}/usage``. An employee (own-only grant on devices)
sees only the usage of their own devices. Days are UTC days of ``period_end``; a record
counts in the window when ``since < period_end <= until``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from sqlalchemy import ColumnElement, CursorResult, Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from tongdao.api.deps import Guard, GuardDep
from tongdao.audit.sessions import Seen, track_report
from tongdao.auth.permissions import Action
from tongdao.errors import ValidationError
from tongdao.gateway.desired import PeerKind
from tongdao.gateway.models import Gateway, UsageRecord
from tongdao.gateway.periods import as_utc, report_day
from tongdao.gateway.routes import GatewayDep
from tongdao.network.models import Device, PopTenantInterface, Site
from tongdao.network.service import get_pop
from tongdao.runtime import Ctx
from tongdao.schemas import Strict, UtcDateTime, WireGuardKey

router = APIRouter()

MAX_PEERS = 100_000  # per report; the agent splits bigger ones (and the body limit applies)
MAX_COUNTER = 2**63 - 1  # BIGINT
MAX_WINDOW = timedelta(days=366)
DEFAULT_WINDOW = timedelta(days=1)
TENANT_KINDS: tuple[str, ...] = ("device", "site")
_MAX_FIELD_ERRORS = 20


# --- schemas -------------------------------------------------------------------------------------
class PeerUsage(Strict):
    tenant_id: uuid.UUID
    peer_key: WireGuardKey
    peer_kind: PeerKind
    peer_ref: Annotated[str, Field(min_length=1, max_length=64)]
    rx_bytes: Annotated[int, Field(ge=0, le=MAX_COUNTER, description="delta since last report")]
    tx_bytes: Annotated[int, Field(ge=0, le=MAX_COUNTER, description="delta since last report")]
    last_handshake: AwareDatetime | None = None
    endpoint: Annotated[str, Field(max_length=64)] | None = None


class UsageReportIn(Strict):
    seq: Annotated[int, Field(ge=1, le=MAX_COUNTER)]
    period_start: AwareDatetime
    period_end: AwareDatetime
    peers: Annotated[list[PeerUsage], Field(max_length=MAX_PEERS)] = []

    @model_validator(mode="after")
    def _period(self) -> UsageReportIn:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class ReportAnswer(BaseModel):
    accepted: bool = Field(description="the report was stored now")
    duplicate: bool = Field(description="a report with this seq was stored before")
    stored: int = Field(description="usage rows stored by this call")
    last_seq: int = Field(description="the highest seq stored for this gateway")


GroupBy = Literal["device", "site", "day"]
PopGroupBy = Literal["tenant", "day"]


class UsageRow(BaseModel):
    key: str = Field(description="device id, site id, tenant id or UTC day (YYYY-MM-DD)")
    peer_kind: str | None = Field(default=None, description="device | site | pop")
    rx_bytes: int = Field(description="received by the gateway from the peer(s)")
    tx_bytes: int = Field(description="sent by the gateway to the peer(s)")
    last_handshake: datetime | None = None


class UsageSummary(BaseModel):
    since: datetime
    until: datetime
    group_by: str
    tenant_id: uuid.UUID | None = None
    pop_id: uuid.UUID | None = None
    rows: list[UsageRow]
    rx_bytes: int = Field(description="sum over the rows")
    tx_bytes: int = Field(description="sum over the rows")


# --- reports -------------------------------------------------------------------------------------
def _served_tenants(session: Session, gateway: Gateway) -> set[uuid.UUID]:
    if gateway.pop_id is not None:
        stmt = select(PopTenantInterface.tenant_id).where(
            PopTenantInterface.pop_id == gateway.pop_id
        )
        return set(session.scalars(stmt))
    if gateway.site_id is not None:
        tenant_id = session.scalar(select(Site.tenant_id).where(Site.id == gateway.site_id))
        return {tenant_id} if tenant_id is not None else set()
    return set()


def _check(session: Session, gateway: Gateway, report: UsageReportIn) -> None:
    served = _served_tenants(session, gateway)
    fields: dict[str, str] = {}
    seen: set[str] = set()
    for i, peer in enumerate(report.peers):
        if len(fields) >= _MAX_FIELD_ERRORS:
            break
        if peer.tenant_id not in served:
            fields[f"peers.{i}.tenant_id"] = "unknown tenant, or one this gateway does not serve"
        if peer.peer_key in seen:
            fields[f"peers.{i}.peer_key"] = "this peer is in the report twice"
        seen.add(peer.peer_key)
    if fields:
        raise ValidationError(fields)


def _last_seq(session: Session, gateway_id: uuid.UUID) -> int:
    value = session.scalar(select(Gateway.last_report_seq).where(Gateway.id == gateway_id))
    return int(value or 0)


def store_report(ctx: Ctx, gateway: Gateway, report: UsageReportIn) -> ReportAnswer:
    """Store the report once (see the module's docstring), committing the transaction."""
    session = ctx.session
    gateway_id = gateway.id
    if report.seq <= gateway.last_report_seq:
        return ReportAnswer(
            accepted=False, duplicate=True, stored=0, last_seq=gateway.last_report_seq
        )
    _check(session, gateway, report)
    now = ctx.runtime.clock()
    moved = cast(
        CursorResult[Any],
        session.execute(
            update(Gateway)
            .where(Gateway.id == gateway_id, Gateway.last_report_seq < report.seq)
            .values(last_report_seq=report.seq, last_seen_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    if moved.rowcount != 1:  # a concurrent twin got there first
        session.rollback()
        return ReportAnswer(
            accepted=False, duplicate=True, stored=0, last_seq=_last_seq(session, gateway_id)
        )
    if gateway.pop_id is not None:
        seen = [
            Seen(
                peer_key=peer.peer_key,
                tenant_id=peer.tenant_id,
                peer_kind=peer.peer_kind,
                peer_ref=peer.peer_ref,
                endpoint=peer.endpoint,
                rx_bytes=peer.rx_bytes,
                tx_bytes=peer.tx_bytes,
                last_handshake=peer.last_handshake,
            )
            for peer in report.peers
        ]
        track_report(
            session, gateway_id, gateway.pop_id, seen, report.period_start, report.period_end, now
        )
    rows = [
        {
            "gateway_id": gateway_id,
            "seq": report.seq,
            "tenant_id": peer.tenant_id,
            "peer_key": peer.peer_key,
            "peer_kind": peer.peer_kind,
            "peer_ref": peer.peer_ref,
            "rx_bytes": peer.rx_bytes,
            "tx_bytes": peer.tx_bytes,
            "last_handshake": peer.last_handshake,
            "endpoint": peer.endpoint,
            "period_start": report.period_start,
            "period_end": report.period_end,
        }
        for peer in report.peers
    ]
    try:
        if rows:
            session.execute(insert(UsageRecord), rows)
        session.commit()
    except IntegrityError:
        session.rollback()
        return ReportAnswer(
            accepted=False, duplicate=True, stored=0, last_seq=_last_seq(session, gateway_id)
        )
    return ReportAnswer(accepted=True, duplicate=False, stored=len(rows), last_seq=report.seq)


@router.post("/gateway/reports", tags=["gateway"], operation_id="gateway_report")
def report_usage(auth: GatewayDep, body: UsageReportIn) -> ReportAnswer:
    """Per-peer byte deltas over a period. Idempotent by ``seq``: a seq at or below the last
    stored one answers ``duplicate`` and stores nothing."""
    ctx, gateway = auth
    return store_report(ctx, gateway, body)


# --- reading -------------------------------------------------------------------------------------
def window(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window, naive datetimes taken as UTC; 422 when empty or longer than a year."""
    end = until or now
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    start = since or end - DEFAULT_WINDOW
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    if start >= end:
        raise ValidationError({"since": "must be before until"})
    if end - start > MAX_WINDOW:
        raise ValidationError({"since": "the window is at most 366 days"})
    return start, end


def _summarise(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    key: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> list[UsageRow]:
    """Sums per (key, peer kind) over the filtered records."""
    grouped = key.label("key")
    stmt: Select[Any] = (
        select(
            grouped,
            UsageRecord.peer_kind,
            func.coalesce(func.sum(UsageRecord.rx_bytes), 0),
            func.coalesce(func.sum(UsageRecord.tx_bytes), 0),
            func.max(UsageRecord.last_handshake),
        )
        .where(*filters)
        .group_by(grouped, UsageRecord.peer_kind)
    )
    rows: list[UsageRow] = []
    for k, kind, rx, tx, handshake in session.execute(stmt):
        rows.append(
            UsageRow(
                key=str(k),
                peer_kind=str(kind),
                rx_bytes=int(rx),
                tx_bytes=int(tx),
                last_handshake=as_utc(handshake),
            )
        )
    rows.sort(key=lambda r: (r.key, r.peer_kind or ""))
    return rows


def _summary(
    rows: list[UsageRow], since: datetime, until: datetime, group_by: str, **ids: Any
) -> UsageSummary:
    return UsageSummary(
        since=since,
        until=until,
        group_by=group_by,
        rows=rows,
        rx_bytes=sum(r.rx_bytes for r in rows),
        tx_bytes=sum(r.tx_bytes for r in rows),
        **ids,
    )


def tenant_usage(
    guard: Guard, tenant_id: uuid.UUID, since: datetime, until: datetime, group_by: GroupBy
) -> UsageSummary:
    session = guard.ctx.session
    filters: list[ColumnElement[bool]] = [
        UsageRecord.tenant_id == tenant_id,
        UsageRecord.period_end > since,
        UsageRecord.period_end <= until,
    ]
    kinds: tuple[str, ...] = TENANT_KINDS
    if group_by in ("device", "site"):
        kinds = (group_by,)
    if guard.principal.own_only("devices", Action.READ):
        # Employees: their own devices only (peer_ref holds the device id as text).
        mine = session.scalars(
            select(Device.id).where(
                Device.tenant_id == tenant_id, Device.user_id == guard.principal.user_id
            )
        )
        kinds = tuple(k for k in kinds if k == "device")
        filters.append(UsageRecord.peer_ref.in_([str(d) for d in mine]))
    if not kinds:
        return _summary([], since, until, group_by, tenant_id=tenant_id)
    filters.append(UsageRecord.peer_kind.in_(kinds))
    if group_by == "day":
        rows = _summarise(session, filters, report_day(session))
    else:
        rows = _summarise(session, filters, UsageRecord.peer_ref)
    return _summary(rows, since, until, group_by, tenant_id=tenant_id)


Since = Annotated[
    UtcDateTime | None, Query(description="window start (exclusive); default until − 1 day")
]
Until = Annotated[UtcDateTime | None, Query(description="window end (inclusive); default now")]


@router.get("/tenants/{tenant_id}/usage", tags=["usage"], operation_id="tenant_usage")
def get_tenant_usage(
    guard: GuardDep,
    tenant_id: Annotated[uuid.UUID, Path()],
    since: Since = None,
    until: Until = None,
    group_by: Annotated[GroupBy, Query(description="device | site | day")] = "device",
) -> UsageSummary:
    """Bytes per device, per site or per UTC day over the window (employees: their own
    devices only). Inter-PoP transit is not counted here."""
    tenant = guard.tenant(tenant_id)
    guard.require("devices", Action.READ)
    start, end = window(since, until, guard.ctx.runtime.clock())
    return tenant_usage(guard, tenant.id, start, end, group_by)


@router.get("/pops/{pop_id}/usage", tags=["pops"], operation_id="pop_usage")
def get_pop_usage(
    guard: GuardDep,
    pop_id: Annotated[uuid.UUID, Path(description="the PoP's id")],
    since: Since = None,
    until: Until = None,
    group_by: Annotated[PopGroupBy, Query(description="tenant | day")] = "tenant",
) -> UsageSummary:
    """Bytes through the PoP's gateways per tenant (or per UTC day) and peer kind; ``pop``
    rows are inter-PoP transit."""
    guard.require("pops", Action.READ)
    pop = get_pop(guard.ctx, pop_id)
    start, end = window(since, until, guard.ctx.runtime.clock())
    session = guard.ctx.session
    gateways = select(Gateway.id).where(Gateway.pop_id == pop.id)
    filters: list[ColumnElement[bool]] = [
        UsageRecord.gateway_id.in_(gateways),
        UsageRecord.period_end > start,
        UsageRecord.period_end <= end,
    ]
    key = report_day(session) if group_by == "day" else UsageRecord.tenant_id
    rows = _summarise(session, filters, key)
    return _summary(rows, start, end, group_by, pop_id=pop.id)
