"""The scheduled compliance check: rules that hold over time, not only when something changes.

Licences expire and shareholdings move without any tenant changing state, so the rules that
every activation checks (:mod:`tongdao.compliance.licensing`) are also checked by a job
(``compliance.watch``, every scheduler tick under its lease; ``tongdao operator
compliance-check`` runs it once on the store). Each run looks at the service in place — the
active tenants, and those this job suspended — and finds:

* ``ownership``: the shareholder register does not allow B13 (rule ``ownership.foreign_cap``:
  the foreign stake above 50%, or a register that does not add up); affects every tenant;
* ``licence``: no valid B13 licence at all (``licence.b13_required`` / ``licence.validity``);
  affects every tenant;
* ``province:<code>``: valid B13 licences exist but none covers a province where tenants are in
  service (``licence.validity`` when the one that covered it lapsed, else
  ``licence.region_covered``); affects that province's tenants.

A finding not yet open becomes a *breach*: at once an alert — an audit event
(``compliance_breach``), an e-mail to every compliance officer in their language, and the
dashboards (``GET /operator/compliance`` lists open breaches with their countdown). New
activations are refused meanwhile, as always. Running service continues until the grace
period ends (``grace_until`` = found + the operator's grace days, default 7, at most 30;
``PUT /operator/compliance/watch``); then the affected tenants are suspended, each audited with
an event naming the rule (``compliance_suspend``) besides the state change itself. When a run
no longer finds the breach it is resolved. A suspension of the job's lasts while a current
finding still covers the tenant: when the situation changes shape (the national licence breach
gives way to one province's, or a province's to no valid licence at all) the hold moves to the
current breach, from then on and with no new grace period; a tenant goes back to ``active`` only
when nothing current covers it. A tenant suspended for another reason (by a person) has no
suspension of this job's and is never touched; one that a person (or another part of the
service) suspended again, with a reason of its own, on top of the job's is not reactivated by
the job either: its hold just ends (the job reactivates only while the reason is its own), nor
is one that a suspension for non-payment also holds (:mod:`tongdao.billing.dunning`).

**At once.** Besides its ticks, a server's scheduler runs the check as soon as a transaction
that changed a licence or the shareholder register commits in that server
(:func:`on_rules_changed`), so the alert does not wait for the next tick. A change made by
another process on the same store (a CLI command) is seen at the next tick.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.compliance import licensing
from tongdao.compliance import provinces as pv
from tongdao.compliance.models import (
    DEFAULT_GRACE_DAYS,
    ComplianceBreach,
    ComplianceSuspension,
    ComplianceWatch,
)
from tongdao.compliance.schemas import BreachPublic, WatchOutcome, WatchSettings, WatchStatus
from tongdao.jobs import lease
from tongdao.mail import service as mail
from tongdao.mail import texts
from tongdao.operator.models import Licence, Shareholder
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, TenantState, User, UserState
from tongdao.web import i18n
from tongdao.web.i18n import N_

if TYPE_CHECKING:
    from tongdao.runtime import Runtime

log = logging.getLogger("tongdao.compliance.watch")

JOB = "compliance.watch"
JOB_ACTOR = Actor(None, "job:compliance.watch")
LEASE_TTL = timedelta(minutes=10)

# --- at once: a committed change to what the check reads wakes the schedulers -----------------
_WATCHED = (Licence, Shareholder)
_TOUCHED = "tongdao.compliance.watch.touched"
_listeners: list[Callable[[], None]] = []
_listeners_lock = threading.Lock()


def on_rules_changed(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (from the committing thread; keep it short) after each commit that
    changed a licence or a shareholder; returns the function that stops it."""
    with _listeners_lock:
        _listeners.append(callback)

    def stop() -> None:
        with _listeners_lock:
            if callback in _listeners:
                _listeners.remove(callback)

    return stop


