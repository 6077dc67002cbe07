"""Gateway enrolment and credentials, and the compilation of a PoP's desired state.

Which tenants a PoP serves: every active tenant with a site attached to the PoP, a device
homed on it, or (for a PoP in China) a device with no home PoP. For each served tenant the
control plane allocates the PoP's interface (listen port from the PoP's range, an overlay
address); the gateway makes the key pair and publishes the public key.

Peers of a tenant's interface on a PoP:
* its active devices (of active users) homed here, each with its /32 and /128;
* connectors of its active sites attached here, with the sites' declared prefixes;
* the same tenant's interface on every other PoP joined to this one by an active registered
  link, carrying what lives behind that PoP (its sites' prefixes, its devices' addresses).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
import uuid
import weakref
from collections import OrderedDict, defaultdict
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import Engine, Pool, String, and_, cast, or_, select, update
from sqlalchemy.orm import Session

from tongdao.access.models import Policy
from tongdao.audit.recorder import record
from tongdao.crossborder import service as crossborder
from tongdao.errors import (
    AuthenticationError,
    Conflict,
    NotFound,
    PermissionDenied,
)
from tongdao.gateway.changes import LOG, pending
from tongdao.gateway.desired import (
    CONNECTOR_PORT,
    MAIN_TABLE,
    DesiredState,
    Peer,
    PolicyRule,
    TenantInterface,
    connector_interface_name,
    interface_name,
    peer_order,
)
from tongdao.gateway.models import Gateway, GatewayEnrolment, RevokedReason
from tongdao.gateway.schemas import SitePath
from tongdao.ipam import service as ipam
from tongdao.ipam.allocator import v6_host_subnet
from tongdao.network import keys
from tongdao.network.models import (
    Device,
    DeviceState,
    Link,
    LinkState,
    Pop,
    PopState,
    PopTenantInterface,
    Site,
    SiteState,
)
from tongdao.network.service import (
    HOME_COUNTRY,
    crosses_border,
    device_homed_at,
    ensure_interface,
    no_link_reason,
    pop_peer,
    unwritable,
)
from tongdao.network.wgconfig import ConfigDataError, render_site
from tongdao.privacy.routing import ANYWHERE, withhold_abroad
from tongdao.privacy.service import abroad_consenting_users
from tongdao.quotas.service import PeerLimit, TenantEnforcement, limited_tenants, peer_limits
from tongdao.runtime import Ctx
from tongdao.store.rows import rows_updated
from tongdao.tenancy.models import GroupMember, Tenant, TenantState, User, UserState

ENROLMENT_PREFIX = "tde_"
CREDENTIAL_PREFIX = "tdg_"
DEFAULT_ENROLMENT_TTL = timedelta(hours=24)
KEEPALIVE = 25


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- enrolment and the credentials' lifecycle -----------------------------------------------------
# Every agent credential (a PoP's gateway, a site's connector) lives the same way:
# * issued once per enrolment token: the token's one-time check and its use are a single
#   conditional UPDATE, so of concurrent redemptions exactly one wins (on either store);
# * one live credential per PoP and per site: a redemption revokes the earlier ones
#   (``replaced``), under a lock on the PoP's or site's row so that concurrent enrolments of
#   one PoP also leave one. A PoP runs one gateway: each tenant's interface has one key pair,
#   made by the gateway, and a second live gateway would publish its own key over the
#   first's (and back), so every peer would flap;
# * revoked by a person (``revoked``) through the API or the CLI; a revoked credential never
#   works again;
# * refused (403) while its PoP or site is disabled, and accepted again once it is enabled
#   unless it was revoked meanwhile. Redeeming a token for a disabled PoP or site is refused
#   too, without using the token up.
# Every change of a credential row (creation, revocation, replacement) is audited by the flush
# hook; a connector's row carries its site's tenant, so its admin sees them.
_UNUSABLE_ENROLMENT = "the enrolment token is unknown, used or expired"


def create_enrolment(ctx: Ctx, target: Pop | Site, ttl: timedelta) -> tuple[GatewayEnrolment, str]:
    """A one-time token for a PoP's gateway or a site's connector."""
    secret = ENROLMENT_PREFIX + secrets.token_urlsafe(32)
    enrolment = GatewayEnrolment(
        pop_id=target.id if isinstance(target, Pop) else None,
        site_id=target.id if isinstance(target, Site) else None,
        token_hash=_hash(secret),
        expires_at=ctx.runtime.clock() + ttl,
        created_by=ctx.user_id,
    )
    ctx.session.add(enrolment)
    return enrolment, secret


def _refusal(pop: Pop | None, site: Site | None) -> str | None:
    """Why an agent of this PoP or site is refused now (None: it is not)."""
    if pop is not None and pop.state == PopState.DISABLED:
        return f"PoP {pop.name} is disabled; its gateway is refused until it is enabled again"
    if site is not None and site.state == SiteState.DISABLED:
        return f"site {site.name} is disabled; its connector is refused until it is enabled again"
    return None


def _target(session: Session, pop_id: uuid.UUID | None, site_id: uuid.UUID | None) -> Pop | Site:
    target = session.get(Pop, pop_id) if pop_id else session.get(Site, site_id)
    if target is None:  # both foreign keys cascade: not reached while the row exists
        raise AuthenticationError(_UNUSABLE_ENROLMENT)
    return target


def enrol(ctx: Ctx, token: str, hostname: str, agent_version: str) -> tuple[Gateway, str]:
    """Trade a one-time enrolment token for an agent credential; the PoP's (or site's)
    earlier credentials are revoked as replaced."""
    session = ctx.session
    now = ctx.runtime.clock()
    refused = AuthenticationError(
        _UNUSABLE_ENROLMENT, {"token": "ask the operator for a new enrolment token"}
    )
    enrolment = session.scalar(
        select(GatewayEnrolment).where(GatewayEnrolment.token_hash == _hash(token.strip()))
    )
    if enrolment is None or enrolment.used_at is not None or enrolment.expires_at <= now:
        raise refused
    target = _target(session, enrolment.pop_id, enrolment.site_id)
    why = _refusal(*((target, None) if isinstance(target, Pop) else (None, target)))
    if why is not None:
        raise PermissionDenied(why, {"token": "the token stays valid until it expires"})
    # The one-time check and the use are one statement: concurrent redemptions each run it,
    # the row lock makes them wait for each other, and only the first matches.
    used = rows_updated(
        session,
        update(GatewayEnrolment)
        .where(
            GatewayEnrolment.id == enrolment.id,
            GatewayEnrolment.used_at.is_(None),
            GatewayEnrolment.expires_at > now,
        )
        .values(used_at=now),
    )
    if used != 1:
        raise refused
    session.expire(enrolment)
    record(
        session,
        "update",
        "gateway_enrolment",
        enrolment.id,
        tenant_id=target.tenant_id if isinstance(target, Site) else None,
        before={"used_at": None},
        after={"used_at": now},
        kind="change",
    )
    # One live credential per PoP or site: concurrent enrolments of one take turns here.
    if isinstance(target, Pop):
        session.execute(select(Pop.id).where(Pop.id == target.id).with_for_update())
        slot = Gateway.pop_id == target.id
    else:
        session.execute(select(Site.id).where(Site.id == target.id).with_for_update())
        slot = Gateway.site_id == target.id
    for earlier in session.scalars(
        select(Gateway).where(slot, Gateway.revoked_at.is_(None)).order_by(Gateway.id)
    ):
        _retire(session, earlier, RevokedReason.REPLACED, now)
    secret = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    gateway = Gateway(
        pop_id=enrolment.pop_id,
        site_id=enrolment.site_id,
        tenant_id=target.tenant_id if isinstance(target, Site) else None,
        credential_hash=_hash(secret),
        hostname=hostname,
        agent_version=agent_version,
    )
    session.add(gateway)
    return gateway, secret


def check_gateway(session: Session, gateway: Gateway) -> None:
    """Refuse a revoked credential (401) or one whose PoP or site is disabled (403)."""
    if gateway.revoked_at is not None:
        if gateway.revoked_reason == RevokedReason.REPLACED:
            raise AuthenticationError(
                "this agent credential was replaced by a later enrolment of its "
                f"{'PoP' if gateway.pop_id else 'site'}"
            )
        raise AuthenticationError("this agent credential was revoked; enrol with a new token")
    pop = session.get(Pop, gateway.pop_id) if gateway.pop_id else None
    site = session.get(Site, gateway.site_id) if gateway.site_id else None
    why = _refusal(pop, site)
    if why is not None:
        raise PermissionDenied(why)


def authenticate_gateway(ctx: Ctx, secret: str) -> Gateway:
    gateway = ctx.session.scalar(select(Gateway).where(Gateway.credential_hash == _hash(secret)))
    if gateway is None:
        raise AuthenticationError("invalid gateway credential")
    check_gateway(ctx.session, gateway)
    return gateway


def _retire(session: Session, gateway: Gateway, reason: RevokedReason, now: datetime) -> None:
    gateway.revoked_at = now
    gateway.revoked_reason = reason
    if gateway.pop_id is not None:
        if reason == RevokedReason.REVOKED:
            _withdraw_interface_keys(session, gateway.pop_id)
        return
    if gateway.published_key is None:
        return
    # A connector's WireGuard key goes with its credential: the PoP drops the peer, so a
    # retired connector host keeps no tunnel into the tenant's network.
    site = session.get(Site, gateway.site_id)
    if site is not None and site.connector_public_key == gateway.published_key:
        site.connector_public_key = None


def _withdraw_interface_keys(session: Session, pop_id: uuid.UUID) -> None:
    """Withdraw the public keys of a PoP's tenant interfaces when its gateway is revoked.

    A revoked gateway's host (stolen, say) still holds the private halves, and WireGuard
    follows a peer to any endpoint it authenticates from: as long as the keys stay published,
    linked PoPs and site connectors would keep peering with that host. Withdrawn, they drop
    those peers and device configs answer 409 until a new gateway publishes its own keys (it
    does on its first apply, seeing None). The revoked credential was the PoP's only live one,
    so every key on its interfaces came from it or an earlier, already retired gateway of the
    PoP: all are withdrawn. A replacement withdraws nothing: the successor publishes over them
    when it applies, and re-enrolling the same host keeps its keys and its tunnels.
    Each change is an audited row update in the revocation's transaction, which bumps the
    desired-state version (:mod:`tongdao.gateway.changes`)."""
    # The credential's UPDATE first: it waits for a key being published by this gateway to
    # commit (see publish_key), so the keys read next include it.
    session.flush()
    for iface in session.scalars(
        select(PopTenantInterface)
        .where(PopTenantInterface.pop_id == pop_id, PopTenantInterface.public_key.is_not(None))
        .order_by(PopTenantInterface.id)
    ):
        iface.public_key = None


def revoke(ctx: Ctx, gateway: Gateway) -> None:
    """Revoke an agent credential for good (audited by the flush hook); idempotent."""
    if gateway.revoked_at is None:
        _retire(ctx.session, gateway, RevokedReason.REVOKED, ctx.runtime.clock())


# --- which tenants a PoP serves ------------------------------------------------------------------
def served_tenants(ctx: Ctx, pop: Pop) -> list[Tenant]:
    # The SQL form of network.service.device_homed_at.
    device_here = Device.pop_id == pop.id
    if pop.country == HOME_COUNTRY:
        device_here = or_(device_here, Device.pop_id.is_(None))
    has_device = select(Device.id).where(Device.tenant_id == Tenant.id, device_here).exists()
    has_site = select(Site.id).where(Site.tenant_id == Tenant.id, Site.pop_id == pop.id).exists()
    stmt = (
        select(Tenant)
        .where(Tenant.state == TenantState.ACTIVE, or_(has_device, has_site))
        .order_by(Tenant.id)
    )
    return list(ctx.session.scalars(stmt))


# --- compilation ---------------------------------------------------------------------------------
def _host_routes(ipv4: str, ipv6: str) -> tuple[str, str]:
    return f"{ipv4}/32", f"{ipv6}/128"


class DeviceRow(NamedTuple):
    """The columns of an active device the compiler needs, its own and its user's ids as
    canonical text (plain rows: thousands per PoP, read on every change, so no UUID or ORM
    objects are built for them). ``pop_id`` stays a UUID (almost always None) so that
    :func:`tongdao.network.service.device_homed_at` serves rows and devices alike."""

    id: str
    user_id: str
    public_key: str
    ipv4: str
    ipv6: str
    pop_id: uuid.UUID | None


def _id_text(value: object) -> str:
    """A UUID column read as text: PostgreSQL gives the dashed form, SQLite 32 hex digits."""
    text = str(value)
    if len(text) == 32:
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return text


def _active_devices(
    ctx: Ctx, tenant_id: uuid.UUID, only: tuple[set[str], set[str]] | None = None
) -> list[DeviceRow]:
    """The tenant's active devices of active, verified users, by id; ``only``: just those
    among them with one of these device ids or user ids."""
    stmt = (
        select(
            cast(Device.id, String),
            cast(Device.user_id, String),
            Device.public_key,
            Device.ipv4,
            Device.ipv6,
            Device.pop_id,
        )
        .join(User, User.id == Device.user_id)
        .where(
            Device.tenant_id == tenant_id,
            Device.state == DeviceState.ACTIVE,
            User.state == UserState.ACTIVE,
            User.identity_verified_at.is_not(None),  # rule identity.real_name
        )
        .order_by(Device.id)
    )
    if only is not None:
        devices, users = only
        stmt = stmt.where(
            or_(
                Device.id.in_([uuid.UUID(d) for d in sorted(devices)]),
                Device.user_id.in_([uuid.UUID(u) for u in sorted(users)]),
            )
        )
    return [
        DeviceRow(_id_text(i), _id_text(u), key, v4, v6, pop_id)
        for i, u, key, v4, v6, pop_id in ctx.session.execute(stmt)
    ]


_BY_ID = attrgetter("id")


class _Place(NamedTuple):
    id: uuid.UUID
    country: str


class _DeviceRows:
    """Per store and tenant, the active devices at the version they were read, so that the
    next compilation re-reads only the devices and users the versions since then wrote
    (:data:`tongdao.gateway.changes.LOG`): on one device's change, one row instead of the
    tenant's thousands. Whenever the log cannot say (a version committed by another replica
    or process, or more than ``changes.TOUCHED_AT_MOST`` ids since), the tenant's devices are
    read in full, as before. A tenant's rows are also read in full at least every
    ``full_every`` seconds, so that a write the log cannot see (SQL typed by hand into a running
    store, without a version bump) is served at most that long."""

    def __init__(self, tenants: int = 4096, full_every: float = 300.0) -> None:
        self._lock = threading.Lock()
        self._stores: weakref.WeakKeyDictionary[
            Pool, OrderedDict[uuid.UUID, tuple[int, list[DeviceRow], float]]
        ] = weakref.WeakKeyDictionary()
        self._tenants = tenants
        self._full_every = full_every

    def rows(self, ctx: Ctx, tenant_id: uuid.UUID, version: int) -> list[DeviceRow]:
        if pending(ctx.session) is not None:
            # This transaction has bumped the version and not committed: what it reads (its
            # own writes, at its own version) may roll back, and that version be committed by
            # another transaction with other writes. Read in full; neither kept nor used.
            return sorted(_active_devices(ctx, tenant_id), key=_BY_ID)
        bind = ctx.session.get_bind()
        store = (bind if isinstance(bind, Engine) else bind.engine).pool
        with self._lock:
            held_by_tenant = self._stores.get(store)
            cached = held_by_tenant.get(tenant_id) if held_by_tenant is not None else None
        rows: list[DeviceRow] | None = None
        now = time.monotonic()
        full_at = now
        if cached is not None and now - cached[2] < self._full_every:
            base, held, full_at = cached
            touched = LOG.since(store, base, version)
            if touched is not None and not (touched.devices or touched.users):
                rows = held
            elif touched is not None:  # at most TOUCHED_AT_MOST ids
                devices, users = touched.devices, touched.users
                rows = [r for r in held if r.id not in devices and r.user_id not in users]
                rows += _active_devices(ctx, tenant_id, (devices, users))
                rows.sort(key=_BY_ID)
        if rows is None:
            rows = _active_devices(ctx, tenant_id)
            rows.sort(key=_BY_ID)  # Python's order of the text ids (the SQL's is the store's)
            full_at = now
        with self._lock:
            tenants = self._stores.setdefault(store, OrderedDict())
            current = tenants.get(tenant_id)
            if current is None or current[0] <= version:
                tenants[tenant_id] = (version, rows, full_at)
                tenants.move_to_end(tenant_id)
                while len(tenants) > self._tenants:
                    tenants.popitem(last=False)
        return rows

    def clear(self) -> None:
        with self._lock:
            self._stores.clear()


_DEVICE_ROWS = _DeviceRows()


class _PeerCache:
    """Device peers by the row they are built from. A PoP's state is compiled again on every
    change; nearly all of its devices are unchanged, and reusing their (immutable) peers also
    makes the diff against the last state sent to a gateway an identity check."""

    def __init__(self, limit: int = 500_000) -> None:
        self._peers: dict[DeviceRow, Peer] = {}
        self._limit = limit

    def peer(self, d: DeviceRow) -> Peer:
        cached = self._peers.get(d)
        if cached is None:
            if len(self._peers) >= self._limit:
                self._peers.clear()
            # Built without re-validation: every field comes from validated, stored data.
            cached = Peer.model_construct(
                public_key=d.public_key,
                kind="device",
                ref=d.id,
                allowed_ips=_host_routes(d.ipv4, d.ipv6),
                endpoint=None,
                keepalive=None,
            )
            self._peers[d] = cached
        return cached


_DEVICE_PEERS = _PeerCache()


def _linked_pops(ctx: Ctx, pop: Pop) -> list[tuple[Pop, uuid.UUID]]:
    """The PoPs joined to this one by an active link, each with the link's id."""
    rows = ctx.session.scalars(
        select(Link).where(
            Link.state == LinkState.ACTIVE, or_(Link.pop_a_id == pop.id, Link.pop_b_id == pop.id)
        )
    )
    others = {link.pop_b_id if link.pop_a_id == pop.id else link.pop_a_id: link.id for link in rows}
    if not others:
        return []
    return [
        (other, others[other.id])
        for other in ctx.session.scalars(
            select(Pop).where(Pop.id.in_(list(others))).order_by(Pop.name)
        )
    ]


