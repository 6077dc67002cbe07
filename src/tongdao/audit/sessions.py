"""Connection sessions, derived from PoP gateways' usage reports as they arrive.

A report (``POST /gateway/reports``) names, per WireGuard peer that moved bytes or made a
new handshake in the period, its tenant, kind and reference, byte deltas, last handshake and
public endpoint (source IP:port). For the peers that are people's devices and tenants' sites
(kinds :data:`SESSION_KINDS`; inter-PoP transit is not a connection), per (gateway, peer key):

* a session **starts** with the first report that shows the peer: at its last handshake when
  that lies in the period (or up to :data:`HANDSHAKE_SLACK` before it, WireGuard's rekey
  interval), else at the period's start;
* it **goes on** while reports keep showing the peer, adding up the bytes;
* it **ends** at the end of the last period that showed the peer, once the peer was absent
  for :data:`INACTIVITY` (judged on the gateway's own report periods), when the peer shows up
  from another endpoint (roaming: a new session starts) or for another device / tenant, and,
  for a gateway that stopped reporting altogether, when another gateway's report arrives more
  than :data:`STALE` after that gateway's last report (by the server's clock).

Open sessions are control-plane state (``open_connections``, not chained); an ended session
becomes one chained audit record of kind ``session`` (action ``connection``): tenant, user
(the device's owner), device, public source IP and port, PoP, start, end, bytes received by
the gateway (``rx_bytes``, the peer's upload) and sent (``tx_bytes``). The planning is a pure
function (:func:`plan`); :func:`track_report` applies it in the report's transaction.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, delete, exists, select
from sqlalchemy.orm import Session

from tongdao.audit.models import OPEN_CONNECTIONS
from tongdao.audit.recorder import Actor, record
from tongdao.copies import Copies
from tongdao.gateway.ledger import device_owners
from tongdao.gateway.models import Gateway
from tongdao.store.bulk import Columns, in_values, insert_rows, update_rows

SESSION_KINDS = ("device", "site")
INACTIVITY = timedelta(minutes=5)
STALE = timedelta(minutes=15)
HANDSHAKE_SLACK = timedelta(minutes=3)
SWEEP_BATCH = 1000
_MARGIN = timedelta(minutes=1)  # for the servers' clocks when judging a copy (see track_report)
MAX_BYTES = 2**63 - 1  # BIGINT

_GATEWAYS = cast(Table, Gateway.__table__)


class SeenPeer(Protocol):
    """One peer of one report, as the planner reads it (a :class:`Seen`, or a report's
    validated row as it is)."""

    @property
    def peer_key(self) -> str: ...
    @property
    def tenant_id(self) -> uuid.UUID: ...
    @property
    def peer_kind(self) -> str: ...
    @property
    def peer_ref(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def rx_bytes(self) -> int: ...
    @property
    def tx_bytes(self) -> int: ...
    @property
    def last_handshake(self) -> datetime | None: ...


@dataclass(frozen=True)
class Seen:
    """One peer of one report."""

    peer_key: str
    tenant_id: uuid.UUID
    peer_kind: str
    peer_ref: str
    endpoint: str | None
    rx_bytes: int
    tx_bytes: int
    last_handshake: datetime | None = None


@dataclass(slots=True)
class Conn:
    """An open session as the planner sees it (``id`` is None until stored)."""

    peer_key: str
    tenant_id: uuid.UUID
    peer_kind: str
    peer_ref: str
    endpoint: str | None
    started_at: datetime
    last_active_at: datetime
    rx_bytes: int = 0
    tx_bytes: int = 0
    id: int | None = None
    device_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


@dataclass
class Plan:
    opened: list[Conn] = field(default_factory=list)
    changed: list[Conn] = field(default_factory=list)
    closed: list[Conn] = field(default_factory=list)

    def after(self, before: Mapping[str, Conn]) -> dict[str, Conn]:
        """The gateway's open sessions once the plan is applied."""
        out = dict(before)
        for conn in self.closed:
            if out.get(conn.peer_key) is conn:
                del out[conn.peer_key]
        for conn in self.changed:
            out[conn.peer_key] = conn
        for conn in self.opened:
            out[conn.peer_key] = conn
        return out


# Per gateway, its open sessions as of its last stored report: the seq they were stored with.
# Written only under the gateway's row lock, by its reports (which move its seq) and by
# close_stale (only once the gateway has been quiet for STALE), so a copy holds when the
# locked row has the seq and a recent last report (see track_report).
OPEN_COPIES: Copies[dict[str, Conn]] = Copies()


