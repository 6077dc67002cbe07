"""The two ends of a cross-border link: measured and billed at the domestic end, the overseas
end kept for reconciliation.

**Why.** Traffic over a registered cross-border link passes two PoP gateways, one in China and
one abroad, and each counts it on its tenant peers (:mod:`tongdao.agent.xborder`): a device
in China that sends 3 MB to its company's HQ abroad is ``rx`` 3 MB (all cross-border) on the
device's row at the Beijing gateway and ``tx`` 3 MB (all cross-border) on the HQ connector's
row at the gateway abroad. Added up, the tenant's totals, quotas and invoices counted the
bytes twice.

**The rule.** Cross-border bytes are measured and billed at the **domestic end**: the PoP in
China (country :data:`~tongdao.network.service.HOME_COUNTRY`), where the licence and the
approved international gateway are, and where they are attributed to the China-side peer of
the transfer: per peer, the nftables counters of the gateway count the inner packets routed
between that peer's addresses (its allowed IPs) and the link peer, so the upload of a device
(``cross_border_rx_bytes``) and what comes back to it (``cross_border_tx_bytes``) go to that
device, and through it to its owner (:mod:`tongdao.gateway.ledger`: the owner at report time),
or to the site in China whose connector sent or received them. Traffic between a device homed
abroad and a site in China is therefore the site's. A gateway at a PoP **abroad** is the
overseas end of every cross-border link it has (a link between two PoPs abroad does not cross
the border, and their peers have no cross-border counters): the cross-border part of its tenant
peers' rows (device, site) is taken out of the ledger (the row keeps only its bytes that stay
abroad, with no cross-border part) and kept in :class:`UsageOverseasHourly` instead, which no
tenant total, quota or invoice reads. The raw ``usage_records`` keep the rows as reported.

**Reconciliation** (:func:`reconcile`, ``GET /links/{id}/usage/reconciliation``, operator
staff): per Asia/Shanghai day and tenant, the bytes of the link's domestic end (billed) beside
those of its overseas end (kept), as outbound (China to abroad: received from the domestic
peers, delivered to the overseas ones) and inbound, and the difference. The counters are per
tenant peer, not per link: an end whose PoP has other cross-border links shows those too
(``other_links`` says how many).

An end is decided by its PoP's country when the report is stored (the ledger) or read (the raw
records' totals): PoPs do not move across the border.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Index, String, case, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tongdao.billing.money import SHANGHAI, day_start_utc
from tongdao.gateway.models import TENANT_KINDS, Gateway, UsageRecord, UsageTenantHourly
from tongdao.gateway.periods import as_utc, exact_sum, joined
from tongdao.network.models import Link, Pop
from tongdao.store.base import Base


class UsageOverseasHourly(Base):
    """Cross-border bytes the overseas end of a link reported for a tenant's peers, per hour
    (UTC start of an Asia/Shanghai hour) × tenant × gateway × peer kind: for reconciliation
    with the domestic end only, never in a tenant's totals, quotas or invoices."""

    __tablename__ = "usage_overseas_hourly"
    __table_args__ = (Index("ix_usage_overseas_hourly_pop_hour", "pop_id", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    gateway_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    peer_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    pop_id: Mapped[uuid.UUID | None]
    cross_border_rx_bytes: Mapped[int] = mapped_column(BigInteger)
    cross_border_tx_bytes: Mapped[int] = mapped_column(BigInteger)


def is_overseas(session: Session, pop_id: uuid.UUID | None) -> bool:
    """Whether a gateway of this PoP is the overseas end of its cross-border links."""
    from tongdao.network.service import HOME_COUNTRY

    if pop_id is None:
        return False
    country = session.scalar(select(Pop.country).where(Pop.id == pop_id))
    return country is not None and country != HOME_COUNTRY


def abroad_without_link(session: Session, pop_id: uuid.UUID | None) -> bool:
    """Whether the PoP is abroad and joined to no PoP in China by a link: its gateways carry
    no cross-border bytes (a row claiming some is refused when screening a report, since
    the overseas end's cross-border part is taken out of the tenant's ledger)."""
    from tongdao.network.service import HOME_COUNTRY

    if not is_overseas(session, pop_id):
        return False
    home = select(Pop.id).where(Pop.country == HOME_COUNTRY)
    crossing = select(Link.id).where(
        or_(
            (Link.pop_a_id == pop_id) & Link.pop_b_id.in_(home),
            (Link.pop_b_id == pop_id) & Link.pop_a_id.in_(home),
        )
    )
    return session.scalar(crossing.limit(1)) is None


def overseas_gateways() -> Any:
    """SQL: the ids of the gateways of PoPs abroad (the overseas ends)."""
    from tongdao.network.service import HOME_COUNTRY

    return select(Gateway.id).join(Pop, Pop.id == Gateway.pop_id).where(Pop.country != HOME_COUNTRY)


def kept_overseas(column: Any) -> ColumnElement[int]:
    """SQL over ``usage_records``: the part of a cross-border column (``column``) that an
    overseas end reported for a tenant peer, 0 otherwise; subtracted from rx / tx it leaves
    what the tenant is counted for."""
    return case(
        (
            (UsageRecord.gateway_id.in_(overseas_gateways()))
            & UsageRecord.peer_kind.in_(TENANT_KINDS),
            column,
        ),
        else_=0,
    )


# --- reconciliation --------------------------------------------------------------------------
@dataclass
class EndsRow:
    day: date
    tenant_id: uuid.UUID
    domestic_outbound_bytes: int = 0
    domestic_inbound_bytes: int = 0
    overseas_outbound_bytes: int = 0
    overseas_inbound_bytes: int = 0


@dataclass
class Ends:
    domestic_pop_id: uuid.UUID | None
    overseas_pop_id: uuid.UUID | None
    other_links: int
    rows: list[EndsRow]


def _hours(
    session: Session, model: Any, pop_id: uuid.UUID, start: date, end: date
) -> Iterable[tuple[uuid.UUID, date, int, int]]:
    """Per tenant and Asia/Shanghai day: the cross-border rx and tx of the PoP's tenant peers."""
    stmt = (
        select(
            model.tenant_id,
            model.hour,
            *exact_sum(model.cross_border_rx_bytes),
            *exact_sum(model.cross_border_tx_bytes),
        )
        .where(
            model.pop_id == pop_id,
            model.peer_kind.in_(TENANT_KINDS),
            model.hour >= day_start_utc(start),
            model.hour < day_start_utc(end + timedelta(days=1)),
        )
        .group_by(model.tenant_id, model.hour)
    )
    for tenant_id, hour, rx_high, rx_low, tx_high, tx_low in session.execute(stmt):
        start_utc = as_utc(hour)
        assert start_utc is not None  # a key column
        yield (
            tenant_id,
            start_utc.astimezone(SHANGHAI).date(),
            joined(rx_high, rx_low),
            joined(tx_high, tx_low),
        )


def reconcile(session: Session, link: Link, start: date, end: date) -> Ends:
    """The link's two ends over the Asia/Shanghai days ``start..end`` (both included), per
    day and tenant (see the module). A link that does not cross the border has no rows."""
    from tongdao.network.service import HOME_COUNTRY

    pops = {
        pop.id: pop
        for pop in session.scalars(select(Pop).where(Pop.id.in_([link.pop_a_id, link.pop_b_id])))
    }
    home = [p for p in pops.values() if p.country == HOME_COUNTRY]
    abroad = [p for p in pops.values() if p.country != HOME_COUNTRY]
    if len(home) != 1 or len(abroad) != 1:
        return Ends(home[0].id if len(home) == 1 else None, None, 0, [])
    domestic, overseas = home[0].id, abroad[0].id
    others: int = 0
    for other in session.scalars(
        select(Link).where(
            Link.id != link.id,
            or_(
                Link.pop_a_id.in_([domestic, overseas]),
                Link.pop_b_id.in_([domestic, overseas]),
            ),
        )
    ):
        ends = session.scalars(
            select(Pop.country).where(Pop.id.in_([other.pop_a_id, other.pop_b_id]))
        ).all()
        if len({c == HOME_COUNTRY for c in ends}) == 2:
            others += 1
    rows: dict[tuple[date, uuid.UUID], EndsRow] = {}

    def row(day: date, tenant_id: uuid.UUID) -> EndsRow:
        return rows.setdefault((day, tenant_id), EndsRow(day, tenant_id))

    # Domestic end: rx is what its peers in China sent abroad (outbound), tx what came back.
    for tenant_id, day, rx, tx in _hours(session, UsageTenantHourly, domestic, start, end):
        r = row(day, tenant_id)
        r.domestic_outbound_bytes += rx
        r.domestic_inbound_bytes += tx
    # Overseas end: tx is what it delivered to its peers abroad (outbound from China).
    for tenant_id, day, rx, tx in _hours(session, UsageOverseasHourly, overseas, start, end):
        r = row(day, tenant_id)
        r.overseas_outbound_bytes += tx
        r.overseas_inbound_bytes += rx
    kept = [
        r
        for r in rows.values()
        if r.domestic_outbound_bytes
        or r.domestic_inbound_bytes
        or r.overseas_outbound_bytes
        or r.overseas_inbound_bytes
    ]
    kept.sort(key=lambda r: (r.day, str(r.tenant_id)))
    return Ends(domestic, overseas, others, kept)
