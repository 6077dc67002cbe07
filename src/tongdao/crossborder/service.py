"""The rules of cross-border service per tenant (the API routes, the console pages, the CLI and
the scheduled job all call these).

* A tenant admin applies (a draft), uploads the documents, and submits; a submission needs a
  business licence and the signed and stamped commitment letter.
* Only the compliance officer decides (``crossborder_decisions``): review, approve with the
  carrier's reference, the registered link, the approved bandwidth and the validity, or reject
  with a reason. The approved bandwidth of all authorisations live on a link never exceeds the
  link's capacity (rule ``crossborder.tenant_authorised``).
* A tenant is carried across the border on a link only under an approved authorisation for it
  whose validity (Asia/Shanghai days, both ends included) holds today (:func:`authorisations`,
  read by the gateway compiler, the device configurations and ``/paths``).

Each change is a row change the audit hook records (before/after, the actor).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongdao.auth.permissions import DUTY_CONFLICT, holds_conflicting_duties
from tongdao.billing.money import shanghai_today
from tongdao.compliance.rules import ComplianceRefusal
from tongdao.crossborder import schemas as s
from tongdao.crossborder.models import (
    REQUIRED_DOCUMENTS,
    ApplicationState,
    CrossBorderApplication,
    CrossBorderDocument,
)
from tongdao.errors import Conflict, NotFound, PermissionDenied, ValidationError
from tongdao.network.models import Link, LinkState, Pop, Site
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant

RULE = "crossborder.tenant_authorised"
DECIDER = "compliance_officer"
OPEN_STATES = (ApplicationState.DRAFT, ApplicationState.SUBMITTED, ApplicationState.UNDER_REVIEW)
# Documents are part of what is submitted: once submitted, the file the officer reviews is fixed.
UPLOAD_STATES = (ApplicationState.DRAFT,)
MAX_DOCUMENTS = 20  # per application
MAX_OPEN = 3  # open applications (draft, submitted, under review) per tenant
MAX_VALIDITY_DAYS = 5 * 366  # an approval's validity: at most about five years
TERMINATED_REASON = "the tenant was terminated"


def _home() -> str:
    from tongdao.network.service import HOME_COUNTRY

    return HOME_COUNTRY


def today(ctx: Ctx) -> date:
    return shanghai_today(ctx.runtime.clock())


# --- applying ----------------------------------------------------------------------------------
def _check_sites(ctx: Ctx, tenant: Tenant, site_ids: Iterable[uuid.UUID]) -> list[str]:
    """The sites named: the tenant's own, abroad (their PoP, or the site itself, outside
    China)."""
    out: list[str] = []
    for n, site_id in enumerate(site_ids):
        site = ctx.session.get(Site, site_id)
        if site is None or site.tenant_id != tenant.id:
            raise ValidationError({f"site_ids.{n}": "no such site of this tenant"})
        pop = ctx.session.get(Pop, site.pop_id) if site.pop_id else None
        country = pop.country if pop is not None else site.country
        if country == _home():
            raise ValidationError(
                {f"site_ids.{n}": f"site {site.name} is in {country}, not abroad"}
            )
        if str(site.id) not in out:
            out.append(str(site.id))
    return out


def _check_term(start: date, end: date) -> None:
    if end < start:
        raise ValidationError({"term_end": "must not be before term_start"})


def create(ctx: Ctx, tenant: Tenant, data: s.ApplicationCreate) -> CrossBorderApplication:
    if not data.internal_use_only:
        raise ValidationError(
            {
                "internal_use_only": "the line is for internal office use only: give this "
                "undertaking to apply"
            }
        )
    _check_term(data.term_start, data.term_end)
    open_now = ctx.session.scalar(
        select(func.count())
        .select_from(CrossBorderApplication)
        .where(
            CrossBorderApplication.tenant_id == tenant.id,
            CrossBorderApplication.state.in_([st.value for st in OPEN_STATES]),
        )
    )
    if (open_now or 0) >= MAX_OPEN:
        raise Conflict(
            f"the tenant has {open_now} open applications (draft, submitted or under review); "
            f"at most {MAX_OPEN}: change a draft and submit it, or wait for a decision",
            {"applications": f"at most {MAX_OPEN} open applications"},
        )
    app = CrossBorderApplication(
        tenant_id=tenant.id,
        state=ApplicationState.DRAFT,
        internal_use_only=True,
        site_ids=_check_sites(ctx, tenant, data.site_ids),
        bandwidth_mbps=data.bandwidth_mbps,
        headcount=data.headcount,
        manager_name=data.manager_name,
        manager_phone=data.manager_phone,
        manager_email=str(data.manager_email),
        term_start=data.term_start,
        term_end=data.term_end,
        notes=data.notes,
        reason="",
    )
    ctx.session.add(app)
    return app


def update(
    ctx: Ctx, tenant: Tenant, app: CrossBorderApplication, data: s.ApplicationUpdate
) -> CrossBorderApplication:
    if app.state != ApplicationState.DRAFT:
        raise Conflict(f"the application is {app.state}; only a draft can be changed")
    changes: dict[str, Any] = {
        k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None
    }
    if "site_ids" in changes:
        changes["site_ids"] = _check_sites(ctx, tenant, data.site_ids or [])
    if "manager_email" in changes:
        changes["manager_email"] = str(changes["manager_email"])
    _check_term(changes.get("term_start", app.term_start), changes.get("term_end", app.term_end))
    for key, value in changes.items():
        setattr(app, key, value)
    return app


def documents(session: Session, app_id: uuid.UUID) -> list[CrossBorderDocument]:
    """The application's documents (their content deferred)."""
    from sqlalchemy.orm import defer

    return list(
        session.scalars(
            select(CrossBorderDocument)
            .options(defer(CrossBorderDocument.content))
            .where(CrossBorderDocument.application_id == app_id)
            .order_by(CrossBorderDocument.id)
        )
    )


