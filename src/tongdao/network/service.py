"""PoPs, links, sites and devices: the domain rules behind their endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Select, and_, exists, or_, select

from tongdao.api.crud import Resource, ensure_unique
from tongdao.compliance import licensing
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.errors import Conflict, NotFound, PermissionDenied, ValidationError
from tongdao.ipam import service as ipam
from tongdao.network import declared, keys
from tongdao.network import schemas as s
from tongdao.network.models import (
    Device,
    DeviceState,
    Link,
    LinkState,
    Pop,
    PopState,
    PopTenantInterface,
    PrefixDeclaration,
    Site,
    SitePurpose,
    SiteState,
)
from tongdao.network.wgconfig import ConfigDataError, PeerSpec, render
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, User

ipam.register_address_owner(Device)
ipam.register_address_owner(PopTenantInterface)
ipam.register_address_owner(Site)

# Where devices with no chosen PoP connect (never directly abroad); a link between a PoP
# here and one elsewhere crosses the border.
HOME_COUNTRY: str = rule("crossborder.registered_link").param("home_country")


def _changes(data: BaseModel) -> dict[str, Any]:
    return data.model_dump(exclude_unset=True)


def _pop_exists(ctx: Ctx, pop_id: uuid.UUID | None, field: str) -> None:
    if pop_id is not None and ctx.session.get(Pop, pop_id) is None:
        raise ValidationError({field: "no such PoP"})


# --- PoPs ----------------------------------------------------------------------------------
class PopResource(Resource[Pop]):
    name = "pops"
    label = "pop"
    model = Pop
    public = s.PopPublic
    create_schema = s.PopCreate
    update_schema = s.PopUpdate
    filters = s.PopFilters
    tenant_scoped = False

    def tenant_column(self) -> Any:
        return None

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Pop:
        assert isinstance(data, s.PopCreate)
        ensure_unique(ctx, Pop.name, data.name, what="a PoP")
        if data.state == PopState.ACTIVE:
            licensing.require_pop(ctx, data.name, data.region, data.country)
        pop = Pop(**data.model_dump())
        ctx.session.add(pop)
        return pop

    def update(self, ctx: Ctx, obj: Pop, data: Any) -> Pop:
        changes = {k: v for k, v in _changes(data).items() if v is not None}
        ensure_unique(ctx, Pop.name, changes.get("name"), own=obj.id, what="a PoP")
        lo = changes.get("port_min", obj.port_min)
        hi = changes.get("port_max", obj.port_max)
        region = changes.get("region", obj.region)
        country = changes.get("country", obj.country)
        if lo > hi:
            raise ValidationError({"port_min": "must not exceed port_max"})
        if region[:2] != country:
            raise ValidationError({"region": f"region {region} is not in country {country}"})
        if country != obj.country:
            _links_stay_registered(ctx, obj, country)
            _reports_stay_at_their_end(ctx, obj, country)
        outside = ctx.session.scalar(
            select(PopTenantInterface.listen_port).where(
                PopTenantInterface.pop_id == obj.id,
                or_(PopTenantInterface.listen_port < lo, PopTenantInterface.listen_port > hi),
            )
        )
        if outside is not None:
            raise Conflict(f"port {outside} is in use by a tenant interface outside {lo}-{hi}")
        if changes.get("state", obj.state) == PopState.ACTIVE and (
            obj.state != PopState.ACTIVE or (region, country) != (obj.region, obj.country)
        ):
            licensing.require_pop(ctx, changes.get("name", obj.name), region, country)
        for key, value in changes.items():
            setattr(obj, key, value)
        return obj

    def delete(self, ctx: Ctx, obj: Pop) -> None:
        if ctx.session.scalar(
            select(exists().where(or_(Link.pop_a_id == obj.id, Link.pop_b_id == obj.id)))
        ):
            raise Conflict("the PoP is joined by links; delete them first")
        if ctx.session.scalar(select(exists().where(Site.pop_id == obj.id))):
            raise Conflict("sites are attached to the PoP; move them first")
        for iface in ctx.session.scalars(
            select(PopTenantInterface).where(PopTenantInterface.pop_id == obj.id)
        ):
            ctx.session.delete(iface)
        ctx.session.flush()  # interfaces first: no relationship() orders these deletes
        ctx.session.delete(obj)


def ensure_interface(ctx: Ctx, pop: Pop, tenant: Tenant) -> PopTenantInterface:
    """The PoP's interface for the tenant, allocated (port, address) on first need."""
    iface = ctx.session.scalar(
        select(PopTenantInterface).where(
            PopTenantInterface.pop_id == pop.id, PopTenantInterface.tenant_id == tenant.id
        )
    )
    if iface is not None:
        return iface
    ipam.lock(ctx.session, f"pop:{pop.id}")
    used = set(
        ctx.session.scalars(
            select(PopTenantInterface.listen_port).where(PopTenantInterface.pop_id == pop.id)
        )
    )
    port = next((p for p in range(pop.port_min, pop.port_max + 1) if p not in used), None)
    if port is None:
        raise Conflict(f"PoP {pop.name} has no free port left in {pop.port_min}-{pop.port_max}")
    address = ipam.allocate_address(ctx.session, tenant.id, tenant.ipv4_pool, tenant.ipv6_pool)
    iface = PopTenantInterface(
        pop_id=pop.id,
        tenant_id=tenant.id,
        public_key=None,
        listen_port=port,
        host_index=address.host_index,
        ipv4=address.ipv4,
        ipv6=address.ipv6,
    )
    ctx.session.add(iface)
    ctx.session.flush()
    return iface