def _policy_rules(
    ctx: Ctx, tenant_id: uuid.UUID, devices: list[DeviceRow], sites: list[Site]
) -> tuple[PolicyRule, ...]:
    policies = list(
        ctx.session.scalars(
            select(Policy)
            .where(Policy.tenant_id == tenant_id, Policy.enabled.is_(True))
            .order_by(Policy.id)
        )
    )
    kinds = {
        ref.get("kind")
        for policy in policies
        for rule in policy.rules
        for ref in (*rule.get("sources", []), *rule.get("destinations", []))
    }
    # The address tables, built only when a rule refers to their kind: a tenant's thousands
    # of devices are walked on every compilation otherwise, for no rule.
    by_device: dict[str, tuple[str, str]] = {}
    by_user: dict[str, list[str]] = defaultdict(list)
    by_group: dict[str, list[str]] = defaultdict(list)
    if kinds & {"device", "user", "group"}:
        by_device = {d.id: _host_routes(d.ipv4, d.ipv6) for d in devices}
        for d in devices:
            by_user[d.user_id].extend(by_device[d.id])
    if "group" in kinds:
        for group_id, user_id in ctx.session.execute(
            select(GroupMember.group_id, GroupMember.user_id).where(
                GroupMember.tenant_id == tenant_id
            )
        ):
            by_group[str(group_id)].extend(by_user.get(str(user_id), []))
    by_site = {str(s.id): list(s.prefixes) for s in sites}

    def resolve(ref: dict[str, str]) -> list[str]:
        kind = ref.get("kind")
        if kind == "prefix":
            return [ref["cidr"]]
        tables: dict[str, dict[str, list[str]] | dict[str, tuple[str, str]]] = {
            "device": by_device,
            "user": by_user,
            "group": by_group,
            "site": by_site,
        }
        return list(tables.get(str(kind), {}).get(ref.get("id", ""), []))

    rules: list[PolicyRule] = []
    for policy in policies:
        for rule in policy.rules:
            src = sorted({c for ref in rule.get("sources", []) for c in resolve(ref)})
            dst = sorted({c for ref in rule.get("destinations", []) for c in resolve(ref)})
            if src and dst:
                rules.append(
                    PolicyRule(
                        src=tuple(src),
                        dst=tuple(dst),
                        protocol=rule.get("protocol", "any"),
                        ports=tuple(rule.get("ports", [])),
                    )
                )
    return tuple(rules)


