"""``/api/v1/tenants/{tenant_id}/scim-tokens``: a tenant admin makes, lists and revokes the
bearer tokens the company's identity provider provisions with (audited)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from tongdao.api.deps import GuardDep
from tongdao.api.pagination import Page
from tongdao.auth.permissions import Action
from tongdao.scim import service
from tongdao.scim.schemas import ScimTokenCreate, ScimTokenCreated, ScimTokenPublic

router = APIRouter()
TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
TokenId = Annotated[uuid.UUID, Path(description="the SCIM token's id")]


def scim_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/scim/v2"


@router.get("/tenants/{tenant_id}/scim-tokens", tags=["scim"], operation_id="list_scim_tokens")
def list_tokens(guard: GuardDep, tenant_id: TenantId) -> Page[ScimTokenPublic]:
    """The tenant's SCIM tokens, newest first (live and revoked; never a secret)."""
    tenant = guard.tenant(tenant_id)
    guard.require("scim_tokens", Action.READ)
    rows = [ScimTokenPublic.model_validate(t) for t in service.tokens(guard.ctx, tenant.id)]
    return Page(data=rows, count=len(rows))


@router.post(
    "/tenants/{tenant_id}/scim-tokens",
    tags=["scim"],
    status_code=201,
    operation_id="create_scim_token",
)
def create_token(
    guard: GuardDep, tenant_id: TenantId, body: ScimTokenCreate, request: Request
) -> ScimTokenCreated:
    """A new SCIM token: the secret is in this answer only (it is stored hashed)."""
    tenant = guard.tenant(tenant_id)
    guard.require("scim_tokens", Action.CREATE)
    token, secret = service.create_token(guard.ctx, tenant, body.name)
    public = ScimTokenPublic.model_validate(token)
    guard.ctx.session.commit()
    return ScimTokenCreated(token=public, secret=secret, scim_url=scim_url(request))


@router.delete(
    "/tenants/{tenant_id}/scim-tokens/{token_id}",
    tags=["scim"],
    status_code=204,
    operation_id="revoke_scim_token",
    response_class=Response,
)
def revoke_token(guard: GuardDep, tenant_id: TenantId, token_id: TokenId) -> Response:
    """Revoke a SCIM token; the identity provider is refused from now on."""
    tenant = guard.tenant(tenant_id)
    guard.require("scim_tokens", Action.DELETE)
    token = service.get_token(guard.ctx, tenant.id, token_id)
    service.revoke_token(guard.ctx, token)
    guard.ctx.session.commit()
    return Response(status_code=204)


__all__ = ["router"]