def publish_interface(
    ctx: Ctx, pop: Pop, tenant: Tenant, data: s.InterfacePublish
) -> PopTenantInterface:
    """Record the public key (and, when given, the port) of a PoP's interface for a tenant."""
    existing = ctx.session.scalar(
        select(PopTenantInterface.id).where(
            PopTenantInterface.pop_id == pop.id, PopTenantInterface.tenant_id == tenant.id
        )
    )
    keys.ensure_free(ctx, data.public_key, field="public_key", own=existing)
    iface = ensure_interface(ctx, pop, tenant)
    port = iface.listen_port if data.listen_port is None else data.listen_port
    if not pop.port_min <= port <= pop.port_max:
        raise ValidationError(
            {"listen_port": f"outside the PoP's range {pop.port_min}-{pop.port_max}"}
        )
    taken = ctx.session.scalar(
        select(PopTenantInterface.id).where(
            PopTenantInterface.pop_id == pop.id,
            PopTenantInterface.listen_port == port,
            PopTenantInterface.id != iface.id,
        )
    )
    if taken is not None:
        raise Conflict("the port serves another tenant", {"listen_port": "in use"})
    iface.public_key = data.public_key
    iface.listen_port = port
    return iface


# --- links ---------------------------------------------------------------------------------
class LinkResource(Resource[Link]):
    name = "links"
    label = "link"
    model = Link
    public = s.LinkPublic
    create_schema = s.LinkCreate
    update_schema = s.LinkUpdate
    filters = s.LinkFilters
    tenant_scoped = False

    def tenant_column(self) -> Any:
        return None

    def apply_filters(self, stmt: Select[Any], filters: BaseModel) -> Select[Any]:
        assert isinstance(filters, s.LinkFilters)
        if filters.pop_id:
            stmt = stmt.where(or_(Link.pop_a_id == filters.pop_id, Link.pop_b_id == filters.pop_id))
        if filters.state:
            stmt = stmt.where(Link.state == filters.state)
        return stmt

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Link:
        assert isinstance(data, s.LinkCreate)
        _pop_exists(ctx, data.pop_a_id, "pop_a_id")
        _pop_exists(ctx, data.pop_b_id, "pop_b_id")
        a, b = data.pop_a_id, data.pop_b_id
        if ctx.session.scalar(
            select(
                exists().where(
                    or_(
                        and_(Link.pop_a_id == a, Link.pop_b_id == b),
                        and_(Link.pop_a_id == b, Link.pop_b_id == a),
                    )
                )
            )
        ):
            raise Conflict("a link between these PoPs exists", {"pop_b_id": "already linked"})
        ensure_unique(ctx, Link.name, data.name, what="a link")
        link = Link(**data.model_dump())
        _require_approval(ctx, link)
        ctx.session.add(link)
        return link

    def update(self, ctx: Ctx, obj: Link, data: Any) -> Link:
        changes = {k: v for k, v in _changes(data).items() if v is not None or k == "approval_ref"}
        ensure_unique(ctx, Link.name, changes.get("name"), own=obj.id, what="a link")
        if changes.get("capacity_mbps", obj.capacity_mbps) < obj.capacity_mbps:
            from tongdao.crossborder.service import check_link_capacity

            check_link_capacity(ctx, obj, changes["capacity_mbps"])
        if changes.get("state", obj.state) != LinkState.ACTIVE and obj.state == LinkState.ACTIVE:
            from tongdao.crossborder.service import refuse_link_change

            refuse_link_change(ctx, obj, deleting=False)
        for key, value in changes.items():
            setattr(obj, key, value)
        _require_approval(ctx, obj)
        return obj

    def delete(self, ctx: Ctx, obj: Link) -> None:
        from tongdao.crossborder.models import CrossBorderApplication
        from tongdao.crossborder.service import refuse_link_change

        refuse_link_change(ctx, obj, deleting=True)
        # The ended authorisations on the link lose it (an audited row change each, not the
        # foreign key's silent SET NULL).
        for app in ctx.session.scalars(
            select(CrossBorderApplication).where(CrossBorderApplication.link_id == obj.id)
        ):
            app.link_id = None
        ctx.session.flush()
        ctx.session.delete(obj)


