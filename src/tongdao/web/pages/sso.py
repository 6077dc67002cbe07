"""Single sign-on: signing in through the tenant's own OpenID Provider (everyone), the
provider's settings and the tenant's e-mail domain claims (its admin), and the decisions on
domain claims (the compliance officer).

Every page calls what the API does (:mod:`tongdao.sso.service`, :mod:`tongdao.sso.oidc`)
through the same :class:`~tongdao.api.deps.Guard` checks (``sso_providers``, ``sso_domains``,
``sso_domain_decisions``); another tenant's tenant or claim is 404.

The sign-in form does not redirect to the provider itself: the console's
Content-Security-Policy lets forms post to this origin only (``form-action 'self'``, which
browsers apply to the redirects after a post too), so the answer is a page with a link to
the provider. A link to a tenant's provider (``/console/sign-in/sso?tenant=<id>``, which an
admin may hand out) redirects at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.auth.permissions import DUTY_CONFLICT, Action, Role, holds_conflicting_duties
from tongdao.errors import DomainError, PermissionDenied, Throttled, ValidationError
from tongdao.sso import oidc, service
from tongdao.sso.models import ClaimState, EmailTrust, SsoProvider
from tongdao.sso.schemas import DomainClaimIn, DomainDecisionIn, ProviderIn
from tongdao.sso.throttle import check_begin
from tongdao.tenancy.models import Group, Tenant
from tongdao.web.console import (
    HOST_PREFIX,
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    ViewDep,
    _secure,
    check_csrf,
    done_notice,
    parse,
    parse_uuid,
    redirect,
    render,
    safe_next,
    set_session_cookie,
    translate_message,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
BASE = "/console/sso"
READERS = frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR, Role.TENANT_ADMIN})
NAV = [NavItem(BASE, N_("Single sign-on"), READERS)]
NOTICES = {
    "saved": N_("The identity provider settings were saved."),
    "deleted": N_("The identity provider was removed."),
    "claimed": N_("The domain was claimed; the compliance officer decides."),
    "withdrawn": N_("The claim was withdrawn."),
    "decided": N_("The decision was recorded."),
}
PROVIDER_FIELDS = (
    "name",
    "issuer",
    "client_id",
    "client_secret",
    "allowed_domains",
    "groups_claim",
    "group_map",
    "jit_users",
    "email_trust",
    "enabled",
)
BINDING_COOKIE = "tongdao_sso"
DoneQuery = Annotated[str, Query(max_length=20)]


def binding_cookie_name(view: View) -> str:
    return HOST_PREFIX + BINDING_COOKIE if _secure(view.request) else BINDING_COOKIE


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


# --- signing in --------------------------------------------------------------------------


def _sso_page(
    view: View,
    *,
    email: str = "",
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    provider: SsoProvider | None = None,
    authorization_url: str = "",
) -> Response:
    return render(
        view,
        "sso/sign_in.html",
        {
            "email": email,
            "errors": errors or {},
            "provider": provider,
            "authorization_url": authorization_url,
        },
        status=status,
        title=view._("Sign in with SSO"),
    )


def _begin(view: View, provider: SsoProvider, address: str) -> str:
    started = oidc.begin(view.ctx, provider, service.redirect_uri(view.ctx), source_ip=address)
    view.ctx.session.commit()
    view.extra_cookies.append(
        (binding_cookie_name(view), started.browser_secret, int(oidc.LOGIN_TTL.total_seconds()))
    )
    return started.authorization_url


@router.get("/console/sign-in/sso")
def sso_page(view: ViewDep, tenant: Annotated[str, Query(max_length=40)] = "") -> Response:
    """The e-mail form; with ``?tenant=<id>``, straight to that tenant's provider."""
    if view.principal is not None:
        return redirect(view, safe_next(""))
    if tenant:
        try:
            address = check_begin(view.ctx, view.ctx.source_ip or "unknown")
        except Throttled as exc:
            return _throttled(view, exc)
        try:
            tenant_id = uuid.UUID(tenant)
        except ValueError:
            tenant_id = None
        provider = service.get_provider(view.ctx, tenant_id) if tenant_id else None
        if provider is None or not provider.enabled:
            errors = {"form": view._("This link names no identity provider.")}
            return _sso_page(view, errors=errors, status=404)
        try:
            url = _begin(view, provider, address)
        except oidc.ProviderUnavailable:
            return _sso_page(view, errors=_unavailable(view), status=502)
        return redirect(view, url)
    return _sso_page(view)


def _throttled(view: View, exc: Throttled, email: str = "") -> Response:
    """The form with the sign-in throttle's message (429, ``Retry-After``)."""
    errors = {
        "form": view._(
            "too many sign-ins from this address; try again in %(seconds)s s",
            seconds=exc.retry_after,
        )
    }
    response = _sso_page(view, email=email, errors=errors, status=429)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _unavailable(view: View) -> dict[str, str]:
    return {"form": view._("Your company's identity provider does not answer; try again later.")}


