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
is answered the same way, never 500. The gateway's row is locked first (``SELECT ... FOR
UPDATE``), so a concurrent report of the same gateway reads the credits this one stored.
Reports may skip seqs (an agent that dropped a rejected report goes on with the next one),
but by at most :data:`MAX_SEQ_STEP`: a seq further ahead answers 409 ``seq_out_of_range``
with the server's ``last_seq`` (the agent renumbers its pending reports from there), so one
wild seq (2^63-1) cannot make every later report a "duplicate".

What a report may claim (the agent is not trusted beyond its own state):

* **peers**: a row counts only for a peer of a desired state sent to this agent, tenant, public
  key, kind and reference all matching (:mod:`tongdao.gateway.sent`); a peer removed from the
  agent's state stays reportable for :data:`~tongdao.gateway.sent.RECENTLY_REMOVED` (its final
  bytes). So a PoP gateway reports only its own tenants' peers homed there and a site
  connector only its tunnel to its PoP.
* **bytes**: bounded per peer (tenant, key) and gateway over time, not per report: a
  credit per peer (``usage_credits``) records up to which instant its credited bytes have
  used the PoP's ``max_rate_mbps``; a row counts only if it fits between that instant (or its
  period's start, if later) and the period's end plus :data:`RATE_SLACK` (see
  :func:`_screen`). Overlapping periods share one allowance; the same peer for the period it
  was last credited for is a duplicate (the chunks of one report share a period, never a
  peer), so replaying a period with seq+1 adds nothing.
* **cross-border bytes**: at most the row's totals, and none at a PoP abroad that no link
  joins to a PoP in China (the overseas end's cross-border part leaves the tenant's ledger,
  :mod:`tongdao.gateway.xbends`): such a row is ``invalid``.
* **periods**: ``period_end`` at most :data:`CLOCK_SKEW` after the server's clock;
  ``period_start`` at most :data:`CLOCK_SKEW` before the previous report's end (for the first
  report: the agent's enrolment), unless it repeats the previous period exactly (the chunks of
  one report); everything within the years 2000-9998. Out of bounds is 422 (``period_*``).
* **text**: ``endpoint`` is an IPv4:port or [IPv6]:port (stored in canonical form),
  ``peer_ref`` a UUID, ``peer_key`` a WireGuard key, ``last_handshake`` within a day before
  the period and no later than its end (plus the skew).

A row that breaks a rule is **dropped, not the report** (the agent drops refused reports,
which would lose the good rows): the answer counts them (``dropped``, ``dropped_reasons``:
``invalid``, ``unknown_peer``, ``duplicate_peer``, ``over_rate``), the agent exports that as
``tongdao_agent_report_rows_dropped_total{reason}``, and reports with dropped rows write one
warning to the server log and one audit event (``usage_rows_dropped`` on the gateway, with
the counts and up to ten rows' index and reason, never the rows' text) at most once per
gateway per :data:`DROPPED_EVENT_EVERY`: the reports in between are held on the gateway's row
(``dropped_held``) and counted in the next event.

``last_report_seq`` and ``last_seen_at`` are telemetry: they are written with a Core
``UPDATE`` that bypasses the audit hook, so a report every 30 s per gateway does not flood
the audit log. The connection log is derived from the reports of PoP gateways in the same
transaction (:mod:`tongdao.audit.sessions`): one chained audit record per connection session
(tenant, user, device, public source IP:port, PoP, start, end, bytes) when it ends.
Transfer caps are counted in the same transaction too (:func:`tongdao.quotas.service.
check_report`, for the report's tenants that have limits): a cap reached writes its event and
the gateways' new desired state commits with the report.

Speed (``python -m bench ledger``): a report of thousands of rows is written with one
statement per table whatever its size (:mod:`tongdao.store.bulk`), and three things the
screening and the sessions need are read once per process and then kept as copies, each
used only while the store says it still holds: the agent's recorded peers (by the gateway's
``sent_version``), its peers' credits (by its ``last_report_seq``, under its row lock, since
only its reports write them) and its open connection sessions (:mod:`tongdao.audit.sessions`).
A second server, a restart or a failed commit just means the next report reads them again.
The body is validated from its bytes by pydantic-core in one pass (:func:`parse_report`), and
the per-row work in Python is kept to plain expressions (ids validated once per process, no
helper object per row): one server process is what bounds the rows a second.

