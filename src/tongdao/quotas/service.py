"""Monthly transfer caps and bandwidth limits: what is configured, what is used, what the
gateways enforce.

**Where the limits live.** On the tenant (``tenant_limits``, set by operator staff: the
operator admin or the billing clerk), with per-user overrides (``user_limits``, set by the
tenant's admin within the tenant's values, or by operator staff). Not on the billing plan: a
plan is a price list shared by many tenants and a tenant's subscription may change mid-month
(prorated by day), while enforcement needs one unambiguous value per subject at every instant
of the month; the clerk sets the tenant's limits to what its contract sells (seats with an
allowance and a per-user bandwidth cap) when subscribing it.

**Counting.** :func:`month_to_date` sums what the gateways reported for the subject in an
Asia/Shanghai calendar month (a record counts in the month of its period's end): for the
tenant, its devices and sites (not inter-PoP transit, which carries the same bytes again);
for a user, their devices. Both directions count (received from and sent to the peer). It is
the one place that reads the usage store for caps (the usage ledger's hourly rollups replace
its body at merge).

**When a cap is reached.** :func:`check_report` runs in the transaction that stores a
gateway's report, for the tenants of that report that have limits: at 80% and at 100% of a
cap it writes a :class:`QuotaEvent` (once per subject, level and month; the unique key keeps
it once also with concurrent reports), mails the tenant's admins and the operator's staff
(operator admins and billing clerks), and counts it in the metrics. The event is a data-plane
row, so its commit bumps the desired-state version: every PoP serving the tenant long-polls
the new state, in which the user's (or the whole tenant's) peers are blocked or throttled
(:func:`peer_limits`).

**Overshoot bound.** Between the instant a subject reaches its cap and the instant every
gateway enforces it, each PoP serving the subject carries at most its rate for at most one
report interval (bytes moved since the agent's last sample) plus the time to send the report
and apply the new state, in each direction (a cap counts both):
``overshoot <= pops * 2 * rate * (interval + apply)`` plus WireGuard's overhead (32 bytes a
packet, 2.3% at full-size packets: the counters are WireGuard's, the limit holds the inner
packets), with ``rate`` the user's bandwidth limit where one is set (else the PoP's
``max_rate_mbps``, which bounds what a report may claim anyway). With no rate at all the
bound is the PoP's. :func:`overshoot_bound` states it; the unit and namespace tests check it.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongdao.billing import money
from tongdao.errors import ValidationError
from tongdao.gateway.ledger import hour_of
from tongdao.gateway.models import TENANT_KINDS, UsageHourly, UsageTenantHourly
from tongdao.gateway.periods import exact_sum, joined
from tongdao.network.models import Device
from tongdao.quotas.models import OverCap, QuotaEvent, TenantLimits, UserLimits
from tongdao.quotas.schemas import (
    QuotaEventPublic,
    TenantLimitsIn,
    TenantLimitsPublic,
    UserLimitsIn,
    UserLimitsPublic,
)
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, User, UserState

log = logging.getLogger("tongdao.quotas")

MB = 1_000_000
LEVELS = (80, 100)
TENANT = "tenant"


# --- months ---------------------------------------------------------------------------------
def month_of(instant: datetime) -> str:
    """The Asia/Shanghai calendar month of an instant, ``YYYY-MM``."""
    return money.shanghai_today(instant).strftime("%Y-%m")


def _bounds(month: str) -> tuple[datetime, datetime]:
    return money.month_bounds_utc(money.parse_month(month))


# --- counting -------------------------------------------------------------------------------
def month_to_date(
    session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None, *, month: str
) -> int:
    """Bytes (received + sent) the gateways reported for the tenant, or one of its users, in
    the Asia/Shanghai month ``YYYY-MM``, from the usage ledger (:mod:`tongdao.gateway.ledger`):
    the hours ``(h, h + 1 h]`` holding each report's period end, so a report counts in the
    month its period ends, as it does on the invoice. The tenant's from its per-tenant hours
    (devices and sites, not inter-PoP transit); a user's from the hours of the devices they
    owned when each report was stored. The ledger is written in the report's transaction,
    before :func:`check_report` reads it."""
    start, end = _bounds(month)
    table: Any
    if user_id is None:
        table = UsageTenantHourly
        filters: list[Any] = [table.peer_kind.in_(TENANT_KINDS)]
    else:
        table = UsageHourly
        filters = [table.owner_id == user_id, table.peer_kind == "device"]
    filters += [table.tenant_id == tenant_id, table.hour >= start, table.hour < end]
    row = session.execute(
        select(*exact_sum(table.rx_bytes), *exact_sum(table.tx_bytes)).where(*filters)
    ).one()
    return joined(row[0], row[1]) + joined(row[2], row[3])


# --- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class UserEffective:
    cap_bytes: int | None
    rate_mbps: int | None


def tenant_limits(session: Session, tenant_id: uuid.UUID) -> TenantLimits | None:
    return session.scalar(select(TenantLimits).where(TenantLimits.tenant_id == tenant_id))


def user_override(session: Session, user_id: uuid.UUID) -> UserLimits | None:
    return session.scalar(select(UserLimits).where(UserLimits.user_id == user_id))


def effective(limits: TenantLimits | None, override: UserLimits | None) -> UserEffective:
    """A user's cap and rate: their override where set, else the tenant's per-user value."""
    cap = override.cap_bytes if override is not None and override.cap_bytes is not None else None
    rate = override.rate_mbps if override is not None and override.rate_mbps is not None else None
    if limits is not None:
        # An override stays within the tenant's per-user values, also after those are lowered.
        cap = _least(cap, limits.user_cap_bytes)
        rate = _least(rate, limits.user_rate_mbps)
    return UserEffective(cap, rate)


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def check_within(limits: TenantLimits | None, cap_bytes: int | None, rate: int | None) -> None:
    """A user's override lies within the tenant's values (422 naming the field otherwise)."""
    fields: dict[str, str] = {}
    if limits is not None and cap_bytes is not None:
        for bound, what in (
            (limits.user_cap_bytes, "the tenant's per-user cap"),
            (limits.tenant_cap_bytes, "the tenant's cap"),
        ):
            if bound is not None and cap_bytes > bound:
                fields["cap_mb"] = f"at most {bound // MB} MB ({what})"
                break
    user_rate = None if limits is None else limits.user_rate_mbps
    if rate is not None and user_rate is not None and rate > user_rate:
        fields["rate_mbps"] = f"at most {user_rate} Mbit/s (the tenant's per-user limit)"
    if fields:
        raise ValidationError(fields)


# --- events ---------------------------------------------------------------------------------
def _recipients(session: Session, tenant_id: uuid.UUID) -> list[tuple[str, str | None]]:
    """The tenant's admins and the operator's admins and billing clerks (active accounts),
    each with their language."""
    out: list[tuple[str, str | None]] = []
    for email, tenant, roles, language in session.execute(
        select(User.email, User.tenant_id, User.roles, User.language)
        .where(User.state == UserState.ACTIVE)
        .where((User.tenant_id == tenant_id) | (User.tenant_id.is_(None)))
        .order_by(User.email)
    ):
        wanted = {"tenant_admin"} if tenant is not None else {"operator_admin", "billing_clerk"}
        if wanted & set(roles or ()):
            out.append((email, language))
    return out


def _mail(ctx: Ctx, event: QuotaEvent) -> None:
    """The event's mail to each recipient, in their language (:mod:`tongdao.quotas.texts`)."""
    from tongdao.mail.service import queue
    from tongdao.quotas.texts import quota_mail

    session = ctx.session
    names = session.execute(
        select(Tenant.name_en, Tenant.name_zh).where(Tenant.id == event.tenant_id)
    ).one()
    user = None
    if event.subject != TENANT:
        user = session.scalar(select(User.email).where(User.id == event.user_id)) or str(
            event.subject
        )
    for recipient, language in _recipients(session, event.tenant_id):
        subject, text = quota_mail(
            language,
            tenant=(str(names[0]), str(names[1] or "")),
            user=user,
            level=event.level,
            month=event.month,
            used_bytes=event.used_bytes,
            cap_bytes=event.cap_bytes,
        )
        queue(ctx, recipient, subject, text)