def _limit_fields(limit: PeerLimit | None, tenant: PeerLimit | None = None) -> dict[str, Any]:
    """A peer's limit fields: its own (a user's block or rate) and the tenant's (blocked over
    its cap, or a throttle all the tenant's peers share). A block wins; otherwise both rates
    hold, each in its own policer, so each user gets the stricter of the two."""
    if tenant is not None and tenant.blocked:
        return {"blocked": True}
    out: dict[str, Any] = {}
    if limit is not None:
        out = {"blocked": limit.blocked, "rate_mbps": limit.rate_mbps, "limit_group": limit.group}
    if tenant is not None and tenant.rate_mbps and not out.get("blocked"):
        out["tenant_rate_mbps"] = tenant.rate_mbps
    return out


def _limited(
    enforced: TenantEnforcement | None, devices: list[DeviceRow], peers: list[Peer]
) -> list[Peer]:
    """Device peers with their user's limits (tongdao.quotas): blocked or held to a rate once
    a cap is reached, and the user's bandwidth limit shared by their devices here; a tenant
    over its cap is blocked, or throttled on top of each user's own limit."""
    if enforced is None or (enforced.tenant is None and not enforced.users):
        return peers
    owner = {d.id: d.user_id for d in devices}
    out: list[Peer] = []
    for peer in peers:
        fields = _limit_fields(enforced.users.get(owner.get(peer.ref, "")), enforced.tenant)
        out.append(peer.model_copy(update=fields) if fields else peer)
    return out