CROSS_BORDER = "crossborder.registered_link"


def crosses_border(country_a: str, country_b: str) -> bool:
    """One end in China, the other abroad."""
    return (country_a == HOME_COUNTRY) != (country_b == HOME_COUNTRY)


def _unapproved_crossing(
    ctx: Ctx, link: Link, moved: tuple[uuid.UUID, str] | None = None
) -> tuple[Pop, str, Pop, str] | None:
    """(PoP a, its country, PoP b, its country) when the link is active, crosses the border
    and has no approval reference; ``moved`` puts one PoP in another country first."""
    if link.state != LinkState.ACTIVE or link.approval_ref:
        return None
    a, b = ctx.session.get(Pop, link.pop_a_id), ctx.session.get(Pop, link.pop_b_id)
    assert a is not None and b is not None
    ca = moved[1] if moved and moved[0] == a.id else a.country
    cb = moved[1] if moved and moved[0] == b.id else b.country
    return (a, ca, b, cb) if crosses_border(ca, cb) else None


def _require_approval(ctx: Ctx, link: Link) -> None:
    """An active link across the border carries the regulator's approval reference."""
    crossing = _unapproved_crossing(ctx, link)
    if crossing is not None:
        a, ca, b, cb = crossing
        raise ComplianceRefusal(
            CROSS_BORDER,
            f"link {link.name!r} joins {a.name} ({ca}) and {b.name} ({cb}) across the border; "
            "it is active only with the approval reference of its international gateway "
            "(record it disabled until the approval is granted)",
            {"approval_ref": "required for an active cross-border link"},
        )


def _links_stay_registered(ctx: Ctx, pop: Pop, country: str) -> None:
    """Moving a PoP to another country must not turn a link into an unapproved crossing."""
    for link in ctx.session.scalars(
        select(Link).where(or_(Link.pop_a_id == pop.id, Link.pop_b_id == pop.id))
    ):
        if _unapproved_crossing(ctx, link, (pop.id, country)) is not None:
            raise ComplianceRefusal(
                CROSS_BORDER,
                f"moving PoP {pop.name} to {country} makes link {link.name!r} cross the border "
                "without an approval reference; record the approval on the link first",
                {"country": "a link of this PoP would cross the border unapproved"},
            )


