"""Routes for PoPs (and their tenant interfaces), links, sites and devices."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from tongdao.api.crud import mount
from tongdao.api.deps import GuardDep
from tongdao.api.errors import ERROR_RESPONSES
from tongdao.api.pagination import Page, PageParams, page_params, paginate
from tongdao.auth.permissions import Action
from tongdao.network import declared, service
from tongdao.network.models import DeclarationState, PopTenantInterface, PrefixDeclaration
from tongdao.network.schemas import (
    Approval,
    DeclarationFilters,
    DeclarationPublic,
    InterfacePublic,
    InterfacePublish,
    Rejection,
)
from tongdao.network.service import DeviceResource, LinkResource, PopResource, SiteResource

router = APIRouter()
devices = DeviceResource()
declarations = declared.DeclarationResource()
mount(router, PopResource(), "/pops", tags=["pops"])
mount(router, LinkResource(), "/links", tags=["links"])
mount(router, SiteResource(), "/tenants/{tenant_id}/sites", tags=["sites"])
mount(router, devices, "/tenants/{tenant_id}/devices", tags=["devices"])
mount(
    router,
    declared.AllowanceResource(),
    "/tenants/{tenant_id}/prefix-allowances",
    tags=["prefix allowances"],
)

PopId = Annotated[uuid.UUID, Path(description="the PoP's id")]
TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
DeviceId = Annotated[uuid.UUID, Path(description="the device's id")]


@router.get("/pops/{pop_id}/interfaces", tags=["pops"], operation_id="list_pop_interfaces")
def list_interfaces(guard: GuardDep, pop_id: PopId) -> Page[InterfacePublic]:
    guard.require("pops", Action.READ)
    pop = service.get_pop(guard.ctx, pop_id)
    rows = list(
        guard.ctx.session.scalars(
            select(PopTenantInterface)
            .where(PopTenantInterface.pop_id == pop.id)
            .order_by(PopTenantInterface.listen_port)
        )
    )
    return Page[InterfacePublic](
        data=[InterfacePublic.model_validate(r) for r in rows], count=len(rows)
    )


@router.put(
    "/pops/{pop_id}/interfaces/{tenant_id}", tags=["pops"], operation_id="publish_pop_interface"
)
def publish_interface(
    guard: GuardDep, pop_id: PopId, tenant_id: TenantId, body: InterfacePublish
) -> InterfacePublic:
    """Publish the public key (and port) of the PoP's WireGuard interface for a tenant."""
    tenant = guard.tenant(tenant_id)  # another tenant's id answers 404, before any 403
    guard.require("pops", Action.UPDATE)
    pop = service.get_pop(guard.ctx, pop_id)
    iface = service.publish_interface(guard.ctx, pop, tenant, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return InterfacePublic.model_validate(iface)


@router.get(
    "/tenants/{tenant_id}/devices/{device_id}/wireguard.conf",
    tags=["devices"],
    operation_id="get_device_wireguard_conf",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "a wg-quick file"},
        # Errors are JSON like everywhere else, though the success body is text.
        **{
            status: {**spec, "content": {"application/json": {}}}
            for status, spec in ERROR_RESPONSES.items()
        },
    },
)
def wireguard_conf(guard: GuardDep, tenant_id: TenantId, device_id: DeviceId) -> PlainTextResponse:
    tenant = guard.tenant(tenant_id)
    guard.require("devices", Action.READ)
    device = devices.load(guard, tenant, device_id, Action.READ)
    text = service.device_config(guard.ctx, tenant, device)
    return PlainTextResponse(
        text,
        headers={"Content-Disposition": f'attachment; filename="tongdao-{device.id}.conf"'},
    )


# --- declared networks: the compliance officer's queue and decisions ---------------------------
DeclarationId = Annotated[uuid.UUID, Path(description="the declaration's id")]


def _declaration(guard: GuardDep, object_id: uuid.UUID, action: Action) -> PrefixDeclaration:
    """The declaration, 404 when out of the caller's scope (before any 403), then the grant."""
    if not guard.principal.is_operator and not guard.principal.can("declarations", action):
        declarations.load(guard, None, object_id, Action.READ)
    guard.require("declarations", action)
    return declarations.load(guard, None, object_id, action)


@router.get("/declarations", tags=["declarations"], operation_id="list_declarations")
def list_declarations(
    guard: GuardDep,
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[DeclarationFilters, Query()],
) -> Page[DeclarationPublic]:
    """Declared site prefixes, oldest first; ``state=pending`` is the compliance queue. A
    tenant admin sees their own tenant's."""
    guard.require("declarations", Action.READ)
    stmt = declarations.apply_filters(declarations.base_query(guard, None, Action.READ), filters)
    rows, total, cursor = paginate(guard.ctx.session, stmt, PrefixDeclaration.id, page)
    return Page[DeclarationPublic](
        data=[DeclarationPublic.model_validate(r) for r in rows],
        count=total,
        next_cursor=cursor,
    )


@router.get("/declarations/{object_id}", tags=["declarations"], operation_id="get_declaration")
def get_declaration(guard: GuardDep, object_id: DeclarationId) -> DeclarationPublic:
    return DeclarationPublic.model_validate(_declaration(guard, object_id, Action.READ))


@router.post(
    "/declarations/{object_id}/approve",
    tags=["declarations"],
    operation_id="approve_declaration",
)
def approve_declaration(
    guard: GuardDep, object_id: DeclarationId, body: Approval
) -> DeclarationPublic:
    """Approve the prefix: from this commit it is routed (for an active site). 409 naming the
    rule when the rules refuse it (public, default route, overlapping, ...)."""
    decl = _declaration(guard, object_id, Action.UPDATE)
    declared.decide(guard.ctx, decl, DeclarationState.APPROVED, body.reason)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return DeclarationPublic.model_validate(decl)


@router.post(
    "/declarations/{object_id}/reject",
    tags=["declarations"],
    operation_id="reject_declaration",
)
def reject_declaration(
    guard: GuardDep, object_id: DeclarationId, body: Rejection
) -> DeclarationPublic:
    """Reject the prefix (or withdraw an approval), with the reason; it is not routed."""
    decl = _declaration(guard, object_id, Action.UPDATE)
    declared.decide(guard.ctx, decl, DeclarationState.REJECTED, body.reason)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return DeclarationPublic.model_validate(decl)