def compile_desired(ctx: Ctx, pop: Pop, version: int) -> DesiredState:
    """The desired state of a PoP; allocates interfaces for newly served tenants."""
    tenants = served_tenants(ctx, pop)
    linked = _linked_pops(ctx, pop)
    # Rule pi.notice_and_consent: only these users' devices are carried abroad (text ids).
    consenting = {str(u) for u in abroad_consenting_users(ctx.session, (t.id for t in tenants))}
    # Quotas: two queries per compile; the limits of the (few) tenants that have any.
    limited = limited_tenants(ctx.session)
    # Rule crossborder.tenant_authorised: a link across the border carries a tenant only
    # under its approved, unexpired authorisation on that link, at the approved rate.
    grants = crossborder.authorisations(
        ctx.session, [t.id for t in tenants], crossborder.today(ctx)
    )
    out: list[TenantInterface] = []
    for tenant in tenants:
        enforced = (
            peer_limits(ctx.session, tenant.id, ctx.runtime.clock())
            if tenant.id in limited
            else None
        )
        iface = ensure_interface(ctx, pop, tenant)
        devices = _DEVICE_ROWS.rows(ctx, tenant.id, version)
        sites = list(
            ctx.session.scalars(
                select(Site)
                .where(Site.tenant_id == tenant.id, Site.state == SiteState.ACTIVE)
                .order_by(Site.id)
            )
        )
        here_ok = pop.country == HOME_COUNTRY
        # Rule crossborder.tenant_authorised at a PoP abroad: a device homed there meets the
        # tenant's sites abroad, so it is carried only under the tenant's live authorisation
        # on a link to this PoP (and with its owner's consent to transfer abroad).
        served_abroad = here_ok or any(
            link_id in grants.get(tenant.id, {}) for _other, link_id in linked
        )
        place = _Place(pop.id, pop.country)  # not the ORM object: read for every device
        peers = [
            _DEVICE_PEERS.peer(d)
            for d in devices
            if device_homed_at(d, place)
            and (here_ok or (served_abroad and d.user_id in consenting))
        ]
        peers = _limited(enforced, devices, peers)
        from_devices = len(peers)  # in peer_order already: the rows are by id, their refs
        abroad = [p for s in sites if s.country != HOME_COUNTRY for p in s.prefixes]
        for site in sites:
            if site.pop_id == pop.id and site.connector_public_key:
                tunnel = _host_routes(site.ipv4, site.ipv6) if site.ipv4 and site.ipv6 else ()
                peers.append(
                    Peer(
                        public_key=site.connector_public_key,
                        kind="site",
                        ref=str(site.id),
                        allowed_ips=(*site.prefixes, *tunnel),
                        **_limit_fields(None, enforced.tenant if enforced else None),
                    )
                )
        for other, link_id in linked:
            grant = grants.get(tenant.id, {}).get(link_id)
            if grant is None and crosses_border(pop.country, other.country):
                continue
            remote = ctx.session.scalar(
                select(PopTenantInterface).where(
                    PopTenantInterface.pop_id == other.id, PopTenantInterface.tenant_id == tenant.id
                )
            )
            if remote is None or remote.public_key is None:
                continue
            behind = [*_host_routes(remote.ipv4, remote.ipv6)]
            behind += [p for s in sites if s.pop_id == other.id for p in s.prefixes]
            domestic = here_ok and other.country == HOME_COUNTRY
            behind += [
                a
                for d in devices
                if device_homed_at(d, other) and (domestic or d.user_id in consenting)
                for a in _host_routes(d.ipv4, d.ipv6)
            ]
            if other.country != HOME_COUNTRY:
                abroad += behind
            peers.append(
                Peer(
                    public_key=remote.public_key,
                    kind="pop",
                    ref=str(other.id),
                    allowed_ips=tuple(behind),
                    endpoint=_endpoint(other.endpoint_host, remote.listen_port),
                    keepalive=KEEPALIVE,
                    cross_border=here_ok != (other.country == HOME_COUNTRY),
                    link_rate_mbps=grant.mbps if grant is not None else None,
                )
            )
        pool4 = ipaddress.ip_network(tenant.ipv4_pool)
        subnet6 = v6_host_subnet(ipaddress.IPv6Network(tenant.ipv6_pool))
        out.append(
            TenantInterface(
                tenant_id=tenant.id,
                ifname=interface_name(iface.listen_port),
                listen_port=iface.listen_port,
                table=iface.listen_port,
                address_v4=f"{iface.ipv4}/{pool4.prefixlen}",
                address_v6=f"{iface.ipv6}/{subnet6.prefixlen}",
                pools=(tenant.ipv4_pool, tenant.ipv6_pool),
                public_key=iface.public_key,
                peers=(*peers[:from_devices], *sorted(peers[from_devices:], key=peer_order)),
                policy=withhold_abroad(
                    _policy_rules(ctx, tenant.id, devices, sites),
                    (a for d in devices if d.user_id not in consenting for a in (d.ipv4, d.ipv6)),
                    abroad if here_ok else ANYWHERE,
                ),
            )
        )
    return DesiredState(version=version, pop_id=pop.id, tenants=tuple(out))


