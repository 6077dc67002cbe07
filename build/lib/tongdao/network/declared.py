"""Declared networks: what a tenant may route, and who decided it.

A site's prefixes are *declared* (one :class:`PrefixDeclaration` each, with the site's purpose
and country) and a compliance officer approves or rejects each; ``Site.prefixes``, which the
gateway compiler and device configurations read, is kept equal to the approved ones in the
transaction that changes a declaration. Nothing else ever makes a prefix routable.

The rules, as data in :mod:`tongdao.compliance.rules`:

* ``network.declared_only`` — only approved declarations are routed: a site is activated only
  with one; a declaration never overlaps another live (pending or approved) declaration of the
  tenant, except that one an allowance admits may contain others (a default route contains
  every LAN; the more specific route wins); a ``prefix`` in an access rule lies in the
  tenant's overlay pools, approved declarations or allowances.
* ``network.no_default_or_public`` — a default route (or one split in halves), a public prefix
  (not inside the rule's private blocks) or part of other tenants' overlay is refused, in a
  declaration or an access rule, unless an operator :class:`PrefixAllowance` for the tenant
  covers it.

Format errors stay 422 (the schemas); a prefix overlapping the tenant's own pools or another
prefix of the same request is a 422 too. Rule refusals are 409 and name the rule and source.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select

from tongdao import validation
from tongdao.api.crud import Resource, ensure_unique
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.errors import Conflict, ValidationError
from tongdao.ipam import service as ipam
from tongdao.ipam.allocator import OVERLAY_V4, OVERLAY_V6
from tongdao.network import schemas as s
from tongdao.network.models import DeclarationState, PrefixAllowance, PrefixDeclaration, Site
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant

DECLARED_ONLY = "network.declared_only"
NO_DEFAULT_OR_PUBLIC = "network.no_default_or_public"
LIVE = (DeclarationState.PENDING, DeclarationState.APPROVED)

IPNetwork = validation.IPNetwork


def sort_key(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address), net.prefixlen


def _nets(cidrs: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(c) for c in cidrs]


def _covered(net: IPNetwork, by: Iterable[IPNetwork]) -> bool:
    """Whether the union of ``by`` covers all of ``net`` (adjacent prefixes add up)."""
    if isinstance(net, ipaddress.IPv4Network):
        v4 = [n for n in by if isinstance(n, ipaddress.IPv4Network)]
        return any(net.subnet_of(m) for m in ipaddress.collapse_addresses(v4))
    v6 = [n for n in by if isinstance(n, ipaddress.IPv6Network)]
    return any(net.subnet_of(m) for m in ipaddress.collapse_addresses(v6))


# --- the rule network.no_default_or_public ---------------------------------------------------
def _private_blocks() -> list[IPNetwork]:
    return _nets(rule(NO_DEFAULT_OR_PUBLIC).param("private_blocks"))


class Exposure:
    """Why a prefix of one tenant would be a default route, public, or reach another tenant
    (None if none of these); reads the other tenants' IPv6 pools once, when first needed."""

    def __init__(self, ctx: Ctx, tenant: Tenant) -> None:
        self.ctx = ctx
        self.tenant = tenant
        self.pools = {
            4: ipaddress.ip_network(tenant.ipv4_pool),
            6: ipaddress.ip_network(tenant.ipv6_pool),
        }
        self.private = _private_blocks()
        self.longest_default: dict[int, int] = rule(NO_DEFAULT_OR_PUBLIC).param(
            "default_max_prefixlen"
        )
        self._other_v6: list[IPNetwork] | None = None

    def other_v6_pools(self) -> list[IPNetwork]:
        if self._other_v6 is None:
            self._other_v6 = _nets(
                self.ctx.session.scalars(
                    select(Tenant.ipv6_pool).where(Tenant.id != self.tenant.id)
                )
            )
        return self._other_v6

    def __call__(self, net: IPNetwork) -> str | None:
        if net.prefixlen == 0:
            return f"{net} is a default route"
        if net.prefixlen <= self.longest_default[net.version]:
            return f"{net} covers half of all addresses (a default route split in two)"
        if not any(_inside(net, b) for b in self.private):
            return (
                f"{net} is public: it is not inside a private-use, shared, documentation, "
                "benchmarking or unique-local block"
            )
        if _inside(net, self.pools[net.version]):
            return None
        if net.version == 4 and net.overlaps(OVERLAY_V4):
            return f"{net} is in {OVERLAY_V4}, the overlay range that holds other tenants' pools"
        if net.version == 6 and net.overlaps(OVERLAY_V6):
            for other in self.other_v6_pools():
                if net.overlaps(other):
                    return f"{net} overlaps {other}, another tenant's overlay pool"
        return None