def _evaluate(
    ctx: Ctx,
    tenant_id: uuid.UUID,
    subject: str,
    user_id: uuid.UUID | None,
    used: int,
    cap: int,
    month: str,
    fired: list[QuotaEvent],
) -> None:
    session = ctx.session
    for level in LEVELS:
        if used * 100 < cap * level:
            continue
        event = session.scalar(
            select(QuotaEvent).where(
                QuotaEvent.tenant_id == tenant_id,
                QuotaEvent.subject == subject,
                QuotaEvent.month == month,
                QuotaEvent.level == level,
            )
        )
        if event is None:
            event = QuotaEvent(
                tenant_id=tenant_id,
                subject=subject,
                user_id=user_id,
                month=month,
                level=level,
                used_bytes=used,
                cap_bytes=cap,
            )
            try:
                with session.begin_nested():  # a concurrent report may have written it
                    session.add(event)
            except IntegrityError:
                continue
            _mail(ctx, event)
            fired.append(event)
            log.info("quota %s of tenant %s: %d%% of %d bytes", subject, tenant_id, level, cap)
        elif level == 100 and event.lifted_at is not None:
            event.lifted_at = None  # reached again after a raised cap: enforced again, no mail
            event.used_bytes, event.cap_bytes = used, cap


def report_month(period_end: datetime) -> str:
    """The Asia/Shanghai month a report counts in: that of the ledger hour holding its period's
    end (:func:`tongdao.gateway.ledger.hour_of`), as :func:`month_to_date` counts it."""
    return month_of(hour_of(period_end))