@router.post("/console/sign-in/sso")
def sso_begin(view: ViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    email = form.text("email")
    if not email or "@" not in email:
        errors = {"email": view._("enter the e-mail address of your account")}
        return _sso_page(view, email=email, errors=errors, status=422)
    try:  # before the domain is looked up: a throttled caller learns nothing
        address = check_begin(view.ctx, view.ctx.source_ip or "unknown")
    except Throttled as exc:
        return _throttled(view, exc, email)
    provider = service.provider_for_email(view.ctx, email)
    if provider is None:
        errors = {
            "email": view._(
                "no single sign-on is set up for this address's domain: sign in with your password"
            )
        }
        return _sso_page(view, email=email, errors=errors, status=422)
    try:
        url = _begin(view, provider, address)
    except oidc.ProviderUnavailable:
        return _sso_page(view, email=email, errors=_unavailable(view), status=502)
    return _sso_page(view, email=email, provider=provider, authorization_url=url)


@router.get(service.CALLBACK_PATH)
def sso_callback(
    view: ViewDep,
    state: Annotated[str, Query(max_length=200)] = "",
    code: Annotated[str, Query(max_length=2000)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Where the provider sends the browser back: a session, or the refusal. A
    command-line sign-in is handed on to the CLI's loopback address, which finishes it."""
    hand_on = oidc.cli_hand_on(view.ctx, state, code, error) if state else None
    if hand_on is not None:
        return redirect(None, hand_on)
    try:
        _token, secret, user = oidc.complete(
            view.ctx,
            state=state,
            code=code,
            error=error,
            browser_secret=view.request.cookies.get(binding_cookie_name(view), ""),
            source_ip=view.ctx.source_ip or "unknown",
            user_agent=view.request.headers.get("user-agent"),
        )
    except oidc.SsoRefused:
        errors = {
            "form": view._(
                "Single sign-on was refused. Ask your administrator: Tongdao's audit log says why."
            )
        }
        return _sso_page(view, errors=errors, status=401)
    except oidc.ProviderUnavailable:
        view.ctx.session.rollback()
        return _sso_page(view, errors=_unavailable(view), status=502)
    view.ctx.session.commit()
    response = redirect(view, "/console/home")
    set_session_cookie(
        response, view.request, secret, view.ctx.runtime.settings.session_ttl_seconds
    )
    response.delete_cookie(binding_cookie_name(view), path="/", secure=_secure(view.request))
    if user.language:
        view.language_cookie = user.language
    return response


# --- the tenant's settings and claims ------------------------------------------------------


@router.get(BASE)
def overview(view: UserViewDep, done: DoneQuery = "") -> Response:
    """A tenant admin goes to their tenant's page; operator staff see every domain claim,
    pending first (the compliance officer decides them there)."""
    principal = view.require_principal()
    guard = Guard(view.ctx)
    guard.require("sso_domains", Action.READ)
    if not principal.is_operator and principal.tenant_id is not None:
        return redirect(view, f"{BASE}/tenants/{principal.tenant_id}")
    claims = service.list_claims(view.ctx, None)
    claims.sort(key=lambda c: (c.state != ClaimState.PENDING, -c.created_at.timestamp()))
    names = {
        tid: view.locale.pick(en, zh)
        for tid, en, zh in view.ctx.session.execute(
            select(Tenant.id, Tenant.name_en, Tenant.name_zh)
        )
    }
    return render(
        view,
        "sso/overview.html",
        {
            "claims": claims,
            "names": names,
            "can_decide": view.can("sso_domain_decisions", Action.UPDATE),
            "notice": done_notice(view, done, NOTICES),
        },
        title=view._("Single sign-on"),
    )


def _provider_values(view: View, provider: SsoProvider | None) -> dict[str, Any]:
    if provider is None:
        return {
            "name": "",
            "issuer": "",
            "client_id": "",
            "allowed_domains": [],
            "groups_claim": "groups",
            "group_map": "",
            "jit_users": False,
            "email_trust": str(EmailTrust.EMAIL_VERIFIED),
            "enabled": True,
        }
    names = {
        str(gid): name
        for gid, name in view.ctx.session.execute(
            select(Group.id, Group.name).where(Group.tenant_id == provider.tenant_id)
        )
    }
    lines = [f"{k} = {names.get(str(v), v)}" for k, v in provider.group_map.items()]
    return {
        "name": provider.name,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "allowed_domains": list(provider.allowed_domains),
        "groups_claim": provider.groups_claim,
        "group_map": "\n".join(lines),
        "jit_users": provider.jit_users,
        "email_trust": provider.email_trust,
        "enabled": provider.enabled,
    }


def _tenant_page(
    view: View,
    tenant_id: str,
    *,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    claim_values: Mapping[str, str] | None = None,
    claim_errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("sso_providers", Action.READ)
    provider = service.get_provider(view.ctx, tenant.id)
    approved = sorted(service.approved_domains(view.ctx, tenant.id))
    return render(
        view,
        "sso/tenant.html",
        {
            "tenant": tenant,
            "provider": provider,
            "redirect_uri": service.redirect_uri(view.ctx),
            "sign_in_link": service.sign_in_link(view.ctx, tenant.id),
            "claims": service.list_claims(view.ctx, tenant.id),
            "approved": [(d, d) for d in approved],
            "trust_options": [
                (str(EmailTrust.EMAIL_VERIFIED), view._("email_verified is true (Okta, most)")),
                (
                    str(EmailTrust.ENTRA_EDOV),
                    view._("Microsoft Entra ID: the optional claim xms_edov is true"),
                ),
            ],
            "can_set": view.can("sso_providers", Action.UPDATE),
            "can_claim": view.can("sso_domains", Action.CREATE),
            "can_decide": view.can("sso_domain_decisions", Action.UPDATE),
            "values": values or _provider_values(view, provider),
            "errors": errors or {},
            "claim_values": claim_values or {},
            "claim_errors": claim_errors or {},
            "notice": notice,
        },
        status=status,
        title=view.locale.pick(tenant.name_en, tenant.name_zh),
    )


@router.get(BASE + "/tenants/{tenant_id}")
def tenant_page(view: UserViewDep, tenant_id: str, done: DoneQuery = "") -> Response:
    return _tenant_page(view, tenant_id, notice=done_notice(view, done, NOTICES))


def _group_map(view: View, tenant_id: uuid.UUID, text: str) -> dict[str, str]:
    """``claim value = group name`` lines -> {claim value: group id}."""
    groups = {
        name: str(gid)
        for gid, name in view.ctx.session.execute(
            select(Group.id, Group.name).where(Group.tenant_id == tenant_id)
        )
    }
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        value, sep, group = line.partition("=")
        if not sep or not value.strip() or not group.strip():
            raise ValidationError(
                {"group_map": f"line {number}: write <value of the groups claim> = <group>"}
            )
        if group.strip() not in groups:
            raise ValidationError({"group_map": f"line {number}: no such group in this tenant"})
        mapping[value.strip()] = groups[group.strip()]
    return mapping


@router.post(BASE + "/tenants/{tenant_id}")
def save_provider(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("sso_providers", Action.UPDATE)
    values: dict[str, Any] = {
        "name": form.text("name"),
        "issuer": form.text("issuer"),
        "client_id": form.text("client_id"),
        "allowed_domains": form.getlist("allowed_domains"),
        "groups_claim": form.text("groups_claim"),
        "group_map": form.get("group_map"),
        "jit_users": form.get("jit_users") == "on",
        "email_trust": form.text("email_trust") or str(EmailTrust.EMAIL_VERIFIED),
        "enabled": form.get("enabled") == "on",
    }
    try:
        body = {k: v for k, v in values.items() if k != "group_map"}
        body["group_map"] = _group_map(view, tenant.id, values["group_map"])
        body["client_secret"] = form.get("client_secret") or None
        service.put_provider(view.ctx, tenant.id, parse(ProviderIn, body))
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, PROVIDER_FIELDS)
        return _tenant_page(view, tenant_id, values=values, errors=errors, status=422)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=saved")


@router.post(BASE + "/tenants/{tenant_id}/provider/delete")
def delete_provider(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("sso_providers", Action.DELETE)
    service.delete_provider(view.ctx, tenant.id)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=deleted")


@router.post(BASE + "/tenants/{tenant_id}/domains")
def claim_domain(view: UserViewDep, tenant_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    guard.require("sso_domains", Action.CREATE)
    values = {"domain": form.text("domain"), "evidence": form.text("evidence")}
    try:
        service.claim_domain(view.ctx, tenant.id, parse(DomainClaimIn, values))
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, ("domain", "evidence"))
        return _tenant_page(view, tenant_id, claim_values=values, claim_errors=errors, status=422)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=claimed")


@router.post(BASE + "/tenants/{tenant_id}/domains/{claim_id}/withdraw")
def withdraw_claim(view: UserViewDep, tenant_id: str, claim_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    claim = service.tenant_claim(view.ctx, tenant.id, parse_uuid(claim_id, "domain claim"))
    guard.require("sso_domains", Action.DELETE)
    try:
        service.withdraw_claim(view.ctx, claim)
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = {"form": translate_message(view.locale, exc.message)}
        return _tenant_page(view, tenant_id, claim_errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=withdrawn")


@router.post(BASE + "/tenants/{tenant_id}/domains/{claim_id}/decision")
def decide_claim(view: UserViewDep, tenant_id: str, claim_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    principal = view.require_principal()
    guard = Guard(view.ctx)
    tenant = guard.tenant(parse_uuid(tenant_id, "tenant"))
    claim = service.tenant_claim(view.ctx, tenant.id, parse_uuid(claim_id, "domain claim"))
    guard.require("sso_domain_decisions", Action.UPDATE)
    if holds_conflicting_duties(principal.roles):
        raise PermissionDenied(DUTY_CONFLICT)
    values = {"decision": form.text("decision"), "reason": form.text("reason")}
    try:
        service.decide_claim(view.ctx, claim, parse(DomainDecisionIn, values))
    except DomainError as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, ())
        return _tenant_page(view, tenant_id, claim_errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"{BASE}/tenants/{tenant.id}?done=decided")