@event.listens_for(Session, "before_flush")
def _note_rule_changes(session: Session, _context: object, _instances: object) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, _WATCHED) for obj in changed):
        session.info[_TOUCHED] = True


@event.listens_for(Session, "after_commit")
def _wake_on_commit(session: Session) -> None:
    if session.in_nested_transaction() or not session.info.pop(_TOUCHED, False):
        return
    with _listeners_lock:
        callbacks = list(_listeners)
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_rollback")
def _forget_rule_changes(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_TOUCHED, None)


ALERT_SUBJECT = N_("Tongdao: compliance rule %(rule)s is not met")
ALERT_BODY = N_(
    "The scheduled compliance check found that rule %(rule)s is not met: %(detail)s\n\n"
    "New activations are refused. Running service continues until %(deadline)s; then "
    "%(count)s tenant(s) in service are suspended automatically unless the rule is met again "
    "(recording the renewed licence or the corrected shareholder register lifts it)."
)


class LeaseHeld(Exception):
    """Another replica (or command) is running the check."""


# --- settings ----------------------------------------------------------------------------------
def grace_days(session: Session) -> int:
    row = session.get(ComplianceWatch, 1)
    return DEFAULT_GRACE_DAYS if row is None else row.grace_days


def put_settings(ctx: Ctx, data: WatchSettings) -> WatchSettings:
    """Set the grace period; open breaches not yet enforced move their deadline with it."""
    row = ctx.session.get(ComplianceWatch, 1)
    if row is None:
        row = ComplianceWatch(id=1, grace_days=data.grace_days)
        ctx.session.add(row)
    else:
        row.grace_days = data.grace_days
    for breach in ctx.session.scalars(
        select(ComplianceBreach).where(
            ComplianceBreach.resolved_at.is_(None), ComplianceBreach.suspended_at.is_(None)
        )
    ):
        breach.grace_until = breach.detected_at + timedelta(days=data.grace_days)
    return WatchSettings(grace_days=data.grace_days)


# --- what is unmet -----------------------------------------------------------------------------
@dataclass
class Finding:
    scope: str
    rule_id: str
    detail: str
    tenant_ids: list[uuid.UUID] = field(default_factory=list)


def _held_by_watch(session: Session) -> set[uuid.UUID]:
    """Suspended tenants the check still counts as in service: those it holds itself, and
    those a suspension for non-payment holds that were in service then (its lift would put
    them back: the check holds them too, so that the lift does not bypass a breach)."""
    from tongdao.billing.models import NonPaymentSuspension

    ours = set(
        session.scalars(
            select(ComplianceSuspension.tenant_id).where(ComplianceSuspension.lifted_at.is_(None))
        )
    )
    unpaid = session.scalars(
        select(NonPaymentSuspension.tenant_id).where(
            NonPaymentSuspension.lifted_at.is_(None), NonPaymentSuspension.was_active.is_(True)
        )
    )
    return ours | set(unpaid)


def findings(session: Session, now: datetime) -> dict[str, Finding]:
    """The rules unmet for the service in place today, by scope."""
    today = licensing.china_today(now)
    licences = list(session.scalars(select(Licence)))
    holders = list(session.scalars(select(Shareholder)))
    held = _held_by_watch(session)
    in_service = [
        (tid, division)
        for tid, state, division in session.execute(
            select(Tenant.id, Tenant.state, Tenant.division_code).order_by(Tenant.id)
        )
        if state == TenantState.ACTIVE or (state == TenantState.SUSPENDED and tid in held)
    ]
    everyone = [tid for tid, _division in in_service]
    out: dict[str, Finding] = {}
    owned = licensing.ownership_refusal(holders)
    if owned is not None:
        out["ownership"] = Finding("ownership", owned.rule_id, owned.detail, everyone)
    anywhere = licensing.coverage_refusal(
        licences, today, licensing.Place("service", in_china=False, province=None)
    )
    if anywhere is not None:
        out["licence"] = Finding("licence", anywhere.rule_id, anywhere.detail, everyone)
        return out
    by_province: dict[str | None, list[uuid.UUID]] = defaultdict(list)
    for tid, division in in_service:
        by_province[pv.province_of_division(division)].append(tid)
    for province, tenant_ids in sorted(by_province.items(), key=lambda item: item[0] or ""):
        where = pv.label(province) if province else "an unknown province"
        place = licensing.Place(f"service to {len(tenant_ids)} tenant(s)", True, province)
        refusal = licensing.coverage_refusal(licences, today, place)
        if refusal is not None:
            scope = f"province:{province or '?'}"
            out[scope] = Finding(scope, refusal.rule_id, refusal.detail, tenant_ids)
            log.debug("no valid licence covers %s", where)
    return out