def check_report(
    ctx: Ctx, rows: Iterable[tuple[uuid.UUID, str, str]], period_end: datetime
) -> list[QuotaEvent]:
    """After a report's rows ``(tenant, peer kind, peer ref)`` were stored: write the events of
    the caps they made reach 80% or 100% in the month of the report's period (not the server
    clock's: a report for 23:59:30 on the last day that arrives after midnight counts in the
    month it measured). Only tenants with limits cost a query."""
    by_tenant: dict[uuid.UUID, set[str]] = defaultdict(set)
    for tenant_id, kind, ref in rows:
        refs = by_tenant[tenant_id]
        if kind == "device":
            refs.add(ref)
    if not by_tenant:
        return []
    session = ctx.session
    limited = {
        row.tenant_id: row
        for row in session.scalars(
            select(TenantLimits).where(TenantLimits.tenant_id.in_(list(by_tenant)))
        )
    }
    overridden = set(
        session.scalars(
            select(UserLimits.tenant_id)
            .where(UserLimits.tenant_id.in_(list(by_tenant)), UserLimits.cap_bytes.is_not(None))
            .distinct()
        )
    )
    month = report_month(period_end)
    fired: list[QuotaEvent] = []
    for tenant_id in sorted(set(limited) | overridden):
        limits = limited.get(tenant_id)
        if limits is not None and limits.tenant_cap_bytes:
            used = month_to_date(session, tenant_id, month=month)
            _evaluate(ctx, tenant_id, TENANT, None, used, limits.tenant_cap_bytes, month, fired)
        refs = by_tenant[tenant_id]
        if not refs:
            continue
        users = set(
            session.scalars(
                select(Device.user_id).where(
                    Device.tenant_id == tenant_id,
                    Device.id.in_(_uuids(refs)),
                )
            )
        )
        for user_id in sorted(u for u in users if u is not None):
            cap = effective(limits, user_override(session, user_id)).cap_bytes
            if cap:
                used = month_to_date(session, tenant_id, user_id, month=month)
                _evaluate(ctx, tenant_id, str(user_id), user_id, used, cap, month, fired)
    return fired


