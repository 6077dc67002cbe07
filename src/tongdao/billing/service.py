"""Billing on the store: plans, subscriptions, the monthly run, invoice states, payments.

**Numbers without gaps.** Invoice and credit-note numbers come from rows of
``billing_number_series`` (one series per document kind; one operator per deployment). A
number is taken with an ``UPDATE ... SET last_value = last_value + 1 ... RETURNING`` inside the
transaction that writes the document, and the document commits or rolls back with it: a run
killed or failing mid-way rolls the counter back too, so no number is lost. The update locks
the series row until commit (PostgreSQL; SQLite has one writer at a time), so concurrent runs
take numbers one after another, and the tenant's invoice for the month is looked for only
after the lock is held: a second run finds the first one's invoice and rolls back (its number
with it). ``dedupe_key`` (unique) backs this up in the schema.

**A batch of tenants per transaction, written set-based.** The monthly run computes the
invoices of a batch of tenants (``TONGDAO_BILLING_RUN_BATCH``) and checks every value against
its column first (:func:`draft_invoice`); then, in the batch's transaction, it locks the
series once, looks for the batch's dedupe keys at once (under the lock: a concurrent run's
invoices are seen and skipped), numbers the rest in tenant order, inserts the invoices and
their lines with one statement each and commits (:func:`write_invoices`). A batch commits
whole or not at all, so a run stopped mid-way leaves whole invoices for some tenants and
none for the rest, and no gap; running it again makes the rest and changes nothing else. A
tenant whose invoice cannot be computed stops the run after the batch's tenants before it
are written. **Audit:** an invoice the run makes is one document with one audit record,
``billing_invoice_made``, whose ``after`` holds the invoice's columns and its ``lines``; the
lines get records of their own only when they change later (a credit note's lines are
audited as the ORM writes them, like any other change). A single tenant's invoice through
the ORM (:func:`bill_tenant`) takes its number with :func:`take_number` as before.

**Quantities.** Seats (per account): the tenant's user accounts created before the end of the
plan segment and not erased before its start. Seats (per active user): distinct owners of
devices with a WireGuard handshake in the segment, from the gateways' usage records. Sites:
the tenant's sites created before the segment's end. Traffic and cross-border lines come from
the usage ledger's bytes of the segment's Asia/Shanghai days (:func:`price_traffic`;
``usage_key`` ``ledger:domestic:<days>`` / ``ledger:cross_border:<days>``). A plan whose
``cross_border_basis`` is ``mbps`` prices cross-border per committed Mbit/s instead of per GB:
the Mbit/s approved on the tenant's cross-border authorisations (summed over links), each for
the Asia/Shanghai days it was valid in the segment, prorated by day like the other lines
(:func:`price_committed_mbps`; ``usage_key`` ``crossborder:mbps:<days>``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from tongdao.api.crud import Resource, ensure_unique
from tongdao.api.deps import Guard
from tongdao.audit.recorder import SYSTEM, Actor, record, row_snapshot, set_actor
from tongdao.auth.permissions import Action
from tongdao.billing import money
from tongdao.billing.models import (
    INVOICE_LINES,
    INVOICES,
    CrossBorderBasis,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceState,
    LineKind,
    NumberSeries,
    Payment,
    Plan,
    SeatBasis,
    Subscription,
)
from tongdao.billing.schemas import (
    InvoiceFilters,
    InvoicePublic,
    PlanCreate,
    PlanPublic,
    PlanUpdate,
    SubscriptionCreate,
)
from tongdao.clock import utcnow
from tongdao.crossborder.models import ApplicationState, CrossBorderApplication
from tongdao.errors import Conflict, ValidationError
from tongdao.gateway.ledger import BYTES, tenant_bytes
from tongdao.gateway.models import TENANT_KINDS, UsageRecord, UsageTenantHourly
from tongdao.gateway.periods import as_utc, exact_sum, joined
from tongdao.ids import new_id
from tongdao.network.models import Device, Site
from tongdao.operator.models import OperatorProfile
from tongdao.runtime import Ctx
from tongdao.store.base import Base
from tongdao.store.engine import Database
from tongdao.tenancy.models import Tenant, User

SERIES_PREFIX = {InvoiceKind.INVOICE: "INV", InvoiceKind.CREDIT_NOTE: "CN"}
# Once made, an invoice changes only in these columns (state, payments, fapiao, voiding).
MUTABLE_AFTER_MADE = frozenset({"state", "amount_paid", "fapiao_number", "voided_at", "reason"})
MUTABLE_AFTER_MADE |= {"issued_on", "due_on", "updated_at", "dedupe_key"}


# --- plans -----------------------------------------------------------------------------------
def check_cross_border_basis(basis: str, per_gb: Decimal, per_mbps: Decimal) -> None:
    """A plan prices cross-border on one basis, explicitly: the other basis's price is 0.

    Both bases carry ``cross_border_tax_code``: the taxable service (cross-border connectivity)
    is the same whichever way it is measured, and a plan bills only one of them."""
    if basis == CrossBorderBasis.GB and per_mbps != 0:
        raise ValidationError(
            {"cross_border_price_per_mbps": "the plan prices cross-border per GB "
             "(cross_border_basis gb); set the basis to mbps or this price to 0"}
        )  # fmt: skip
    if basis == CrossBorderBasis.MBPS and per_gb != 0:
        raise ValidationError(
            {"cross_border_price_per_gb": "the plan prices cross-border per committed Mbit/s "
             "(cross_border_basis mbps); set the basis to gb or this price to 0"}
        )  # fmt: skip


# --- plans (resource) ------------------------------------------------------------------------
class PlanResource(Resource[Plan]):
    name = "billing_plans"
    label = "plan"
    plural = "plans"
    model = Plan
    public = PlanPublic
    create_schema = PlanCreate
    update_schema = PlanUpdate
    tenant_scoped = False

    def create(self, ctx: Ctx, tenant: Tenant | None, data: PlanCreate) -> Plan:
        check_cross_border_basis(
            data.cross_border_basis,
            data.cross_border_price_per_gb,
            data.cross_border_price_per_mbps,
        )
        ensure_unique(ctx, Plan.name, data.name, what="plan")
        plan = Plan(**data.model_dump())
        ctx.session.add(plan)
        return plan

    def update(self, ctx: Ctx, obj: Plan, data: Any) -> Plan:
        changes = data.model_dump(exclude_unset=True)
        nulls = [key for key, value in changes.items() if value is None]
        if nulls:
            raise ValidationError(dict.fromkeys(nulls, "may not be null"))
        check_cross_border_basis(
            changes.get("cross_border_basis", obj.cross_border_basis),
            changes.get("cross_border_price_per_gb", obj.cross_border_price_per_gb),
            changes.get("cross_border_price_per_mbps", obj.cross_border_price_per_mbps),
        )
        for key, value in changes.items():
            setattr(obj, key, value)
        return obj

    def delete(self, ctx: Ctx, obj: Plan) -> None:
        used = ctx.session.scalar(select(Subscription.id).where(Subscription.plan_id == obj.id))
        if used is not None:
            raise Conflict("the plan has subscriptions; it cannot be deleted", {"id": "in use"})
        ctx.session.delete(obj)


# --- subscriptions ---------------------------------------------------------------------------
def subscribe(ctx: Ctx, tenant: Tenant, data: SubscriptionCreate) -> Subscription:
    """Put the tenant on a plan (or none) from an Asia/Shanghai day on."""
    if data.plan_id is not None and ctx.session.get(Plan, data.plan_id) is None:
        raise ValidationError({"plan_id": "no such plan"})
    month = data.starts_on.strftime("%Y-%m")
    # The invoice series' lock first: a batch of the monthly run being written is waited for
    # (its invoices are then seen below), and a batch written after this commits sees this
    # subscription (it re-reads its tenants' subscriptions under the same lock: _bill_batch).
    lock_series(ctx.session, InvoiceKind.INVOICE)
    invoiced = ctx.session.scalar(
        select(Invoice.month)
        .where(Invoice.tenant_id == tenant.id, Invoice.kind == InvoiceKind.INVOICE)
        .where(Invoice.month >= month, Invoice.state != InvoiceState.VOID)
        .limit(1)
    )
    if invoiced is not None:
        raise ValidationError(
            {"starts_on": f"{invoiced} is invoiced already; start on a later month"}
        )
    existing = ctx.session.scalar(
        select(Subscription).where(
            Subscription.tenant_id == tenant.id, Subscription.starts_on == data.starts_on
        )
    )
    if existing is not None:
        existing.plan_id = data.plan_id
        return existing
    sub = Subscription(tenant_id=tenant.id, plan_id=data.plan_id, starts_on=data.starts_on)
    ctx.session.add(sub)
    return sub


@dataclass(frozen=True)
class Segment:
    plan: Plan
    start: date  # inclusive
    end: date  # exclusive


def segments(session: Session, tenant_id: uuid.UUID, month: date) -> list[Segment]:
    """The plans the tenant was on during the month, as day ranges within it."""
    subs = list(
        session.scalars(
            select(Subscription)
            .where(
                Subscription.tenant_id == tenant_id,
                Subscription.starts_on < money.next_month(month),
            )
            .order_by(Subscription.starts_on)
        )
    )
    plans: dict[uuid.UUID, Plan] = {}
    for sub in subs:
        if sub.plan_id is not None and sub.plan_id not in plans:
            plan = session.get(Plan, sub.plan_id)
            assert plan is not None
            plans[sub.plan_id] = plan
    return _segments_of(subs, plans, month)


def count_seats(session: Session, tenant_id: uuid.UUID, basis: str, seg: Segment) -> int:
    start, end = money.day_start_utc(seg.start), money.day_start_utc(seg.end)
    if basis == SeatBasis.ACTIVE:
        refs = session.scalars(
            select(UsageRecord.peer_ref)
            .where(UsageRecord.tenant_id == tenant_id, UsageRecord.peer_kind == "device")
            .where(UsageRecord.last_handshake >= start, UsageRecord.last_handshake < end)
            .distinct()
        )
        ids = []
        for ref in refs:
            try:
                ids.append(uuid.UUID(ref))
            except ValueError:
                continue
        if not ids:
            return 0
        return int(
            session.scalar(
                select(func.count(func.distinct(Device.user_id))).where(
                    Device.tenant_id == tenant_id, Device.id.in_(ids)
                )
            )
            or 0
        )
    return int(
        session.scalar(
            select(func.count(User.id))
            .where(User.tenant_id == tenant_id, User.created_at < end)
            .where(or_(User.erased_at.is_(None), User.erased_at >= start))
        )
        or 0
    )


def count_sites(session: Session, tenant_id: uuid.UUID, seg: Segment) -> int:
    end = money.day_start_utc(seg.end)
    return int(
        session.scalar(
            select(func.count(Site.id)).where(Site.tenant_id == tenant_id, Site.created_at < end)
        )
        or 0
    )


@dataclass(frozen=True)
class LineDraft:
    kind: LineKind
    description: str
    tax_code: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    start: date
    end: date
    amount: Decimal
    vat_rate: Decimal
    vat: Decimal
    usage_key: str = ""


def price_segment(month: date, seg: Segment, seats: int, sites: int) -> list[LineDraft]:
    """The lines of one plan segment (pure): each item's monthly amount, prorated by day."""
    n = money.days_in_month(month)
    a, b = (seg.start - month).days, (seg.end - month).days
    plan = seg.plan
    days = f"{seg.start.isoformat()}..{(seg.end - timedelta(days=1)).isoformat()}"
    items = [
        (LineKind.BASE, f"{plan.name} base fee {days}", plan.base_tax_code, "month",
         Decimal(1), plan.base_fee, ""),
        (LineKind.SEATS, f"{plan.name} seats ({plan.seat_basis}) {days}", plan.seat_tax_code,
         "seat", Decimal(seats), plan.seat_price, f"store:users:{plan.seat_basis}"),
        (LineKind.SITES, f"{plan.name} sites {days}", plan.site_tax_code, "site",
         Decimal(sites), plan.site_price, "store:sites"),
    ]  # fmt: skip
    out = []
    for kind, text, code, unit, qty, price, key in items:
        if qty == 0 or price == 0:
            continue
        amount = money.prorate(qty * price, a, b, n)
        out.append(
            LineDraft(kind, text, code, unit, qty, price, seg.start, seg.end, amount,
                      plan.vat_rate, money.line_vat(amount, plan.vat_rate), key)
        )  # fmt: skip
    return out