def _endpoint(host: str, port: int) -> str | None:
    """``host:port`` to dial; None (the peer is not dialled) for a stored host that is not a
    DNS name or IP address (a row written around the schemas)."""
    from tongdao.network.wgconfig import endpoint

    try:
        return endpoint(host, port)
    except ValueError:
        return None


def publish_key(ctx: Ctx, gateway: Gateway, tenant_id: uuid.UUID, public_key: str) -> None:
    """A gateway publishes its interface key for a tenant; a connector, its site's key."""
    # Taken in turn with a revocation of this credential, which holds the row from its UPDATE
    # to its commit: a key either lands before the revocation withdraws it or is refused here.
    # Without this, a revocation committing between the agent's authentication and this
    # write would leave the revoked host's key published (PostgreSQL; SQLite serialises the
    # two transactions whole).
    ctx.session.refresh(gateway, with_for_update=True)
    check_gateway(ctx.session, gateway)
    if gateway.site_id is not None:
        site = ctx.session.get(Site, gateway.site_id)
        if site is None or site.tenant_id != tenant_id:
            raise NotFound("this connector's site is not of that tenant")
        keys.ensure_free(ctx, public_key, field="public_key", own=site.id)
        site.connector_public_key = public_key
        gateway.published_key = public_key
        return
    iface = ctx.session.scalar(
        select(PopTenantInterface).where(
            PopTenantInterface.pop_id == gateway.pop_id, PopTenantInterface.tenant_id == tenant_id
        )
    )
    if iface is None:
        raise NotFound("this PoP has no interface for the tenant")
    keys.ensure_free(ctx, public_key, field="public_key", own=iface.id)
    iface.public_key = public_key