def _uuids(refs: Iterable[str]) -> list[uuid.UUID]:
    out: list[uuid.UUID] = []
    for ref in refs:
        try:
            out.append(uuid.UUID(ref))
        except ValueError:
            continue
    return out


def reevaluate(ctx: Ctx, tenant_id: uuid.UUID, now: datetime) -> None:
    """After the tenant's or a user's limits changed: lift this month's 100% events whose cap
    now lies above the bytes used (raised or removed), and fire those newly reached."""
    session = ctx.session
    month = month_of(now)
    limits = tenant_limits(session, tenant_id)
    for event in list(
        session.scalars(
            select(QuotaEvent).where(
                QuotaEvent.tenant_id == tenant_id,
                QuotaEvent.month == month,
                QuotaEvent.level == 100,
                QuotaEvent.lifted_at.is_(None),
            )
        )
    ):
        if event.subject == TENANT:
            cap = limits.tenant_cap_bytes if limits is not None else None
            used = month_to_date(session, tenant_id, month=month)
        else:
            assert event.user_id is not None
            cap = effective(limits, user_override(session, event.user_id)).cap_bytes
            used = month_to_date(session, tenant_id, event.user_id, month=month)
        if not cap or used < cap:
            event.lifted_at = now
    fired: list[QuotaEvent] = []
    if limits is not None and limits.tenant_cap_bytes:
        used = month_to_date(session, tenant_id, month=month)
        _evaluate(ctx, tenant_id, TENANT, None, used, limits.tenant_cap_bytes, month, fired)
    users = session.scalars(
        select(User.id).where(User.tenant_id == tenant_id).order_by(User.id)
    ).all()
    for user_id in users:
        cap = effective(limits, user_override(session, user_id)).cap_bytes
        if cap:
            used = month_to_date(session, tenant_id, user_id, month=month)
            _evaluate(ctx, tenant_id, str(user_id), user_id, used, cap, month, fired)


def lift_past_months(ctx: Ctx, now: datetime) -> int:
    """The ``quotas.month`` job: a new month lifts last month's blocks (a data-plane change,
    so the gateways receive a state without them). Returns how many were lifted."""
    month = month_of(now)
    lifted = 0
    for event in ctx.session.scalars(
        select(QuotaEvent).where(
            QuotaEvent.level == 100, QuotaEvent.lifted_at.is_(None), QuotaEvent.month < month
        )
    ):
        event.lifted_at = now
        lifted += 1
    return lifted


# --- what the gateways enforce --------------------------------------------------------------
@dataclass(frozen=True)
class PeerLimit:
    """What a peer's traffic is held to: ``blocked``, or ``rate_mbps`` (each direction) shared
    by every peer of the same ``group`` on the PoP (a user's devices; ``tenant`` for a tenant
    over its cap and throttled)."""

    blocked: bool = False
    rate_mbps: int | None = None
    group: str | None = None


@dataclass(frozen=True)
class TenantEnforcement:
    tenant: PeerLimit | None  # every device and site peer (the tenant is over its cap)
    users: dict[str, PeerLimit]  # by user id (text)


def limited_tenants(session: Session) -> set[uuid.UUID]:
    """Tenants with limits of their own or of a user: the only ones :func:`peer_limits` can
    find anything for (an event needs a cap; a removed cap lifts its block)."""
    return set(session.scalars(select(TenantLimits.tenant_id))) | set(
        session.scalars(select(UserLimits.tenant_id).distinct())
    )