Reading (``GET /tenants/{id}/usage``) covers the tenant's own endpoints, peers of kind
``device`` and ``site``; the inter-PoP transit peers (``pop``) carry the same bytes again and
show only in the operators' ``GET /pops/{id}/usage``. Cross-border bytes count once, at the
domestic end of a link: the part the overseas end (a PoP abroad) reported for tenant peers is
left out of the tenant's totals (:mod:`tongdao.gateway.xbends`); the operators' per-PoP view
shows what the PoP's gateways reported. An employee (own-only grant on devices)
sees only the usage of their own devices. Days are Asia/Shanghai days of ``period_end`` (as in
the ledger, :func:`~tongdao.gateway.periods.shanghai_report_day`); a record
counts in the window when ``since < period_end <= until`` (both within the years 2000-9998,
else 422). Sums are exact whatever the counters hold (:func:`~tongdao.gateway.periods.exact_sum`).
"""

from __future__ import annotations

import email.message
import ipaddress
import logging
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ModelWrapValidatorHandler,
    PlainValidator,
    PrivateAttr,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic import ValidationError as SchemaError
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from tongdao.api.deps import Guard, GuardDep
from tongdao.api.errors import ERROR_RESPONSES, error_body
from tongdao.api.metrics import of as server_metrics
from tongdao.audit.recorder import record
from tongdao.audit.sessions import OPEN_COPIES, Conn, track_report
from tongdao.auth.permissions import Action
from tongdao.copies import Copies
from tongdao.errors import Conflict, TongdaoError, ValidationError
from tongdao.gateway.desired import PeerKind
from tongdao.gateway.ledger import roll_up
from tongdao.gateway.models import TENANT_KINDS, Gateway, UsageCredit, UsageRecord
from tongdao.gateway.periods import (
    Instant,
    as_utc,
    exact_sum,
    joined,
    shanghai_report_day,
    utc_instant,
)
from tongdao.gateway.routes import GatewayDep
from tongdao.gateway.sent import RECENTLY_REMOVED, ensure_recorded, reportable_peers
from tongdao.gateway.xbends import abroad_without_link, is_overseas, kept_overseas
from tongdao.network.models import Device, Pop, Site
from tongdao.network.service import get_pop
from tongdao.quotas.service import check_report
from tongdao.runtime import Ctx
from tongdao.schemas import Strict, UtcDateTime
from tongdao.store.bulk import Columns, insert_rows, upsert_rows
from tongdao.store.rows import rows_updated
from tongdao.validation import wireguard_key

log = logging.getLogger("tongdao.gateway.usage")
router = APIRouter()

MAX_PEERS = 100_000  # per report; the agent splits bigger ones (and the body limit applies)
MAX_COUNTER = 2**63 - 1  # BIGINT
MAX_WINDOW = timedelta(days=366)
DEFAULT_WINDOW = timedelta(days=1)
CLOCK_SKEW = timedelta(minutes=5)  # agents' clocks may be this far from the server's
MAX_SEQ_STEP = 1_000_000  # a report's seq is at most this far above the last stored one
RATE_SLACK = timedelta(seconds=60)  # added to a period when bounding its bytes
HANDSHAKE_BEFORE = timedelta(days=1)  # how long before its period a row's handshake may lie
DEFAULT_RATE_MBPS = 10_000
_EXAMPLES = 10  # dropped rows described in the warning event
DROPPED_EVENT_EVERY = timedelta(minutes=10)  # at most one usage_rows_dropped event per gateway
REASONS = ("invalid", "unknown_peer", "duplicate_peer", "over_rate")
_ENDPOINT = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\]:([0-9]{1,5})|([0-9.]{7,15}):([0-9]{1,5})")

__all__ = [
    "CLOCK_SKEW",
    "DROPPED_EVENT_EVERY",
    "MAX_SEQ_STEP",
    "RECENTLY_REMOVED",
    "ReportAnswer",
    "UsageReportIn",
    "ip_endpoint",
    "store_report",
]


@lru_cache(maxsize=65536)  # a peer's endpoint is the same in report after report
def ip_endpoint(value: str) -> str:
    """``198.51.100.2:51820`` or ``[fd00::2]:51820`` (port 1-65535), in canonical form."""
    match = _ENDPOINT.fullmatch(value)
    if match is None:
        raise ValueError("must be IPv4:port or [IPv6]:port")
    v6, port6, v4, port4 = match.groups()
    address = ipaddress.IPv6Address(v6) if v6 else ipaddress.IPv4Address(v4)
    port = int(port6 or port4)
    if not 1 <= port <= 65535:
        raise ValueError("the port must be 1-65535")
    return f"[{address}]:{port}" if v6 else f"{address}:{port}"


# A peer's key is the same in report after report: validated once per process.
ReportedKey = Annotated[str, AfterValidator(lru_cache(maxsize=65536)(wireguard_key))]


# pydantic-core's parser, what a ``uuid.UUID`` field takes (not Python's ``uuid.UUID()``,
# which also takes Unicode digits, misplaced hyphens and half a brace).
_UUID_TEXT = TypeAdapter(uuid.UUID)


@lru_cache(maxsize=65536)
def _uuid(text: str) -> uuid.UUID:
    if len(text) > 45:  # the longest form a UUID field takes: urn:uuid:...
        raise ValueError("must be a UUID")
    try:
        return _UUID_TEXT.validate_python(text)
    except SchemaError as exc:
        raise ValueError("must be a UUID") from exc


def _tenant(value: object) -> uuid.UUID:
    """A tenant's id: one shared object per id and process (the ids repeat row after row;
    equal objects that are the same hash and compare once, not once a row)."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a UUID")
    return _uuid(value)


