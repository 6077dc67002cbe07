"""The cross-border authorisations over time, run as the scheduled job ``crossborder.expiry``
(under its lease, :mod:`tongdao.jobs.scheduler`) and by ``tongdao crossborder expire``.

For each approved authorisation, on its Asia/Shanghai day:

* its validity has begun: ``opened_at`` is set (a data-plane change, so the gateways' desired
  state is compiled again and the path abroad opens on the first day without waiting for
  another change);
* 30 and 7 days before its last day: a warning, once each, by e-mail to the tenant's admins
  and the compliance officers (the console shows it from ``warned_30_at``/``warned_7_at``);
  an authorisation found already inside 7 days gets only the 7-day one;
* after its last day: ``expired`` (audited, naming the job), e-mail to the same people; the
  desired state is compiled again without the tenant's path abroad, domestic service goes on.

Each authorisation is handled in a transaction of its own; running again changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.billing.money import shanghai_today
from tongdao.crossborder.models import ApplicationState, CrossBorderApplication
from tongdao.mail import service as mail
from tongdao.network.models import Link
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import Tenant, User, UserState

JOB = "crossborder.expiry"
JOB_ACTOR = Actor(None, f"job:{JOB}")
WARN_DAYS = (30, 7)


@dataclass
class ExpiryOutcome:
    opened: list[uuid.UUID] = field(default_factory=list)
    warned_30: list[uuid.UUID] = field(default_factory=list)
    warned_7: list[uuid.UUID] = field(default_factory=list)
    expired: list[uuid.UUID] = field(default_factory=list)


def recipients(ctx: Ctx, tenant_id: uuid.UUID) -> list[str]:
    """The tenant's admins and the operator's compliance officers (active accounts)."""
    out: list[str] = []
    for user in ctx.session.scalars(
        select(User)
        .where(
            User.state == UserState.ACTIVE,
            (User.tenant_id == tenant_id) | User.tenant_id.is_(None),
        )
        .order_by(User.email)
    ):
        wanted = "tenant_admin" if user.tenant_id is not None else "compliance_officer"
        if wanted in user.roles:
            out.append(user.email)
    return out


def _notify(ctx: Ctx, app: CrossBorderApplication, subject: str, lines: list[str]) -> None:
    tenant = ctx.session.get(Tenant, app.tenant_id)
    link = ctx.session.get(Link, app.link_id) if app.link_id else None
    name = f"{tenant.name_en} {tenant.name_zh}".strip() if tenant else str(app.tenant_id)
    body = "\n".join(
        [
            *lines,
            "",
            f"Tenant / 租户: {name}",
            f"Carrier's approval / 运营商批复: {app.approval_ref}",
            f"Link / 线路: {link.name if link else '-'}",
            f"Bandwidth / 带宽: {app.approved_mbps} Mbit/s",
            f"Valid / 有效期: {app.valid_from} – {app.valid_to} (Asia/Shanghai)",
            "",
            "Apply again in the console: Cross-border service / 请在控制台“跨境服务”中重新申请。",
        ]
    )
    for address in recipients(ctx, app.tenant_id):
        mail.queue(ctx, address, subject, body)


def run(
    runtime: Runtime, now: datetime | None = None, *, actor: Actor = JOB_ACTOR
) -> ExpiryOutcome:
    now = now or runtime.clock()
    today = shanghai_today(now)
    outcome = ExpiryOutcome()
    with runtime.db.session(write=False) as session:
        ids = list(
            session.scalars(
                select(CrossBorderApplication.id)
                .where(CrossBorderApplication.state == ApplicationState.APPROVED)
                .order_by(CrossBorderApplication.id)
            )
        )
    for app_id in ids:
        with runtime.db.session() as session:
            set_actor(session, actor)
            ctx = Ctx(session=session, runtime=runtime)
            app = session.get(CrossBorderApplication, app_id)
            if app is None or app.state != ApplicationState.APPROVED:
                continue
            assert app.valid_from is not None and app.valid_to is not None
            if app.valid_to < today:
                app.state = ApplicationState.EXPIRED
                app.expired_at = now
                record(
                    session,
                    "crossborder_expired",
                    "crossborder_application",
                    app.id,
                    tenant_id=app.tenant_id,
                    after={"valid_to": app.valid_to.isoformat(), "link_id": str(app.link_id)},
                )
                _notify(
                    ctx,
                    app,
                    f"Cross-border service expired / 跨境服务已到期 ({app.approval_ref})",
                    [
                        f"The cross-border authorisation ended on {app.valid_to}; the path "
                        "abroad is closed. Domestic service continues.",
                        f"跨境授权已于 {app.valid_to} 到期，境外通道已关闭；境内服务不受影响。",
                    ],
                )
                outcome.expired.append(app.id)
                session.commit()
                continue
            if app.valid_from <= today and app.opened_at is None:
                app.opened_at = now
                outcome.opened.append(app.id)
            left = (app.valid_to - today).days
            if left <= 7 and app.warned_7_at is None:
                app.warned_7_at = now
                app.warned_30_at = app.warned_30_at or now
                outcome.warned_7.append(app.id)
                _warn(ctx, app, left)
            elif left <= 30 and app.warned_30_at is None:
                app.warned_30_at = now
                outcome.warned_30.append(app.id)
                _warn(ctx, app, left)
            session.commit()
    return outcome


def _warn(ctx: Ctx, app: CrossBorderApplication, left: int) -> None:
    _notify(
        ctx,
        app,
        f"Cross-border service ends in {left} days / 跨境服务将在 {left} 天后到期",
        [
            f"The cross-border authorisation ends on {app.valid_to} ({left} days); after that "
            "day the path abroad closes. Apply for a renewal in time.",
            f"跨境授权将于 {app.valid_to} 到期（还有 {left} 天），到期后境外通道将关闭，"
            "请及时申请续期。",
        ],
    )