def peer_limits(session: Session, tenant_id: uuid.UUID, now: datetime) -> TenantEnforcement:
    """The limits the gateways apply to the tenant's peers now."""
    limits = tenant_limits(session, tenant_id)
    overrides = {
        str(o.user_id): o
        for o in session.scalars(select(UserLimits).where(UserLimits.tenant_id == tenant_id))
    }
    month = month_of(now)
    over = set(
        session.scalars(
            select(QuotaEvent.subject).where(
                QuotaEvent.tenant_id == tenant_id,
                QuotaEvent.month == month,
                QuotaEvent.level == 100,
                QuotaEvent.lifted_at.is_(None),
            )
        )
    )
    block = limits is None or limits.over_cap == OverCap.BLOCK
    throttle = None if limits is None else limits.throttle_mbps
    tenant: PeerLimit | None = None
    if TENANT in over:
        tenant = PeerLimit(blocked=True) if block else PeerLimit(False, throttle, TENANT)
    users: dict[str, PeerLimit] = {}
    subjects = set(overrides) | {s for s in over if s != TENANT}
    if limits is not None and limits.user_rate_mbps:
        subjects |= {
            str(u) for u in session.scalars(select(User.id).where(User.tenant_id == tenant_id))
        }
    for user in sorted(subjects):
        rate = effective(limits, overrides.get(user)).rate_mbps
        if user in over:
            if block:
                users[user] = PeerLimit(blocked=True)
                continue
            rate = min(r for r in (rate, throttle) if r) if (rate or throttle) else None
        if rate:
            users[user] = PeerLimit(False, rate, user)
    return TenantEnforcement(tenant, users)


WG_OVERHEAD = 32 / 1420  # WireGuard's bytes over the inner packet, at full-size packets


def overshoot_bound(interval_s: float, rate_mbps: float, pops: int, apply_s: float) -> int:
    """Bytes a subject may move past its cap before every gateway enforces it (see the
    module's docstring): each PoP at ``rate_mbps`` in each direction (a cap counts both) for
    one report interval plus the time to send the report and apply the new state, in
    WireGuard's bytes (the limit holds the inner packets to the rate)."""
    return int(pops * 2 * rate_mbps * 125_000 * (interval_s + apply_s) * (1 + WG_OVERHEAD))


def current_counts(session: Session, now: datetime) -> dict[tuple[str, int], int]:
    """Subjects over 80% / 100% this month, by (``tenant`` | ``user``, level): the metrics."""
    month = month_of(now)
    out: dict[tuple[str, int], int] = {
        (kind, level): 0 for kind in (TENANT, "user") for level in LEVELS
    }
    for subject, level, count in session.execute(
        select(QuotaEvent.subject, QuotaEvent.level, func.count())
        .where(QuotaEvent.month == month)
        .group_by(QuotaEvent.subject, QuotaEvent.level)
    ):
        out[(TENANT if subject == TENANT else "user", int(level))] += int(count)
    return out


def today(now: datetime) -> date:
    return money.shanghai_today(now)


# --- the API's and the console's operations -------------------------------------------------
def _mb(value: int | None) -> int | None:
    return None if value is None else value * MB


def _in_mb(value: int | None) -> int | None:
    return None if value is None else value // MB


def _enforced(session: Session, tenant_id: uuid.UUID, subject: str, month: str) -> bool:
    return (
        session.scalar(
            select(QuotaEvent.id).where(
                QuotaEvent.tenant_id == tenant_id,
                QuotaEvent.subject == subject,
                QuotaEvent.month == month,
                QuotaEvent.level == 100,
                QuotaEvent.lifted_at.is_(None),
            )
        )
        is not None
    )


def tenant_view(ctx: Ctx, tenant_id: uuid.UUID) -> TenantLimitsPublic:
    session = ctx.session
    month = month_of(ctx.runtime.clock())
    row = tenant_limits(session, tenant_id)
    return TenantLimitsPublic(
        tenant_id=tenant_id,
        tenant_cap_mb=_in_mb(row.tenant_cap_bytes) if row else None,
        user_cap_mb=_in_mb(row.user_cap_bytes) if row else None,
        user_rate_mbps=row.user_rate_mbps if row else None,
        over_cap="throttle" if row and row.over_cap == OverCap.THROTTLE else "block",
        throttle_mbps=row.throttle_mbps if row else None,
        month=month,
        used_bytes=month_to_date(session, tenant_id, month=month),
        enforced=_enforced(session, tenant_id, TENANT, month),
    )


