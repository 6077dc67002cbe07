"""The peers of the desired states sent to each agent: what its usage reports may carry.

Whenever the control plane answers an agent's ``GET /gateway/desired-state``, it records the
peers of that state for the agent in ``gateway_peers``, one row per (tenant, public key,
kind, reference). A usage report's row counts only when the same four values are recorded for
the reporting agent (:func:`known_peers`); anything else (another PoP's or tenant's device, a
key never sent, a connector reporting devices) is dropped by :mod:`tongdao.gateway.usage`.

A peer missing from a later state is not forgotten at once: its row gets ``removed_at`` (when
the first state without it was sent) and stays acceptable for :data:`RECENTLY_REMOVED`, so the
bytes it moved before the agent applied its removal (sampled, then sent with the next report,
possibly retried through a short outage) still count. Rows removed longer ago are deleted the
next time a state is sent. A peer that comes back is live again.

The recording is cheap on the long-poll path: a process-local note of the version last
recorded per agent skips the store entirely while nothing changed; when the store holds the
version this process recorded last, only the difference is written; otherwise (another
replica answered in between, a restart) the agent's rows are read and diffed in full. Two
compilations at one version give the same peers (the delta protocol relies on it too).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from tongdao.gateway.desired import DesiredState
from tongdao.gateway.models import Gateway, GatewayPeer
from tongdao.runtime import Ctx, Runtime

RECENTLY_REMOVED = timedelta(hours=1)
_IN_BATCH = 500

Ident = tuple[uuid.UUID, str, str, str]  # tenant, public key, kind, reference
PEERS = cast(Table, GatewayPeer.__table__)


def identities(state: DesiredState) -> frozenset[Ident]:
    return frozenset(
        (t.tenant_id, p.public_key, p.kind, p.ref) for t in state.tenants for p in t.peers
    )


class _Recorded:
    """Per agent, the version and peers this process last recorded (bounded)."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._data: OrderedDict[uuid.UUID, tuple[int, frozenset[Ident]]] = OrderedDict()
        self._limit = limit

    def get(self, gateway_id: uuid.UUID) -> tuple[int, frozenset[Ident]] | None:
        with self._lock:
            return self._data.get(gateway_id)

    def put(self, gateway_id: uuid.UUID, version: int, peers: frozenset[Ident]) -> None:
        with self._lock:
            self._data.pop(gateway_id, None)
            self._data[gateway_id] = (version, peers)
            while len(self._data) > self._limit:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


RECORDED = _Recorded()


def _where_ident(idents: Iterable[Ident]) -> list[dict[str, object]]:
    return [
        {"b_tenant": tenant, "b_key": key, "b_kind": kind, "b_ref": ref}
        for tenant, key, kind, ref in idents
    ]


_MATCH = and_(
    PEERS.c.gateway_id == bindparam("b_gateway"),
    PEERS.c.peer_key == bindparam("b_key"),
    PEERS.c.tenant_id == bindparam("b_tenant"),
    PEERS.c.peer_kind == bindparam("b_kind"),
    PEERS.c.peer_ref == bindparam("b_ref"),
)


def _rows(
    session: Session, gateway_id: uuid.UUID, keys: Iterable[str] | None = None
) -> dict[Ident, datetime | None]:
    """The agent's recorded peers (only those with these keys, when given) → removed_at."""
    t = PEERS
    columns = (t.c.tenant_id, t.c.peer_key, t.c.peer_kind, t.c.peer_ref, t.c.removed_at)
    out: dict[Ident, datetime | None] = {}
    if keys is None:
        batches: list[list[str] | None] = [None]
    else:
        wanted = sorted(set(keys))
        batches = [wanted[i : i + _IN_BATCH] for i in range(0, len(wanted), _IN_BATCH)]
    for batch in batches:
        stmt = select(*columns).where(t.c.gateway_id == gateway_id)
        if batch is not None:
            stmt = stmt.where(t.c.peer_key.in_(batch))
        for tenant, key, kind, ref, removed in session.execute(stmt):
            out[(tenant, key, kind, ref)] = removed
    return out