def compile_connector(ctx: Ctx, site: Site, version: int) -> DesiredState:
    """A site connector's desired state: one interface, one peer (its PoP's interface for the
    tenant) carrying the tenant's overlay pools and its other active sites' prefixes."""
    tenant = ctx.session.get(Tenant, site.tenant_id)
    pop = ctx.session.get(Pop, site.pop_id) if site.pop_id else None
    empty = DesiredState(version=version, pop_id=site.pop_id or uuid.UUID(int=0), role="connector")
    if tenant is None or pop is None:
        return empty
    if tenant.state != TenantState.ACTIVE or site.state != SiteState.ACTIVE:
        return empty
    if site.host_index is None:
        address = ipam.allocate_address(ctx.session, tenant.id, tenant.ipv4_pool, tenant.ipv6_pool)
        site.host_index, site.ipv4, site.ipv6 = address.host_index, address.ipv4, address.ipv6
        ctx.session.flush()
    assert site.ipv4 is not None and site.ipv6 is not None
    iface = ensure_interface(ctx, pop, tenant)
    peers: tuple[Peer, ...] = ()
    if iface.public_key is not None:
        others = ctx.session.scalars(
            select(Site.prefixes).where(
                Site.tenant_id == tenant.id, Site.state == SiteState.ACTIVE, Site.id != site.id
            )
        )
        reach = [tenant.ipv4_pool, tenant.ipv6_pool, *(p for ps in others for p in ps)]
        peers = (
            Peer(
                public_key=iface.public_key,
                kind="pop",
                ref=str(pop.id),
                allowed_ips=tuple(reach),
                endpoint=_endpoint(pop.endpoint_host, iface.listen_port),
                keepalive=KEEPALIVE,
            ),
        )
    pool4 = ipaddress.ip_network(tenant.ipv4_pool)
    subnet6 = v6_host_subnet(ipaddress.IPv6Network(tenant.ipv6_pool))
    interface = TenantInterface(
        tenant_id=tenant.id,
        ifname=connector_interface_name(site.id),
        listen_port=CONNECTOR_PORT,
        table=MAIN_TABLE,
        address_v4=f"{site.ipv4}/{pool4.prefixlen}",
        address_v6=f"{site.ipv6}/{subnet6.prefixlen}",
        pools=(tenant.ipv4_pool, tenant.ipv6_pool),
        public_key=site.connector_public_key,
        peers=peers,
    )
    return DesiredState(version=version, pop_id=pop.id, role="connector", tenants=(interface,))