def put_tenant_limits(ctx: Ctx, tenant_id: uuid.UUID, data: TenantLimitsIn) -> None:
    """Set the tenant's limits (audited; a data-plane change); 422 keyed by field."""
    fields: dict[str, str] = {}
    if data.over_cap == "throttle" and data.throttle_mbps is None:
        fields["throttle_mbps"] = "required when traffic over a cap is throttled"
    if data.over_cap == "block" and data.throttle_mbps is not None:
        fields["throttle_mbps"] = "only with over_cap throttle"
    if data.user_cap_mb and data.tenant_cap_mb and data.user_cap_mb > data.tenant_cap_mb:
        fields["user_cap_mb"] = "at most the tenant's cap"
    if fields:
        raise ValidationError(fields)
    session = ctx.session
    row = tenant_limits(session, tenant_id)
    if row is None:
        row = TenantLimits(tenant_id=tenant_id)
        session.add(row)
    row.tenant_cap_bytes = _mb(data.tenant_cap_mb)
    row.user_cap_bytes = _mb(data.user_cap_mb)
    row.user_rate_mbps = data.user_rate_mbps
    row.over_cap = data.over_cap
    row.throttle_mbps = data.throttle_mbps
    session.flush()
    reevaluate(ctx, tenant_id, ctx.runtime.clock())


def user_view(ctx: Ctx, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserLimitsPublic:
    session = ctx.session
    month = month_of(ctx.runtime.clock())
    override = user_override(session, user_id)
    eff = effective(tenant_limits(session, tenant_id), override)
    return UserLimitsPublic(
        tenant_id=tenant_id,
        user_id=user_id,
        cap_mb=_in_mb(override.cap_bytes) if override else None,
        rate_mbps=override.rate_mbps if override else None,
        effective_cap_mb=_in_mb(eff.cap_bytes),
        effective_rate_mbps=eff.rate_mbps,
        month=month,
        used_bytes=month_to_date(session, tenant_id, user_id, month=month),
        enforced=_enforced(session, tenant_id, str(user_id), month),
    )


def put_user_limits(ctx: Ctx, tenant_id: uuid.UUID, user_id: uuid.UUID, data: UserLimitsIn) -> None:
    """Set a user's override within the tenant's values (422 naming the field otherwise)."""
    session = ctx.session
    check_within(tenant_limits(session, tenant_id), _mb(data.cap_mb), data.rate_mbps)
    row = user_override(session, user_id)
    if data.cap_mb is None and data.rate_mbps is None:
        if row is not None:
            session.delete(row)
    else:
        if row is None:
            row = UserLimits(tenant_id=tenant_id, user_id=user_id)
            session.add(row)
        row.cap_bytes = _mb(data.cap_mb)
        row.rate_mbps = data.rate_mbps
    session.flush()
    reevaluate(ctx, tenant_id, ctx.runtime.clock())


def events(session: Session, tenant_id: uuid.UUID, limit: int = 200) -> list[QuotaEventPublic]:
    rows = session.scalars(
        select(QuotaEvent)
        .where(QuotaEvent.tenant_id == tenant_id)
        .order_by(QuotaEvent.created_at.desc(), QuotaEvent.level.desc())
        .limit(limit)
    )
    return [QuotaEventPublic.model_validate(r, from_attributes=True) for r in rows]


def month_events(session: Session, month: str, limit: int = 200) -> list[QuotaEventPublic]:
    """Every tenant's events of a month, newest first (the operator's view)."""
    rows = session.scalars(
        select(QuotaEvent)
        .where(QuotaEvent.month == month)
        .order_by(QuotaEvent.created_at.desc(), QuotaEvent.level.desc())
        .limit(limit)
    )
    return [QuotaEventPublic.model_validate(r, from_attributes=True) for r in rows]