# --- the run -----------------------------------------------------------------------------------
def _officers(session: Session) -> list[User]:
    return [
        user
        for user in session.scalars(
            select(User).where(User.tenant_id.is_(None), User.state == UserState.ACTIVE)
        )
        if "compliance_officer" in (user.roles or [])
    ]


def alert_mail(
    language: str | None, rule_id: str, detail: str, deadline: str, count: int
) -> tuple[str, str]:
    """(subject, body) of the alert to a compliance officer, in their language."""
    from tongdao.messages import translate

    lang = texts.language_of(language)
    gettext = i18n.translations(lang).gettext
    subject = gettext(ALERT_SUBJECT) % {"rule": rule_id}
    body = gettext(ALERT_BODY) % {
        "rule": rule_id,
        "detail": translate(detail, lang),
        "deadline": deadline,
        "count": count,
    }
    return subject, body + "\n"


def _alert(ctx: Ctx, breach: ComplianceBreach, finding: Finding) -> None:
    record(
        ctx.session,
        "compliance_breach",
        "compliance_breach",
        breach.id,
        kind="event",
        after={
            "scope": breach.scope,
            "rule": breach.rule_id,
            "detail": breach.detail,
            "grace_until": breach.grace_until,
            "tenants": len(finding.tenant_ids),
        },
    )
    for officer in _officers(ctx.session):
        lang = texts.language_of(officer.language)
        deadline = i18n.Locale(lang).when(breach.grace_until)
        subject, body = alert_mail(
            lang, breach.rule_id, breach.detail, deadline, len(finding.tenant_ids)
        )
        mail.queue(ctx, officer.email, subject, body)


SUSPEND_REASON = "suspended automatically: rule "


def state_reason(breach: ComplianceBreach) -> str:
    """The state reason the job writes on a tenant it suspends (and only it)."""
    return (
        f"{SUSPEND_REASON}{breach.rule_id} unmet since "
        f"{breach.detected_at.isoformat(timespec='seconds')} and the grace period "
        f"ended ({breach.detail})"
    )[:500]


def _is_own(tenant: Tenant) -> bool:
    """Whether the tenant's suspension is still the job's: the reason is the one it wrote. A
    person (or another part of the service) who suspended it again with a reason of their own
    has taken it over, and the job does not undo that."""
    return tenant.state == TenantState.SUSPENDED and (tenant.state_reason or "").startswith(
        SUSPEND_REASON
    )


def _suspend(
    ctx: Ctx, breach: ComplianceBreach, tenant_ids: Sequence[uuid.UUID], now: datetime
) -> list[uuid.UUID]:
    session = ctx.session
    already = set(
        session.scalars(
            select(ComplianceSuspension.tenant_id).where(
                ComplianceSuspension.breach_id == breach.id,
                ComplianceSuspension.lifted_at.is_(None),
            )
        )
    )
    suspended = []
    for tid in tenant_ids:
        if tid in already:
            continue
        tenant = session.get(Tenant, tid)
        if tenant is None:
            continue
        session.add(
            ComplianceSuspension(
                tenant_id=tid, breach_id=breach.id, rule_id=breach.rule_id, suspended_at=now
            )
        )
        if tenant.state == TenantState.ACTIVE:
            tenant.state = TenantState.SUSPENDED
            tenant.state_reason = state_reason(breach)
            suspended.append(tid)
        record(
            session,
            "compliance_suspend",
            "tenant",
            tid,
            tenant_id=tid,
            kind="event",
            after={"rule": breach.rule_id, "breach_id": breach.id, "detail": breach.detail},
        )
    return suspended