def record(session: Session, gateway_id: uuid.UUID, state: DesiredState, now: datetime) -> bool:
    """Record ``state`` as sent to the agent, in the caller's transaction; False when the
    store already held this version for it."""
    stored = session.scalar(
        select(Gateway.sent_version).where(Gateway.id == gateway_id).with_for_update()
    )
    if stored is not None and stored == state.version:
        return False
    new = identities(state)
    cached = RECORDED.get(gateway_id)
    if cached is not None and stored is not None and cached[0] == stored:
        live = cached[1]
        added = new - live
        dead = {i for i, r in _rows(session, gateway_id, (i[1] for i in added)).items() if r}
    else:
        rows = _rows(session, gateway_id)
        live = frozenset(i for i, removed in rows.items() if removed is None)
        added = new - live
        dead = {i for i, removed in rows.items() if removed is not None}
    gone = live - new
    t = PEERS
    if gone:
        session.execute(
            update(t).where(_MATCH).values(removed_at=now),
            [{"b_gateway": gateway_id, **p} for p in _where_ident(gone)],
        )
    revived = added & dead
    if revived:
        session.execute(
            update(t).where(_MATCH).values(removed_at=None),
            [{"b_gateway": gateway_id, **p} for p in _where_ident(revived)],
        )
    fresh = added - dead
    if fresh:
        session.execute(
            insert(t),
            [
                {
                    "gateway_id": gateway_id,
                    "tenant_id": tenant,
                    "peer_key": key,
                    "peer_kind": kind,
                    "peer_ref": ref,
                    "removed_at": None,
                }
                for tenant, key, kind, ref in fresh
            ],
        )
    session.execute(
        delete(t).where(t.c.gateway_id == gateway_id, t.c.removed_at < now - RECENTLY_REMOVED)
    )
    session.execute(
        update(Gateway)  # telemetry: a Core UPDATE, not an audited change
        .where(Gateway.id == gateway_id)
        .values(sent_version=state.version)
        .execution_options(synchronize_session=False)
    )
    return True


def record_sent(runtime: Runtime, gateway_id: uuid.UUID, state: DesiredState) -> None:
    """Record the state just sent to the agent (its own transaction); a no-op while this
    process knows the store holds it already."""
    cached = RECORDED.get(gateway_id)
    if cached is not None and cached[0] == state.version:
        return
    with runtime.db.session() as session:
        record(session, gateway_id, state, runtime.clock())
        session.commit()
    RECORDED.put(gateway_id, state.version, identities(state))


def known_peers(
    session: Session, gateway_id: uuid.UUID, keys: Iterable[str], now: datetime
) -> set[Ident]:
    """Of the agent's recorded peers with these keys, those live or removed recently."""
    since = now - RECENTLY_REMOVED
    return {
        ident
        for ident, removed in _rows(session, gateway_id, keys).items()
        if removed is None or removed >= since
    }


def ensure_recorded(ctx: Ctx, gateway: Gateway) -> None:
    """For an agent with nothing recorded yet (its states were sent by a server before this
    one was installed), record the state it would be sent now, so its first reports after
    the upgrade are not dropped."""
    if gateway.sent_version is not None:
        return
    from tongdao.gateway import service
    from tongdao.gateway.changes import current_version
    from tongdao.network.models import Pop, Site

    session = ctx.session
    version = current_version(session)
    state: DesiredState | None = None
    if gateway.site_id is not None:
        site = session.get(Site, gateway.site_id)
        if site is not None:
            state = service.compile_connector(ctx, site, version)
    elif gateway.pop_id is not None:
        pop = session.get(Pop, gateway.pop_id)
        if pop is not None:
            state = service.compile_desired(ctx, pop, version)
    if state is not None:
        record(session, gateway.id, state, ctx.runtime.clock())