def site_config(ctx: Ctx, tenant: Tenant, site: Site) -> str:
    """wg-quick for a site's own router; 409 with the reason while it cannot work yet."""
    if not site.connector_public_key:
        raise Conflict("set the site's connector_public_key to the router's public key first")
    state = compile_connector(ctx, site, 0)
    if not state.tenants:
        raise Conflict(
            f"the site is {site.state} (or its tenant is not active, or it has no "
            "PoP); it has no tunnel"
        )
    iface = state.tenants[0]
    if not iface.peers:
        raise Conflict("the site's PoP has not yet published a WireGuard key for this tenant")
    peer = iface.peers[0]
    pop = ctx.session.get(Pop, site.pop_id)
    remote = ctx.session.scalar(
        select(PopTenantInterface).where(
            PopTenantInterface.pop_id == site.pop_id, PopTenantInterface.tenant_id == tenant.id
        )
    )
    assert pop is not None and remote is not None and site.ipv4 and site.ipv6
    try:
        return render_site(
            site_name=site.name,
            site_id=str(site.id),
            tenant_name=tenant.name_en,
            ipv4=site.ipv4,
            ipv6=site.ipv6,
            peer=pop_peer(pop, remote, peer.public_key),
            allowed=peer.allowed_ips,
        )
    except ConfigDataError as exc:
        raise unwritable(exc) from exc


