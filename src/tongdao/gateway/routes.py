"""Routes for operators (enrolment tokens, gateways of a PoP) and for gateway agents
(enrol, long-poll the desired state, publish interface keys, acknowledge)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from datetime import timedelta
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import ColumnElement, select

from tongdao.api.deps import (
    AnonCtxDep,
    Guard,
    GuardDep,
    RuntimeDep,
    adopt,
    read_apart,
    reads_apart,
    source_ip,
)
from tongdao.api.errors import ERROR_RESPONSES
from tongdao.api.metrics import of as server_metrics
from tongdao.api.pagination import Page
from tongdao.audit.recorder import Actor, set_actor
from tongdao.auth.permissions import Action
from tongdao.errors import AuthenticationError, NotFound
from tongdao.gateway import service
from tongdao.gateway.changes import FEED, current_version
from tongdao.gateway.desired import DesiredDelta, DesiredState, diff
from tongdao.gateway.models import Gateway
from tongdao.gateway.schemas import (
    Ack,
    EnrolmentCreate,
    EnrolmentCreated,
    EnrolRequest,
    EnrolResponse,
    GatewayPublic,
    KeyPublish,
    SitePath,
)
from tongdao.gateway.sent import record_sent
from tongdao.network.models import Pop, Site
from tongdao.network.service import get_pop
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import Tenant

router = APIRouter()
PopId = Annotated[uuid.UUID, Path(description="the PoP's id")]
MAX_WAIT = 60.0
DISCONNECT_CHECK = 0.5  # seconds between looks at whether a waiting gateway went away
DB_RECHECK = 1.0  # seconds between store reads while nothing was signalled


class SentStates:
    """The last state this replica sent each gateway, to answer its next poll with a delta.
    Bounded; a gateway whose poll lands on another replica (or after a restart) simply gets
    the whole state once."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._states: OrderedDict[uuid.UUID, DesiredState] = OrderedDict()
        self._limit = limit

    def swap(self, gateway_id: uuid.UUID, state: DesiredState) -> DesiredState | None:
        """Remember ``state`` as sent; return what was sent before."""
        with self._lock:
            before = self._states.pop(gateway_id, None)
            self._states[gateway_id] = state
            while len(self._states) > self._limit:
                self._states.popitem(last=False)
            return before


SENT = SentStates()


# --- operator side -------------------------------------------------------------------------------
@router.post(
    "/pops/{pop_id}/enrolments", tags=["pops"], status_code=201, operation_id="create_pop_enrolment"
)
def create_enrolment(guard: GuardDep, pop_id: PopId, body: EnrolmentCreate) -> EnrolmentCreated:
    """A one-time, expiring token for enrolling this PoP's gateway agent."""
    guard.require("pops", Action.UPDATE)
    pop = get_pop(guard.ctx, pop_id)
    enrolment, secret = service.create_enrolment(guard.ctx, pop, timedelta(hours=body.ttl_hours))
    guard.ctx.session.commit()
    return EnrolmentCreated(pop_id=pop.id, token=secret, expires_at=enrolment.expires_at)


@router.post(
    "/tenants/{tenant_id}/sites/{site_id}/enrolments",
    tags=["sites"],
    status_code=201,
    operation_id="create_site_enrolment",
)
def create_site_enrolment(
    guard: GuardDep,
    tenant_id: Annotated[uuid.UUID, Path(description="the tenant's id")],
    site_id: Annotated[uuid.UUID, Path(description="the site's id")],
    body: EnrolmentCreate,
) -> EnrolmentCreated:
    """A one-time, expiring token for enrolling the site's connector."""
    tenant = guard.tenant(tenant_id)
    guard.require("sites", Action.UPDATE)
    site = guard.ctx.session.get(Site, site_id)
    if site is None or site.tenant_id != tenant.id:
        raise NotFound("site not found")
    enrolment, secret = service.create_enrolment(guard.ctx, site, timedelta(hours=body.ttl_hours))
    guard.ctx.session.commit()
    return EnrolmentCreated(
        pop_id=site.pop_id or uuid.UUID(int=0),
        site_id=site.id,
        token=secret,
        expires_at=enrolment.expires_at,
    )


