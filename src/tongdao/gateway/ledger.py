"""The usage ledger: hourly rollups of the gateways' reports, written with the report.

**What is written.** For every report stored (:func:`tongdao.gateway.usage.store_report`), in
the same transaction as its raw rows, the peers' bytes are added (upsert: insert, or add to
the existing row) to

* ``usage_hourly``: per hour × tenant × peer (``peer_kind`` device / site / pop,
  ``peer_ref``) × gateway, with the gateway's PoP and the device's owner;
* ``usage_tenant_hourly``: per hour × tenant × gateway × peer kind (the same bytes summed over
  peers), which tenant, PoP and billing figures read.

Each row holds ``rx_bytes`` / ``tx_bytes`` (received from / sent to the peer) and the parts of
them carried over a registered cross-border link (``cross_border_rx_bytes`` /
``cross_border_tx_bytes``, measured on the gateway and reported per peer); **domestic** is the
total less the cross-border part.

**Hours and periods.** A report covers a period (30 s normally); its bytes go wholly to the
hour that holds the period's end, hours taken as ``(start, start + 1 h]`` as the raw records'
windows are (``since < period_end <= until``). So a report whose period spans a midnight in
Asia/Shanghai counts on the day its period ends (a period ending at 00:00:00 exactly still
counts on the day before). Hours are stored as their UTC start: Asia/Shanghai is UTC+8 without
daylight saving, so its hours are UTC hours, and its days and months are sums of whole hours
(``[D 00:00+08, D+1 00:00+08)``). No UTC day is used anywhere in the ledger.

**Attribution to a user.** A device's bytes go to the device's owner (``devices.user_id``):
on a PoP gateway's report, the owner its connection session was opened with (looked up in
``devices`` when the session started, :mod:`tongdao.audit.sessions`; the report's
transaction holds them all), otherwise the owner at the time the report is stored; on a later
report of the same hour the row's owner is set again. Devices do not change owners today; if
they ever do, the hours of a session that began before the change go to the owner it began
with, as its connection record does. Site and transit peers have no owner. (Taking the
sessions' owners spares PostgreSQL a lookup of every device row of every report: about
5 µs of its CPU a row, ``bench/README.md``.)

**Two ends of one link.** Cross-border bytes are reported by the gateways at both ends of a
registered link; they are counted at the domestic end (the PoP in China) only. A report of a
gateway abroad goes into the ledger without the cross-border part of its tenant peers' rows
(rx / tx less it, no cross-border part); that part is kept in ``usage_overseas_hourly`` for
reconciliation, which no total reads (:mod:`tongdao.gateway.xbends`).

**Daily and monthly figures are sums over hours**, not tables of their own: the per-tenant
table has one row per hour, gateway and kind whatever the tenant's device count, so a tenant's
month is at most 744 × gateways × 3 rows (``bench/ledger.py`` measures the month's query for a
tenant of 10,000 devices), and a device's or user's month is 744 rows per device and gateway.
Keeping them apart from tables of days and months means one write per peer per report, not
three, and nothing to keep consistent.

**Exactly once.** The rollup is written only when the report is stored (its seq moved the
gateway's ``last_report_seq`` forward under the gateway's row lock), in the same transaction,
so a replayed, duplicated or concurrent report adds nothing to the ledger as it adds no raw
rows; rows the screening drops are not rolled up either.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from tongdao.gateway.models import TENANT_KINDS, UsageHourly, UsageTenantHourly
from tongdao.gateway.periods import exact_sum, joined
from tongdao.gateway.xbends import UsageOverseasHourly
from tongdao.network.models import Device
from tongdao.store.bulk import Columns, in_values, is_postgresql, upsert_rows

HOUR = timedelta(hours=1)
BYTES = ("rx_bytes", "tx_bytes", "cross_border_rx_bytes", "cross_border_tx_bytes")

_DEVICES = cast(Table, Device.__table__)  # Core reads: no ORM loading for a lookup


class PeerBytes(Protocol):
    tenant_id: uuid.UUID
    peer_kind: Any
    peer_ref: Any  # the id, as text or UUID
    rx_bytes: int
    tx_bytes: int
    cross_border_rx_bytes: int
    cross_border_tx_bytes: int


def hour_of(period_end: datetime) -> datetime:
    """The start (UTC) of the hour ``(start, start + 1 h]`` that holds ``period_end``."""
    end = period_end.astimezone(UTC) - timedelta(microseconds=1)
    return end.replace(minute=0, second=0, microsecond=0)


def device_owners(
    session: Session, device_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """Each of these devices that exists, with its owner today (None: no owner); one query
    on PostgreSQL (see :func:`tongdao.store.bulk.in_values`)."""
    out: dict[uuid.UUID, uuid.UUID | None] = {}
    for condition in in_values(session, _DEVICES.c.id, sorted(set(device_ids))):
        for device_id, user_id in session.execute(
            select(_DEVICES.c.id, _DEVICES.c.user_id).where(condition)
        ):
            out[device_id] = user_id
    return out


def owners(session: Session, device_ids: Sequence[str]) -> dict[str, uuid.UUID]:
    """The owner of each device (id as text) today."""
    found = device_owners(session, (uuid.UUID(d) for d in device_ids))
    return {str(device_id): user for device_id, user in found.items() if user is not None}


def _per_kind(
    sums: Mapping[tuple[uuid.UUID, str], Sequence[int]], names: Sequence[str], same: dict[str, Any]
) -> Columns:
    """Rows per (tenant, peer kind), in key order, of the byte columns ``names`` (each
    key's sums in that order)."""
    keys = sorted(sums)
    return Columns(
        {
            "tenant_id": [tenant for tenant, _kind in keys],
            "peer_kind": [kind for _tenant, kind in keys],
            **{name: [sums[k][n] for k in keys] for n, name in enumerate(names)},
        },
        same=same,
    )


def _upsert(session: Session, model: type[Any], keys: Sequence[str], rows: Columns) -> None:
    """Insert the rows, or add their bytes to the rows already there (and take the owner)."""
    columns = model.__table__.c
    replace = ("owner_id",) if "owner_id" in columns else ()
    add = [name for name in BYTES if name in columns]
    upsert_rows(session, model, keys, rows, add=add, replace=replace)


# A device row's owner today (peer_ref is the device id as text; other kinds have none).
_OWNER_SQL = (
    "CASE WHEN u.peer_kind = 'device' THEN "
    "(SELECT d.user_id FROM devices d WHERE d.id = CAST(u.peer_ref AS uuid)) END"
)


def roll_up(
    session: Session,
    gateway_id: uuid.UUID,
    pop_id: uuid.UUID | None,
    peers: Sequence[PeerBytes],
    period_end: datetime,
    known_owners: Mapping[str, uuid.UUID | None] | None = None,
    *,
    overseas: bool = False,
) -> int:
    """Add the stored peers' bytes to the hour of ``period_end`` (see the module); the
    number of per-peer rows written. ``known_owners``: device id (text) → owner, from the
    report's connection sessions; devices not in it are looked up. ``overseas``: the gateway
    is the overseas end of its cross-border links (its tenant peers' cross-border bytes are
    kept apart). Runs in the caller's transaction."""
    if not peers:
        return 0
    hour = hour_of(period_end)
    # One pass, column by column (this runs once a row of every report): a peer's bytes go
    # to its row's position, the kind's sums to the (tenant, kind) totals. Rows keep the
    # report's order: every key holds the gateway, whose reports are serial (its row lock),
    # so no two transactions write the same rows in different orders.
    position: dict[tuple[uuid.UUID, str, str], int] = {}
    tenant_ids: list[uuid.UUID] = []
    refs: list[str] = []
    kinds: list[str] = []
    rx: list[int] = []
    tx: list[int] = []
    xrx: list[int] = []
    xtx: list[int] = []
    per_kind: dict[tuple[uuid.UUID, str], list[int]] = {}
    far: dict[tuple[uuid.UUID, str], list[int]] = {}
    for peer in peers:
        tenant, kind, ref = peer.tenant_id, str(peer.peer_kind), str(peer.peer_ref)
        prx, ptx = peer.rx_bytes, peer.tx_bytes
        pxrx, pxtx = peer.cross_border_rx_bytes, peer.cross_border_tx_bytes
        if overseas and kind in TENANT_KINDS and (pxrx or pxtx):
            apart = far.get((tenant, kind))
            if apart is None:
                apart = far[(tenant, kind)] = [0, 0]
            apart[0] += pxrx
            apart[1] += pxtx
            prx, ptx, pxrx, pxtx = prx - pxrx, ptx - pxtx, 0, 0
        key = (tenant, ref, kind)
        i = position.get(key)
        if i is None:
            position[key] = len(refs)
            tenant_ids.append(tenant)
            refs.append(ref)
            kinds.append(kind)
            rx.append(prx)
            tx.append(ptx)
            xrx.append(pxrx)
            xtx.append(pxtx)
        else:
            rx[i] += prx
            tx[i] += ptx
            xrx[i] += pxrx
            xtx[i] += pxtx
        sums = per_kind.get((tenant, kind))
        if sums is None:
            sums = per_kind[(tenant, kind)] = [0, 0, 0, 0]
        sums[0] += prx
        sums[1] += ptx
        sums[2] += pxrx
        sums[3] += pxtx
    same = {"hour": hour, "gateway_id": gateway_id, "pop_id": pop_id}
    values: dict[str, list[Any]] = {
        "tenant_id": tenant_ids,
        "peer_ref": refs,
        "peer_kind": kinds,
        "rx_bytes": rx,
        "tx_bytes": tx,
        "cross_border_rx_bytes": xrx,
        "cross_border_tx_bytes": xtx,
    }
    given = known_owners or {}
    devices = [r for r, k in zip(refs, kinds, strict=True) if k == "device"]
    missing = [r for r in devices if r not in given]
    if missing and is_postgresql(session):
        # The owners looked up by the database, in the same statement.
        hourly = Columns(values, same=same, derived={"owner_id": _OWNER_SQL})
    else:
        owner = {**given, **owners(session, missing)} if missing else given
        values["owner_id"] = [
            owner.get(r) if k == "device" else None for r, k in zip(refs, kinds, strict=True)
        ]
        hourly = Columns(values, same=same)
    _upsert(
        session,
        UsageHourly,
        ("tenant_id", "peer_ref", "hour", "peer_kind", "gateway_id"),
        hourly,
    )
    per_tenant = ("tenant_id", "hour", "gateway_id", "peer_kind")
    _upsert(session, UsageTenantHourly, per_tenant, _per_kind(per_kind, BYTES, same))
    if far:
        _upsert(session, UsageOverseasHourly, per_tenant, _per_kind(far, BYTES[2:], same))
    return len(hourly)


def tenant_bytes(
    session: Session, tenant_id: uuid.UUID, start: datetime, end: datetime
) -> dict[str, int]:
    """The tenant's bytes (its device and site peers; transit left out) in the hours
    ``[start, end)``, per column of :data:`BYTES`: what billing charges from."""
    t = UsageTenantHourly
    aggregates = [agg for name in BYTES for agg in exact_sum(getattr(t, name))]
    row = session.execute(
        select(*aggregates).where(
            t.tenant_id == tenant_id,
            t.peer_kind.in_(TENANT_KINDS),
            t.hour >= start,
            t.hour < end,
        )
    ).one()
    return {name: joined(row[2 * i], row[2 * i + 1]) for i, name in enumerate(BYTES)}