def site_paths(ctx: Ctx, site: Site) -> list[SitePath]:
    to = ctx.session.get(Pop, site.pop_id) if site.pop_id else None
    homes = list(
        ctx.session.scalars(select(Pop).where(Pop.country == HOME_COUNTRY).order_by(Pop.name))
    )
    if to is None:
        return [
            SitePath(
                from_pop=p.name, to_pop="-", up=False, reason="the site is not attached to a PoP"
            )
            for p in homes
        ]
    paths = []
    for home in homes:
        if home.id == to.id:
            paths.append(
                SitePath(
                    from_pop=home.name, to_pop=to.name, up=True, reason="the site is at this PoP"
                )
            )
            continue
        link = ctx.session.scalar(
            select(Link).where(
                Link.state == LinkState.ACTIVE,
                or_(
                    and_(Link.pop_a_id == home.id, Link.pop_b_id == to.id),
                    and_(Link.pop_a_id == to.id, Link.pop_b_id == home.id),
                ),
            )
        )
        if link is None:
            paths.append(
                SitePath(
                    from_pop=home.name,
                    to_pop=to.name,
                    up=False,
                    reason=no_link_reason(home, to),
                )
            )
        elif (
            crosses_border(home.country, to.country)
            and not (cb := crossborder.status(ctx, site.tenant_id, link.id)).authorised
        ):
            # Rule crossborder.tenant_authorised: the link exists, the tenant's authorisation
            # on it does not (yet, or any more): say which step is missing.
            paths.append(
                SitePath(
                    from_pop=home.name,
                    to_pop=to.name,
                    up=False,
                    reason=f"registered link {link.name} exists, but {cb.message} "
                    f"(rule {crossborder.RULE})",
                    link=link.name,
                    approval_ref=link.approval_ref,
                    crossborder_step=cb.step,
                )
            )
        else:
            paths.append(
                SitePath(
                    from_pop=home.name,
                    to_pop=to.name,
                    up=True,
                    reason=f"over registered link {link.name}",
                    link=link.name,
                    approval_ref=link.approval_ref,
                )
            )
    return paths