def _credentials(guard: Guard, where: ColumnElement[bool]) -> Page[GatewayPublic]:
    rows = list(
        guard.ctx.session.scalars(
            select(Gateway).where(where).order_by(Gateway.created_at, Gateway.id)
        )
    )
    return Page[GatewayPublic](
        data=[GatewayPublic.model_validate(r) for r in rows], count=len(rows)
    )


@router.get("/pops/{pop_id}/gateways", tags=["pops"], operation_id="list_pop_gateways")
def list_gateways(guard: GuardDep, pop_id: PopId) -> Page[GatewayPublic]:
    """The PoP's gateway credentials, oldest first: the live one (at most one) and those
    revoked or replaced, with what each applied and when it was last seen."""
    guard.require("pops", Action.READ)
    pop = get_pop(guard.ctx, pop_id)
    return _credentials(guard, Gateway.pop_id == pop.id)


@router.delete(
    "/pops/{pop_id}/gateways/{gateway_id}",
    tags=["pops"],
    status_code=204,
    operation_id="revoke_pop_gateway",
    response_class=Response,
)
def revoke_gateway(
    guard: GuardDep, pop_id: PopId, gateway_id: Annotated[uuid.UUID, Path()]
) -> Response:
    """Revoke a gateway's credential for good (audited); the row stays, listed as revoked."""
    guard.require("pops", Action.UPDATE)
    gateway = guard.ctx.session.get(Gateway, gateway_id)
    if gateway is None or gateway.pop_id != pop_id:
        raise NotFound("gateway not found")
    service.revoke(guard.ctx, gateway)
    guard.ctx.session.commit()
    return Response(status_code=204)


@router.get(
    "/tenants/{tenant_id}/sites/{site_id}/connectors",
    tags=["sites"],
    operation_id="list_site_connectors",
)
def list_connectors(
    guard: GuardDep,
    tenant_id: Annotated[uuid.UUID, Path(description="the tenant's id")],
    site_id: Annotated[uuid.UUID, Path(description="the site's id")],
) -> Page[GatewayPublic]:
    """The site's connector credentials, oldest first: the live one (at most one) and those
    revoked or replaced."""
    _tenant, site = _site(guard, tenant_id, site_id)
    return _credentials(guard, Gateway.site_id == site.id)


@router.delete(
    "/tenants/{tenant_id}/sites/{site_id}/connectors/{connector_id}",
    tags=["sites"],
    status_code=204,
    operation_id="revoke_site_connector",
    response_class=Response,
)
def revoke_connector(
    guard: GuardDep,
    tenant_id: Annotated[uuid.UUID, Path(description="the tenant's id")],
    site_id: Annotated[uuid.UUID, Path(description="the site's id")],
    connector_id: Annotated[uuid.UUID, Path(description="the connector's id")],
) -> Response:
    """Revoke a connector's credential for good (audited in the tenant's log)."""
    _tenant, site = _site(guard, tenant_id, site_id, Action.UPDATE)
    gateway = guard.ctx.session.get(Gateway, connector_id)
    if gateway is None or gateway.site_id != site.id:
        raise NotFound("connector not found")
    service.revoke(guard.ctx, gateway)
    guard.ctx.session.commit()
    return Response(status_code=204)


# --- gateway side --------------------------------------------------------------------------------
def gateway_ctx(request: Request, ctx: AnonCtxDep) -> tuple[Ctx, Gateway]:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.startswith(service.CREDENTIAL_PREFIX):
        raise AuthenticationError("a gateway credential is required")
    if reads_apart(request, ctx):
        with read_apart(ctx) as check:
            gateway = adopt(ctx, check, service.authenticate_gateway(check, secret.strip()))
    else:
        gateway = service.authenticate_gateway(ctx, secret.strip())
    set_actor(ctx.session, Actor(None, f"gateway:{gateway.id}", ctx.source_ip))
    return ctx, gateway


