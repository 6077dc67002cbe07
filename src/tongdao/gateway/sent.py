"""The peers of the desired states sent to each agent: what its usage reports may carry.

Whenever the control plane answers an agent's ``GET /gateway/desired-state``, it records the
peers of that state for the agent in ``gateway_peers``, one row per (tenant, public key,
kind, reference). A usage report's row counts only when the same four values are recorded for
the reporting agent (:func:`reportable_peers`); anything else (another PoP's or tenant's device, a
key never sent, a connector reporting devices) is dropped by :mod:`tongdao.gateway.usage`.

A peer missing from a later state is not forgotten at once: its row gets ``removed_at`` (when
the first state without it was sent) and stays acceptable for :data:`RECENTLY_REMOVED`, so the
bytes it moved before the agent applied its removal (sampled, then sent with the next report,
possibly retried through a short outage) still count. Rows removed longer ago are deleted the
next time a state is sent. A peer that comes back is live again.

The recording is cheap on the long-poll path: a process-local note of the version last
recorded per agent skips the store entirely while nothing changed; when the store holds the
version of the state this process sent the agent before, only the difference between the two
states is written (:func:`changes`, a merge walk of mostly identity checks: about 3 ms for one
changed device among 10,000 peers, where the delta's ``diff`` takes about 30); otherwise
(another replica answered in between, a restart) the agent's rows are read and diffed in full.
Two compilations at one version give the same peers (the delta protocol relies on it too).

Why 1 hour: the agent samples every 30 s and sends what it sampled at once, retrying through
failures; a peer's last bytes are therefore reported within a minute or two of the agent
applying its removal, which itself follows the state that removed it within seconds. An hour
covers a control plane restart or a short outage between the two without keeping a revoked
device reportable for long.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, Table, and_, bindparam, delete, insert, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from tongdao.copies import Copies
from tongdao.gateway.desired import DesiredState, Peer, peer_order
from tongdao.gateway.models import Gateway, GatewayPeer
from tongdao.runtime import Ctx, Runtime

RECENTLY_REMOVED = timedelta(hours=1)
_IN_BATCH = 500

Ident = tuple[uuid.UUID, str, str, str]  # tenant, public key, kind, reference
PEERS = cast(Table, GatewayPeer.__table__)
GATEWAYS = cast(Table, Gateway.__table__)


def identities(state: DesiredState) -> frozenset[Ident]:
    return frozenset(
        (t.tenant_id, p.public_key, p.kind, p.ref) for t in state.tenants for p in t.peers
    )


def changes(before: DesiredState, new: DesiredState) -> tuple[set[Ident], set[Ident]]:
    """The peers ``new`` adds to ``before`` and those it drops, per tenant interface."""
    old = {t.tenant_id: t for t in before.tenants}
    added: set[Ident] = set()
    gone: set[Ident] = set()
    for tenant in new.tenants:
        was = old.pop(tenant.tenant_id, None)
        plus, minus = _peer_changes(was.peers if was is not None else (), tenant.peers)
        added.update((tenant.tenant_id, *i) for i in plus)
        gone.update((tenant.tenant_id, *i) for i in minus)
    for was in old.values():
        gone.update((was.tenant_id, p.public_key, p.kind, p.ref) for p in was.peers)
    return added, gone


def _peer_changes(
    a: tuple[Peer, ...], b: tuple[Peer, ...]
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(key, kind, reference) of the peers of ``b`` not in ``a``, and of ``a`` not in ``b``.

    One merge walk in :func:`peer_order` (the order compiled states have) whose steps are
    mostly identity checks, since the compiler reuses unchanged peers: a change of one device
    on a PoP of 10,000 hashes no 10,000-element sets. The walk only pairs peers that are equal
    in (key, kind, reference); on input in another order it may leave a peer present on both
    sides unpaired, which then shows as both added and dropped, and is taken out."""
    if a is b:
        return set(), set()
    plus: set[tuple[str, str, str]] = set()
    minus: set[tuple[str, str, str]] = set()
    i = j = 0
    while i < len(a) and j < len(b):
        x, y = a[i], b[j]
        if x is y:
            i, j = i + 1, j + 1
            continue
        kx, ky = peer_order(x), peer_order(y)
        if kx == ky:
            i, j = i + 1, j + 1
        elif kx < ky:
            minus.add((x.public_key, x.kind, x.ref))
            i += 1
        else:
            plus.add((y.public_key, y.kind, y.ref))
            j += 1
    minus.update((p.public_key, p.kind, p.ref) for p in a[i:])
    plus.update((p.public_key, p.kind, p.ref) for p in b[j:])
    both = plus & minus
    return plus - both, minus - both


