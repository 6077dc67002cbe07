"""The identity area: a tenant's provisioning from its identity provider (SCIM tokens: made,
listed, revoked; the secret shown once) and its device lifetime.

Each page calls the services the API routes call (:mod:`tongdao.scim.service`,
:mod:`tongdao.lifetime.service`) under the same permissions (``scim_tokens``,
``device_lifetime``); another tenant's page is 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.auth.permissions import Action, Role
from tongdao.errors import DomainError
from tongdao.lifetime import service as lifetime
from tongdao.network.models import Device
from tongdao.scim import service as scim
from tongdao.tenancy.models import Tenant, User
from tongdao.web.console import (
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    check_csrf,
    done_notice,
    parse_uuid,
    redirect,
    render,
    tenant_options,
    translate_message,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
BASE = "/console/identity"
READERS = frozenset(
    {Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.BILLING_CLERK, Role.AUDITOR}
    | {Role.TENANT_ADMIN}
)
NAV = [NavItem(BASE, N_("Provisioning and devices"), READERS)]
NOTICES = {
    "revoked": N_("The SCIM token was revoked; the identity provider is refused from now on."),
    "lifetime": N_("The device lifetime was saved."),
}
DoneQuery = Annotated[str, Query(max_length=20)]


def _errors(view: View, exc: DomainError, field: str) -> dict[str, str]:
    texts = [translate_message(view.locale, t) for t in exc.fields.values()]
    return {field: " ".join(texts) or translate_message(view.locale, exc.message)}


@router.get(BASE)
def overview(view: UserViewDep, tenant: Annotated[str, Query(max_length=40)] = "") -> Response:
    """A tenant admin goes to their tenant's page; operator staff pick a tenant."""
    view.require_principal()
    guard = Guard(view.ctx)
    guard.require("scim_tokens", Action.READ)
    principal = view.principal
    assert principal is not None
    if not principal.is_operator and principal.tenant_id is not None:
        return redirect(view, f"{BASE}/tenants/{principal.tenant_id}")
    if tenant:
        chosen = guard.tenant(parse_uuid(tenant, "tenant"))
        return redirect(view, f"{BASE}/tenants/{chosen.id}")
    return render(
        view,
        "identity/overview.html",
        {"tenants": tenant_options(view), "errors": {}},
        title=view.locale.gettext("Provisioning and devices"),
    )


def _tenant(view: View, tenant_id: str, resource: str, action: Action) -> Tenant:
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require(resource, action)
    return tenant


def _page(
    view: View,
    tenant: Tenant,
    *,
    created: tuple[Any, str] | None = None,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    setting = lifetime.setting(view.ctx, tenant.id)
    holds = lifetime.holds(view.ctx, tenant.id)
    devices = (
        {
            d.id: d
            for d in view.ctx.session.scalars(
                select(Device).where(Device.id.in_([h.device_id for h in holds]))
            )
        }
        if holds
        else {}
    )
    emails = {
        row.id: row.email
        for row in view.ctx.session.execute(
            select(User.id, User.email).where(User.tenant_id == tenant.id)
        )
    }
    shown = values or {"days": str(setting.days) if setting else ""}
    return render(
        view,
        "identity/tenant.html",
        {
            "tenant": tenant,
            "scim_url": str(view.request.base_url).rstrip("/") + "/scim/v2",
            "tokens": scim.tokens(view.ctx, tenant.id),
            "created": created,
            "can_manage": view.can("scim_tokens", Action.CREATE),
            "can_set": view.can("device_lifetime", Action.UPDATE),
            "setting": setting,
            "holds": holds,
            "devices": devices,
            "emails": emails,
            "values": shown,
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
        title=view.locale.pick(tenant.name_en, tenant.name_zh),
    )


@router.get(BASE + "/tenants/{tenant_id}")
def tenant_page(view: UserViewDep, tenant_id: str, done: DoneQuery = "") -> Response:
    tenant = _tenant(view, tenant_id, "scim_tokens", Action.READ)
    return _page(view, tenant, notice=done_notice(view, done, NOTICES))


@router.post(BASE + "/tenants/{tenant_id}/scim-tokens")
def create_token(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    """The new token's secret is shown in this answer only (no redirect carries it)."""
    check_csrf(view, form)
    tenant = _tenant(view, tenant_id, "scim_tokens", Action.CREATE)
    try:
        token, secret = scim.create_token(view.ctx, tenant, form.text("name"))
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        tenant = _tenant(view, tenant_id, "scim_tokens", Action.READ)
        return _page(view, tenant, errors=_errors(view, exc, "name"), status=422)
    view.ctx.session.commit()
    return _page(view, tenant, created=(token, secret))


@router.post(BASE + "/tenants/{tenant_id}/scim-tokens/{token_id}/revoke")
def revoke_token(view: UserViewDep, tenant_id: str, token_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    tenant = _tenant(view, tenant_id, "scim_tokens", Action.DELETE)
    token = scim.get_token(view.ctx, tenant.id, parse_uuid(token_id, "SCIM token"))
    scim.revoke_token(view.ctx, token)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=revoked")


@router.post(BASE + "/tenants/{tenant_id}/device-lifetime")
def set_lifetime(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    tenant = _tenant(view, tenant_id, "device_lifetime", Action.UPDATE)
    text = form.text("days").strip()
    try:
        # Not a whole number: the service refuses it with its own message (-1 is out of range).
        days = (int(text) if text.isdigit() and len(text) < 6 else -1) if text else None
        lifetime.set_days(view.ctx, tenant, days)
        view.ctx.session.flush()
    except DomainError as exc:
        view.ctx.session.rollback()
        tenant = _tenant(view, tenant_id, "scim_tokens", Action.READ)
        return _page(
            view, tenant, errors=_errors(view, exc, "days"), values={"days": text}, status=422
        )
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=lifetime")


__all__ = ["router"]