GatewayDep = Annotated[tuple[Ctx, Gateway], Depends(gateway_ctx)]


@router.post("/gateway/enrol", tags=["gateway"], status_code=201, operation_id="gateway_enrol")
def enrol(ctx: AnonCtxDep, body: EnrolRequest) -> EnrolResponse:
    """Trade a one-time enrolment token for a gateway credential."""
    gateway, secret = service.enrol(ctx, body.token, body.hostname, body.agent_version)
    ctx.session.commit()
    return EnrolResponse(
        gateway_id=gateway.id, pop_id=gateway.pop_id, site_id=gateway.site_id, credential=secret
    )


def _authenticate(runtime: Runtime, request: Request) -> uuid.UUID:
    with runtime.db.session(write=False) as session:
        ctx = Ctx(session=session, runtime=runtime, source_ip=source_ip(request))
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.startswith(service.CREDENTIAL_PREFIX):
            raise AuthenticationError("a gateway credential is required")
        return service.authenticate_gateway(ctx, secret.strip()).id


def _version(runtime: Runtime) -> int:
    with runtime.db.session(write=False) as session:
        return current_version(session)


def _compile(runtime: Runtime, gateway_id: uuid.UUID) -> DesiredState:
    with runtime.db.session() as session:
        ctx = Ctx(session=session, runtime=runtime)
        set_actor(session, Actor(None, f"gateway:{gateway_id}"))
        version = current_version(session)
        gateway = session.get(Gateway, gateway_id)
        if gateway is not None:  # revoked or disabled while its poll was held: refused
            service.check_gateway(session, gateway)
        if gateway is not None and gateway.site_id is not None:
            site = session.get(Site, gateway.site_id)
            if site is None:
                raise NotFound("the connector's site no longer exists")
            state = service.compile_connector(ctx, site, version)
            session.commit()  # the connector's tunnel address, allocated on first need
            return state
        pop = session.get(Pop, gateway.pop_id) if gateway and gateway.pop_id else None
        if pop is None:
            raise NotFound("the gateway's PoP no longer exists")
        state = service.compile_desired(ctx, pop, version)
        session.commit()  # interfaces allocated for newly served tenants
        return state


async def _hold(
    request: Request, runtime: Runtime, version: int, after: int, deadline: float, seen: int
) -> bool:
    """Wait until the version (``version`` now) is above ``after`` or ``deadline`` passes;
    True when the gateway went away meanwhile."""
    while version <= after and time.monotonic() < deadline:
        recheck = min(deadline, time.monotonic() + DB_RECHECK)
        while FEED.generation == seen and time.monotonic() < recheck:
            if await request.is_disconnected():
                return True
            await FEED.wait(
                seen, min(recheck, time.monotonic() + DISCONNECT_CHECK) - time.monotonic()
            )
        seen = FEED.generation
        version = await to_thread.run_sync(_version, runtime)
    return False


