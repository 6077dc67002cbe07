"""SSO routes: a tenant's OpenID Provider settings (its admin), its e-mail domain claims (its
admin claims, the compliance officer decides)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from tongdao.api.deps import GuardDep
from tongdao.api.pagination import Page
from tongdao.auth.permissions import DUTY_CONFLICT, Action, holds_conflicting_duties
from tongdao.errors import PermissionDenied
from tongdao.sso import service
from tongdao.sso.schemas import (
    DomainClaimIn,
    DomainClaimPublic,
    DomainDecisionIn,
    ProviderIn,
    ProviderPublic,
)

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