def _reports_stay_at_their_end(ctx: Ctx, pop: Pop, country: str) -> None:
    """A PoP whose gateways have reported usage does not move across the border: which end
    of a cross-border link a report is (:mod:`tongdao.gateway.xbends`) is decided by its PoP's
    country, for the ledger when the report is stored but for the raw records' totals when
    they are read, so a move would count the reports' cross-border bytes again (or not at
    all) in the tenant's usage, not in its ledger and invoices."""
    from tongdao.gateway.models import Gateway, UsageRecord

    if (pop.country == HOME_COUNTRY) == (country == HOME_COUNTRY):
        return
    gateways = select(Gateway.id).where(Gateway.pop_id == pop.id)
    if ctx.session.scalar(select(exists().where(UsageRecord.gateway_id.in_(gateways)))):
        raise Conflict(
            f"PoP {pop.name} has usage reports: it cannot move across the border "
            f"({pop.country} to {country}); record a new PoP in {country} instead",
            {"country": "the PoP's gateways have reported usage on this side of the border"},
        )


# --- sites ---------------------------------------------------------------------------------
class SiteResource(Resource[Site]):
    name = "sites"
    label = "site"
    model = Site
    public = s.SitePublic
    create_schema = s.SiteCreate
    update_schema = s.SiteUpdate
    filters = s.SiteFilters

    def _unique(
        self, ctx: Ctx, tenant_id: uuid.UUID, changes: dict[str, Any], own: uuid.UUID | None
    ) -> None:
        ensure_unique(
            ctx, Site.name, changes.get("name"), own=own, tenant_id=tenant_id, what="a site"
        )
        keys.ensure_free(
            ctx, changes.get("connector_public_key"), field="connector_public_key", own=own
        )

    def to_public(self, ctx: Ctx, obj: Site) -> BaseModel:
        return self._public(obj, declared.declarations_of(ctx, obj.id))

    def to_public_many(self, ctx: Ctx, objs: Sequence[Site]) -> list[BaseModel]:
        by_site = declared.briefs(ctx, [o.id for o in objs])
        return [self._public(o, by_site[o.id]) for o in objs]

    @staticmethod
    def _public(obj: Site, decls: Sequence[PrefixDeclaration]) -> s.SitePublic:
        return s.SitePublic(
            id=obj.id,
            created_at=obj.created_at,
            updated_at=obj.updated_at,
            tenant_id=obj.tenant_id,
            name=obj.name,
            country=obj.country,
            prefixes=[d.cidr for d in decls if d.state in declared.LIVE],
            approved_prefixes=list(obj.prefixes),
            declarations=[
                s.DeclarationBrief(
                    id=d.id, cidr=d.cidr, state=d.state, reason=d.reason, decided_at=d.decided_at
                )
                for d in decls
            ],
            purpose=SitePurpose(obj.purpose),
            pop_id=obj.pop_id,
            connector_public_key=obj.connector_public_key,
            state=SiteState(obj.state),
        )

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Site:
        assert isinstance(data, s.SiteCreate) and tenant is not None
        self._unique(ctx, tenant.id, data.model_dump(), None)
        _pop_exists(ctx, data.pop_id, "pop_id")
        declared.check_declared(ctx, tenant, data.prefixes, site_id=None)
        site = Site(tenant_id=tenant.id, **data.model_dump(exclude={"prefixes"}), prefixes=[])
        ctx.session.add(site)
        ctx.session.flush()  # the declarations refer to the site
        declared.declare(ctx, site, data.prefixes)
        return site

    def update(self, ctx: Ctx, obj: Site, data: Any) -> Site:
        changes = _changes(data)
        tenant = ctx.session.get(Tenant, obj.tenant_id)
        assert tenant is not None
        self._unique(ctx, obj.tenant_id, changes, obj.id)
        if "pop_id" in changes:
            _pop_exists(ctx, changes["pop_id"], "pop_id")
        prefixes = changes.pop("prefixes", None)
        if prefixes is not None:
            declared.check_declared(ctx, tenant, prefixes, site_id=obj.id)
        state = changes.get("state")
        obj_state_before = obj.state
        operator = ctx.require_principal().is_operator
        if (
            state not in (None, obj.state)
            and not operator
            and SiteState.ACTIVE in (state, obj.state)
        ):
            raise PermissionDenied(
                "the operator activates sites after approving their networks",
                {"state": "only the operator moves a site to or from active"},
            )
        nullable = {"pop_id", "connector_public_key"}
        redeclare = any(
            changes.get(key) not in (None, getattr(obj, key)) for key in ("purpose", "country")
        )
        crossing = "pop_id" in changes and _moves_across_border(
            ctx, obj, changes["pop_id"], changes.get("country") or obj.country
        )
        for key, value in changes.items():
            if value is not None or key in nullable:
                setattr(obj, key, value)
        if prefixes is not None or redeclare or crossing:
            declared.declare(ctx, obj, prefixes, redeclare=redeclare or crossing)
        if crossing and obj.state == SiteState.ACTIVE:
            # Rule crossborder.registered_link: the approval was for the site where it was
            # served; served across the border, it waits for a new one, then the operator.
            obj.state = SiteState.PENDING
        if state == SiteState.ACTIVE and state != obj_state_before:
            declared.require_routed(obj)
        if obj.state == SiteState.ACTIVE and (
            obj_state_before != SiteState.ACTIVE or {"country", "pop_id"} & changes.keys()
        ):
            licensing.require_site(ctx, obj, tenant.division_code)
        return obj

    def delete(self, ctx: Ctx, obj: Site) -> None:
        from tongdao.access.service import references_to

        users = references_to(ctx, obj.tenant_id, "site", obj.id)
        if users:
            raise Conflict(f"the site is used by policies: {', '.join(users)}")
        declared.delete_site_declarations(ctx, obj)
        ctx.session.delete(obj)