@router.get(
    "/gateway/desired-state",
    tags=["gateway"],
    operation_id="gateway_desired_state",
    response_model=DesiredState | DesiredDelta,
)
async def desired_state(
    request: Request,
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0, description="the version the gateway has")] = 0,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="seconds to hold")] = 25.0,
    delta: Annotated[
        bool,
        Query(description="answer with the changes since `after` when this server can"),
    ] = False,
) -> Response:
    """The PoP's desired state, once its version is above ``after`` (or ``wait`` runs out).

    With ``delta=true`` and a state of version ``after`` last sent by this server, the answer
    is a :class:`DesiredDelta` (it has ``base_version``); otherwise the whole state."""
    gateway_id = await to_thread.run_sync(_authenticate, runtime, request)
    metrics = server_metrics(request)
    if metrics is not None:
        metrics.polls.begin(gateway_id)
    try:
        deadline = time.monotonic() + wait
        seen = FEED.generation
        version = await to_thread.run_sync(_version, runtime)
        if version <= after and wait > 0 and metrics is not None:
            with metrics.long_poll_waiters.track_inprogress():
                gone = await _hold(request, runtime, version, after, deadline, seen)
        else:
            gone = await _hold(request, runtime, version, after, deadline, seen)
    finally:
        if metrics is not None:
            metrics.polls.end(gateway_id)
    if gone:
        return Response(status_code=status.HTTP_204_NO_CONTENT)  # the gateway went away
    state = await to_thread.run_sync(_compile, runtime, gateway_id)
    before = SENT.swap(gateway_id, state)
    await to_thread.run_sync(record_sent, runtime, gateway_id, state, before)  # what it may report
    body: DesiredState | DesiredDelta = state
    if delta and before is not None and before.version == after and before.pop_id == state.pop_id:
        body = await to_thread.run_sync(diff, before, state)
    # Serialised once here, not validated again against the response model: a PoP's state can
    # hold tens of thousands of peers.
    return Response(body.model_dump_json(), media_type="application/json")


@router.put(
    "/gateway/interfaces/{tenant_id}",
    tags=["gateway"],
    status_code=204,
    operation_id="gateway_publish_key",
    response_class=Response,
)
def publish_key(
    auth: GatewayDep, tenant_id: Annotated[uuid.UUID, Path()], body: KeyPublish
) -> Response:
    """Publish the public key of the PoP's interface for a tenant (the key pair is the
    gateway's; the control plane never sees the private half)."""
    ctx, gateway = auth
    service.publish_key(ctx, gateway, tenant_id, body.public_key)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/gateway/ack",
    tags=["gateway"],
    status_code=204,
    operation_id="gateway_ack",
    response_class=Response,
)
def ack(auth: GatewayDep, body: Ack) -> Response:
    """Record the version the gateway applied (or why it could not)."""
    ctx, gateway = auth
    gateway.applied_version = body.version
    gateway.apply_error = body.error
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- a site's own router, and why a site is (not) reachable ------------------------------------
SiteId = Annotated[uuid.UUID, Path(description="the site's id")]
TenantPath = Annotated[uuid.UUID, Path(description="the tenant's id")]


def _site(
    guard: Guard, tenant_id: uuid.UUID, site_id: uuid.UUID, action: Action = Action.READ
) -> tuple[Tenant, Site]:
    tenant = guard.tenant(tenant_id)
    guard.require("sites", action)
    site = guard.ctx.session.get(Site, site_id)
    if site is None or site.tenant_id != tenant.id:
        raise NotFound("site not found")
    return tenant, site


@router.get(
    "/tenants/{tenant_id}/sites/{site_id}/wireguard.conf",
    tags=["sites"],
    operation_id="get_site_wireguard_conf",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "a wg-quick file"},
        **{
            status: {**spec, "content": {"application/json": {}}}
            for status, spec in ERROR_RESPONSES.items()
        },
    },
)
def site_wireguard_conf(
    guard: GuardDep, tenant_id: TenantPath, site_id: SiteId
) -> PlainTextResponse:
    """The tunnel of a site that runs its own WireGuard router instead of a connector (set the
    site's connector_public_key to the router's public key first)."""
    tenant, site = _site(guard, tenant_id, site_id)
    text = service.site_config(guard.ctx, tenant, site)
    guard.ctx.session.commit()  # the site's tunnel address, allocated on first need
    return PlainTextResponse(
        text, headers={"Content-Disposition": f'attachment; filename="tongdao-site-{site.id}.conf"'}
    )


@router.get(
    "/tenants/{tenant_id}/sites/{site_id}/paths", tags=["sites"], operation_id="get_site_paths"
)
def site_paths(guard: GuardDep, tenant_id: TenantPath, site_id: SiteId) -> list[SitePath]:
    """From each PoP the tenant's devices use to the site's PoP: up, or why not."""
    _tenant, site = _site(guard, tenant_id, site_id)
    return service.site_paths(guard.ctx, site)