def _started(handshake: datetime | None, start: datetime, end: datetime) -> datetime:
    if handshake is not None and start - HANDSHAKE_SLACK <= handshake <= end:
        return handshake
    return start


def plan(
    open_: Mapping[str, Conn], seen: Sequence[SeenPeer], start: datetime, end: datetime
) -> Plan:
    """What a report over ``[start, end]`` does to a gateway's open sessions (pure: the
    sessions given are not changed; ``changed`` holds new objects)."""
    out = Plan()
    shown: set[str] = set()
    for peer in seen:
        if peer.peer_kind not in SESSION_KINDS:
            continue
        shown.add(peer.peer_key)
        cur = open_.get(peer.peer_key)
        if cur is not None and (
            cur.peer_ref != peer.peer_ref
            or cur.tenant_id != peer.tenant_id
            or cur.peer_kind != peer.peer_kind
            or (peer.endpoint and cur.endpoint and peer.endpoint != cur.endpoint)
            or start - cur.last_active_at > INACTIVITY
        ):
            out.closed.append(cur)
            cur = None
        if cur is None:
            out.opened.append(
                Conn(
                    peer_key=peer.peer_key,
                    tenant_id=peer.tenant_id,
                    peer_kind=peer.peer_kind,
                    peer_ref=peer.peer_ref,
                    endpoint=peer.endpoint,
                    started_at=_started(peer.last_handshake, start, end),
                    last_active_at=end,
                    rx_bytes=peer.rx_bytes,
                    tx_bytes=peer.tx_bytes,
                )
            )
            continue
        # Saturating: a session's totals stay within the store's 64-bit columns. A new
        # object: the planner leaves what it was given as it was (a process keeps a copy).
        # (Conn(...) in full, not dataclasses.replace: this runs once a row of every report.)
        rx, tx = cur.rx_bytes + peer.rx_bytes, cur.tx_bytes + peer.tx_bytes
        out.changed.append(
            Conn(
                cur.peer_key,
                cur.tenant_id,
                cur.peer_kind,
                cur.peer_ref,
                cur.endpoint or peer.endpoint,
                cur.started_at,
                cur.last_active_at if cur.last_active_at > end else end,
                rx if rx < MAX_BYTES else MAX_BYTES,
                tx if tx < MAX_BYTES else MAX_BYTES,
                cur.id,
                cur.device_id,
                cur.user_id,
            )
        )
    for key, cur in open_.items():
        if key not in shown and end - cur.last_active_at > INACTIVITY:
            out.closed.append(cur)
    return out


def split_endpoint(endpoint: str | None) -> tuple[str | None, int | None]:
    """``198.51.100.2:51820`` / ``[fd00::2]:51820`` → (address, port); otherwise the text."""
    if not endpoint:
        return None, None
    host, sep, port = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host) if sep else None
        number = int(port)
    except ValueError:
        address = None
        number = -1
    if address is None or not 0 <= number <= 65535:
        return endpoint[:64], None
    return str(address), number


def _conn(row: Any) -> Conn:
    return Conn(
        id=row.id,
        peer_key=row.peer_key,
        tenant_id=row.tenant_id,
        peer_kind=row.peer_kind,
        peer_ref=row.peer_ref,
        endpoint=row.endpoint,
        started_at=row.started_at,
        last_active_at=row.last_active_at,
        rx_bytes=row.rx_bytes,
        tx_bytes=row.tx_bytes,
        device_id=row.device_id,
        user_id=row.user_id,
    )


def _owners(session: Session, conns: Sequence[Conn]) -> None:
    """Fill device and user of new device sessions (one query)."""
    ids: dict[uuid.UUID, list[Conn]] = {}
    for conn in conns:
        if conn.peer_kind != "device":
            continue
        try:
            ids.setdefault(uuid.UUID(conn.peer_ref), []).append(conn)
        except ValueError:
            continue
    if not ids:
        return
    for device_id, user_id in device_owners(session, ids).items():
        for conn in ids[device_id]:
            conn.device_id, conn.user_id = device_id, user_id


def _close(session: Session, conn: Conn, gateway_id: uuid.UUID, pop_id: uuid.UUID | None) -> None:
    source_ip, source_port = split_endpoint(conn.endpoint)
    record(
        session,
        "connection",
        conn.peer_kind,
        conn.peer_ref,
        kind="session",
        actor=Actor(None, f"gateway:{gateway_id}"),
        tenant_id=conn.tenant_id,
        user_id=conn.user_id,
        device_id=conn.device_id,
        pop_id=pop_id,
        source_ip=source_ip,
        source_port=source_port,
        started_at=conn.started_at,
        ended_at=conn.last_active_at,
        rx_bytes=conn.rx_bytes,
        tx_bytes=conn.tx_bytes,
        occurred_at=conn.last_active_at,
        after={"endpoint": conn.endpoint, "peer_key": conn.peer_key, "gateway_id": gateway_id},
    )