def _moves_across_border(ctx: Ctx, site: Site, pop_id: uuid.UUID | None, country: str) -> bool:
    """Whether moving ``site`` to ``pop_id`` takes it across the border: where its traffic
    meets the data plane (its PoP's country; its own country when it has no PoP) goes from
    China to abroad or back."""

    def served_in(pid: uuid.UUID | None, own_country: str) -> str:
        pop = ctx.session.get(Pop, pid) if pid is not None else None
        return pop.country if pop is not None else own_country

    if pop_id == site.pop_id:
        return False
    return crosses_border(served_in(site.pop_id, site.country), served_in(pop_id, country))


# --- devices -------------------------------------------------------------------------------
class DeviceResource(Resource[Device]):
    name = "devices"
    label = "device"
    model = Device
    public = s.DevicePublic
    create_schema = s.DeviceCreate
    update_schema = s.DeviceUpdate
    filters = s.DeviceFilters
    owner_attr = "user_id"
    list_rows = True

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Device:
        assert isinstance(data, s.DeviceCreate) and tenant is not None
        principal = ctx.require_principal()
        from tongdao.auth.permissions import Action

        user_id = data.user_id
        if user_id is None:
            if principal.tenant_id != tenant.id:
                raise ValidationError({"user_id": "required: the user who owns the device"})
            user_id = principal.user_id
        if principal.own_only("devices", Action.CREATE) and user_id != principal.user_id:
            raise ValidationError({"user_id": "you can register devices for yourself only"})
        owner = ctx.session.get(User, user_id)
        if owner is None or owner.tenant_id != tenant.id:
            raise ValidationError({"user_id": "no such user in this tenant"})
        if owner.erased_at is not None:
            raise ValidationError({"user_id": "the user's personal data was erased"})
        keys.ensure_free(ctx, data.public_key, field="public_key")
        _pop_exists(ctx, data.pop_id, "pop_id")
        _refuse_abroad_pop(ctx, owner.id, data.pop_id)
        address = ipam.allocate_address(ctx.session, tenant.id, tenant.ipv4_pool, tenant.ipv6_pool)
        device = Device(
            tenant_id=tenant.id,
            user_id=user_id,
            name=data.name,
            public_key=data.public_key,
            pop_id=data.pop_id,
            host_index=address.host_index,
            ipv4=address.ipv4,
            ipv6=address.ipv6,
            # Rule identity.real_name: active only once the owner's identity is verified.
            state=DeviceState.ACTIVE if owner.identity_verified_at else DeviceState.PENDING,
        )
        ctx.session.add(device)
        return device

    def update(self, ctx: Ctx, obj: Device, data: Any) -> Device:
        changes = _changes(data)
        keys.ensure_free(ctx, changes.get("public_key"), field="public_key", own=obj.id)
        if "pop_id" in changes:
            _pop_exists(ctx, changes["pop_id"], "pop_id")
            _refuse_abroad_pop(ctx, obj.user_id, changes["pop_id"])
        if obj.state == DeviceState.REVOKED and changes.get("state") not in (
            None,
            DeviceState.REVOKED,
        ):
            raise ValidationError({"state": "a revoked device stays revoked; register it again"})
        _check_activation(ctx, obj, changes.get("state"))
        if changes.get("state") not in (None, obj.state):
            from tongdao.lifetime.service import device_state_set

            device_state_set(ctx, obj, changes["state"])
        for key, value in changes.items():
            if value is not None or key == "pop_id":
                setattr(obj, key, value)
        return obj

    def delete(self, ctx: Ctx, obj: Device) -> None:
        from tongdao.access.service import references_to
        from tongdao.privacy.service import refuse_deleting_logged_devices

        users = references_to(ctx, obj.tenant_id, "device", obj.id)
        if users:
            raise Conflict(f"the device is used by policies: {', '.join(users)}")
        refuse_deleting_logged_devices(
            ctx, obj.tenant_id, [obj.id], "revoke the device instead (state revoked)"
        )
        ctx.session.delete(obj)