@lru_cache(maxsize=65536)
def _ref_text(text: str) -> str:
    return str(_uuid(text))


def _ref(value: object) -> str:
    """A peer's reference, as the UUID's canonical text (what the tables hold), made once
    per reference and process."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("must be a UUID")
    return _ref_text(value)


_UUID_SCHEMA = {"type": "string", "format": "uuid"}
TenantRef = Annotated[uuid.UUID, PlainValidator(_tenant), WithJsonSchema(_UUID_SCHEMA)]
PeerRef = Annotated[str, PlainValidator(_ref), WithJsonSchema(_UUID_SCHEMA)]


# --- schemas -------------------------------------------------------------------------------------
class PeerUsage(Strict):
    """One peer's row. A row that does not validate is dropped, not the report."""

    tenant_id: TenantRef
    peer_key: ReportedKey
    peer_kind: PeerKind
    peer_ref: PeerRef = Field(description="the device's, site's or peer PoP's id (a UUID)")
    rx_bytes: Annotated[int, Field(ge=0, le=MAX_COUNTER, description="delta since last report")]
    tx_bytes: Annotated[int, Field(ge=0, le=MAX_COUNTER, description="delta since last report")]
    cross_border_rx_bytes: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_COUNTER,
            description="the part of rx_bytes carried over a registered cross-border link",
        ),
    ] = 0
    cross_border_tx_bytes: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_COUNTER,
            description="the part of tx_bytes carried over a registered cross-border link",
        ),
    ] = 0
    last_handshake: Instant | None = None
    endpoint: Annotated[
        str | None,
        Field(max_length=64, description="the peer's public IPv4:port or [IPv6]:port"),
        AfterValidator(lambda v: None if v is None else ip_endpoint(v)),
    ] = None

    @property
    def cross_border_fits(self) -> bool:
        """The cross-border parts are at most the totals (checked when screening, not per
        field: a Python validator per row is most of a big report's validation)."""
        return (
            self.cross_border_rx_bytes <= self.rx_bytes
            and self.cross_border_tx_bytes <= self.tx_bytes
        )


class _ReportFields(Strict):
    seq: Annotated[int, Field(ge=1, le=MAX_COUNTER)]
    period_start: Instant
    period_end: Instant
    peers: Annotated[list[PeerUsage], Field(max_length=MAX_PEERS)] = []

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class UsageReportIn(_ReportFields):
    """A report; a row that does not validate is set aside (:attr:`invalid_rows`), the rest
    stands. From the request's bytes: :func:`parse_report`."""

    _invalid: list[tuple[int, str]] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _rows_apart(
        cls, data: Any, handler: ModelWrapValidatorHandler[UsageReportIn]
    ) -> UsageReportIn:
        """Validate each row on its own: the bad ones are set aside (as index and what was
        wrong), the rest of the report stands."""
        invalid: list[tuple[int, str]] = []
        if isinstance(data, dict) and isinstance(data.get("peers"), list):
            rows = data["peers"]
            if len(rows) <= MAX_PEERS:
                try:  # all rows at once (the usual case), else one by one to set the bad aside
                    good = _ROWS.validate_python(rows)
                except SchemaError:
                    good = []
                    for i, raw in enumerate(rows):
                        try:
                            good.append(PeerUsage.model_validate(raw))
                        except SchemaError as exc:
                            wrong = sorted(
                                {".".join(map(str, e["loc"])) or "row" for e in exc.errors()}
                            )
                            invalid.append((i, ", ".join(wrong)))
                data = {**data, "peers": good}
        report = handler(data)
        report._invalid = invalid
        return report

    @property
    def invalid_rows(self) -> list[tuple[int, str]]:
        return self._invalid


class _WholeReport(_ReportFields):
    """A report whose rows all validate (the usual case): checked straight from the
    request's JSON bytes by pydantic-core in one pass, no Python objects in between."""