def _inside(net: IPNetwork, block: IPNetwork) -> bool:
    return net.version == block.version and net.subnet_of(block)  # type: ignore[arg-type]


def allowances(
    ctx: Ctx, tenant_id: uuid.UUID, *, without: uuid.UUID | None = None
) -> list[IPNetwork]:
    stmt = select(PrefixAllowance.cidr).where(PrefixAllowance.tenant_id == tenant_id)
    if without is not None:
        stmt = stmt.where(PrefixAllowance.id != without)
    return _nets(ctx.session.scalars(stmt))


def _unless_allowed(net: IPNetwork, why: str | None, allowed: Sequence[IPNetwork]) -> str | None:
    if why is None or _covered(net, allowed):
        return None
    return f"{why}; no operator allowance for this tenant covers it"


def _clash(a: IPNetwork, a_wide: bool, b: IPNetwork, b_wide: bool) -> bool:
    """Whether two declarations of a tenant collide. A *wide* one (a default route or public
    prefix an operator allowance admits) may contain others, as a default route contains
    every LAN: the more specific route wins. The same prefix twice always collides."""
    if a.version != b.version or not a.overlaps(b):
        return False
    return a == b or not (a_wide or b_wide)


# --- declarations ----------------------------------------------------------------------------
def _live_elsewhere(
    ctx: Ctx, tenant_id: uuid.UUID, *, site_id: uuid.UUID | None, own: uuid.UUID | None = None
) -> list[tuple[str, str]]:
    """(cidr, site name) of the tenant's live declarations outside ``site_id`` (and not ``own``)."""
    stmt = (
        select(PrefixDeclaration.cidr, Site.name)
        .join(Site, Site.id == PrefixDeclaration.site_id)
        .where(PrefixDeclaration.tenant_id == tenant_id, PrefixDeclaration.state.in_(LIVE))
    )
    if site_id is not None:
        stmt = stmt.where(PrefixDeclaration.site_id != site_id)
    if own is not None:
        stmt = stmt.where(PrefixDeclaration.id != own)
    return [(cidr, name) for cidr, name in ctx.session.execute(stmt)]