def _check_activation(ctx: Ctx, device: Device, state: str | None) -> None:
    """Pending is the platform's to set; active needs the owner's verified identity."""
    if state is None or state == device.state:
        return
    if state == DeviceState.PENDING:
        raise ValidationError(
            {"state": "pending is set by the platform while the owner's identity is unverified"}
        )
    if state == DeviceState.ACTIVE:
        owner = ctx.session.get(User, device.user_id)
        if owner is None or owner.identity_verified_at is None:
            raise ComplianceRefusal(
                "identity.real_name",
                "the device's owner has no verified real identity; a tenant admin or "
                "compliance officer verifies it (POST .../identity-verification) and the "
                "device becomes active",
                {"state": "the owner's real identity is not verified"},
            )


def _refuse_abroad_pop(ctx: Ctx, user_id: uuid.UUID, pop_id: uuid.UUID | None) -> None:
    """A device homes on an overseas PoP only with its owner's consent to transfer abroad."""
    from tongdao.privacy.service import refuse_abroad_without_consent

    pop = ctx.session.get(Pop, pop_id) if pop_id is not None else None
    if pop is not None and pop.country != HOME_COUNTRY:
        refuse_abroad_without_consent(ctx.session, user_id, f"PoP {pop.name}")


class HasHomePop(Protocol):
    @property
    def pop_id(self) -> uuid.UUID | None: ...


