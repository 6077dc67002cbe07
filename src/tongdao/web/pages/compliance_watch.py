"""The scheduled compliance check in the console: open breaches with their countdown (on the
compliance dashboard and as alerts on the operations dashboard), and the grace period form.

``GET /api/v1/operator/compliance/watch`` and ``PUT`` call what these call:
:func:`tongdao.compliance.watch.status` and :func:`tongdao.compliance.watch.put_settings`
under the guard's ``operator`` grants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from tongdao.api.deps import Guard
from tongdao.auth.permissions import Action
from tongdao.compliance import watch
from tongdao.compliance.schemas import BreachPublic, WatchSettings, WatchStatus
from tongdao.errors import ValidationError
from tongdao.web.console import (
    ConsoleRoute,
    FormDep,
    UserViewDep,
    View,
    check_csrf,
    field_errors,
    parse,
    redirect,
    translate_message,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

DASHBOARD = "/console/compliance/dashboard"
NOTICES = {"grace": N_("The grace period is saved; open deadlines follow it.")}
LICENCES_PAGE = "/console/compliance/licences"


def countdown(view: View, seconds: int) -> str:
    """``6 days 23 hours`` (or ``5 hours 10 minutes`` under a day) in the person's language."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return view._("%(days)s d %(hours)s h", days=days, hours=hours)
    return view._("%(hours)s h %(minutes)s min", hours=hours, minutes=rest // 60)


@dataclass(frozen=True)
class BreachView:
    breach: BreachPublic
    detail: str
    countdown: str
    link: str


def breach_views(view: View, status: WatchStatus) -> list[BreachView]:
    return [
        BreachView(
            b,
            translate_message(view.locale, b.detail),
            countdown(view, b.seconds_left),
            "/console/compliance/licences#shareholders"
            if b.rule.startswith("ownership.")
            else LICENCES_PAGE,
        )
        for b in status.breaches
    ]


def alert_text(view: View, item: BreachView) -> str:
    """One line for the operations dashboard's alerts."""
    b = item.breach
    if b.suspended_at is not None:
        return view._(
            "Rule %(rule)s is not met (%(detail)s): %(count)s tenant(s) were suspended "
            "automatically on %(when)s until it is put right.",
            rule=b.rule,
            detail=item.detail,
            count=b.suspended_tenants,
            when=view.locale.when(b.suspended_at),
        )
    return view._(
        "Rule %(rule)s is not met (%(detail)s): tenants in service are suspended on %(when)s, "
        "in %(left)s, unless it is put right.",
        rule=b.rule,
        detail=item.detail,
        when=view.locale.when(b.grace_until),
        left=item.countdown,
    )


def context(
    view: View,
    guard: Guard,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the compliance dashboard's section needs."""
    status = watch.status(view.ctx.session, view.ctx.runtime.clock())
    return {
        "watch": status,
        "watch_breaches": breach_views(view, status),
        "watch_can_edit": guard.principal.can("operator", Action.UPDATE),
        "watch_errors": errors or {},
        "watch_values": values or {"grace_days": str(status.grace_days)},
    }


@router.post("/console/compliance/watch")
def save_grace(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    guard.require("operator", Action.UPDATE)
    values = {"grace_days": form.text("grace_days")}
    try:
        # The API takes a JSON number only; the form's text is a number when it is digits.
        text = values["grace_days"].strip()
        given: int | str | None = int(text) if re.fullmatch(r"[0-9]{1,6}", text) else text
        body = parse(WatchSettings, {"grace_days": given or None})
        watch.put_settings(view.ctx, body)
        view.ctx.session.flush()
    except ValidationError as exc:
        view.ctx.session.rollback()
        from tongdao.web.pages.compliance import dashboard_page

        return dashboard_page(
            view, guard, watch_errors=field_errors(view, exc), watch_values=values, status=422
        )
    view.ctx.session.commit()
    return redirect(view, f"{DASHBOARD}?done=grace")