def check_declared(
    ctx: Ctx, tenant: Tenant, cidrs: Sequence[str], *, site_id: uuid.UUID | None
) -> None:
    """Refuse a site's new set of prefixes: 409 naming network.no_default_or_public for a
    default route, public or foreign prefix no allowance covers; 422 for what is wrong in the
    request itself (overlaps inside it, or with the tenant's pools); 409 naming
    network.declared_only for an overlap with another site's declaration. Serialises the
    tenant's declarations."""
    ipam.lock(ctx.session, ipam.tenant_lock_name(tenant.id))
    nets = [validation.network(c) for c in cidrs]
    why = Exposure(ctx, tenant)
    allowed = allowances(ctx, tenant.id)
    wide: set[int] = set()
    public: dict[str, str] = {}
    for i, net in enumerate(nets):
        reason = why(net)
        refused = _unless_allowed(net, reason, allowed)
        if refused is not None:
            public[f"prefixes.{i}"] = refused
        elif reason is not None:
            wide.add(i)
    if public:
        raise ComplianceRefusal(NO_DEFAULT_OR_PUBLIC, "; ".join(public.values()), public)

    invalid: dict[str, str] = {}
    for i, net in enumerate(nets):
        key = f"prefixes.{i}"
        for j in range(i):
            if _clash(net, i in wide, nets[j], j in wide):
                invalid[key] = f"{net} overlaps {nets[j]}"
                break
        pool = why.pools[net.version]
        if key not in invalid and i not in wide and net.overlaps(pool):
            invalid[key] = f"{net} overlaps the tenant's overlay pool {pool}"
    if invalid:
        raise ValidationError(invalid)

    others = [
        (ipaddress.ip_network(cidr), name)
        for cidr, name in _live_elsewhere(ctx, tenant.id, site_id=site_id)
    ]
    clash: dict[str, str] = {}
    for i, net in enumerate(nets):
        for other, site_name in others:
            if _clash(net, i in wide, other, why(other) is not None):
                clash[f"prefixes.{i}"] = (
                    f"{net} overlaps {other}, declared for site {site_name!r}; an address is "
                    "declared once, with one purpose and country"
                )
                break
    if clash:
        raise ComplianceRefusal(DECLARED_ONLY, "; ".join(clash.values()), clash)


def declarations_of(ctx: Ctx, site_id: uuid.UUID) -> list[PrefixDeclaration]:
    stmt = select(PrefixDeclaration).where(PrefixDeclaration.site_id == site_id)
    rows = list(ctx.session.scalars(stmt))
    return sorted(rows, key=lambda d: sort_key(d.cidr))


def sync_routed(site: Site, declarations: Iterable[PrefixDeclaration]) -> None:
    """``Site.prefixes`` := the approved declarations, in address order."""
    approved = sorted(
        (d.cidr for d in declarations if d.state == DeclarationState.APPROVED), key=sort_key
    )
    if list(site.prefixes or []) != approved:
        site.prefixes = approved


def declare(
    ctx: Ctx, site: Site, cidrs: Sequence[str] | None, *, redeclare: bool = False
) -> list[PrefixDeclaration]:
    """Bring the site's declarations to ``cidrs`` (None: keep the set).

    A new prefix, or one rejected before, becomes pending; one no longer wanted is withdrawn
    (deleted) unless it was rejected, which stays on record with its reason. With ``redeclare``
    (the site's purpose or country changed, or it moved to a PoP across the border) every live
    declaration goes back to pending with the site's new purpose and country: an approval was
    for what was declared, where it was served.
    """
    existing = {d.cidr: d for d in declarations_of(ctx, site.id)}
    wanted = None if cidrs is None else [str(validation.network(c)) for c in cidrs]
    kept: list[PrefixDeclaration] = []
    for cidr, decl in existing.items():
        if wanted is not None and cidr not in wanted and decl.state != DeclarationState.REJECTED:
            ctx.session.delete(decl)
            continue
        if redeclare and decl.state in LIVE:
            _reset(decl, site)
        kept.append(decl)
    for cidr in wanted or ():
        found = existing.get(cidr)
        if found is None:
            decl = PrefixDeclaration(
                tenant_id=site.tenant_id,
                site_id=site.id,
                cidr=cidr,
                purpose=site.purpose,
                country=site.country,
                state=DeclarationState.PENDING,
                reason="",
            )
            ctx.session.add(decl)
            kept.append(decl)
        elif found.state == DeclarationState.REJECTED:
            _reset(found, site)
    sync_routed(site, kept)
    return kept


def _reset(decl: PrefixDeclaration, site: Site) -> None:
    decl.state = DeclarationState.PENDING
    decl.purpose = site.purpose
    decl.country = site.country
    decl.decided_by = None
    decl.decided_at = None
    decl.reason = ""


def require_routed(site: Site) -> None:
    """A site is activated only with at least one approved prefix."""
    if not site.prefixes:
        raise ComplianceRefusal(
            DECLARED_ONLY,
            f"site {site.name!r} has no approved prefix yet; a compliance officer approves its "
            "declarations before the operator activates it",
            {"state": "no approved prefix"},
        )