GB = Decimal(10**9)  # traffic is billed in decimal gigabytes
GB_PLACES = Decimal("0.000001")  # a line's quantity: GB to six places (the column's scale)


def gigabytes(count: int) -> Decimal:
    return (Decimal(count) / GB).quantize(GB_PLACES, rounding=ROUND_HALF_UP)


def price_traffic(month: date, seg: Segment, used: dict[str, int]) -> list[LineDraft]:
    """The traffic lines of one plan segment (pure), from the ledger's bytes of its days
    (``used``: :func:`tongdao.gateway.ledger.tenant_bytes`).

    * Traffic: the domestic bytes (rx + tx less their cross-border part) in GB (10^9 bytes)
      over the plan's included traffic, prorated by day for a part of the month, at
      ``traffic_price_per_gb``.
    * Cross-border: the cross-border bytes (rx + tx) in GB at ``cross_border_price_per_gb``
      (priced apart, not counted against the included traffic).

    Amounts are quantity × unit price, rounded half up to the fen; VAT per line."""
    plan = seg.plan
    n = money.days_in_month(month)
    days = (seg.end - seg.start).days
    span = f"{seg.start.isoformat()}..{(seg.end - timedelta(days=1)).isoformat()}"
    key_days = f"{seg.start:%Y%m%d}-{seg.end:%Y%m%d}"
    cross = used["cross_border_rx_bytes"] + used["cross_border_tx_bytes"]
    domestic = used["rx_bytes"] + used["tx_bytes"] - cross
    included = (Decimal(plan.included_traffic_gb) * days / n).quantize(
        GB_PLACES, rounding=ROUND_HALF_UP
    )
    over = max(gigabytes(domestic) - included, Decimal(0))
    if plan.cross_border_basis != CrossBorderBasis.GB:
        cross = 0  # priced per committed Mbit/s instead (:func:`price_committed_mbps`)
    out = []
    for kind, text, code, qty, price, key in (
        (LineKind.TRAFFIC, f"{plan.name} traffic over {included} GB {span}", plan.traffic_tax_code,
         over, plan.traffic_price_per_gb, f"ledger:domestic:{key_days}"),
        (LineKind.CROSS_BORDER, f"{plan.name} cross-border traffic {span}",
         plan.cross_border_tax_code, gigabytes(cross), plan.cross_border_price_per_gb,
         f"ledger:cross_border:{key_days}"),
    ):  # fmt: skip
        if qty == 0 or price == 0:
            continue
        amount = money.fen(qty * price)
        out.append(
            LineDraft(kind, text, code, "GB", qty, price, seg.start, seg.end, amount,
                      plan.vat_rate, money.line_vat(amount, plan.vat_rate), key)
        )  # fmt: skip
    return out