def parse_report(raw: bytes) -> UsageReportIn:
    """The report in a request body (JSON). Raises :class:`~pydantic.ValidationError` when
    the report itself is wrong; rows that are wrong are set aside (see
    :class:`UsageReportIn`)."""
    try:
        whole = _WholeReport.model_validate_json(raw)
    except SchemaError:
        return UsageReportIn.model_validate_json(raw)  # bad rows set aside, or the error
    return UsageReportIn.model_construct(
        seq=whole.seq,
        period_start=whole.period_start,
        period_end=whole.period_end,
        peers=whole.peers,
    )


_ROWS = TypeAdapter(list[PeerUsage])


class ReportAnswer(BaseModel):
    accepted: bool = Field(description="the report was stored now")
    duplicate: bool = Field(description="a report with this seq was stored before")
    stored: int = Field(description="usage rows stored by this call")
    last_seq: int = Field(description="the highest seq stored for this gateway")
    dropped: int = Field(default=0, description="rows of this report not counted")
    dropped_reasons: dict[str, int] = Field(
        default_factory=dict,
        description="dropped rows per reason: invalid (a field did not validate), "
        "unknown_peer (not a peer of a state sent to this agent, or removed too long ago), "
        "duplicate_peer (the same public key again), over_rate (more bytes than the period "
        "at the PoP's max_rate_mbps allows)",
    )


class SeqOutOfRange(Conflict):
    """The seq is more than :data:`MAX_SEQ_STEP` above the last stored one."""

    code = "seq_out_of_range"

    def __init__(self, seq: int, last_seq: int) -> None:
        super().__init__(
            f"seq {seq} is more than {MAX_SEQ_STEP} above the last stored seq {last_seq}; "
            f"renumber from {last_seq + 1}",
            {"seq": f"must be above {last_seq} and at most {last_seq + MAX_SEQ_STEP}"},
        )
        self.last_seq = last_seq


GroupBy = Literal["device", "site", "day"]
PopGroupBy = Literal["tenant", "day"]


class UsageRow(BaseModel):
    key: str = Field(description="device id, site id, tenant id or Asia/Shanghai day (YYYY-MM-DD)")
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
def _rate_mbps(session: Session, gateway: Gateway) -> int:
    pop_id = gateway.pop_id
    if pop_id is None and gateway.site_id is not None:
        pop_id = session.scalar(select(Site.pop_id).where(Site.id == gateway.site_id))
    rate = session.scalar(select(Pop.max_rate_mbps).where(Pop.id == pop_id)) if pop_id else None
    return int(rate or DEFAULT_RATE_MBPS)


def _pop_of(session: Session, gateway: Gateway) -> uuid.UUID | None:
    """The gateway's PoP (a site connector: its site's PoP)."""
    if gateway.pop_id is not None or gateway.site_id is None:
        return gateway.pop_id
    return session.scalar(select(Site.pop_id).where(Site.id == gateway.site_id))


def _check_period(
    last: Row[Any], created_at: datetime, report: UsageReportIn, now: datetime
) -> None:
    """A period ends no later than the server's clock (plus the skew) and starts no earlier
    than the previous report's end (or the agent's enrolment), less the skew, unless it is the
    previous report's period again (the chunks of one big report share it)."""
    fields: dict[str, str] = {}
    if report.period_end > now + CLOCK_SKEW:
        fields["period_end"] = f"more than {CLOCK_SKEW} after the server's clock"
    again = (report.period_start, report.period_end) == (
        last.last_period_start,
        last.last_period_end,
    )
    floor = last.last_period_end or created_at
    if not again and report.period_start < floor - CLOCK_SKEW:
        what = "previous report's end" if last.last_period_end else "agent's enrolment"
        fields["period_start"] = f"more than {CLOCK_SKEW} before the {what} ({floor.isoformat()})"
    if fields:
        raise ValidationError(fields)


Credit = tuple[datetime, datetime, datetime]  # credited_until, period_start, period_end
CreditKey = tuple[uuid.UUID, str]  # tenant, peer key


# Per gateway, all its peers' credits as of its last stored seq. Credits are written only by a
# report, under the gateway's row lock, with its seq: when the locked row's seq is the one a
# copy was made at, the copy holds.
CREDITS: Copies[dict[CreditKey, Credit]] = Copies()


def _credits(session: Session, gateway_id: uuid.UUID, seq: int) -> dict[CreditKey, Credit]:
    """All the gateway's credits as of its stored ``seq``: this process's copy if made at
    that seq, else read (one query). The caller must not change the dict before its commit."""
    cached = CREDITS.get(gateway_id, seq)
    if cached is not None:
        return cached
    c = UsageCredit
    out: dict[CreditKey, Credit] = {}
    stmt = select(c.tenant_id, c.peer_key, c.credited_until, c.period_start, c.period_end).where(
        c.gateway_id == gateway_id
    )
    for tenant, key, until, start, end in session.execute(stmt):
        out[(tenant, key)] = (_utc(until), _utc(start), _utc(end))
    return out