def decide(
    ctx: Ctx, decl: PrefixDeclaration, state: DeclarationState, reason: str
) -> PrefixDeclaration:
    """A compliance officer approves or rejects a declaration (and may revisit a decision)."""
    if decl.state == state:
        raise Conflict(f"the declaration of {decl.cidr} is already {state}", {"state": state})
    tenant = ctx.session.get(Tenant, decl.tenant_id)
    site = ctx.session.get(Site, decl.site_id)
    assert tenant is not None and site is not None
    if state == DeclarationState.APPROVED:
        # Re-checked: allowances and other declarations may have changed since it was made.
        ipam.lock(ctx.session, ipam.tenant_lock_name(tenant.id))
        net = ipaddress.ip_network(decl.cidr)
        why = Exposure(ctx, tenant)
        exposed = why(net)
        refused = _unless_allowed(net, exposed, allowances(ctx, tenant.id))
        if refused is not None:
            raise ComplianceRefusal(NO_DEFAULT_OR_PUBLIC, refused, {"cidr": refused})
        for cidr, site_name in _live_elsewhere(ctx, tenant.id, site_id=None, own=decl.id):
            other = ipaddress.ip_network(cidr)
            if _clash(net, exposed is not None, other, why(other) is not None):
                msg = f"{net} overlaps {other}, declared for site {site_name!r}"
                raise ComplianceRefusal(DECLARED_ONLY, msg, {"cidr": msg})
    decl.state = state
    decl.reason = reason
    decl.decided_by = ctx.user_id
    decl.decided_at = ctx.runtime.clock()
    sync_routed(site, declarations_of(ctx, site.id))
    return decl


def delete_site_declarations(ctx: Ctx, site: Site) -> None:
    for decl in declarations_of(ctx, site.id):
        ctx.session.delete(decl)
    ctx.session.flush()  # declarations first: no relationship() orders these deletes


def briefs(ctx: Ctx, site_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[PrefixDeclaration]]:
    """Declarations of many sites in one query, each site's in address order."""
    out: dict[uuid.UUID, list[PrefixDeclaration]] = {sid: [] for sid in site_ids}
    if not site_ids:
        return out
    for decl in ctx.session.scalars(
        select(PrefixDeclaration).where(PrefixDeclaration.site_id.in_(list(site_ids)))
    ):
        out[decl.site_id].append(decl)
    for rows in out.values():
        rows.sort(key=lambda d: sort_key(d.cidr))
    return out


# --- access rules ----------------------------------------------------------------------------
def check_rule_prefixes(ctx: Ctx, tenant: Tenant, prefixes: Sequence[tuple[str, str]]) -> None:
    """Refuse ``prefix`` destinations of access rules ((field, cidr) pairs) that lie outside
    the tenant's pools and approved declarations, unless an operator allowance covers them."""
    if not prefixes:
        return
    approved = _nets(
        ctx.session.scalars(
            select(PrefixDeclaration.cidr).where(
                PrefixDeclaration.tenant_id == tenant.id,
                PrefixDeclaration.state == DeclarationState.APPROVED,
            )
        )
    )
    allowed = allowances(ctx, tenant.id)
    mine = [ipaddress.ip_network(tenant.ipv4_pool), ipaddress.ip_network(tenant.ipv6_pool)]
    exposure_of = Exposure(ctx, tenant)
    refusals: dict[str, dict[str, str]] = {NO_DEFAULT_OR_PUBLIC: {}, DECLARED_ONLY: {}}
    for field, cidr in prefixes:
        net = ipaddress.ip_network(cidr)
        if _covered(net, [*mine, *approved, *allowed]):
            continue
        why = exposure_of(net)
        if why is not None:
            refusals[NO_DEFAULT_OR_PUBLIC][field] = (
                f"{why}; no operator allowance for this tenant covers it"
            )
        else:
            refusals[DECLARED_ONLY][field] = (
                f"{net} is neither in the tenant's overlay pools nor in an approved declaration"
            )
    for rule_id, fields in refusals.items():
        if fields:
            raise ComplianceRefusal(rule_id, "; ".join(fields.values()), fields)


