"""Routes for PoPs (and their tenant interfaces), links, sites and devices."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from tongdao.api.crud import mount
from tongdao.api.deps import GuardDep
from tongdao.api.errors import ERROR_RESPONSES
from tongdao.api.pagination import Page
from tongdao.auth.permissions import Action
from tongdao.network import service
from tongdao.network.models import PopTenantInterface
from tongdao.network.schemas import InterfacePublic, InterfacePublish
from tongdao.network.service import DeviceResource, LinkResource, PopResource, SiteResource

router = APIRouter()
devices = DeviceResource()
mount(router, PopResource(), "/pops", tags=["pops"])
mount(router, LinkResource(), "/links", tags=["links"])
mount(router, SiteResource(), "/tenants/{tenant_id}/sites", tags=["sites"])
mount(router, devices, "/tenants/{tenant_id}/devices", tags=["devices"])

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