def _resolve(ctx: Ctx, breach: ComplianceBreach, now: datetime) -> None:
    breach.resolved_at = now
    record(
        ctx.session,
        "compliance_breach_resolved",
        "compliance_breach",
        breach.id,
        kind="event",
        after={"scope": breach.scope, "rule": breach.rule_id},
    )


def _release(
    ctx: Ctx, found: dict[str, Finding], current: dict[str, ComplianceBreach], now: datetime
) -> list[uuid.UUID]:
    """Lift each of the job's suspensions that no current finding supports any more, and
    reactivate a tenant once nothing current covers it.

    A suspension is supported while its breach is still found and still covers the tenant.
    When the situation changes shape (the national licence breach gives way to one province's,
    or one province's to no valid licence at all), a tenant that a current finding still covers
    stays suspended: its hold moves to that finding's breach (from now, without a new grace
    period). A tenant is reactivated only when no current finding covers it and its suspension
    is still the job's own (:func:`_is_own`); otherwise the job's hold just ends."""
    session = ctx.session
    covering: dict[uuid.UUID, list[ComplianceBreach]] = defaultdict(list)
    for scope, finding in found.items():
        for tid in finding.tenant_ids:
            covering[tid].append(current[scope])
    held: dict[uuid.UUID, list[ComplianceSuspension]] = defaultdict(list)
    for suspension in session.scalars(
        select(ComplianceSuspension)
        .where(ComplianceSuspension.lifted_at.is_(None))
        .order_by(ComplianceSuspension.tenant_id, ComplianceSuspension.suspended_at)
    ):
        held[suspension.tenant_id].append(suspension)
    lifted = []
    for tid in sorted(held):
        covers = {b.id for b in covering.get(tid, [])}
        supported = [s for s in held[tid] if s.breach_id in covers]
        unsupported = [s for s in held[tid] if s.breach_id not in covers]
        if not unsupported:
            continue
        tenant = session.get(Tenant, tid)
        moved_to: ComplianceBreach | None = None
        if not supported and covering.get(tid):
            # Still covered by a finding whose breach does not hold it yet: the hold moves.
            enforced = [b for b in covering[tid] if b.suspended_at is not None]
            moved_to = (enforced or covering[tid])[0]
            session.add(
                ComplianceSuspension(
                    tenant_id=tid, breach_id=moved_to.id, rule_id=moved_to.rule_id, suspended_at=now
                )
            )
            record(
                session,
                "compliance_suspend",
                "tenant",
                tid,
                tenant_id=tid,
                kind="event",
                after={
                    "rule": moved_to.rule_id,
                    "breach_id": moved_to.id,
                    "detail": moved_to.detail,
                    "moved_from": [str(s.breach_id) for s in unsupported],
                },
            )
            if tenant is not None and _is_own(tenant):
                tenant.state_reason = state_reason(moved_to)
        still_held = bool(supported) or moved_to is not None
        for suspension in unsupported:
            suspension.lifted_at = now
            record(
                session,
                "compliance_lift",
                "tenant",
                tid,
                tenant_id=tid,
                kind="event",
                after={
                    "rule": suspension.rule_id,  # the breach's, copied when it suspended
                    "breach_id": suspension.breach_id,
                    "still_held": still_held,
                    "moved_to": moved_to.id if moved_to is not None else None,
                },
            )
        if still_held or tenant is None or tenant.state != TenantState.SUSPENDED:
            continue
        # A suspension for non-payment (a person's, tongdao.billing.dunning) holds it too.
        from tongdao.billing.dunning import held_for_nonpayment

        if _is_own(tenant) and not held_for_nonpayment(session, tid):
            tenant.state = TenantState.ACTIVE
            tenant.state_reason = ""
            lifted.append(tid)
    return lifted