class _Recorded:
    """Per agent, the version this process last recorded (bounded), to skip the store."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._data: OrderedDict[uuid.UUID, int] = OrderedDict()
        self._limit = limit

    def get(self, gateway_id: uuid.UUID) -> int | None:
        with self._lock:
            return self._data.get(gateway_id)

    def put(self, gateway_id: uuid.UUID, version: int) -> None:
        with self._lock:
            self._data.pop(gateway_id, None)
            self._data[gateway_id] = version
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


def record(
    session: Session,
    gateway_id: uuid.UUID,
    state: DesiredState,
    now: datetime,
    before: DesiredState | None = None,
) -> bool:
    """Record ``state`` as sent to the agent, in the caller's transaction; False when the
    store already held this version for it. ``before``, the state this process sent the
    agent last, spares reading all its rows when the store holds that one."""
    stored = session.scalar(
        select(Gateway.sent_version).where(Gateway.id == gateway_id).with_for_update()
    )
    if stored is not None and stored == state.version:
        return False
    if before is not None and stored is not None and stored == before.version:
        added, gone = changes(before, state)
        found = _rows(session, gateway_id, (i[1] for i in added)) if added else {}
        dead = {i for i, removed in found.items() if removed is not None}
    else:
        new = identities(state)
        rows = _rows(session, gateway_id)
        live = {i for i, removed in rows.items() if removed is None}
        dead = {i for i, removed in rows.items() if removed is not None}
        added, gone = set(new - live), live - new
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


def record_sent(
    runtime: Runtime,
    gateway_id: uuid.UUID,
    state: DesiredState,
    before: DesiredState | None = None,
) -> None:
    """Record the state just sent to the agent (its own transaction); a no-op while this
    process knows the store holds it already."""
    if RECORDED.get(gateway_id) == state.version:
        return
    with runtime.db.session() as session:
        record(session, gateway_id, state, runtime.clock(), before)
        session.commit()
    RECORDED.put(gateway_id, state.version)


_ABSENT: Any = object()


class Reportable:
    """The identities a report of one agent may carry now: its recorded peers, live or
    removed within :data:`RECENTLY_REMOVED`."""

    def __init__(self, peers: dict[Ident, datetime | None], now: datetime) -> None:
        self.peers = peers  # identity → removed_at (None: live)
        self.since = now - RECENTLY_REMOVED  # removed at or after this: still reportable

    def __contains__(self, ident: object) -> bool:
        removed = self.peers.get(ident, _ABSENT)  # type: ignore[call-overload]
        return removed is None or (removed is not _ABSENT and removed >= self.since)


# Per agent, its recorded peers at the version last sent. The rows of ``gateway_peers`` change
# only with ``gateways.sent_version`` (:func:`record` writes both in one transaction), so a
# version read from the store says whether the copy holds.
KNOWN: Copies[dict[Ident, datetime | None]] = Copies()


def reportable_peers(
    session: Session, gateway_id: uuid.UUID, version: int | None, now: datetime
) -> Reportable:
    """The peers the agent's report may carry (see :class:`Reportable`): from this process's
    copy when it is of the ``version`` the store holds, else read in one statement (the
    version with the rows, so they match) and kept."""
    if version is not None:
        cached = KNOWN.get(gateway_id, version)
        if cached is not None:
            return Reportable(cached, now)
    t, g = PEERS, GATEWAYS
    stmt = (
        select(
            g.c.sent_version,
            sql_cast(t.c.tenant_id, String),
            t.c.peer_key,
            t.c.peer_kind,
            t.c.peer_ref,
            t.c.removed_at,
        )
        .select_from(g.outerjoin(t, t.c.gateway_id == g.c.id))
        .where(g.c.id == gateway_id)
    )
    tenants: dict[str, uuid.UUID] = {}
    peers: dict[Ident, datetime | None] = {}
    read: int | None = None
    for sent, raw, key, kind, ref, removed in session.execute(stmt):
        read = sent
        if key is None:
            continue
        tenant = tenants.get(raw)
        if tenant is None:
            tenant = tenants[raw] = uuid.UUID(raw)
        peers[(tenant, key, kind, ref)] = removed
    if read is not None:
        KNOWN.put(gateway_id, read, peers)
    return Reportable(peers, now)


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