def submit(ctx: Ctx, app: CrossBorderApplication) -> CrossBorderApplication:
    if app.state != ApplicationState.DRAFT:
        raise Conflict(f"the application is {app.state}; only a draft is submitted")
    have = {d.kind for d in documents(ctx.session, app.id)}
    missing = [k.value for k in REQUIRED_DOCUMENTS if k.value not in have]
    if missing:
        raise ValidationError(
            {f"documents.{k}": "upload this document before submitting" for k in missing}
        )
    app.state = ApplicationState.SUBMITTED
    app.submitted_at = ctx.runtime.clock()
    app.submitted_by = ctx.user_id
    return app


# --- deciding (the compliance officer only) -----------------------------------------------------
def require_decider(ctx: Ctx) -> None:
    """403 naming the role: deciding is the compliance officer's alone."""
    principal = ctx.require_principal()
    if not principal.can("crossborder_decisions", _update()):
        if "compliance_officer" in principal.roles:
            raise PermissionDenied("this token is read-only; a decision needs a write token")
        raise PermissionDenied(
            "only a compliance officer (role compliance_officer) may review and decide "
            "cross-border applications"
        )
    if holds_conflicting_duties(principal.roles):
        raise PermissionDenied(DUTY_CONFLICT)


def _update() -> Any:
    from tongdao.auth.permissions import Action

    return Action.UPDATE


def start_review(ctx: Ctx, app: CrossBorderApplication) -> CrossBorderApplication:
    require_decider(ctx)
    if app.state != ApplicationState.SUBMITTED:
        raise Conflict(f"the application is {app.state}; only a submitted one goes to review")
    app.state = ApplicationState.UNDER_REVIEW
    return app


def _committed_on(
    session: Session, link_id: uuid.UUID, on: date, *, besides: uuid.UUID | None = None
) -> int:
    """Approved Mbit/s of the authorisations live on the link on and after ``on``."""
    from tongdao.tenancy.models import TenantState

    stmt = select(func.coalesce(func.sum(CrossBorderApplication.approved_mbps), 0)).where(
        CrossBorderApplication.link_id == link_id,
        CrossBorderApplication.tenant_id.in_(
            select(Tenant.id).where(Tenant.state != TenantState.TERMINATED)
        ),
        CrossBorderApplication.state == ApplicationState.APPROVED,
        CrossBorderApplication.valid_to >= on,
    )
    if besides is not None:
        stmt = stmt.where(CrossBorderApplication.id != besides)
    return int(session.scalar(stmt) or 0)


