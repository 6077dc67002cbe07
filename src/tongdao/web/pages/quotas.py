"""The quotas area: a tenant's transfer caps and bandwidth limits (operator staff set them),
its users' overrides (the tenant's admin sets them within the tenant's), the month's bytes and
the 80% / 100% events.

Every page calls what the API route for the same job calls (:mod:`tongdao.quotas.routes`,
:mod:`tongdao.quotas.service`) through the same :class:`~tongdao.api.deps.Guard` checks
(``tenant_limits``, ``user_limits``, ``quota_events``); another tenant's tenant or user is 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.auth.permissions import Action, Role
from tongdao.errors import DomainError
from tongdao.quotas import service
from tongdao.quotas.routes import tenant_user
from tongdao.quotas.schemas import TenantLimitsIn, UserLimitsIn
from tongdao.tenancy.models import Tenant, User
from tongdao.web.console import (
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    check_csrf,
    done_notice,
    parse,
    parse_uuid,
    redirect,
    render,
    tenant_options,
    translate_message,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
BASE = "/console/quotas"
READERS = frozenset(
    {
        Role.OPERATOR_ADMIN,
        Role.BILLING_CLERK,
        Role.COMPLIANCE_OFFICER,
        Role.AUDITOR,
        Role.TENANT_ADMIN,
    }
)
NAV = [NavItem(BASE, N_("Quotas"), READERS)]
NOTICES = {"saved": N_("The limits were saved; every PoP serving the tenant applies them.")}
TENANT_FIELDS = ("tenant_cap_mb", "user_cap_mb", "user_rate_mbps", "over_cap", "throttle_mbps")
USER_FIELDS = ("cap_mb", "rate_mbps")
DoneQuery = Annotated[str, Query(max_length=20)]


def _errors(view: View, exc: DomainError, known: tuple[str, ...]) -> dict[str, str]:
    errors: dict[str, str] = {}
    general: list[str] = []
    for key, text in exc.fields.items():
        field = key.split(".", 1)[0]
        message = translate_message(view.locale, text)
        if field in known:
            errors.setdefault(field, message)
        else:
            general.append(message)
    if not exc.fields:
        general.append(translate_message(view.locale, exc.message))
    if general:
        errors["form"] = " ".join(general)
    return errors


def _values(form: Any, fields: tuple[str, ...]) -> dict[str, str]:
    return {name: form.text(name) for name in fields}


def _body(values: Mapping[str, str]) -> dict[str, Any]:
    return {key: (value or None) for key, value in values.items() if key != "over_cap"} | (
        {"over_cap": values["over_cap"] or "block"} if "over_cap" in values else {}
    )


@router.get(BASE)
def overview(view: UserViewDep, tenant: Annotated[str, Query(max_length=40)] = "") -> Response:
    """A tenant admin goes to their tenant's page; operator staff pick a tenant and see this
    month's events of all tenants."""
    view.require_principal()
    guard = Guard(view.ctx)
    guard.require("quota_events", Action.READ)
    principal = view.principal
    assert principal is not None
    if not principal.is_operator and principal.tenant_id is not None:
        return redirect(view, f"{BASE}/tenants/{principal.tenant_id}")
    if tenant:
        chosen = guard.tenant(parse_uuid(tenant, "tenant"))
        return redirect(view, f"{BASE}/tenants/{chosen.id}")
    month = service.month_of(view.ctx.runtime.clock())
    names = {
        tid: view.locale.pick(en, zh)
        for tid, en, zh in view.ctx.session.execute(
            select(Tenant.id, Tenant.name_en, Tenant.name_zh)
        )
    }
    events = service.month_events(view.ctx.session, month)
    return render(
        view,
        "quotas/overview.html",
        {"tenants": tenant_options(view), "events": events, "names": names, "month": month},
        title=view.locale.gettext("Quotas"),
    )