@dataclass(frozen=True)
class Committed:
    """Approved Mbit/s over the days ``[start, end)`` of one authorisation within a segment."""

    mbps: int
    start: date
    end: date  # exclusive


def committed_mbps(session: Session, tenant_id: uuid.UUID, seg: Segment) -> list[Committed]:
    """The tenant's cross-border authorisations that were valid on some day of the segment,
    cut to the segment: approved ones and expired ones (they were valid until ``valid_to``),
    each from ``valid_from`` to ``valid_to`` (Asia/Shanghai days, both included); revoked ones
    until the day they were revoked (included), as they were valid until then."""
    rows = session.execute(
        select(
            CrossBorderApplication.approved_mbps,
            CrossBorderApplication.valid_from,
            CrossBorderApplication.valid_to,
            CrossBorderApplication.state,
            CrossBorderApplication.decided_at,
        )
        .where(CrossBorderApplication.tenant_id == tenant_id)
        .where(
            CrossBorderApplication.state.in_(
                [ApplicationState.APPROVED, ApplicationState.EXPIRED, ApplicationState.REVOKED]
            )
        )
        .where(CrossBorderApplication.valid_from < seg.end)
        .where(CrossBorderApplication.valid_to >= seg.start)
        .order_by(CrossBorderApplication.valid_from, CrossBorderApplication.id)
    )
    out = []
    for mbps, valid_from, valid_to, state, decided_at in rows:
        if not mbps or valid_from is None or valid_to is None:
            continue
        if state == ApplicationState.REVOKED:
            if decided_at is None:
                continue
            valid_to = min(valid_to, money.shanghai_today(_aware(decided_at)))
            if valid_to < max(valid_from, seg.start):
                continue
        out.append(
            Committed(
                int(mbps), max(valid_from, seg.start), min(valid_to + timedelta(days=1), seg.end)
            )
        )
    return out


def _aware(value: datetime) -> datetime:
    utc = as_utc(value)
    assert utc is not None
    return utc


MBPS_UNIT = "Mbit/s-month"


def price_committed_mbps(month: date, seg: Segment, committed: list[Committed]) -> list[LineDraft]:
    """The cross-border line of a plan priced per committed Mbit/s (pure).

    The committed bandwidth of a tenant is the sum of the Mbit/s approved on its authorisations
    (one per link, several links add up). Each authorisation counts for the Asia/Shanghai days
    it was valid within the segment, prorated by day like the other lines: an authorisation of
    ``m`` Mbit/s valid on days ``[a, b)`` of a month of ``n`` days costs
    ``prorate(m × price, a, b, n)`` (:func:`tongdao.billing.money.prorate`), so approval or
    expiry mid-month bills ``m × price × days / n`` and any split of the month sums to the
    whole. The segment has one line: quantity Σ ``m × days / n`` in Mbit/s-months (six places,
    the column's scale), unit price the plan's price per Mbit/s per month, amount the sum of
    the prorated parts; VAT per line."""
    plan = seg.plan
    price = plan.cross_border_price_per_mbps
    if price == 0 or not committed:
        return []
    n = money.days_in_month(month)
    amount = money.ZERO
    quantity = Decimal(0)
    parts = []
    for c in committed:
        a, b = (c.start - month).days, (c.end - month).days
        if b <= a:
            continue
        amount += money.prorate(Decimal(c.mbps) * price, a, b, n)
        quantity += Decimal(c.mbps * (b - a)) / n
        parts.append(f"{c.mbps} Mbit/s × {b - a}/{n} d")
    if not parts:
        return []
    quantity = quantity.quantize(GB_PLACES, rounding=ROUND_HALF_UP)
    span = f"{seg.start.isoformat()}..{(seg.end - timedelta(days=1)).isoformat()}"
    text = f"{plan.name} cross-border committed bandwidth {span} ({', '.join(parts)})"
    if len(text) > 200:
        text = f"{plan.name} cross-border committed bandwidth {span}"
    key = f"crossborder:mbps:{seg.start:%Y%m%d}-{seg.end:%Y%m%d}"
    return [
        LineDraft(LineKind.CROSS_BORDER_MBPS, text, plan.cross_border_tax_code, MBPS_UNIT,
                  quantity, price, seg.start, seg.end, amount, plan.vat_rate,
                  money.line_vat(amount, plan.vat_rate), key)
    ]  # fmt: skip


# --- numbering ---------------------------------------------------------------------------------
def take_number(session: Session, kind: InvoiceKind) -> str:
    """The next number of the kind's series, in the caller's transaction (see the module).
    The series row is made the first time (one statement more, once)."""
    bump = (
        update(NumberSeries)
        .where(NumberSeries.name == kind.value)
        .values(last_value=NumberSeries.last_value + 1)
        .returning(NumberSeries.last_value)
        .execution_options(synchronize_session=False)
    )
    value = session.execute(bump).scalar_one_or_none()
    if value is None:
        _make_series(session, kind)
        value = session.execute(bump).scalar_one()
    return f"{SERIES_PREFIX[kind]}{value:08d}"