class PopPlace(Protocol):
    """What :func:`device_homed_at` reads of a PoP (a :class:`Pop`, or a plain copy of these
    two fields where thousands of devices are checked against one PoP)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def country(self) -> str: ...


def device_homed_at(device: HasHomePop, pop: PopPlace) -> bool:
    """Whether the device connects to this PoP: its chosen PoP, or, with none chosen, any PoP
    in China. A device in China reaches overseas networks only through a PoP in China and a
    registered cross-border link, never by dialling an overseas PoP itself."""
    if device.pop_id is not None:
        return device.pop_id == pop.id
    return pop.country == HOME_COUNTRY


def device_served_at(device: HasHomePop, pop: Pop, *, abroad_consent: bool) -> bool:
    """Whether the PoP carries the device: it is homed there, and a PoP abroad only when the
    owner consents to transfer abroad (rule pi.notice_and_consent)."""
    return device_homed_at(device, pop) and (abroad_consent or pop.country == HOME_COUNTRY)


def routable_prefixes(ctx: Ctx, tenant: Tenant) -> list[str]:
    """What a tenant's devices route into the tunnel: its overlay pools and active sites; a
    site at a PoP abroad only under the tenant's cross-border authorisation for a link to it
    (rule crossborder.tenant_authorised)."""
    from tongdao.crossborder.service import reachable_abroad

    prefixes = [tenant.ipv4_pool, tenant.ipv6_pool]
    abroad: set[uuid.UUID] | None = None
    for site_prefixes, pop_country, pop_id in ctx.session.execute(
        select(Site.prefixes, Pop.country, Pop.id)
        .outerjoin(Pop, Pop.id == Site.pop_id)
        .where(Site.tenant_id == tenant.id, Site.state == SiteState.ACTIVE)
    ):
        if pop_country is not None and pop_country != HOME_COUNTRY:
            if abroad is None:
                abroad = reachable_abroad(ctx, tenant.id)
            if pop_id not in abroad:
                continue
        prefixes.extend(site_prefixes)
    return prefixes


class AwaitingGateway(Conflict):
    """No gateway has published the tenant's interface key yet (a tenant's first device: the
    gateway sets the tenant up on its next poll). A wait, not a refusal: asking again later
    gives the configuration."""


def device_config(ctx: Ctx, tenant: Tenant, device: Device) -> str:
    if device.state == DeviceState.PENDING:
        raise ComplianceRefusal(
            "identity.real_name",
            "the device is pending: its owner's real identity is not verified yet",
        )
    if device.state != DeviceState.ACTIVE:
        raise Conflict(f"the device is {device.state}; it has no configuration")
    stmt = (
        select(PopTenantInterface, Pop)
        .join(Pop, Pop.id == PopTenantInterface.pop_id)
        .where(
            PopTenantInterface.tenant_id == tenant.id,
            PopTenantInterface.public_key.is_not(None),
            Pop.state == PopState.ACTIVE,
        )
        .order_by(Pop.name)
    )
    rows = [(iface, pop) for iface, pop in ctx.session.execute(stmt)]
    homed = [(iface, pop) for iface, pop in rows if device_homed_at(device, pop)]
    if any(pop.country != HOME_COUNTRY for _iface, pop in homed):
        from tongdao.privacy.service import consents_abroad

        consent = consents_abroad(ctx.session, device.user_id)
        rows = [(i, p) for i, p in homed if device_served_at(device, p, abroad_consent=consent)]
        if not rows:
            raise ComplianceRefusal(
                "pi.notice_and_consent",
                "the device's PoP is abroad and its owner has no current consent to transfer "
                "abroad; the configuration lists no PoP abroad for them",
            )
    else:
        rows = homed
    if not rows:
        where = "the device's PoP has not yet" if device.pop_id is not None else "no PoP has yet"
        raise AwaitingGateway(
            f"{where} published a WireGuard key for this tenant; the configuration "
            "is ready once a gateway serves the tenant"
        )
    peers = [pop_peer(pop, iface, iface.public_key or "") for iface, pop in rows]
    try:
        return render(
            device_name=device.name,
            device_id=str(device.id),
            tenant_name=tenant.name_en,
            ipv4=device.ipv4,
            ipv6=device.ipv6,
            dns=tenant.dns_servers,
            routable=routable_prefixes(ctx, tenant),
            peers=peers,
        )
    except ConfigDataError as exc:
        raise unwritable(exc) from exc


def pop_peer(pop: Pop, iface: PopTenantInterface, public_key: str) -> PeerSpec:
    """The [Peer] a device or site router has for the tenant's interface on a PoP."""
    return PeerSpec(
        pop.name,
        pop.region,
        public_key,
        pop.endpoint_host,
        iface.listen_port,
        iface.ipv4,
        iface.ipv6,
    )


def unwritable(exc: ConfigDataError) -> Conflict:
    """A stored value that cannot go into a wg-quick file (a row written around the schemas)."""
    return Conflict(
        f"the stored {exc.field} cannot be written into a configuration; correct it first",
        {exc.field: exc.message},
    )


def get_pop(ctx: Ctx, pop_id: uuid.UUID) -> Pop:
    pop = ctx.session.get(Pop, pop_id)
    if pop is None:
        raise NotFound("pop not found")
    return pop


def no_link_reason(home: Pop, to: Pop) -> str:
    """Why a site at ``to`` is out of reach from ``home``: no active registered link."""
    r = rule(CROSS_BORDER)
    return (
        f"no registered cross-border link joins {home.name} and {to.name}; traffic abroad may "
        f"only use approved international links (rule {r.id}: {r.text}; source: {r.source})"
    )