def _utc(value: datetime) -> datetime:
    utc = as_utc(value)
    assert utc is not None
    return utc


_MICROSECOND = timedelta(microseconds=1)
_ABSENT: Any = object()


class Screened:
    """What :func:`_screen` found: the rows that count, the credits they move, the dropped
    rows per reason and a few of them described."""

    def __init__(self) -> None:
        self.kept: list[PeerUsage] = []
        self.credits: dict[CreditKey, Credit] = {}  # new credit of each kept row's peer
        self.before: dict[CreditKey, Credit] | None = None  # all credits, as read
        self.dropped: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def drop(self, index: int, reason: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append({"row": index, "reason": reason, "detail": detail})


def _screen(
    ctx: Ctx,
    gateway: Gateway,
    report: UsageReportIn,
    now: datetime,
    seq: int,
    sent_version: int | None,
) -> Screened:
    """Sort the report's rows into those that count and those dropped.

    Bytes are bounded per peer and gateway *over time*, not per report: each peer has a
    credit, the instant up to which its credited bytes have used the PoP's rate
    (``credited_until``; a generic cell-rate algorithm). A row of ``b`` bytes (the larger
    direction) over ``[start, end]`` counts when ``max(credited_until, start) + b / rate <=
    end + RATE_SLACK``, and moves ``credited_until`` there. So overlapping or repeated periods
    share one allowance, an idle peer saves up at most ``RATE_SLACK`` of burst, and all a
    peer is ever credited at a gateway is at most the rate over the time up to the last
    period's end plus ``RATE_SLACK``. The same peer for the very period it was last credited
    for is a ``duplicate_peer`` (a replay with a new seq): the chunks of one report share its
    period but never a peer (the agent puts a peer in one chunk only)."""
    out = Screened()
    for index, fields in report.invalid_rows:
        out.drop(index, "invalid", fields)
    if not report.peers:
        return out
    session = ctx.session
    known = reportable_peers(session, gateway.id, sent_version, now)
    credits = out.before = _credits(session, gateway.id, seq)
    per_second = _rate_mbps(session, gateway) * 125_000  # Mbit/s → bytes a second
    start, end = report.period_start, report.period_end
    deadline = end + RATE_SLACK
    earliest = start - HANDSHAKE_BEFORE
    latest = end + CLOCK_SKEW
    seen: set[str] = set()
    no_crossing: bool | None = None  # read when a row first claims cross-border bytes
    # The loop runs once a row (thousands a report): names bound locally, no calls per row
    # where an expression does (see Reportable for the membership rule used inline here).
    recorded, removed_since = known.peers, known.since
    kept, new_credits, drop = out.kept, out.credits, out.drop
    absent: Any = _ABSENT
    for index, peer in enumerate(report.peers):
        key = peer.peer_key
        ident = (peer.tenant_id, key)
        removed = recorded.get((peer.tenant_id, key, peer.peer_kind, peer.peer_ref), absent)
        if removed is not None and (removed is absent or removed < removed_since):
            drop(index, "unknown_peer", key)
            continue
        if key in seen:
            drop(index, "duplicate_peer", key)
            continue
        rx, tx = peer.rx_bytes, peer.tx_bytes
        if peer.cross_border_rx_bytes > rx or peer.cross_border_tx_bytes > tx:
            drop(index, "invalid", "cross_border_*_bytes above rx_bytes / tx_bytes")
            continue
        if peer.cross_border_rx_bytes or peer.cross_border_tx_bytes:
            if no_crossing is None:
                no_crossing = abroad_without_link(session, gateway.pop_id)
            if no_crossing:
                drop(index, "invalid", "cross_border_*_bytes at a PoP abroad with no link to China")
                continue
        handshake = peer.last_handshake
        if handshake is not None and not (earliest <= handshake <= latest):
            drop(index, "invalid", "last_handshake outside the period")
            continue
        credit = credits.get(ident)
        if credit is None:
            base = start
        elif credit[1] == start and credit[2] == end:
            drop(index, "duplicate_peer", f"{key}: already counted for this period")
            continue
        else:
            base = credit[0] if credit[0] > start else start
        room = (deadline - base) // _MICROSECOND  # µs of the rate still free
        if room < 0:
            room = 0
        cost = -(-(rx if rx > tx else tx) * 1_000_000 // per_second)  # µs, rounded up
        if cost > room:
            allowance = room * per_second // 1_000_000
            drop(index, "over_rate", f"{key}: more than {allowance} bytes")
            continue
        seen.add(key)
        kept.append(peer)
        new_credits[ident] = (base + timedelta(microseconds=cost), start, end)
    return out


def _save_credits(session: Session, gateway_id: uuid.UUID, screened: Screened) -> None:
    """The kept rows' new credits, inserted or overwritten (one statement on PostgreSQL)."""
    credits = screened.credits
    if not credits:
        return
    upsert_rows(
        session,
        UsageCredit,
        ("gateway_id", "tenant_id", "peer_key"),
        Columns(
            {
                "tenant_id": [tenant for tenant, _key in credits],
                "peer_key": [key for _tenant, key in credits],
                "credited_until": [c[0] for c in credits.values()],
                "period_start": [c[1] for c in credits.values()],
                "period_end": [c[2] for c in credits.values()],
            },
            same={"gateway_id": gateway_id},
        ),
        replace=("credited_until", "period_start", "period_end"),
    )


def _warning(
    last: Row[Any], now: datetime, dropped: Counter[str]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Whether this report's dropped rows are written now: (the counts to write or None,
    the gateway's new ``dropped_event_at`` / ``dropped_held``). At most one event per gateway
    per :data:`DROPPED_EVENT_EVERY`; the reports and rows held back are counted in the next."""
    held = last.dropped_held if isinstance(last.dropped_held, dict) else {}
    reasons: Counter[str] = Counter()
    for reason, count in (held.get("reasons") or {}).items():
        if reason in REASONS and isinstance(count, int):
            reasons[reason] += count
    reasons.update(dropped)
    counts = {
        "reports": int(held.get("reports") or 0) + 1,
        "dropped": sum(reasons.values()),
        "reasons": {r: reasons[r] for r in REASONS if reasons[r]},
    }
    at = as_utc(last.dropped_event_at) if last.dropped_event_at is not None else None
    if at is not None and timedelta(0) <= now - at < DROPPED_EVENT_EVERY:
        return None, {"dropped_held": counts}
    return counts, {"dropped_event_at": now, "dropped_held": None}


def _warn(
    ctx: Ctx,
    gateway: Gateway,
    seq: int,
    counts: dict[str, Any],
    examples: list[dict[str, Any]],
    since: datetime | None,
) -> None:
    """One warning (the server log and the audit log) for the dropped rows of this report and
    of those held back since the last one."""
    log.warning(
        "usage report %d of gateway %s: %d row(s) dropped %s (%d report(s) since %s)",
        seq,
        gateway.id,
        counts["dropped"],
        counts["reasons"],
        counts["reports"],
        since.isoformat() if since else "the start",
    )
    record(
        ctx.session,
        "usage_rows_dropped",
        "gateway",
        gateway.id,
        pop_id=gateway.pop_id,
        after={
            "seq": seq,
            **counts,
            "since": since.isoformat() if since else None,
            "examples": examples,
        },
    )


def _last_seq(ctx: Ctx, gateway_id: uuid.UUID) -> int:
    """The stored seq, read in a transaction of its own after the request's was rolled back
    (a read on the request's session would begin a write transaction again: on SQLite the
    write lock, held while FastAPI checks the answer in another worker thread)."""
    with ctx.runtime.db.session(write=False) as session:
        value = session.scalar(select(Gateway.last_report_seq).where(Gateway.id == gateway_id))
    return int(value or 0)


def _session_owners(sessions: dict[str, Conn] | None) -> dict[str, uuid.UUID | None] | None:
    """Device id (text) → owner, from the gateway's open device sessions (see
    :func:`~tongdao.gateway.ledger.roll_up`)."""
    if sessions is None:
        return None
    return {c.peer_ref: c.user_id for c in sessions.values() if c.peer_kind == "device"}


def store_report(ctx: Ctx, gateway: Gateway, report: UsageReportIn) -> ReportAnswer:
    """Store the report once (see the module's docstring), committing the transaction.

    Raises :class:`SeqOutOfRange` (409) for a seq too far ahead and
    :class:`~tongdao.errors.ValidationError` (422) for a period out of bounds; bad rows are
    dropped and counted in the answer."""
    session = ctx.session
    gateway_id = gateway.id
    # The gateway's row, locked (PostgreSQL; SQLite's write transactions are serial): a
    # concurrent report of this gateway waits here and then reads what this one stored.
    last = session.execute(
        select(
            Gateway.last_report_seq,
            Gateway.last_period_start,
            Gateway.last_period_end,
            Gateway.dropped_event_at,
            Gateway.dropped_held,
            Gateway.sent_version,
            Gateway.last_seen_at,
        )
        .where(Gateway.id == gateway_id)
        .with_for_update()
    ).one()
    seq = int(last.last_report_seq or 0)
    if report.seq <= seq:
        session.rollback()  # ends the write transaction (and on SQLite its lock) before answering
        return ReportAnswer(accepted=False, duplicate=True, stored=0, last_seq=seq)
    if report.seq > seq + MAX_SEQ_STEP:
        raise SeqOutOfRange(report.seq, seq)
    now = ctx.runtime.clock()
    _check_period(last, gateway.created_at, report, now)
    ensure_recorded(ctx, gateway)
    screened = _screen(ctx, gateway, report, now, seq, last.sent_version)
    peers, dropped = screened.kept, screened.dropped
    warning: dict[str, Any] | None = None
    telemetry: dict[str, Any] = {
        "last_report_seq": report.seq,
        "last_seen_at": now,
        "last_period_start": report.period_start,
        "last_period_end": report.period_end,
    }
    if dropped:
        warning, held = _warning(last, now, dropped)
        telemetry.update(held)
    moved = rows_updated(
        session,
        update(Gateway)
        .where(Gateway.id == gateway_id, Gateway.last_report_seq < report.seq)
        .values(**telemetry),
    )
    if moved != 1:  # a concurrent twin got there first
        session.rollback()
        return ReportAnswer(
            accepted=False, duplicate=True, stored=0, last_seq=_last_seq(ctx, gateway_id)
        )
    sessions_after: dict[str, Conn] | None = None
    if gateway.pop_id is not None:
        _plan, sessions_after = track_report(
            session,
            gateway_id,
            gateway.pop_id,
            peers,
            report.period_start,
            report.period_end,
            now,
            seq=seq,
            last_seen_at=as_utc(last.last_seen_at),
        )
    rows = Columns(
        {
            "tenant_id": [p.tenant_id for p in peers],
            "peer_key": [p.peer_key for p in peers],
            "peer_kind": [p.peer_kind for p in peers],
            "peer_ref": [p.peer_ref for p in peers],
            "rx_bytes": [p.rx_bytes for p in peers],
            "tx_bytes": [p.tx_bytes for p in peers],
            "cross_border_rx_bytes": [p.cross_border_rx_bytes for p in peers],
            "cross_border_tx_bytes": [p.cross_border_tx_bytes for p in peers],
            "last_handshake": [p.last_handshake for p in peers],
            "endpoint": [p.endpoint for p in peers],
        },
        same={
            "gateway_id": gateway_id,
            "seq": report.seq,
            "period_start": report.period_start,
            "period_end": report.period_end,
        },
    )
    if warning is not None:
        since = as_utc(last.dropped_event_at) if last.dropped_event_at is not None else None
        _warn(ctx, gateway, report.seq, warning, screened.examples, since)
    try:
        if rows:
            insert_rows(session, UsageRecord, rows)
            _save_credits(session, gateway_id, screened)
            pop_id = _pop_of(session, gateway)
            roll_up(
                session,
                gateway_id,
                pop_id,
                peers,
                report.period_end,
                _session_owners(sessions_after),
                overseas=gateway.pop_id is not None and is_overseas(session, pop_id),
            )
            check_report(
                ctx, [(p.tenant_id, p.peer_kind, p.peer_ref) for p in peers], report.period_end
            )
        session.commit()
    except IntegrityError:
        session.rollback()
        return ReportAnswer(
            accepted=False, duplicate=True, stored=0, last_seq=_last_seq(ctx, gateway_id)
        )
    # Committed: this process's copies of the credits and open sessions as of this seq.
    if screened.before is not None:
        screened.before.update(screened.credits)
        CREDITS.put(gateway_id, report.seq, screened.before)
    if sessions_after is not None:
        OPEN_COPIES.put(gateway_id, report.seq, sessions_after)
    return ReportAnswer(
        accepted=True,
        duplicate=False,
        stored=len(peers),
        last_seq=report.seq,
        dropped=sum(dropped.values()),
        dropped_reasons={r: dropped[r] for r in REASONS if dropped[r]},
    )


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` put in place (for ``openapi_extra``)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


_JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline(UsageReportIn.model_json_schema())}},
    }
}


def _is_json(content_type: str | None) -> bool:
    """As FastAPI reads a body: JSON when no content type is given or it is JSON's."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def report_body(request: Request) -> UsageReportIn:
    """The report, validated from the request's bytes (:func:`parse_report`: one pass in
    pydantic-core for a report whose rows are all good), not from FastAPI's decoded JSON.
    Errors are FastAPI's (422, keyed ``body.<field>``)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not _is_json(request.headers.get("content-type")):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": None,
                }
            ]
        )
    try:
        return parse_report(raw)
    except SchemaError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


ReportBody = Annotated[UsageReportIn, Depends(report_body)]


@router.post(
    "/gateway/reports",
    tags=["gateway"],
    operation_id="gateway_report",
    response_model=ReportAnswer,
    responses={409: ERROR_RESPONSES[409]},
    openapi_extra=_JSON_BODY,
)
def report_usage(
    request: Request, auth: GatewayDep, body: ReportBody
) -> ReportAnswer | JSONResponse:
    """Per-peer byte deltas over a period. Idempotent by ``seq``: a seq at or below the last
    stored one answers ``duplicate`` and stores nothing; one more than 1,000,000 above it
    answers 409 ``seq_out_of_range`` with the server's ``last_seq`` (renumber from there). A
    period out of bounds is 422; rows that cannot count are dropped (``dropped``,
    ``dropped_reasons``) and the rest is stored."""
    ctx, gateway = auth
    metrics = server_metrics(request)
    try:
        answer = store_report(ctx, gateway, body)
    except SeqOutOfRange as exc:
        if metrics is not None:
            metrics.reports.labels("refused").inc()
        content = {**error_body(exc.code, exc.message, exc.fields), "last_seq": exc.last_seq}
        return JSONResponse(status_code=exc.status_code, content=content)
    except TongdaoError:
        if metrics is not None:
            metrics.reports.labels("refused").inc()
        raise
    if metrics is not None:
        metrics.reports.labels("duplicate" if answer.duplicate else "accepted").inc()
        metrics.report_rows.inc(answer.stored)
        for reason, count in answer.dropped_reasons.items():
            metrics.report_rows_dropped.labels(reason).inc(count)
    return answer


# --- reading -------------------------------------------------------------------------------------
def _instant(value: datetime, field: str) -> datetime:
    try:
        return utc_instant(value)
    except ValueError as exc:
        raise ValidationError({field: str(exc)}) from exc


def window(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window, naive datetimes taken as UTC; 422 when empty, longer than a year or
    outside the years 2000-9998."""
    end = _instant(until or now, "until")
    start = _instant(since or end - DEFAULT_WINDOW, "since")
    if start >= end:
        raise ValidationError({"since": "must be before until"})
    if end - start > MAX_WINDOW:
        raise ValidationError({"since": "the window is at most 366 days"})
    return start, end


def _summarise(
    session: Session,
    filters: Sequence[ColumnElement[bool]],
    key: ColumnElement[Any] | InstrumentedAttribute[Any],
    *,
    tenant_totals: bool = False,
) -> list[UsageRow]:
    """Sums per (key, peer kind) over the filtered records (exact, whatever their size).
    ``tenant_totals``: less the cross-border bytes the overseas ends of links reported for
    tenant peers (counted at the domestic end only, :mod:`tongdao.gateway.xbends`)."""
    grouped = key.label("key")
    far: list[ColumnElement[Any]] = []
    if tenant_totals:
        far = [
            *exact_sum(kept_overseas(UsageRecord.cross_border_rx_bytes)),
            *exact_sum(kept_overseas(UsageRecord.cross_border_tx_bytes)),
        ]
    stmt: Select[Any] = (
        select(
            grouped,
            UsageRecord.peer_kind,
            *exact_sum(UsageRecord.rx_bytes),
            *exact_sum(UsageRecord.tx_bytes),
            func.max(UsageRecord.last_handshake),
            *far,
        )
        .where(*filters)
        .group_by(grouped, UsageRecord.peer_kind)
    )
    rows: list[UsageRow] = []
    for k, kind, rx_high, rx_low, tx_high, tx_low, handshake, *kept in session.execute(stmt):
        far_rx = joined(kept[0], kept[1]) if kept else 0
        far_tx = joined(kept[2], kept[3]) if kept else 0
        rows.append(
            UsageRow(
                key=str(k),
                peer_kind=str(kind),
                rx_bytes=joined(rx_high, rx_low) - far_rx,
                tx_bytes=joined(tx_high, tx_low) - far_tx,
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
        rows = _summarise(session, filters, shanghai_report_day(session), tenant_totals=True)
    else:
        rows = _summarise(session, filters, UsageRecord.peer_ref, tenant_totals=True)
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
    """Bytes per device, per site or per Asia/Shanghai day over the window (employees: their own
    devices only). Inter-PoP transit is not counted here, and cross-border bytes count once,
    at the domestic end of a link (what a PoP abroad reported for them is left out)."""
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
    """Bytes through the PoP's gateways per tenant (or per Asia/Shanghai day) and peer kind; ``pop``
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
    key = shanghai_report_day(session) if group_by == "day" else UsageRecord.tenant_id
    rows = _summarise(session, filters, key)
    return _summary(rows, start, end, group_by, pop_id=pop.id)