def _tenant_page(
    view: View,
    tenant_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("tenant_limits", Action.READ)
    limits = service.tenant_view(view.ctx, tenant.id)
    users = [
        service.user_view(view.ctx, tenant.id, uid)
        for uid in view.ctx.session.scalars(
            select(User.id).where(User.tenant_id == tenant.id).order_by(User.email).limit(200)
        )
    ]
    rows = view.ctx.session.execute(
        select(User.id, User.email).where(User.tenant_id == tenant.id)
    ).all()
    emails = {row.id: row.email for row in rows}
    shown = values or {
        "tenant_cap_mb": str(limits.tenant_cap_mb or ""),
        "user_cap_mb": str(limits.user_cap_mb or ""),
        "user_rate_mbps": str(limits.user_rate_mbps or ""),
        "over_cap": limits.over_cap,
        "throttle_mbps": str(limits.throttle_mbps or ""),
    }
    return render(
        view,
        "quotas/tenant.html",
        {
            "tenant": tenant,
            "limits": limits,
            "users": users,
            "emails": emails,
            "events": service.events(view.ctx.session, tenant.id, limit=50),
            "can_set": view.can("tenant_limits", Action.UPDATE),
            "can_set_users": view.can("user_limits", Action.UPDATE),
            "over_options": [
                ("block", view.locale.gettext("Block")),
                ("throttle", view.locale.gettext("Throttle")),
            ],
            "values": shown,
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
        title=view.locale.pick(tenant.name_en, tenant.name_zh),
    )


@router.get(BASE + "/tenants/{tenant_id}")
def tenant_page(view: UserViewDep, tenant_id: str, done: DoneQuery = "") -> Response:
    return _tenant_page(view, tenant_id, notice=done_notice(view, done, NOTICES))


@router.post(BASE + "/tenants/{tenant_id}")
def set_tenant_limits(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("tenant_limits", Action.UPDATE)
    values = _values(form, TENANT_FIELDS)
    try:
        service.put_tenant_limits(view.ctx, tenant.id, parse(TenantLimitsIn, _body(values)))
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, TENANT_FIELDS)
        return _tenant_page(view, tenant_id, values=values, errors=errors, status=422)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=saved")


def _user_page(
    view: View,
    tenant_id: str,
    user_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    view.require_principal()
    guard = Guard(view.ctx)
    tid = parse_uuid(tenant_id, "tenant")
    user = tenant_user(guard, tid, parse_uuid(user_id, "user"), Action.READ)
    tenant = guard.tenant(tid)
    current = service.user_view(view.ctx, tid, user.id)
    shown = values or {
        "cap_mb": str(current.cap_mb or ""),
        "rate_mbps": str(current.rate_mbps or ""),
    }
    return render(
        view,
        "quotas/user.html",
        {
            "tenant": tenant,
            "user": user,
            "current": current,
            "tenant_limits": service.tenant_view(view.ctx, tid),
            "can_set": view.can("user_limits", Action.UPDATE),
            "values": shown,
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
        title=user.email,
    )


@router.get(BASE + "/tenants/{tenant_id}/users/{user_id}")
def user_page(view: UserViewDep, tenant_id: str, user_id: str, done: DoneQuery = "") -> Response:
    return _user_page(view, tenant_id, user_id, notice=done_notice(view, done, NOTICES))


@router.post(BASE + "/tenants/{tenant_id}/users/{user_id}")
def set_user_limits(view: UserViewDep, tenant_id: str, user_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tid = parse_uuid(tenant_id, "tenant")
    user = tenant_user(guard, tid, parse_uuid(user_id, "user"), Action.UPDATE)
    values = _values(form, USER_FIELDS)
    try:
        service.put_user_limits(view.ctx, tid, user.id, parse(UserLimitsIn, _body(values)))
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, USER_FIELDS)
        return _user_page(view, tenant_id, user_id, values=values, errors=errors, status=422)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tid}/users/{user.id}?done=saved")