def _make_series(session: Session, kind: InvoiceKind) -> None:
    """The kind's series row at 0, unless it exists (a concurrent first use makes it once)."""
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        upsert(NumberSeries)
        .values(name=kind.value, prefix=SERIES_PREFIX[kind], last_value=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def number_value(number: str) -> int:
    return int(number.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


# --- the monthly run ---------------------------------------------------------------------------
def _buyer(tenant: Tenant) -> dict[str, str]:
    return {
        "buyer_name": tenant.invoice_buyer_name or tenant.name_zh or tenant.name_en,
        "buyer_tax_id": tenant.invoice_tax_id or tenant.uscc,
        "buyer_address_phone": tenant.invoice_address_phone,
        "buyer_bank": tenant.invoice_bank,
        "buyer_account": tenant.invoice_account,
    }


def _seller(session: Session) -> dict[str, str]:
    op = session.scalar(select(OperatorProfile).order_by(OperatorProfile.created_at))
    if op is None:
        return {}
    return {
        "seller_name": op.legal_name_zh or op.legal_name,
        "seller_tax_id": op.uscc,
        "seller_address_phone": seller_address_phone(op.address, op.contact_phone),
    }


def seller_address_phone(address: str, phone: str) -> str:
    """The seller's "address and phone" of an invoice (a fapiao's 地址、电话), from the
    operator profile; it must fit :data:`SELLER_ADDRESS_PHONE_MAX` (the profile is refused
    otherwise: :func:`tongdao.operator.service.put_profile`)."""
    return " ".join(p for p in (address, phone) if p)


SELLER_ADDRESS_PHONE_MAX = 300  # Invoice.seller_address_phone (tests check they agree)


def invoice_key(tenant_id: uuid.UUID, month_text: str) -> str:
    """The dedupe key of the tenant's invoice for the month (until it is voided)."""
    return f"invoice:{tenant_id}:{month_text}"


@dataclass
class MonthFacts:
    """What the monthly run reads for every tenant, read once for all of them before the
    per-tenant transactions, with the same filters as the one-tenant functions
    (:func:`segments`, :func:`count_seats` per account, :func:`count_sites`,
    :func:`~tongdao.gateway.ledger.tenant_bytes`), grouped by tenant: a handful of queries
    for the month instead of a handful per tenant. Seats per active user (from the raw
    records) are still counted per tenant."""

    segments: dict[uuid.UUID, list[Segment]]
    seats: dict[tuple[uuid.UUID, date, date], int]  # per-account seats of a segment
    sites: dict[tuple[uuid.UUID, date], int]  # by segment end
    used: dict[tuple[uuid.UUID, date, date], dict[str, int]]
    seller: dict[str, str]


def _spans(
    subs: Sequence[tuple[uuid.UUID | None, date]], month: date
) -> list[tuple[uuid.UUID, date, date]]:
    """A tenant's subscriptions (plan, first day; by first day) as (plan, start, end) day
    ranges within the month."""
    end_of_month = money.next_month(month)
    out: list[tuple[uuid.UUID, date, date]] = []
    for i, (plan_id, starts_on) in enumerate(subs):
        start = max(starts_on, month)
        end = subs[i + 1][1] if i + 1 < len(subs) else end_of_month
        end = min(end, end_of_month)
        if plan_id is None or end <= start:
            continue
        out.append((plan_id, start, end))
    return out


def _segments_of(
    subs: Sequence[Subscription], plans: dict[uuid.UUID, Plan], month: date
) -> list[Segment]:
    """A tenant's subscriptions (by start) as the plans' day ranges within the month."""
    spans = _spans([(sub.plan_id, sub.starts_on) for sub in subs], month)
    return [Segment(plans[plan_id], start, end) for plan_id, start, end in spans]


def replanned(
    session: Session, tenant_ids: Sequence[uuid.UUID], month: date, facts: MonthFacts
) -> set[uuid.UUID]:
    """The tenants whose plans for the month now differ from ``facts`` (a subscription made
    or changed while the run went): their invoices are computed from the store again."""
    subs: dict[uuid.UUID, list[tuple[uuid.UUID | None, date]]] = {t: [] for t in tenant_ids}
    for tenant_id, plan_id, starts_on in session.execute(
        select(Subscription.tenant_id, Subscription.plan_id, Subscription.starts_on)
        .where(
            Subscription.tenant_id.in_(list(tenant_ids)),
            Subscription.starts_on < money.next_month(month),
        )
        .order_by(Subscription.tenant_id, Subscription.starts_on)
    ):
        subs[tenant_id].append((plan_id, starts_on))
    return {
        t
        for t in tenant_ids
        if _spans(subs[t], month)
        != [(seg.plan.id, seg.start, seg.end) for seg in facts.segments.get(t, [])]
    }


def month_facts(session: Session, tenant_ids: Sequence[uuid.UUID], month: date) -> MonthFacts:
    """:class:`MonthFacts` for the tenants' month (see there)."""
    ids = list(tenant_ids)
    end_of_month = money.next_month(month)
    plans = {plan.id: plan for plan in session.scalars(select(Plan))}
    subs: dict[uuid.UUID, list[Subscription]] = {t: [] for t in ids}
    for sub in session.scalars(
        select(Subscription)
        .where(Subscription.tenant_id.in_(ids), Subscription.starts_on < end_of_month)
        .order_by(Subscription.tenant_id, Subscription.starts_on)
    ):
        subs[sub.tenant_id].append(sub)
    facts = MonthFacts({t: _segments_of(subs[t], plans, month) for t in ids}, {}, {}, {}, {})
    ranges = {(seg.start, seg.end) for segs in facts.segments.values() for seg in segs}
    t = UsageTenantHourly
    aggregates = [agg for name in BYTES for agg in exact_sum(getattr(t, name))]
    for first, last in sorted(ranges):
        start, end = money.day_start_utc(first), money.day_start_utc(last)
        seats = dict(
            session.execute(
                select(User.tenant_id, func.count(User.id))
                .where(User.tenant_id.in_(ids), User.created_at < end)
                .where(or_(User.erased_at.is_(None), User.erased_at >= start))
                .group_by(User.tenant_id)
            ).all()
        )
        sites = dict(
            session.execute(
                select(Site.tenant_id, func.count(Site.id))
                .where(Site.tenant_id.in_(ids), Site.created_at < end)
                .group_by(Site.tenant_id)
            ).all()
        )
        used = {
            row[0]: {name: joined(row[1 + 2 * i], row[2 + 2 * i]) for i, name in enumerate(BYTES)}
            for row in session.execute(
                select(t.tenant_id, *aggregates)
                .where(
                    t.tenant_id.in_(ids),
                    t.peer_kind.in_(TENANT_KINDS),
                    t.hour >= start,
                    t.hour < end,
                )
                .group_by(t.tenant_id)
            )
        }
        for tenant_id in ids:
            facts.seats[(tenant_id, first, last)] = int(seats.get(tenant_id, 0))
            facts.sites[(tenant_id, last)] = int(sites.get(tenant_id, 0))
            facts.used[(tenant_id, first, last)] = used.get(tenant_id) or dict.fromkeys(BYTES, 0)
    facts.seller = _seller(session)
    return facts


def _drafts_of(
    session: Session, tenant_id: uuid.UUID, month: date, facts: MonthFacts | None
) -> tuple[list[LineDraft], list[Segment]]:
    """The tenant's lines for the month (drafts, in order) and its plan segments."""
    drafts: list[LineDraft] = []
    segs = segments(session, tenant_id, month) if facts is None else facts.segments[tenant_id]
    for seg in segs:
        if facts is not None and seg.plan.seat_basis == SeatBasis.ACCOUNT:
            seats = facts.seats[(tenant_id, seg.start, seg.end)]
        else:
            seats = count_seats(session, tenant_id, seg.plan.seat_basis, seg)
        if facts is None:
            sites = count_sites(session, tenant_id, seg)
            used = tenant_bytes(
                session, tenant_id, money.day_start_utc(seg.start), money.day_start_utc(seg.end)
            )
        else:
            sites = facts.sites[(tenant_id, seg.end)]
            used = facts.used[(tenant_id, seg.start, seg.end)]
        drafts.extend(price_segment(month, seg, seats, sites))
        drafts.extend(price_traffic(month, seg, used))
        if seg.plan.cross_border_basis == CrossBorderBasis.MBPS:
            drafts.extend(price_committed_mbps(month, seg, committed_mbps(session, tenant_id, seg)))
    return drafts, segs


def _line_values(tenant_id: uuid.UUID, position: int, d: LineDraft) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id, "position": position, "kind": d.kind,
        "description": d.description, "tax_code": d.tax_code, "unit": d.unit,
        "quantity": d.quantity, "unit_price": d.unit_price, "period_start": d.start,
        "period_end": d.end, "amount": d.amount, "vat_rate": d.vat_rate, "vat": d.vat,
        "usage_key": d.usage_key,
    }  # fmt: skip


def bill_tenant(
    session: Session, tenant_id: uuid.UUID, month: date, facts: MonthFacts | None = None
) -> Invoice | None:
    """Make the tenant's invoice for the month in the session's transaction, through the
    ORM (one tenant; the monthly run writes a batch at once: :func:`write_invoices`); None
    when it has one already or owes nothing for the month. The caller commits (or rolls
    back). ``facts``: the month's quantities read beforehand for every tenant
    (:func:`month_facts`); without, they are read here."""
    month_text = month.strftime("%Y-%m")
    number = take_number(session, InvoiceKind.INVOICE)  # locks the series: see the module
    key = invoice_key(tenant_id, month_text)
    if session.scalar(select(Invoice.id).where(Invoice.dedupe_key == key)) is not None:
        return None
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    drafts, segs = _drafts_of(session, tenant_id, month, facts)
    if not drafts:
        return None
    subtotal, vat, total = money.totals([(d.amount, d.vat) for d in drafts])
    terms = max(seg.plan.payment_terms_days for seg in segs)
    invoice = Invoice(
        tenant_id=tenant_id,
        kind=InvoiceKind.INVOICE,
        number=number,
        dedupe_key=key,
        month=month_text,
        state=InvoiceState.DRAFT,
        subtotal=subtotal,
        vat=vat,
        total=total,
        amount_paid=money.ZERO,
        payment_terms_days=terms,
        **_buyer(tenant),
        **(_seller(session) if facts is None else facts.seller),
    )
    for i, d in enumerate(drafts, start=1):
        invoice.lines.append(InvoiceLine(**_line_values(tenant_id, i, d)))
    session.add(invoice)
    session.flush()
    return invoice


@dataclass(frozen=True)
class InvoiceDraft:
    """A tenant's invoice for the month, computed and checked, not yet numbered or written:
    the columns of the invoice (less its number) and of its lines."""

    tenant_id: uuid.UUID
    dedupe_key: str
    invoice: dict[str, Any]
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class _Limit:
    """What a column holds: a string's length, or a decimal's digits before and after the
    point (with the largest magnitude it takes and its smallest step)."""

    length: int | None = None
    bound: Decimal | None = None  # |value| < bound
    step: Decimal | None = None  # a multiple of step
    places: int = 0


_LIMITS: dict[type[Base], dict[str, _Limit]] = {}


def _limits(model: type[Base]) -> dict[str, _Limit]:
    found = _LIMITS.get(model)
    if found is None:
        found = {}
        for column in model.__table__.c:
            kind = column.type
            length = getattr(kind, "length", None)
            precision, scale = getattr(kind, "precision", None), getattr(kind, "scale", None)
            if isinstance(length, int):
                found[column.key] = _Limit(length=length)
            elif isinstance(precision, int) and isinstance(scale, int):
                found[column.key] = _Limit(
                    bound=Decimal(10) ** (precision - scale),
                    step=Decimal(1).scaleb(-scale),
                    places=scale,
                )
        _LIMITS[model] = found
    return found


def _fits(limit: _Limit, value: Any) -> bool:
    """Whether ``value`` fits a column as the database would store it (length of a string;
    digits and places of a decimal: PostgreSQL would round extra places away)."""
    if isinstance(value, str):
        return limit.length is None or len(value) <= limit.length
    if isinstance(value, Decimal) and limit.bound is not None and limit.step is not None:
        if not value.is_finite() or abs(value) >= limit.bound:
            return False
        exponent = value.as_tuple().exponent
        return (
            not isinstance(exponent, int)
            or exponent >= -limit.places
            or value == value.quantize(limit.step)
        )
    return True


def check_fits(model: type[Base], tenant_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Refuse a row of the run whose value would not fit its column: the batch is written
    with one statement, so a bad row must be found before it, not by the database."""
    limits = _limits(model)
    for key, value in values.items():
        limit = limits.get(key)
        if limit is not None and value is not None and not _fits(limit, value):
            column = f"{model.__tablename__}.{key}"
            raise Conflict(
                f"the invoice of tenant {tenant_id} cannot be made: {column} does not fit "
                "its column"
            )


def draft_invoice(
    session: Session, tenant: Tenant, month: date, facts: MonthFacts, *, fresh: bool = False
) -> InvoiceDraft | None:
    """The tenant's invoice for the month (reads only what ``facts`` lacks; ``fresh``: its
    plans changed since ``facts`` were read, every quantity read again), checked against the
    columns; None when it owes nothing for the month."""
    drafts, segs = _drafts_of(session, tenant.id, month, None if fresh else facts)
    if not drafts:
        return None
    month_text = month.strftime("%Y-%m")
    subtotal, vat, total = money.totals([(d.amount, d.vat) for d in drafts])
    values: dict[str, Any] = {
        "tenant_id": tenant.id, "kind": InvoiceKind.INVOICE.value,
        "dedupe_key": invoice_key(tenant.id, month_text), "month": month_text,
        "state": InvoiceState.DRAFT.value, "corrects_id": None, "reason": "", "currency": "CNY",
        "subtotal": subtotal, "vat": vat, "total": total, "amount_paid": money.ZERO,
        "seller_name": "", "seller_tax_id": "", "seller_address_phone": "",
        **_buyer(tenant), **facts.seller,
        "issued_on": None, "due_on": None,
        "payment_terms_days": max(seg.plan.payment_terms_days for seg in segs),
        "fapiao_number": None, "voided_at": None,
    }  # fmt: skip
    lines = [_line_values(tenant.id, i, d) for i, d in enumerate(drafts, start=1)]
    check_fits(Invoice, tenant.id, values)
    for line in lines:
        check_fits(InvoiceLine, tenant.id, line)
    return InvoiceDraft(tenant.id, values["dedupe_key"], values, lines)


def lock_series(session: Session, kind: InvoiceKind) -> int:
    """The series' last value, its row locked until the transaction ends (PostgreSQL; on
    SQLite the write transaction holds the database's write lock). Made the first time."""
    read = select(NumberSeries.last_value).where(NumberSeries.name == kind.value).with_for_update()
    value = session.execute(read).scalar_one_or_none()
    if value is None:
        _make_series(session, kind)
        value = session.execute(read).scalar_one()
    return int(value)


def write_invoices(session: Session, drafts: Sequence[InvoiceDraft]) -> list[str]:
    """Number and write a batch of the run's invoices in the session's transaction, set-based:
    the series locked once, the batch's dedupe keys looked for at once (under the lock, so a
    concurrent run's invoices are seen), the numbers given in the drafts' order, the invoices
    and their lines inserted with one statement each, and ONE audit record per invoice that
    carries its lines (``billing_invoice_made``; the lines have no records of their own until
    they change). Returns the numbers made; the caller commits (the audit chain is appended
    to once, at the commit)."""
    if not drafts:
        return []
    last = lock_series(session, InvoiceKind.INVOICE)
    keys = [d.dedupe_key for d in drafts]
    taken = set(session.scalars(select(Invoice.dedupe_key).where(Invoice.dedupe_key.in_(keys))))
    todo = [d for d in drafts if d.dedupe_key not in taken]
    if not todo:
        return []
    now = utcnow()
    invoices: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    records: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    prefix = SERIES_PREFIX[InvoiceKind.INVOICE]
    for n, d in enumerate(todo, start=last + 1):
        row = {**d.invoice, "id": new_id(), "number": f"{prefix}{n:08d}"}
        row.update(created_at=now, updated_at=now)
        its = [{**x, "id": new_id(), "invoice_id": row["id"], "created_at": now,
                "updated_at": now} for x in d.lines]  # fmt: skip
        invoices.append(row)
        lines.extend(its)
        records.append((row, its))
    session.execute(insert(INVOICES), invoices)
    session.execute(insert(INVOICE_LINES), lines)
    session.execute(
        update(NumberSeries)
        .where(NumberSeries.name == InvoiceKind.INVOICE.value)
        .values(last_value=last + len(todo))
        .execution_options(synchronize_session=False)
    )
    for row, its in records:
        after = row_snapshot(Invoice, row)
        after["lines"] = [row_snapshot(InvoiceLine, x) for x in its]
        record(
            session, "billing_invoice_made", "invoice", row["id"], tenant_id=row["tenant_id"],
            after=after, kind="change",
        )  # fmt: skip
    return [row["number"] for row in invoices]


def tenants_to_bill(session: Session, month: date) -> list[uuid.UUID]:
    """Tenants with a plan for some day of the month, in id order."""
    end = money.next_month(month)
    ids = session.scalars(
        select(Subscription.tenant_id).where(Subscription.starts_on < end).distinct()
    )
    return sorted(ids)


def billable_month(text: str, now: datetime) -> date:
    """``YYYY-MM`` as a month that has ended (Asia/Shanghai); field-keyed 422 otherwise."""
    try:
        month = money.parse_month(text)
    except ValueError as exc:
        raise ValidationError({"month": str(exc)}) from exc
    if money.month_bounds_utc(month)[1] > now:
        raise ValidationError({"month": f"{text} has not ended yet (Asia/Shanghai)"})
    return month


@dataclass
class RunOutcome:
    month: str
    created: list[str]
    existing: int


RUN_BATCH = 50  # tenants per transaction of the monthly run (written at once, see _bill_batch)


def run_month(
    db: Database,
    month: date,
    *,
    actor: Actor = SYSTEM,
    keep_going: Callable[[], bool] | None = None,
    batch: int = RUN_BATCH,
) -> RunOutcome:
    """Make every tenant's invoice for ``month`` (drafts), ``batch`` tenants per transaction
    (``TONGDAO_BILLING_RUN_BATCH``; computed first, then written at once: :func:`_bill_batch`):
    a commit and its audit-chain append per batch, not per tenant.

    ``keep_going`` is asked before each batch (a job under a lease renews it there and stops
    when the lease is lost). Tenants that have their invoice for the month already (its
    dedupe key, which a void releases) are counted and skipped up front; the others'
    quantities are read once for all (:func:`month_facts`), and each batch's transaction
    still looks for its tenants' invoices under the series lock (a concurrent run)."""
    month_text = month.strftime("%Y-%m")
    with db.session(write=False) as session:
        every = tenants_to_bill(session, month)
        keys = [invoice_key(t, month_text) for t in every]
        billed = set(session.scalars(select(Invoice.tenant_id).where(Invoice.dedupe_key.in_(keys))))
        tenant_ids = [t for t in every if t not in billed]
        facts = month_facts(session, tenant_ids, month)
        session.expunge_all()  # the plans outlive this session (read-only: never written)
    outcome = RunOutcome(month_text, [], len(every) - len(tenant_ids))
    for first in range(0, len(tenant_ids), batch):
        # Asked between transactions: a lease renewal writes (on SQLite, one writer at once).
        if keep_going is not None and not keep_going():
            break
        _bill_batch(db, tenant_ids[first : first + batch], month, facts, actor, outcome)
    return outcome


def _bill_batch(
    db: Database,
    tenant_ids: list[uuid.UUID],
    month: date,
    facts: MonthFacts,
    actor: Actor,
    outcome: RunOutcome,
) -> None:
    """Bill a batch of tenants in one transaction: every tenant's invoice computed and checked
    first (:func:`draft_invoice`), then the batch written at once (:func:`write_invoices`)
    and committed whole, or not at all. A tenant whose invoice cannot be computed or does
    not fit stops the run, after the invoices of the batch's tenants before it are written
    and committed: the series has no gap either way."""
    drafts: list[InvoiceDraft] = []
    failure: Exception | None = None
    with db.session() as session:
        set_actor(session, actor)
        # The series' lock first, then the batch's plans as they are now: a plan change made
        # while the run went (subscribe takes the same lock) is billed, never left out.
        lock_series(session, InvoiceKind.INVOICE)
        fresh = replanned(session, tenant_ids, month, facts)
        tenants = {
            t.id: t for t in session.scalars(select(Tenant).where(Tenant.id.in_(tenant_ids)))
        }
        # The tenants' own reads in a savepoint: a database error in one (a statement timeout,
        # a cancelled query) aborts the transaction on PostgreSQL; undone to here, the drafts
        # before it are still written, under the lock still held, and its error is raised.
        reads = session.begin_nested()
        for tenant_id in tenant_ids:
            try:
                draft = draft_invoice(
                    session, tenants[tenant_id], month, facts, fresh=tenant_id in fresh
                )
            except Exception as exc:  # raised again once the tenants before it are written
                failure = exc
                break
            if draft is None:
                outcome.existing += 1  # owes nothing for the month
            else:
                drafts.append(draft)
        if failure is None:
            reads.commit()
        else:
            reads.rollback()
        made = write_invoices(session, drafts)
        session.commit()
    outcome.existing += len(drafts) - len(made)  # made by a concurrent run meanwhile
    outcome.created.extend(made)
    if failure is not None:
        raise failure


# --- invoices ----------------------------------------------------------------------------------
class InvoiceResource(Resource[Invoice]):
    name = "invoices"
    label = "invoice"
    plural = "invoices"
    model = Invoice
    public = InvoicePublic
    create_schema = InvoiceFilters  # not mounted: invoices are made by the run
    update_schema = InvoiceFilters
    filters = InvoiceFilters


def issue(ctx: Ctx, invoice: Invoice) -> Invoice:
    if invoice.state != InvoiceState.DRAFT:
        raise Conflict(f"only a draft can be issued; this one is {invoice.state}")
    today = money.shanghai_today(ctx.runtime.clock())
    invoice.state = InvoiceState.ISSUED
    invoice.issued_on = today
    invoice.due_on = today + timedelta(days=invoice.payment_terms_days)
    return invoice


def void(ctx: Ctx, invoice: Invoice, reason: str) -> Invoice:
    if invoice.kind != InvoiceKind.INVOICE or invoice.state not in (
        InvoiceState.DRAFT,
        InvoiceState.ISSUED,
    ):
        raise Conflict(f"a {invoice.state} {invoice.kind} cannot be voided; issue a credit note")
    if invoice.amount_paid != 0:
        raise Conflict("payments are recorded against this invoice; issue a credit note")
    if invoice.fapiao_number:
        raise Conflict("a fapiao was issued for this invoice; issue a credit note (红字)")
    if credit_notes_of(ctx.session, invoice.id):
        raise Conflict("credit notes correct this invoice; it cannot be voided")
    invoice.state = InvoiceState.VOID
    # The void invoice keeps its number; the tenant's month is free for a new invoice.
    invoice.dedupe_key = f"void:{invoice.number}"
    invoice.reason = reason
    invoice.voided_at = ctx.runtime.clock()
    return invoice


def record_fapiao(ctx: Ctx, invoice: Invoice, number: str) -> Invoice:
    if invoice.state not in (InvoiceState.ISSUED, InvoiceState.PAID):
        raise Conflict(f"a fapiao number is recorded for an issued invoice, not a {invoice.state}")
    if invoice.fapiao_number and invoice.fapiao_number != number:
        raise Conflict(
            f"fapiao {invoice.fapiao_number} is recorded already", {"fapiao_number": "recorded"}
        )
    invoice.fapiao_number = number
    return invoice


@dataclass(frozen=True)
class CreditRequest:
    """Credit part of one line: an amount excluding VAT, or a quantity (its share of the
    line's amount, half up to the fen)."""

    line_id: uuid.UUID
    amount: Decimal | None = None
    quantity: Decimal | None = None


@dataclass(frozen=True)
class Credited:
    """What credit notes took off one invoice line so far (positive)."""

    amount: Decimal = money.ZERO
    vat: Decimal = money.ZERO
    quantity: Decimal = Decimal(0)


@dataclass(frozen=True)
class CreditLine:
    line: InvoiceLine
    amount: Decimal
    vat: Decimal
    quantity: Decimal


def credit_notes_of(session: Session, invoice_id: uuid.UUID) -> list[Invoice]:
    """The credit notes correcting the invoice, in number order."""
    return list(
        session.scalars(
            select(Invoice)
            .where(Invoice.corrects_id == invoice_id, Invoice.kind == InvoiceKind.CREDIT_NOTE)
            .order_by(Invoice.number)
        )
    )


def credited_lines(session: Session, invoice: Invoice) -> dict[int, Credited]:
    """Per line position of the invoice, what its credit notes took off (a credit note's line
    names the invoice line it corrects by that line's position)."""
    out: dict[int, Credited] = {}
    for note in credit_notes_of(session, invoice.id):
        for line in note.lines:
            had = out.get(line.position, Credited())
            out[line.position] = Credited(
                had.amount - line.amount, had.vat - line.vat, had.quantity - line.quantity
            )
    return out


def credited_total(session: Session, invoice_id: uuid.UUID) -> Decimal:
    """What credit notes took off the invoice, VAT included (positive)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Invoice.total), 0)).where(
            Invoice.corrects_id == invoice_id, Invoice.kind == InvoiceKind.CREDIT_NOTE
        )
    )
    return money.fen(-Decimal(total or 0))


def outstanding_of(session: Session, invoice: Invoice) -> Decimal:
    """What is still owed on an issued invoice: total − credits − payments (never below 0)."""
    if invoice.kind != InvoiceKind.INVOICE or invoice.state != InvoiceState.ISSUED:
        return money.ZERO
    left = invoice.total - credited_total(session, invoice.id) - invoice.amount_paid
    return max(money.fen(left), money.ZERO)


def plan_credit(
    lines: Sequence[InvoiceLine], credited: dict[int, Credited], requests: Sequence[CreditRequest]
) -> list[CreditLine]:
    """The credit-note lines for ``requests`` (pure): field-keyed refusals for a line not on
    the invoice (422), a zero or negative amount or quantity (422), and for more than is still
    creditable on a line after earlier credit notes (409, naming the line)."""
    if not requests:
        raise ValidationError({"lines": "name at least one line to credit"})
    by_id = {line.id: line for line in lines}
    seen: set[uuid.UUID] = set()
    out: list[CreditLine] = []
    for i, req in enumerate(requests):
        key = f"lines.{i}"
        line = by_id.get(req.line_id)
        if line is None:
            raise ValidationError({f"{key}.line_id": "not a line of this invoice"})
        if line.id in seen:
            raise ValidationError({f"{key}.line_id": "the line is named twice"})
        seen.add(line.id)
        if (req.amount is None) == (req.quantity is None):
            raise ValidationError({key: "give amount_excl_vat or quantity, not both"})
        had = credited.get(line.position, Credited())
        position = line.position
        left_amount, left_vat = line.amount - had.amount, line.vat - had.vat
        left_qty = line.quantity - had.quantity
        if req.quantity is not None:
            field = f"{key}.quantity"
            qty = req.quantity.quantize(GB_PLACES, rounding=ROUND_HALF_UP)
            if qty <= 0:
                raise ValidationError({field: "must be greater than 0"})
            if qty > left_qty:
                left = f"{left_qty.normalize():f}"
                raise Conflict(
                    f"line {position} has {left} {line.unit} left to credit",
                    {field: f"more than the {left} left to credit on line {position}"},
                )
            amount = (
                line.amount
                if qty == line.quantity
                else money.fen(line.amount * qty / line.quantity)
            )
            if amount <= 0:
                raise ValidationError({field: "too small: it credits less than one fen"})
        else:
            field = f"{key}.amount_excl_vat"
            amount = money.fen(req.amount or money.ZERO)
            if amount <= 0:
                raise ValidationError({field: "must be greater than 0"})
            qty = (
                line.quantity
                if amount == line.amount or line.amount == 0
                else min(
                    (line.quantity * amount / line.amount).quantize(
                        GB_PLACES, rounding=ROUND_HALF_UP
                    ),
                    left_qty,
                )
            )
        if amount > left_amount:
            raise Conflict(
                f"line {position} has ¥{left_amount} left to credit",
                {field: f"more than the ¥{left_amount} left to credit on line {position}"},
            )
        vat = money.credit_vat(amount, line.vat_rate, left_amount, left_vat)
        out.append(CreditLine(line, amount, vat, qty))
    return out


def credit_note(
    ctx: Ctx, invoice: Invoice, reason: str, requests: Sequence[CreditRequest] | None = None
) -> Invoice:
    """A credit note (红字) in its own gapless series, naming the invoice it corrects.

    Without ``requests`` it reverses the whole invoice (refused once anything was credited:
    credit what remains line by line); with them, the chosen lines by an amount or quantity,
    never more than what earlier credit notes left on a line. VAT per line
    (:func:`tongdao.billing.money.credit_vat`); the totals are the sums of the lines. An
    issued invoice whose credits and payments now cover its total becomes paid."""
    state = invoice.state
    if invoice.kind != InvoiceKind.INVOICE or state not in (
        InvoiceState.ISSUED,
        InvoiceState.PAID,
    ):
        raise Conflict(
            "credit notes correct issued or paid invoices; void a draft instead",
            {"state": f"the invoice is {state}"},
        )
    session = ctx.session
    number = take_number(session, InvoiceKind.CREDIT_NOTE)  # locks the series: see the module
    credited = credited_lines(session, invoice)
    if requests is None:
        if any(c.amount or c.vat for c in credited.values()):
            taken = credited_total(session, invoice.id)
            raise Conflict(
                "this invoice has a credit note already",
                {"lines": f"¥{taken} of this invoice is credited already; credit what "
                          "remains line by line"},
            )  # fmt: skip
        plan = [CreditLine(line, line.amount, line.vat, line.quantity) for line in invoice.lines]
    else:
        plan = plan_credit(invoice.lines, credited, requests)
    today = money.shanghai_today(ctx.runtime.clock())
    subtotal, vat, total = money.totals([(-c.amount, -c.vat) for c in plan])
    if state == InvoiceState.ISSUED:
        # Credits and payments now cover the invoice: nothing is owed, it is paid (as a
        # payment that covers what is left makes it).
        left = invoice.total - credited_total(session, invoice.id) + total - invoice.amount_paid
        if left <= 0:
            invoice.state = InvoiceState.PAID
    note = Invoice(
        tenant_id=invoice.tenant_id,
        kind=InvoiceKind.CREDIT_NOTE,
        number=number,
        dedupe_key=f"credit_note:{number}",
        month=invoice.month,
        state=InvoiceState.ISSUED,
        corrects_id=invoice.id,
        reason=reason,
        subtotal=subtotal,
        vat=vat,
        total=total,
        amount_paid=money.ZERO,
        payment_terms_days=0,
        issued_on=today,
        due_on=today,
        **{k: getattr(invoice, k) for k in _COPIED},
    )
    for c in sorted(plan, key=lambda c: c.line.position):
        line = c.line
        note.lines.append(
            InvoiceLine(
                tenant_id=line.tenant_id, position=line.position, kind=line.kind,
                description=line.description, tax_code=line.tax_code, unit=line.unit,
                quantity=-c.quantity, unit_price=line.unit_price,
                period_start=line.period_start, period_end=line.period_end,
                amount=-c.amount, vat_rate=line.vat_rate, vat=-c.vat,
                usage_key=line.usage_key,
            )
        )  # fmt: skip
    session.add(note)
    return note


_COPIED = (
    "currency",
    "buyer_name",
    "buyer_tax_id",
    "buyer_address_phone",
    "buyer_bank",
    "buyer_account",
    "seller_name",
    "seller_tax_id",
    "seller_address_phone",
)


# --- payments ----------------------------------------------------------------------------------
def record_payment(
    ctx: Ctx, invoice: Invoice, amount: Decimal, received_on: date, reference: str
) -> Payment:
    """A payment (full or partial) of an issued invoice; the invoice is paid when covered."""
    if invoice.kind == InvoiceKind.INVOICE and invoice.state == InvoiceState.PAID:
        raise Conflict(
            "credit notes and payments cover this invoice; it takes no more payments",
            {"amount": "nothing is outstanding"},
        )
    if invoice.kind != InvoiceKind.INVOICE or invoice.state != InvoiceState.ISSUED:
        raise Conflict(
            f"payments are recorded against issued invoices; this one is {invoice.state}"
        )
    outstanding = outstanding_of(ctx.session, invoice)
    if outstanding <= 0:
        raise Conflict(
            "credit notes and payments cover this invoice; it takes no more payments",
            {"amount": "nothing is outstanding"},
        )
    if amount > outstanding:
        raise ValidationError({"amount": f"more than the ¥{outstanding} outstanding"})
    payment = Payment(
        invoice_id=invoice.id,
        tenant_id=invoice.tenant_id,
        amount=amount,
        received_on=received_on,
        reference=reference,
    )
    ctx.session.add(payment)
    invoice.amount_paid = invoice.amount_paid + amount
    if amount == outstanding:
        invoice.state = InvoiceState.PAID
    return payment


def credited_sum() -> Any:
    """SQL: what credit notes took off the outer query's invoice (correlated, positive)."""
    credit = aliased(Invoice)
    return (
        select(func.coalesce(-func.sum(credit.total), 0))
        .where(credit.corrects_id == Invoice.id, credit.kind == InvoiceKind.CREDIT_NOTE)
        .scalar_subquery()
    )


def outstanding_sql() -> Any:
    """SQL: an invoice's outstanding amount, total − credits − payments."""
    return Invoice.total - credited_sum() - Invoice.amount_paid


def overdue_query(today: date) -> Select[Any]:
    """Issued invoices past their due date with something outstanding after credit notes
    (whole or partial) and payments."""
    return (
        select(Invoice)
        .where(Invoice.kind == InvoiceKind.INVOICE, Invoice.state == InvoiceState.ISSUED)
        .where(Invoice.due_on < today)
        .where(outstanding_sql() > 0)
    )


def balance(session: Session, tenant_id: uuid.UUID, today: date) -> dict[str, Decimal]:
    """Invoiced: issued and paid invoices less their credit notes (whole or partial); balance:
    that less payments; overdue: the outstanding (total − credits − payments) of invoices past
    their due date."""
    billed = session.scalar(
        select(func.coalesce(func.sum(Invoice.total), 0)).where(
            Invoice.tenant_id == tenant_id,
            Invoice.state.in_([InvoiceState.ISSUED, InvoiceState.PAID]),
        )
    )
    paid = session.scalar(
        select(func.coalesce(func.sum(Payment.amount), 0)).where(Payment.tenant_id == tenant_id)
    )
    overdue = session.scalar(
        select(func.coalesce(func.sum(outstanding_sql()), 0)).where(
            Invoice.id.in_(overdue_query(today).with_only_columns(Invoice.id)),
            Invoice.tenant_id == tenant_id,
        )
    )
    billed_d, paid_d = money.fen(Decimal(billed or 0)), money.fen(Decimal(paid or 0))
    return {
        "invoiced": billed_d,
        "paid": paid_d,
        "balance": billed_d - paid_d,
        "overdue": money.fen(Decimal(overdue or 0)),
    }


def guard_invoice_changes(session: Session, objs: Sequence[object]) -> None:
    """Refuse a change to a made invoice outside :data:`MUTABLE_AFTER_MADE`, and any change
    to a line (an issued invoice never changes; corrections are credit notes)."""
    from sqlalchemy import inspect

    for obj in objs:
        if isinstance(obj, InvoiceLine) and inspect(obj).persistent:
            raise Conflict("invoice lines never change; issue a credit note")
        if isinstance(obj, Invoice) and inspect(obj).persistent:
            state = inspect(obj)
            changed = {a.key for a in state.attrs if a.history.has_changes()}
            bad = changed - MUTABLE_AFTER_MADE - {"lines"}
            if bad:
                raise Conflict(f"an invoice never changes ({', '.join(sorted(bad))})")


def _before_flush(session: Session, _ctx: object, _instances: object) -> None:
    guard_invoice_changes(session, [*session.dirty, *session.deleted])


def install_guard() -> None:
    from sqlalchemy import event

    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)


install_guard()


def load_invoice(guard: Guard, tenant: Tenant, invoice_id: uuid.UUID, action: Action) -> Invoice:
    return InvoiceResource().load(guard, tenant, invoice_id, action)


def now_shanghai_month(now: datetime) -> date:
    return money.shanghai_today(now).replace(day=1)