def check(runtime: Runtime, now: datetime | None = None) -> WatchOutcome:
    """One run of the check, in one transaction (see the module)."""
    now = now or runtime.clock()
    outcome = WatchOutcome()
    with runtime.db.session() as session:
        set_actor(session, JOB_ACTOR)
        ctx = Ctx(session=session, runtime=runtime)
        grace = timedelta(days=grace_days(session))
        found = findings(session, now)
        breaches = {
            b.scope: b
            for b in session.scalars(
                select(ComplianceBreach).where(ComplianceBreach.resolved_at.is_(None))
            )
        }
        current: dict[str, ComplianceBreach] = {}
        for scope, finding in found.items():
            breach = breaches.get(scope)
            if breach is None:
                breach = ComplianceBreach(
                    scope=scope,
                    rule_id=finding.rule_id,
                    detail=finding.detail,
                    detected_at=now,
                    grace_until=now + grace,
                )
                session.add(breach)
                session.flush()
                _alert(ctx, breach, finding)
                outcome.opened.append(scope)
            elif (breach.rule_id, breach.detail) != (finding.rule_id, finding.detail):
                breach.rule_id, breach.detail = finding.rule_id, finding.detail
            current[scope] = breach
            if breach.suspended_at is None and now >= breach.grace_until:
                breach.suspended_at = now
            if breach.suspended_at is not None:
                outcome.suspended += _suspend(ctx, breach, finding.tenant_ids, now)
            outcome.open.append(scope)
        session.flush()
        outcome.lifted += _release(ctx, found, current, now)
        for scope, breach in breaches.items():
            if scope not in found:
                _resolve(ctx, breach, now)
                outcome.resolved.append(scope)
        session.commit()
    return outcome


def run_job(runtime: Runtime, holder: str) -> WatchOutcome:
    """The check under its lease; :class:`LeaseHeld` while another holder runs it."""
    db = runtime.db
    if not lease.acquire(db, JOB, holder, runtime.clock(), LEASE_TTL):
        raise LeaseHeld(JOB)
    try:
        outcome = check(runtime)
    finally:
        lease.release(db, JOB, holder, runtime.clock())
    if outcome.opened or outcome.resolved or outcome.suspended or outcome.lifted:
        log.warning(
            "compliance check: opened %s, resolved %s, %d tenants suspended, %d lifted",
            outcome.opened, outcome.resolved, len(outcome.suspended), len(outcome.lifted),
        )  # fmt: skip
    return outcome


# --- reading -----------------------------------------------------------------------------------
def status(session: Session, now: datetime) -> WatchStatus:
    from tongdao.compliance.rules import rule

    held: dict[uuid.UUID, int] = defaultdict(int)
    for breach_id in session.scalars(
        select(ComplianceSuspension.breach_id).where(ComplianceSuspension.lifted_at.is_(None))
    ):
        held[breach_id] += 1
    breaches = [
        BreachPublic(
            id=b.id,
            scope=b.scope,
            rule=b.rule_id,
            source=rule(b.rule_id).source,
            detail=b.detail,
            detected_at=b.detected_at,
            grace_until=b.grace_until,
            seconds_left=max(0, int((b.grace_until - now).total_seconds())),
            suspended_at=b.suspended_at,
            suspended_tenants=held[b.id],
        )
        for b in session.scalars(
            select(ComplianceBreach)
            .where(ComplianceBreach.resolved_at.is_(None))
            .order_by(ComplianceBreach.grace_until)
        )
    ]
    return WatchStatus(grace_days=grace_days(session), breaches=breaches)