def lock_link(session: Session, link_id: uuid.UUID) -> Link | None:
    """The link, its row locked until the transaction ends (PostgreSQL ``FOR UPDATE``; SQLite
    serialises writers anyway): two approvals, or an approval and a capacity change, on one
    link never both pass the capacity check on the same sum."""
    return session.scalar(
        select(Link)
        .where(Link.id == link_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def check_capacity(ctx: Ctx, link: Link, adding: int, *, besides: uuid.UUID | None = None) -> None:
    committed = _committed_on(ctx.session, link.id, today(ctx), besides=besides)
    if committed + adding > link.capacity_mbps:
        raise ComplianceRefusal(
            RULE,
            f"link {link.name!r} has {link.capacity_mbps} Mbit/s; {committed} Mbit/s are "
            f"approved to other tenants, so {adding} Mbit/s more would make "
            f"{committed + adding} Mbit/s (at most {link.capacity_mbps - committed} Mbit/s "
            "can be approved)",
            {"approved_mbps": f"at most {max(0, link.capacity_mbps - committed)} Mbit/s free"},
        )


def check_link_capacity(ctx: Ctx, link: Link, capacity_mbps: int) -> None:
    """A link's capacity is never lowered under what is approved on it."""
    lock_link(ctx.session, link.id)
    committed = _committed_on(ctx.session, link.id, today(ctx))
    if capacity_mbps < committed:
        raise ComplianceRefusal(
            RULE,
            f"{committed} Mbit/s are approved to tenants on link {link.name!r}; its capacity "
            f"cannot be lowered to {capacity_mbps} Mbit/s",
            {"capacity_mbps": f"at least {committed} Mbit/s (approved to tenants)"},
        )


def approve(ctx: Ctx, app: CrossBorderApplication, data: s.Approve) -> CrossBorderApplication:
    require_decider(ctx)
    if app.state not in (ApplicationState.SUBMITTED, ApplicationState.UNDER_REVIEW):
        raise Conflict(f"the application is {app.state}; it cannot be approved")
    _check_validity(ctx, app, data)
    link = lock_link(ctx.session, data.link_id)
    if link is None:
        raise ValidationError({"link_id": "no such link"})
    from tongdao.network.service import crosses_border

    a, b = ctx.session.get(Pop, link.pop_a_id), ctx.session.get(Pop, link.pop_b_id)
    assert a is not None and b is not None
    if not crosses_border(a.country, b.country):
        raise ValidationError({"link_id": f"link {link.name} does not cross the border"})
    check_capacity(ctx, link, data.approved_mbps, besides=app.id)
    app.state = ApplicationState.APPROVED
    app.approval_ref = data.approval_ref
    app.link_id = link.id
    app.approved_mbps = data.approved_mbps
    app.valid_from, app.valid_to = data.valid_from, data.valid_to
    app.reason = data.reason
    app.decided_by = ctx.user_id
    app.decided_at = ctx.runtime.clock()
    if data.valid_from <= today(ctx):
        app.opened_at = ctx.runtime.clock()
    return app


def _check_validity(ctx: Ctx, app: CrossBorderApplication, data: s.Approve) -> None:
    """The validity starts about today (yesterday at the earliest, a year ahead at the latest)
    and ends after it starts, within the term the tenant applied for."""
    from datetime import timedelta

    now = today(ctx)
    earliest, latest = now - timedelta(days=1), now + timedelta(days=365)
    if not earliest <= data.valid_from <= latest:
        raise ValidationError(
            {"valid_from": f"must be between {earliest.isoformat()} and {latest.isoformat()}"}
        )
    if data.valid_to < data.valid_from:
        raise ValidationError({"valid_to": "must not be before valid_from"})
    if data.valid_to < now:
        raise ValidationError({"valid_to": "the validity has already ended"})
    if data.valid_to > app.term_end:
        raise ValidationError(
            {"valid_to": f"must not be after the term applied for ({app.term_end.isoformat()})"}
        )
    if (data.valid_to - data.valid_from).days > MAX_VALIDITY_DAYS:
        raise ValidationError({"valid_to": "a validity is at most five years"})


def revoke(ctx: Ctx, app: CrossBorderApplication, data: s.Revoke) -> CrossBorderApplication:
    """The compliance officer withdraws an approval (the carrier's approval ended, the tenant
    broke the undertaking): the bandwidth is free again and the path closes."""
    require_decider(ctx)
    if app.state != ApplicationState.APPROVED:
        raise Conflict(
            f"the application is {app.state}; only an approved one can be revoked",
            {"state": "only an approved application can be revoked"},
        )
    _end(ctx, app, ApplicationState.REVOKED, data.reason)
    return app


def _end(ctx: Ctx, app: CrossBorderApplication, state: ApplicationState, reason: str) -> None:
    app.state = state
    app.reason = reason
    app.decided_by = ctx.user_id
    app.decided_at = ctx.runtime.clock()


def end_for_tenant(ctx: Ctx, tenant: Tenant) -> list[CrossBorderApplication]:
    """A terminated tenant keeps no authorisation and no open application: approvals are
    revoked, open ones rejected, each a row change the audit records."""
    ended: list[CrossBorderApplication] = []
    for app in ctx.session.scalars(
        select(CrossBorderApplication)
        .where(
            CrossBorderApplication.tenant_id == tenant.id,
            CrossBorderApplication.state.in_(
                [ApplicationState.APPROVED.value, *(st.value for st in OPEN_STATES)]
            ),
        )
        .order_by(CrossBorderApplication.id)
    ):
        state = (
            ApplicationState.REVOKED
            if app.state == ApplicationState.APPROVED
            else ApplicationState.REJECTED
        )
        _end(ctx, app, state, TERMINATED_REASON)
        ended.append(app)
    return ended


def live_on_link(session: Session, link_id: uuid.UUID, on: date) -> list[CrossBorderApplication]:
    """The approvals on the link whose validity has not ended."""
    return list(
        session.scalars(
            select(CrossBorderApplication)
            .where(
                CrossBorderApplication.link_id == link_id,
                CrossBorderApplication.state == ApplicationState.APPROVED,
                CrossBorderApplication.valid_to >= on,
            )
            .order_by(CrossBorderApplication.id)
        )
    )


def refuse_link_change(ctx: Ctx, link: Link, *, deleting: bool) -> None:
    """409 naming the live approvals on a link about to be deleted or disabled: the compliance
    officer revokes them first (the tenants' paths would close without a decision on record)."""
    live = live_on_link(ctx.session, link.id, today(ctx))
    if not live:
        return
    names = {
        t.id: t.name_en
        for t in ctx.session.scalars(
            select(Tenant).where(Tenant.id.in_({a.tenant_id for a in live}))
        )
    }
    listed = "; ".join(
        f"{names.get(a.tenant_id, a.tenant_id)} ({a.approved_mbps} Mbit/s until {a.valid_to}, "
        f"application {a.id})"
        for a in live
    )
    fields = {f"applications.{a.id}": f"approved until {a.valid_to}" for a in live}
    if deleting:
        fields["link"] = "live cross-border authorisations are on this link"
        raise Conflict(
            f"link {link.name!r} carries live cross-border authorisations: {listed}; the "
            "compliance officer revokes them before the link is deleted",
            fields,
        )
    fields["state"] = "live cross-border authorisations are on this link"
    raise Conflict(
        f"link {link.name!r} carries live cross-border authorisations: {listed}; the "
        "compliance officer revokes them before the link is disabled",
        fields,
    )


def reject(ctx: Ctx, app: CrossBorderApplication, data: s.Reject) -> CrossBorderApplication:
    require_decider(ctx)
    if app.state not in (ApplicationState.SUBMITTED, ApplicationState.UNDER_REVIEW):
        raise Conflict(f"the application is {app.state}; it cannot be rejected")
    app.state = ApplicationState.REJECTED
    app.reason = data.reason
    app.decided_by = ctx.user_id
    app.decided_at = ctx.runtime.clock()
    return app


# --- the gate ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    application_id: uuid.UUID
    link_id: uuid.UUID
    mbps: int
    valid_to: date


def authorisations(
    session: Session, tenant_ids: Iterable[uuid.UUID], on: date
) -> dict[uuid.UUID, dict[uuid.UUID, Grant]]:
    """tenant → link → the grant in force on ``on`` (several on one link: their bandwidths
    add up, the latest end counts)."""
    ids = list(tenant_ids)
    out: dict[uuid.UUID, dict[uuid.UUID, Grant]] = defaultdict(dict)
    if not ids:
        return out
    rows = session.scalars(
        select(CrossBorderApplication)
        .where(
            CrossBorderApplication.tenant_id.in_(ids),
            CrossBorderApplication.state == ApplicationState.APPROVED,
            CrossBorderApplication.valid_from <= on,
            CrossBorderApplication.valid_to >= on,
            CrossBorderApplication.link_id.is_not(None),
        )
        .order_by(CrossBorderApplication.id)
    )
    for app in rows:
        assert app.link_id is not None and app.approved_mbps and app.valid_to
        had = out[app.tenant_id].get(app.link_id)
        out[app.tenant_id][app.link_id] = Grant(
            app.id,
            app.link_id,
            app.approved_mbps + (had.mbps if had else 0),
            max(app.valid_to, had.valid_to) if had else app.valid_to,
        )
    return out


def active_link_between(session: Session, a: uuid.UUID, b: uuid.UUID) -> Link | None:
    from sqlalchemy import and_, or_

    return session.scalar(
        select(Link).where(
            Link.state == LinkState.ACTIVE,
            or_(
                and_(Link.pop_a_id == a, Link.pop_b_id == b),
                and_(Link.pop_a_id == b, Link.pop_b_id == a),
            ),
        )
    )


def reachable_abroad(ctx: Ctx, tenant_id: uuid.UUID) -> set[uuid.UUID]:
    """The PoPs abroad the tenant is carried to: the far ends of its authorised links."""
    grants = authorisations(ctx.session, [tenant_id], today(ctx)).get(tenant_id, {})
    out: set[uuid.UUID] = set()
    home = _home()
    for link_id in grants:
        link = ctx.session.get(Link, link_id)
        if link is None or link.state != LinkState.ACTIVE:
            continue
        for pop_id in (link.pop_a_id, link.pop_b_id):
            pop = ctx.session.get(Pop, pop_id)
            if pop is not None and pop.country != home:
                out.add(pop.id)
    return out


_STEPS: dict[str, str] = {
    "none": "no cross-border application yet: a tenant admin must apply (internal office use)",
    "draft": "the application is a draft: upload the documents and submit it",
    "submitted": "the application is submitted and waits for the compliance officer's review",
    "under_review": "the application is under review (the carrier decides; this takes days)",
    "rejected": "the application was rejected: {reason}",
    "expired": "the cross-border authorisation expired on {valid_to}; apply again",
    "revoked": "the cross-border authorisation was revoked: {reason}",
    "link_unavailable": "the link of the cross-border authorisation is not active; the path "
    "abroad is closed until it is",
    "not_yet_valid": "the cross-border authorisation is valid from {valid_from}",
    "approved": "authorised ({approved_mbps} Mbit/s) until {valid_to}",
}


def _link_active(session: Session, link_id: uuid.UUID) -> bool:
    link = session.get(Link, link_id)
    return link is not None and link.state == LinkState.ACTIVE


def status(ctx: Ctx, tenant_id: uuid.UUID, link_id: uuid.UUID | None = None) -> s.CrossBorderStatus:
    """Whether the tenant is carried abroad (on ``link_id``, or on any link) and, if not, the
    step missing: the most advanced of its applications decides."""
    now = today(ctx)
    apps = list(
        ctx.session.scalars(
            select(CrossBorderApplication)
            .where(CrossBorderApplication.tenant_id == tenant_id)
            .order_by(CrossBorderApplication.id.desc())
        )
    )
    best: tuple[int, str, CrossBorderApplication | None] = (0, "none", None)
    rank = {
        "draft": 2,
        "rejected": 1,
        "revoked": 1,
        "expired": 3,
        "link_unavailable": 3,
        "submitted": 4,
        "under_review": 5,
        "not_yet_valid": 6,
        "approved": 7,
    }
    for app in apps:
        step = app.state
        if app.state == ApplicationState.APPROVED:
            if link_id is not None and app.link_id != link_id:
                continue
            assert app.valid_from is not None and app.valid_to is not None
            if app.valid_to < now:
                step = "expired"
            elif app.valid_from > now:
                step = "not_yet_valid"
            elif app.link_id is None or not _link_active(ctx.session, app.link_id):
                step = "link_unavailable"
        elif app.state in (
            ApplicationState.EXPIRED,
            ApplicationState.REVOKED,
        ) and link_id not in (None, app.link_id):
            continue
        if rank[step] > best[0]:
            best = (rank[step], step, app)
    _, step, found = best
    message = _STEPS[step].format(
        reason=found.reason if found else "",
        valid_to=found.valid_to if found else "",
        valid_from=found.valid_from if found else "",
        approved_mbps=found.approved_mbps if found else "",
    )
    return s.CrossBorderStatus(
        tenant_id=tenant_id,
        authorised=step == "approved",
        step=step,
        message=message,
        application_id=found.id if found else None,
        valid_to=found.valid_to if found else None,
        approved_mbps=found.approved_mbps if found and step == "approved" else None,
    )


def get(ctx: Ctx, app_id: uuid.UUID, tenant_id: uuid.UUID | None = None) -> CrossBorderApplication:
    app = ctx.session.get(CrossBorderApplication, app_id)
    if app is None or (tenant_id is not None and app.tenant_id != tenant_id):
        raise NotFound("cross-border application not found")
    principal = ctx.principal
    if principal is not None and not principal.sees_tenant(app.tenant_id):
        raise NotFound("cross-border application not found")
    return app


def public(session: Session, app: CrossBorderApplication) -> s.ApplicationPublic:
    out = s.ApplicationPublic.model_validate(app)
    out.documents = [s.DocumentPublic.model_validate(d) for d in documents(session, app.id)]
    return out


def moment(ctx: Ctx) -> datetime:
    return ctx.runtime.clock()