# --- operator allowances ---------------------------------------------------------------------
class AllowanceResource(Resource[PrefixAllowance]):
    """``/tenants/{tenant_id}/prefix-allowances``: the operator's exceptions for one tenant."""

    name = "prefix_allowances"
    label = "prefix_allowance"
    model = PrefixAllowance
    public = s.AllowancePublic
    create_schema = s.AllowanceCreate
    update_schema = s.AllowanceUpdate
    filters = s.AllowanceFilters

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> PrefixAllowance:
        assert isinstance(data, s.AllowanceCreate) and tenant is not None
        ensure_unique(
            ctx, PrefixAllowance.cidr, data.cidr, tenant_id=tenant.id, what="an allowance"
        )
        allowance = PrefixAllowance(tenant_id=tenant.id, cidr=data.cidr, reason=data.reason)
        ctx.session.add(allowance)
        return allowance

    def update(self, ctx: Ctx, obj: PrefixAllowance, data: Any) -> PrefixAllowance:
        assert isinstance(data, s.AllowanceUpdate)
        if data.reason is not None:
            obj.reason = data.reason
        return obj

    def delete(self, ctx: Ctx, obj: PrefixAllowance) -> None:
        """Refused while a live declaration or an access rule of the tenant needs it."""
        from tongdao.access.service import prefix_destinations

        tenant = ctx.session.get(Tenant, obj.tenant_id)
        assert tenant is not None
        ipam.lock(ctx.session, ipam.tenant_lock_name(tenant.id))
        rest = allowances(ctx, tenant.id, without=obj.id)
        exposure_of = Exposure(ctx, tenant)
        mine = ipaddress.ip_network(obj.cidr)
        users: list[str] = []
        live = ctx.session.execute(
            select(PrefixDeclaration.cidr, Site.name)
            .join(Site, Site.id == PrefixDeclaration.site_id)
            .where(PrefixDeclaration.tenant_id == tenant.id, PrefixDeclaration.state.in_(LIVE))
            .order_by(Site.name)
        )
        for cidr, site_name in live:
            net = ipaddress.ip_network(cidr)
            if (
                net.version == mine.version
                and net.overlaps(mine)
                and _unless_allowed(net, exposure_of(net), rest) is not None
            ):
                users.append(f"{cidr} of site {site_name!r}")
        approved = _nets(
            ctx.session.scalars(
                select(PrefixDeclaration.cidr).where(
                    PrefixDeclaration.tenant_id == tenant.id,
                    PrefixDeclaration.state == DeclarationState.APPROVED,
                )
            )
        )
        pools = [ipaddress.ip_network(tenant.ipv4_pool), ipaddress.ip_network(tenant.ipv6_pool)]
        for policy_name, cidr in prefix_destinations(ctx, tenant.id):
            net = ipaddress.ip_network(cidr)
            if (
                net.version == mine.version
                and net.overlaps(mine)
                and not _covered(net, [*pools, *approved, *rest])
            ):
                users.append(f"{cidr} in policy {policy_name!r}")
        if users:
            raise Conflict(
                "the allowance is in use by "
                + ", ".join(dict.fromkeys(users))
                + "; withdraw those first"
            )
        ctx.session.delete(obj)


class DeclarationResource(Resource[PrefixDeclaration]):
    """``/declarations``: read and decided through :mod:`tongdao.network.routes`; written only
    through the sites they belong to. A tenant-bound caller sees their tenant's only."""

    name = "declarations"
    label = "declaration"
    model = PrefixDeclaration
    public = s.DeclarationPublic
    create_schema = s.DeclarationPublic
    update_schema = s.DeclarationPublic
    filters = s.DeclarationFilters
    tenant_scoped = False
