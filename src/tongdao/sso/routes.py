"""SSO routes: a tenant's OpenID Provider settings (its admin), its e-mail domain claims (its
admin claims, the compliance officer decides)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from tongdao.api.deps import AnonCtxDep, GuardDep
from tongdao.api.pagination import Page
from tongdao.auth.permissions import DUTY_CONFLICT, Action, holds_conflicting_duties
from tongdao.auth.schemas import LoginResponse
from tongdao.errors import PermissionDenied, ValidationError
from tongdao.sso import oidc, service
from tongdao.sso.schemas import (
    DomainClaimIn,
    DomainClaimPublic,
    DomainDecisionIn,
    ProviderIn,
    ProviderPublic,
    SsoBegin,
    SsoBegun,
    SsoComplete,
)
from tongdao.sso.throttle import check_begin
from tongdao.tenancy.schemas import UserPublic
from tongdao.tenancy.service import UserResource

router = APIRouter(tags=["sso"])

TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
ClaimId = Annotated[uuid.UUID, Path(description="the domain claim's id")]
T = "/tenants/{tenant_id}/sso"


@router.get(T + "/provider", operation_id="get_sso_provider")
def get_provider(guard: GuardDep, tenant_id: TenantId) -> ProviderPublic:
    """The tenant's OpenID Provider settings (404 when it has none). The client secret is
    never shown; ``redirect_uri`` is what to register at the provider."""
    tenant = guard.tenant(tenant_id)
    guard.require("sso_providers", Action.READ)
    return service.to_public(guard.ctx, service.require_provider(guard.ctx, tenant.id))


@router.put(T + "/provider", operation_id="put_sso_provider")
def put_provider(guard: GuardDep, tenant_id: TenantId, body: ProviderIn) -> ProviderPublic:
    """Set the tenant's OpenID Provider (create or replace; an omitted ``client_secret``
    keeps the stored one). Allowed domains must be approved claims of the tenant. Audited."""
    tenant = guard.tenant(tenant_id)
    guard.require("sso_providers", Action.UPDATE)
    provider = service.put_provider(guard.ctx, tenant.id, body)
    guard.ctx.session.commit()
    return service.to_public(guard.ctx, provider)


@router.delete(
    T + "/provider",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="delete_sso_provider",
)
def delete_provider(guard: GuardDep, tenant_id: TenantId) -> Response:
    """Remove the provider: nobody signs in through it from now on. Audited."""
    tenant = guard.tenant(tenant_id)
    guard.require("sso_providers", Action.DELETE)
    service.delete_provider(guard.ctx, tenant.id)
    guard.ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(T + "/domains", operation_id="list_sso_domain_claims")
def list_domain_claims(guard: GuardDep, tenant_id: TenantId) -> Page[DomainClaimPublic]:
    """The tenant's e-mail domain claims, newest first."""
    tenant = guard.tenant(tenant_id)
    guard.require("sso_domains", Action.READ)
    rows = [DomainClaimPublic.model_validate(c) for c in service.list_claims(guard.ctx, tenant.id)]
    return Page[DomainClaimPublic](data=rows, count=len(rows))


@router.post(T + "/domains", status_code=status.HTTP_201_CREATED, operation_id="claim_sso_domain")
def claim_domain(guard: GuardDep, tenant_id: TenantId, body: DomainClaimIn) -> DomainClaimPublic:
    """Claim an e-mail domain for the tenant, with evidence of ownership; the compliance
    officer approves or rejects it. Audited."""
    tenant = guard.tenant(tenant_id)
    guard.require("sso_domains", Action.CREATE)
    claim = service.claim_domain(guard.ctx, tenant.id, body)
    guard.ctx.session.commit()
    return DomainClaimPublic.model_validate(claim)


@router.delete(
    T + "/domains/{object_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="withdraw_sso_domain_claim",
)
def withdraw_domain_claim(guard: GuardDep, tenant_id: TenantId, object_id: ClaimId) -> Response:
    """Withdraw a claim (409 while the provider allows the domain). Audited."""
    tenant = guard.tenant(tenant_id)
    claim = service.tenant_claim(guard.ctx, tenant.id, object_id)
    guard.require("sso_domains", Action.DELETE)
    service.withdraw_claim(guard.ctx, claim)
    guard.ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(T + "/domains/{object_id}/decision", operation_id="decide_sso_domain_claim")
def decide_domain_claim(
    guard: GuardDep, tenant_id: TenantId, object_id: ClaimId, body: DomainDecisionIn
) -> DomainClaimPublic:
    """Approve or reject a pending claim (the compliance officer; a rejection says why). A
    domain approved for one tenant cannot be approved for another. Audited."""
    tenant = guard.tenant(tenant_id)
    claim = service.tenant_claim(guard.ctx, tenant.id, object_id)
    guard.require("sso_domain_decisions", Action.UPDATE)
    if holds_conflicting_duties(guard.principal.roles):
        raise PermissionDenied(DUTY_CONFLICT)
    service.decide_claim(guard.ctx, claim, body)
    guard.ctx.session.commit()
    return DomainClaimPublic.model_validate(claim)


# --- signing in from the command line (RFC 8252 loopback redirect) ----------------------------


@router.post("/auth/sso/begin", operation_id="begin_sso_login")
def begin_sso_login(ctx: AnonCtxDep, body: SsoBegin) -> SsoBegun:
    """Begin a single sign-on from a command-line client: the provider of the address's
    domain, and the URL for the person to open. The provider sends the browser back to the
    console, which hands the answer on to the client's loopback ``redirect_uri``; the client
    finishes with ``POST /auth/sso/complete`` and the secret behind ``binding_challenge``.
    Throttled per address as sign-in is (429 with ``Retry-After``, :mod:`tongdao.sso.throttle`)."""
    address = check_begin(ctx, ctx.source_ip or "unknown")
    try:
        loopback = oidc.check_loopback(body.redirect_uri)
    except ValueError as exc:
        raise ValidationError({"redirect_uri": str(exc)}) from exc
    provider = service.provider_for_email(ctx, body.email)
    if provider is None:
        raise ValidationError({"email": "no single sign-on is set up for this address's domain"})
    started = oidc.begin(
        ctx,
        provider,
        service.redirect_uri(ctx),
        cli_redirect=loopback,
        binding_challenge=body.binding_challenge,
        source_ip=address,
    )
    ctx.session.commit()
    return SsoBegun(authorization_url=started.authorization_url, provider=provider.name)


@router.post("/auth/sso/complete", operation_id="complete_sso_login")
def complete_sso_login(ctx: AnonCtxDep, body: SsoComplete, request: Request) -> LoginResponse:
    """Finish a command-line single sign-on with what the loopback address received and the
    client's secret: a session token, or 401 (the audit log says why)."""
    token, secret, user = oidc.complete(
        ctx,
        state=body.state,
        code=body.code,
        error=body.error,
        browser_secret=body.binding_verifier,
        source_ip=ctx.source_ip or "unknown",
        user_agent=request.headers.get("user-agent"),
    )
    ctx.session.commit()
    public = UserResource().to_public(ctx, user)
    assert isinstance(public, UserPublic)
    return LoginResponse(token=secret, expires_at=token.expires_at, user=public)