def track_report(
    session: Session,
    gateway_id: uuid.UUID,
    pop_id: uuid.UUID | None,
    seen: Sequence[SeenPeer],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    seq: int | None = None,
    last_seen_at: datetime | None = None,
) -> tuple[Plan, dict[str, Conn]]:
    """Apply one report of a gateway to its sessions, in the report's transaction, which
    holds the gateway's row lock; the plan and the open sessions after it (for
    :data:`OPEN_COPIES`, once committed). ``seq`` and ``last_seen_at`` are the locked row's:
    with them, this process's copy is used when it holds (see :data:`OPEN_COPIES`)."""
    t = OPEN_CONNECTIONS
    current: dict[str, Conn] | None = None
    if seq is not None and last_seen_at is not None and last_seen_at >= now - STALE + _MARGIN:
        current = OPEN_COPIES.get(gateway_id, seq)
    if current is None:
        # No FOR UPDATE: the caller holds the gateway's row lock (see close_stale).
        rows = session.execute(select(t).where(t.c.gateway_id == gateway_id)).all()
        current = {row.peer_key: _conn(row) for row in rows}
    result = plan(current, seen, start, end)
    _owners(session, result.opened)
    if result.closed:
        # By (gateway, key): sessions opened since the copy was read have no id here.
        for condition in in_values(session, t.c.peer_key, [c.peer_key for c in result.closed]):
            session.execute(delete(t).where(t.c.gateway_id == gateway_id, condition))
        for conn in result.closed:
            _close(session, conn, gateway_id, pop_id)
    changed = result.changed
    update_rows(
        session,
        t,
        ("gateway_id", "peer_key"),
        Columns(
            {
                "gateway_id": [gateway_id] * len(changed),
                "peer_key": [c.peer_key for c in changed],
                "rx_bytes": [c.rx_bytes for c in changed],
                "tx_bytes": [c.tx_bytes for c in changed],
                "endpoint": [c.endpoint for c in changed],
                "last_active_at": [c.last_active_at for c in changed],
            }
        ),
    )
    opened = result.opened
    insert_rows(
        session,
        t,
        Columns(
            {
                "tenant_id": [c.tenant_id for c in opened],
                "peer_key": [c.peer_key for c in opened],
                "peer_kind": [c.peer_kind for c in opened],
                "peer_ref": [c.peer_ref for c in opened],
                "device_id": [c.device_id for c in opened],
                "user_id": [c.user_id for c in opened],
                "endpoint": [c.endpoint for c in opened],
                "started_at": [c.started_at for c in opened],
                "last_active_at": [c.last_active_at for c in opened],
                "rx_bytes": [c.rx_bytes for c in opened],
                "tx_bytes": [c.tx_bytes for c in opened],
            },
            same={"gateway_id": gateway_id, "pop_id": pop_id},
        ),
    )
    close_stale(session, now, exclude=gateway_id)
    return result, result.after(current)


def close_stale(session: Session, now: datetime, *, exclude: uuid.UUID | None = None) -> int:
    """End the sessions of gateways that stopped reporting: those whose last report arrived
    more than :data:`STALE` ago by the server's clock (at most :data:`SWEEP_BATCH` sessions).

    A gateway's open sessions are written only under its row's lock (:func:`track_report`
    runs in the report's transaction, which took it first), so the sweep locks the quiet
    gateways' rows too, skipping those locked by a report in progress: no ``FOR UPDATE`` on
    each session row, and no index on their ``last_active_at`` that every report's update
    would have to maintain."""
    t = OPEN_CONNECTIONS
    g = _GATEWAYS
    quiet = (
        select(g.c.id)
        .where(
            g.c.last_seen_at < now - STALE,
            exists().where(t.c.gateway_id == g.c.id),
        )
        .order_by(g.c.last_seen_at)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    )
    if exclude is not None:
        quiet = quiet.where(g.c.id != exclude)
    gateways = list(session.scalars(quiet))
    if not gateways:
        return 0
    stale = session.execute(
        select(t)
        .where(t.c.gateway_id.in_(gateways))
        .order_by(t.c.last_active_at, t.c.id)
        .limit(SWEEP_BATCH)
    ).all()
    session.execute(delete(t).where(t.c.id.in_([row.id for row in stale])))
    for row in stale:
        _close(session, _conn(row), row.gateway_id, row.pop_id)
    return len(stale)
