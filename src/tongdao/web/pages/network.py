"""The tenant admin's network pages: sites, access policy and usage (issue 11).

Every page calls what the API route for the same job calls, through the same
:class:`~tongdao.api.deps.Guard`: :class:`~tongdao.network.service.SiteResource` and
:mod:`tongdao.network.declared` for sites and declared prefixes, :mod:`tongdao.gateway.service`
for connector enrolment, credentials and the router's configuration,
:class:`~tongdao.access.service.PolicyResource` for rules, and
:func:`tongdao.gateway.usage.tenant_usage` for usage. A tenant admin works in their own tenant;
operator roles that may read sites, policies or usage see every tenant (``?tenant=`` narrows
the lists); another tenant's site or rule answers the 404 page.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from tongdao.access.models import Policy
from tongdao.access.schemas import PolicyCreate, PolicyFilters, PolicyUpdate
from tongdao.access.service import PolicyResource
from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.auth.permissions import Action, Role
from tongdao.compliance.rules import ComplianceRefusal
from tongdao.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationError
from tongdao.gateway import service as agents
from tongdao.gateway import usage
from tongdao.gateway.models import Gateway
from tongdao.gateway.schemas import EnrolmentCreate, GatewayPublic
from tongdao.network import declared
from tongdao.network.models import (
    DeclarationState,
    Device,
    DeviceState,
    Pop,
    PopState,
    PrefixDeclaration,
    Site,
    SitePurpose,
    SiteState,
)
from tongdao.network.schemas import SiteCreate, SiteFilters, SitePublic, SiteUpdate
from tongdao.network.service import SiteResource
from tongdao.tenancy.models import Group, Tenant, User
from tongdao.web.console import (
    PAGE_HEADERS,
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    check_csrf,
    done_notice,
    finish,
    parse,
    parse_uuid,
    redirect,
    render,
    translate_message,
)
from tongdao.web.i18n import N_, SHANGHAI

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
TENANT_ADMIN = frozenset({Role.TENANT_ADMIN})
NAV = [
    # The operator admin activates and disables sites (see site_state).
    NavItem("/console/sites", N_("Sites"), TENANT_ADMIN | {Role.OPERATOR_ADMIN}),
    NavItem("/console/policies", N_("Access policy"), TENANT_ADMIN),
    NavItem("/console/usage", N_("Usage"), TENANT_ADMIN),
]

SITES = SiteResource()
POLICIES = PolicyResource()
PAGE_SIZE = 25
CHOICES_LIMIT = 500
CONNECTOR_STATE_DIR = "/var/lib/tongdao"

TenantQ = Annotated[str, Query(max_length=40)]
CursorQ = Annotated[str | None, Query(max_length=64)]
DoneQ = Annotated[str, Query(max_length=20)]

PURPOSES = {
    SitePurpose.OFFICE: N_("office"),
    SitePurpose.HQ: N_("headquarters"),
    SitePurpose.DATACENTER: N_("data centre"),
}
PROTOCOLS = {
    "any": N_("any protocol"),
    "tcp": "TCP",
    "udp": "UDP",
    "icmp": N_("ICMP (ping)"),
}


# --- scope -------------------------------------------------------------------------------------
@dataclass
class Scope:
    """Who is asking and in which tenant: a tenant-bound person's own, or the one an operator
    chose (None: an operator looking across tenants)."""

    guard: Guard
    tenant: Tenant | None

    @property
    def operator(self) -> bool:
        return self.guard.principal.is_operator


def _scope(view: View, tenant_param: str, resource: str, action: Action = Action.READ) -> Scope:
    guard = Guard(view.ctx)
    principal = guard.principal
    tenant: Tenant | None = None
    if principal.tenant_id is not None:
        tenant = guard.tenant(principal.tenant_id)
    elif tenant_param:
        tenant = guard.tenant(parse_uuid(tenant_param, "tenant"))
    guard.require(resource, action)
    return Scope(guard, tenant)


def _tenant_choices(view: View, scope: Scope) -> list[tuple[str, str]]:
    """The tenants an operator may pick from (a tenant-bound person has only their own)."""
    if not scope.operator:
        return []
    rows = view.ctx.session.scalars(select(Tenant).order_by(Tenant.name_en).limit(CHOICES_LIMIT))
    return [(str(t.id), view.locale.pick(t.name_en, t.name_zh)) for t in rows]


def _tenant_names(view: View, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = view.ctx.session.scalars(select(Tenant).where(Tenant.id.in_(wanted)))
    return {t.id: view.locale.pick(t.name_en, t.name_zh) for t in rows}


def _errors(
    view: View, exc: DomainError, fold: Callable[[str, str], str] = lambda key, _text: key
) -> dict[str, str]:
    """A refusal's messages keyed by the form's fields (``fold`` maps an API key to one); a
    rule's refusal also names the rule above the form."""
    out: dict[str, str] = {}
    for key, english in exc.fields.items():
        text = translate_message(view.locale, english)
        target = fold(key, english)  # the service's wording, whatever the reader's language
        out[target] = f"{out[target]}; {text}" if target in out else text
    if not out or isinstance(exc, ComplianceRefusal):
        out["form"] = translate_message(view.locale, exc.message)
    return out


def _query(**values: str) -> str:
    """A list's filters as a query string for its pager (the set ones only)."""
    return urlencode({key: value for key, value in values.items() if value})


def _split(text: str) -> list[str]:
    """Items typed one per line or separated by commas or spaces."""
    return [part for part in re.split(r"[\s,，、;]+", text) if part]


# --- sites -------------------------------------------------------------------------------------
SITE_NOTICES = {
    "created": N_("The site is saved. Its prefixes wait for a compliance officer's approval."),
    "declared": N_("The prefix is declared and waits for a compliance officer's approval."),
    "withdrawn": N_("The prefix is withdrawn."),
    "revoked": N_("The connector's credential is revoked."),
    "key": N_("The router's public key is saved."),
    "active": N_("The site is active: its approved prefixes are routed."),
    "disabled": N_("The site is disabled: nothing is routed to it."),
}


def _pop_choices(view: View) -> list[tuple[str, str]]:
    rows = view.ctx.session.scalars(
        select(Pop).where(Pop.state == PopState.ACTIVE).order_by(Pop.name).limit(CHOICES_LIMIT)
    )
    return [(str(p.id), f"{p.name} ({p.region})") for p in rows]


def _pop_names(view: View) -> dict[uuid.UUID, str]:
    return {p.id: p.name for p in view.ctx.session.scalars(select(Pop))}


def _purposes(view: View) -> list[tuple[str, str]]:
    return [(str(value), view.locale.gettext(label)) for value, label in PURPOSES.items()]


def _site_fold(key: str, _text: str) -> str:
    return "prefixes" if key.startswith("prefixes") else key


def _sites_page(
    view: View,
    scope: Scope,
    *,
    state: str = "",
    cursor: str | None = None,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    filters = parse(SiteFilters, {"state": state or None})
    stmt = SITES.apply_filters(SITES.base_query(scope.guard, scope.tenant, Action.READ), filters)
    rows, total, next_cursor = paginate(
        view.ctx.session, stmt, Site.id, PageParams(limit=PAGE_SIZE, cursor=cursor)
    )
    sites = SITES.to_public_many(view.ctx, rows)
    query = _query(tenant=str(scope.tenant.id) if scope.tenant else "", state=state)
    return render(
        view,
        "network/sites.html",
        {
            "sites": sites,
            "total": total,
            "next_cursor": next_cursor,
            "base_query": query,
            "state": state,
            "states": [(s.value, view.locale.state(s.value)) for s in SiteState],
            "scope": scope,
            "tenants": _tenant_choices(view, scope),
            "tenant_names": _tenant_names(view, (s.tenant_id for s in rows)),
            "pop_names": _pop_names(view),
            "pops": _pop_choices(view),
            "purposes": _purposes(view),
            "purpose_names": dict(_purposes(view)),
            "can_create": scope.tenant is not None and view.can("sites", Action.CREATE),
            "values": values or {"country": "CN", "purpose": "office"},
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
        title=view._("Sites"),
    )


@router.get("/console/sites")
def sites_page(
    view: UserViewDep,
    tenant: TenantQ = "",
    state: Annotated[str, Query(max_length=20)] = "",
    cursor: CursorQ = None,
    done: DoneQ = "",
) -> Response:
    scope = _scope(view, tenant, "sites")
    notice = done_notice(view, done, SITE_NOTICES)
    return _sites_page(view, scope, state=state, cursor=cursor, notice=notice)


@router.post("/console/sites")
def create_site(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    scope = _scope(view, form.text("tenant"), "sites", Action.CREATE)
    if scope.tenant is None:
        raise NotFound("tenant not found")
    values = {k: form.text(k) for k in ("name", "country", "purpose", "pop_id")}
    values["prefixes"] = form.get("prefixes")
    data = {
        "name": values["name"],
        "country": values["country"].upper(),
        "purpose": values["purpose"],
        "pop_id": values["pop_id"] or None,
        "prefixes": _split(values["prefixes"]),
    }
    try:
        site = SITES.create(view.ctx, scope.tenant, parse(SiteCreate, data))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, _site_fold)
        return _sites_page(view, scope, values=values, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"/console/sites/{site.id}?done=created")


def _load_site(view: View, site_id: str, action: Action = Action.READ) -> tuple[Guard, Site]:
    """The site, 404 when out of the caller's scope (another tenant's), then the grant."""
    guard = Guard(view.ctx)
    site = SITES.load(guard, None, parse_uuid(site_id, "site"), Action.READ)
    guard.require("sites", action)
    return guard, site


@dataclass
class Enrolled:
    token: str
    expires_at: datetime
    command: str


def _connector_command(view: View, token: str | None) -> str:
    """The command for the connector host (``token`` None: a placeholder, for the example)."""
    server = view.ctx.runtime.settings.link_base_url
    shown = "tde_…" if token is None else shlex.quote(token)
    return (
        f"tongdao connector run --server {shlex.quote(server)} "
        f"--token {shown} --state-dir {CONNECTOR_STATE_DIR}"
    )


def _site_page(
    view: View,
    site: Site,
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
    enrolled: Enrolled | None = None,
) -> Response:
    session = view.ctx.session
    public = SITES.to_public(view.ctx, site)
    assert isinstance(public, SitePublic)
    connectors = [
        GatewayPublic.model_validate(row)
        for row in session.scalars(
            select(Gateway)
            .where(Gateway.site_id == site.id)
            .order_by(Gateway.created_at, Gateway.id)
        )
    ]
    pop = session.get(Pop, site.pop_id) if site.pop_id else None
    tenant = session.get(Tenant, site.tenant_id)
    assert tenant is not None
    return render(
        view,
        "network/site.html",
        {
            "site": public,
            "pop": pop,
            "tenant": tenant,
            "connectors": connectors,
            "purpose_name": view.locale.gettext(PURPOSES[SitePurpose(site.purpose)]),
            "can_update": view.can("sites", Action.UPDATE),
            # Only the operator moves a site to or from active (the service's rule).
            "can_set_state": view.principal is not None
            and view.principal.is_operator
            and view.can("sites", Action.UPDATE),
            "errors": errors or {},
            "values": values or {},
            "notice": notice,
            "enrolled": enrolled,
            "ttl_choices": [1, 4, 24, 72, 168],
            "example_command": _connector_command(view, None),
            "public_url_set": bool(view.ctx.runtime.settings.public_url),
        },
        status=status,
        title=view._("Site %(name)s", name=site.name),
    )


@router.get("/console/sites/{site_id}")
def site_page(view: UserViewDep, site_id: str, done: DoneQ = "") -> Response:
    _guard, site = _load_site(view, site_id)
    return _site_page(view, site, notice=done_notice(view, done, SITE_NOTICES))


def _live_prefixes(view: View, site: Site) -> list[str]:
    return [d.cidr for d in declared.declarations_of(view.ctx, site.id) if d.state in declared.LIVE]


def _change_prefixes(
    view: View, site: Site, wanted: list[str], field_name: str, value: str, new_index: int | None
) -> Response | None:
    """Declare the site's prefixes as the API's PATCH does; a refusal as the page to show."""

    def fold(key: str, _text: str) -> str:
        if key.startswith("prefixes.") and new_index is not None:
            return field_name if key == f"prefixes.{new_index}" else "form"
        return field_name if key.startswith("prefixes") else "form"

    try:
        SITES.update(view.ctx, site, parse(SiteUpdate, {"prefixes": wanted}))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, fold)
        return _site_page(
            view, site, errors=errors, values={field_name: value}, status=exc.status_code
        )
    view.ctx.session.commit()
    return None


@router.post("/console/sites/{site_id}/prefixes")
def declare_prefix(view: UserViewDep, site_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard, site = _load_site(view, site_id, Action.UPDATE)
    cidr = form.text("cidr")
    live = _live_prefixes(view, site)
    refused = _change_prefixes(view, site, [*live, cidr], "cidr", cidr, len(live))
    return refused or redirect(view, f"/console/sites/{site.id}?done=declared")


@router.post("/console/sites/{site_id}/prefixes/withdraw")
def withdraw_prefix(view: UserViewDep, site_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard, site = _load_site(view, site_id, Action.UPDATE)
    cidr = form.text("cidr")
    live = _live_prefixes(view, site)
    if cidr not in live:
        raise NotFound("no such prefix at this site")
    wanted = [c for c in live if c != cidr]
    if not wanted:
        errors = {"form": view._("a site keeps at least one prefix; declare another one first")}
        return _site_page(view, site, errors=errors, status=422)
    refused = _change_prefixes(view, site, wanted, "form", "", None)
    return refused or redirect(view, f"/console/sites/{site.id}?done=withdrawn")


@router.post("/console/sites/{site_id}/state")
def site_state(view: UserViewDep, site_id: str, form: FormDep) -> Response:
    """Activate or disable a site (``PATCH .../sites/{id}`` with its state): the service lets
    only the operator move a site to or from active, and only with an approved prefix."""
    check_csrf(view, form)
    _guard, site = _load_site(view, site_id, Action.UPDATE)
    state = form.text("state")
    try:
        SITES.update(view.ctx, site, parse(SiteUpdate, {"state": state}))
        view.ctx.session.flush()
    except (ValidationError, Conflict, PermissionDenied) as exc:
        view.ctx.session.rollback()
        # Next to the buttons for the operator; above the page for anyone else (no buttons).
        shown = "state" if view.principal is not None and view.principal.is_operator else "form"
        errors = {shown: "; ".join(_errors(view, exc).values())}
        return _site_page(view, site, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    return redirect(view, f"/console/sites/{site.id}?done={state}")


@router.post("/console/sites/{site_id}/enrolments")
def enrol_connector(view: UserViewDep, site_id: str, form: FormDep) -> Response:
    """A one-time enrolment token, shown once on the page this post answers with."""
    check_csrf(view, form)
    _guard, site = _load_site(view, site_id, Action.UPDATE)
    try:
        body = parse(EnrolmentCreate, {"ttl_hours": form.text("ttl_hours") or 24})
    except ValidationError as exc:
        return _site_page(view, site, errors=_errors(view, exc), status=422)
    enrolment, secret = agents.create_enrolment(view.ctx, site, timedelta(hours=body.ttl_hours))
    view.ctx.session.commit()
    enrolled = Enrolled(secret, enrolment.expires_at, _connector_command(view, secret))
    return _site_page(view, site, enrolled=enrolled)


@router.post("/console/sites/{site_id}/connectors/{connector_id}/revoke")
def revoke_connector(view: UserViewDep, site_id: str, connector_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard, site = _load_site(view, site_id, Action.UPDATE)
    gateway = view.ctx.session.get(Gateway, parse_uuid(connector_id, "connector"))
    if gateway is None or gateway.site_id != site.id:
        raise NotFound("connector not found")
    agents.revoke(view.ctx, gateway)
    view.ctx.session.commit()
    return redirect(view, f"/console/sites/{site.id}?done=revoked")


@router.post("/console/sites/{site_id}/router-key")
def set_router_key(view: UserViewDep, site_id: str, form: FormDep) -> Response:
    """The public key of the site's own WireGuard router (instead of a connector)."""
    check_csrf(view, form)
    _guard, site = _load_site(view, site_id, Action.UPDATE)
    key = form.text("connector_public_key")
    try:
        SITES.update(view.ctx, site, parse(SiteUpdate, {"connector_public_key": key or None}))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        values = {"connector_public_key": key}
        return _site_page(
            view, site, errors=_errors(view, exc), values=values, status=exc.status_code
        )
    view.ctx.session.commit()
    return redirect(view, f"/console/sites/{site.id}?done=key")


@router.post("/console/sites/{site_id}/router-config")
def router_config(view: UserViewDep, site_id: str, form: FormDep) -> Response:
    """The wg-quick file for the site's own router, as ``GET …/sites/{s}/wireguard.conf``
    gives it (a post: the first one allocates the site's tunnel address)."""
    check_csrf(view, form)
    _guard, site = _load_site(view, site_id)
    tenant = view.ctx.session.get(Tenant, site.tenant_id)
    assert tenant is not None
    try:
        text = agents.site_config(view.ctx, tenant, site)
    except Conflict as exc:
        view.ctx.session.rollback()
        errors = {"router": translate_message(view.locale, exc.message)}
        return _site_page(view, site, errors=errors, status=exc.status_code)
    view.ctx.session.commit()
    response = PlainTextResponse(
        text,
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="tongdao-site-{site.id}.conf"',
        },
    )
    finish(view, response)
    return response


# --- access policy ------------------------------------------------------------------------------
POLICY_NOTICES = {
    "created": N_("The policy is saved. Gateways apply it within seconds."),
    "saved": N_("The policy is saved. Gateways apply it within seconds."),
    "deleted": N_("The policy is deleted."),
}
SOURCE_PICKERS = (
    ("groups", "group"),
    ("users", "user"),
    ("devices", "device"),
    ("src_sites", "site"),
)


@dataclass
class Names:
    """Names of a tenant's objects, for rules in plain words."""

    groups: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    sites: dict[str, str] = field(default_factory=dict)
    declared: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = field(
        default_factory=list
    )
    pools: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    def of(self, kind: str) -> dict[str, str]:
        return {
            "group": self.groups,
            "user": self.users,
            "device": self.devices,
            "site": self.sites,
        }[kind]


@dataclass
class Choices:
    """What the editor's pickers offer: the tenant's own objects."""

    groups: list[tuple[str, str]]
    users: list[tuple[str, str]]
    devices: list[tuple[str, str]]
    sites: list[tuple[str, str]]
    prefixes: list[tuple[str, str]]


def _user_label(user: User) -> str:
    return f"{user.display_name} <{user.email}>" if user.display_name else user.email


def _choices(view: View, tenant: Tenant) -> tuple[Choices, Names]:
    session = view.ctx.session
    groups = list(
        session.scalars(
            select(Group).where(Group.tenant_id == tenant.id).order_by(Group.name).limit(500)
        )
    )
    users = list(
        session.scalars(
            select(User)
            .where(User.tenant_id == tenant.id, User.erased_at.is_(None))
            .order_by(User.display_name, User.email)
            .limit(CHOICES_LIMIT)
        )
    )
    owners = {u.id: u.display_name or u.email for u in users}
    devices = list(
        session.scalars(
            select(Device)
            .where(Device.tenant_id == tenant.id, Device.state != DeviceState.REVOKED)
            .order_by(Device.name)
            .limit(CHOICES_LIMIT)
        )
    )
    sites = list(
        session.scalars(
            select(Site).where(Site.tenant_id == tenant.id).order_by(Site.name).limit(500)
        )
    )
    site_names = {s.id: s.name for s in sites}
    decls = list(
        session.scalars(
            select(PrefixDeclaration).where(
                PrefixDeclaration.tenant_id == tenant.id,
                PrefixDeclaration.state == DeclarationState.APPROVED,
            )
        )
    )
    decls.sort(key=lambda d: declared.sort_key(d.cidr))
    names = Names(
        groups={str(g.id): g.name for g in groups},
        users={str(u.id): u.display_name or u.email for u in users},
        devices={str(d.id): d.name for d in devices},
        sites={str(k): v for k, v in site_names.items()},
        declared=[(ipaddress.ip_network(d.cidr), site_names.get(d.site_id, "")) for d in decls],
        pools=[ipaddress.ip_network(tenant.ipv4_pool), ipaddress.ip_network(tenant.ipv6_pool)],
    )
    device_labels = {
        str(d.id): view._(
            "%(device)s (of %(owner)s)", device=d.name, owner=owners.get(d.user_id, "?")
        )
        for d in devices
    }
    prefixes = [
        (
            d.cidr,
            view._("%(cidr)s at site %(site)s", cidr=d.cidr, site=site_names.get(d.site_id, "")),
        )
        for d in decls
    ]
    prefixes += [
        (pool, view._("%(cidr)s: the tenant's device addresses", cidr=pool))
        for pool in (tenant.ipv4_pool, tenant.ipv6_pool)
    ]
    choices = Choices(
        groups=list(names.groups.items()),
        users=[(str(u.id), _user_label(u)) for u in users],
        devices=list(device_labels.items()),
        sites=list(names.sites.items()),
        prefixes=prefixes,
    )
    return choices, names


def _names_for(view: View, tenant_id: uuid.UUID) -> Names:
    tenant = view.ctx.session.get(Tenant, tenant_id)
    assert tenant is not None
    return _choices(view, tenant)[1]


def _join(view: View, items: Sequence[str]) -> str:
    """ "a, b and c" / "a、b和c"."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    if view.locale.language == "zh_CN":
        return "、".join(items[:-1]) + "和" + items[-1]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _named(view: View, names: Names, kind: str, object_id: str) -> str:
    return names.of(kind).get(object_id) or view._("(deleted)")


def describe(view: View, rule: Mapping[str, Any], names: Names) -> str:
    """A rule in plain words: who may reach what, how."""
    who: list[str] = []
    for src in rule.get("sources", []):
        name = _named(view, names, src["kind"], str(src["id"]))
        phrase = {
            "group": N_("members of group %(name)s"),
            "user": N_("user %(name)s"),
            "device": N_("device %(name)s"),
            "site": N_("hosts at site %(name)s"),
        }[src["kind"]]
        who.append(view._(phrase, name=name))
    what: list[str] = []
    for dst in rule.get("destinations", []):
        if dst["kind"] == "site":
            what.append(
                view._(
                    "every network of site %(name)s",
                    name=_named(view, names, "site", str(dst["id"])),
                )
            )
            continue
        net = ipaddress.ip_network(dst["cidr"])
        at = next(
            (site for d, site in names.declared if d.version == net.version and net.subnet_of(d)),  # type: ignore[arg-type]
            None,
        )
        if at:
            what.append(view._("%(cidr)s at site %(site)s", cidr=dst["cidr"], site=at))
        elif any(p.version == net.version and net.subnet_of(p) for p in names.pools):  # type: ignore[arg-type]
            what.append(view._("%(cidr)s (the tenant's devices)", cidr=dst["cidr"]))
        else:
            what.append(str(dst["cidr"]))
    protocol = str(rule.get("protocol", "any"))
    ports = [str(p) for p in rule.get("ports", [])]
    if protocol == "any":
        how = view._("on any protocol")
    elif protocol == "icmp":
        how = view._("by ICMP (ping)")
    elif not ports:
        how = view._("on every %(protocol)s port", protocol=protocol.upper())
    elif len(ports) == 1 and "-" not in ports[0]:
        how = view._("on %(protocol)s port %(ports)s", protocol=protocol.upper(), ports=ports[0])
    else:
        how = view._(
            "on %(protocol)s ports %(ports)s", protocol=protocol.upper(), ports=", ".join(ports)
        )
    sentence = view._(
        "%(who)s may reach %(what)s %(how)s.",
        who=_join(view, who),
        what=_join(view, what),
        how=how,
    )
    return sentence[:1].upper() + sentence[1:]


@dataclass
class RuleForm:
    """One rule as the editor shows it: what each picker has selected."""

    groups: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    src_sites: list[str] = field(default_factory=list)
    dst_sites: list[str] = field(default_factory=list)
    dst_prefixes: list[str] = field(default_factory=list)
    other: str = ""
    protocol: str = "tcp"
    ports: str = ""

    @classmethod
    def from_rule(cls, rule: Mapping[str, Any], offered: set[str]) -> RuleForm:
        form = cls(protocol=str(rule.get("protocol", "any")))
        picks = {"group": form.groups, "user": form.users, "device": form.devices}
        picks["site"] = form.src_sites
        for src in rule.get("sources", []):
            picks[src["kind"]].append(str(src["id"]))
        other: list[str] = []
        for dst in rule.get("destinations", []):
            if dst["kind"] == "site":
                form.dst_sites.append(str(dst["id"]))
            elif dst["cidr"] in offered:
                form.dst_prefixes.append(str(dst["cidr"]))
            else:
                other.append(str(dst["cidr"]))
        form.other = ", ".join(other)
        form.ports = ", ".join(str(p) for p in rule.get("ports", []))
        return form

    @classmethod
    def posted(cls, form: Any, i: int) -> RuleForm:
        prefix = f"rules.{i}."
        return cls(
            groups=form.getlist(prefix + "groups"),
            users=form.getlist(prefix + "users"),
            devices=form.getlist(prefix + "devices"),
            src_sites=form.getlist(prefix + "src_sites"),
            dst_sites=form.getlist(prefix + "dst_sites"),
            dst_prefixes=form.getlist(prefix + "dst_prefixes"),
            other=form.text(prefix + "other"),
            protocol=form.text(prefix + "protocol") or "any",
            ports=form.text(prefix + "ports"),
        )

    def api(self) -> dict[str, Any]:
        """The rule as the API's policy schema takes it."""
        sources = [
            {"kind": kind, "id": object_id}
            for attr, kind in SOURCE_PICKERS
            for object_id in getattr(self, attr)
        ]
        destinations: list[dict[str, str]] = [{"kind": "site", "id": s} for s in self.dst_sites]
        destinations += [
            {"kind": "prefix", "cidr": c} for c in [*self.dst_prefixes, *_split(self.other)]
        ]
        return {
            "sources": sources,
            "destinations": destinations,
            "protocol": self.protocol,
            "ports": _split(self.ports),
        }


@dataclass
class PolicyForm:
    name: str = ""
    description: str = ""
    enabled: bool = True
    rules: list[RuleForm] = field(default_factory=lambda: [RuleForm()])

    def api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "rules": [rule.api() for rule in self.rules],
        }


MAX_RULES_IN_EDITOR = 50


def _posted_policy(form: Any) -> tuple[PolicyForm, str]:
    """The editor's posted state and the button pressed (preview, save, add, remove-N)."""
    try:
        count = max(1, min(int(form.text("rule_count") or "1"), MAX_RULES_IN_EDITOR))
    except ValueError:
        count = 1
    policy = PolicyForm(
        name=form.text("name"),
        description=form.text("description"),
        enabled=form.get("enabled") == "on",
        rules=[RuleForm.posted(form, i) for i in range(count)],
    )
    return policy, form.text("action") or "preview"


_RULE_KEY = re.compile(r"^rules\.(\d+)(?:\.(\w+))?")


def _policy_fold(key: str, text: str) -> str:
    """An API error key as the editor's field: ``rules.0.sources.1.id`` → ``rules.0.sources``."""
    found = _RULE_KEY.match(key)
    if not found:
        return key if key in {"name", "description", "enabled"} else "form"
    i, part = found.group(1), found.group(2)
    if part in {"sources", "destinations", "ports", "protocol"}:
        return f"rules.{i}.{part}"
    if "port" in text:
        return f"rules.{i}.ports"
    return f"rules.{i}.form"


def _policy_page(
    view: View,
    tenant: Tenant,
    policy: PolicyForm,
    *,
    policy_id: uuid.UUID | None = None,
    errors: Mapping[str, str] | None = None,
    preview: list[str] | None = None,
    status: int = 200,
    editable: bool = True,
    previewing: bool = False,
) -> Response:
    choices, _names = _choices(view, tenant)
    title = view._("Edit access rule") if policy_id else view._("New access rule")
    return render(
        view,
        "network/policy.html",
        {
            "policy": policy,
            "policy_id": policy_id,
            "tenant": tenant,
            "choices": choices,
            "protocols": [(k, view.locale.gettext(v)) for k, v in PROTOCOLS.items()],
            "errors": errors or {},
            "preview": preview,
            "previewing": previewing,
            "editable": editable,
            "action": f"/console/policies/{policy_id}" if policy_id else "/console/policies/new",
        },
        status=status,
        title=title if editable else view._("Access rule %(name)s", name=policy.name),
    )


@router.get("/console/policies")
def policies_page(
    view: UserViewDep,
    tenant: TenantQ = "",
    q: Annotated[str, Query(max_length=100)] = "",
    enabled: Annotated[str, Query(max_length=5)] = "",
    cursor: CursorQ = None,
    done: DoneQ = "",
) -> Response:
    scope = _scope(view, tenant, "policies")
    filters = parse(PolicyFilters, {"enabled": enabled or None})
    stmt = POLICIES.apply_filters(
        POLICIES.base_query(scope.guard, scope.tenant, Action.READ), filters
    )
    if q.strip():
        stmt = stmt.where(Policy.name.contains(q.strip(), autoescape=True))
    rows, total, next_cursor = paginate(
        view.ctx.session, stmt, Policy.id, PageParams(limit=PAGE_SIZE, cursor=cursor)
    )
    names_of: dict[uuid.UUID, Names] = {}
    described = []
    for row in rows:
        if row.tenant_id not in names_of:
            names_of[row.tenant_id] = _names_for(view, row.tenant_id)
        described.append((row, [describe(view, r, names_of[row.tenant_id]) for r in row.rules]))
    query = _query(
        tenant=str(scope.tenant.id) if scope.tenant else "", q=q.strip(), enabled=enabled
    )
    return render(
        view,
        "network/policies.html",
        {
            "policies": described,
            "total": total,
            "next_cursor": next_cursor,
            "base_query": query,
            "q": q,
            "enabled": enabled,
            "scope": scope,
            "tenants": _tenant_choices(view, scope),
            "tenant_names": _tenant_names(view, (r.tenant_id for r in rows)),
            "can_create": scope.tenant is not None and view.can("policies", Action.CREATE),
            "notice": done_notice(view, done, POLICY_NOTICES),
        },
        title=view._("Access policy"),
    )


@router.get("/console/policies/new")
def new_policy_page(view: UserViewDep, tenant: TenantQ = "") -> Response:
    scope = _scope(view, tenant, "policies", Action.CREATE)
    if scope.tenant is None:
        return redirect(view, "/console/policies")
    return _policy_page(view, scope.tenant, PolicyForm())


def _edit(
    view: View,
    tenant: Tenant,
    policy: PolicyForm,
    button: str,
    save: Callable[[], Policy],
    policy_id: uuid.UUID | None,
) -> Response:
    """The editor's buttons: add or remove a rule, preview (checks everything the save would
    check, then rolls back: nothing is stored), save."""
    if button == "add":
        policy.rules.append(RuleForm())
        return _policy_page(view, tenant, policy, policy_id=policy_id)
    if button.startswith("remove-"):
        index = button.removeprefix("remove-")
        if index.isdigit() and int(index) < len(policy.rules) and len(policy.rules) > 1:
            del policy.rules[int(index)]
        return _policy_page(view, tenant, policy, policy_id=policy_id)
    try:
        saved = save()
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        errors = _errors(view, exc, _policy_fold)
        return _policy_page(
            view, tenant, policy, policy_id=policy_id, errors=errors, status=exc.status_code
        )
    if button != "save":
        rules = [dict(r) for r in saved.rules]
        view.ctx.session.rollback()  # a preview stores nothing
        names = _names_for(view, tenant.id)
        preview = [describe(view, rule, names) for rule in rules]
        return _policy_page(
            view, tenant, policy, policy_id=policy_id, preview=preview, previewing=True
        )
    view.ctx.session.commit()
    return redirect(view, f"/console/policies?done={'saved' if policy_id else 'created'}")


@router.post("/console/policies/new")
def create_policy(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    scope = _scope(view, form.text("tenant"), "policies", Action.CREATE)
    if scope.tenant is None:
        raise NotFound("tenant not found")
    tenant = scope.tenant
    policy, button = _posted_policy(form)

    def save() -> Policy:
        return POLICIES.create(view.ctx, tenant, parse(PolicyCreate, policy.api()))

    return _edit(view, tenant, policy, button, save, None)


def _load_policy(view: View, policy_id: str, action: Action) -> tuple[Guard, Policy]:
    guard = Guard(view.ctx)
    policy = POLICIES.load(guard, None, parse_uuid(policy_id, "policy"), Action.READ)
    guard.require("policies", action)
    return guard, policy


def _offered(view: View, tenant: Tenant) -> set[str]:
    return {cidr for cidr, _label in _choices(view, tenant)[0].prefixes}


@router.get("/console/policies/{policy_id}")
def policy_page(view: UserViewDep, policy_id: str) -> Response:
    _guard, row = _load_policy(view, policy_id, Action.READ)
    tenant = view.ctx.session.get(Tenant, row.tenant_id)
    assert tenant is not None
    offered = _offered(view, tenant)
    policy = PolicyForm(
        name=row.name,
        description=row.description,
        enabled=row.enabled,
        rules=[RuleForm.from_rule(r, offered) for r in row.rules] or [RuleForm()],
    )
    names = _names_for(view, tenant.id)
    return _policy_page(
        view,
        tenant,
        policy,
        policy_id=row.id,
        preview=[describe(view, r, names) for r in row.rules],
        editable=view.can("policies", Action.UPDATE),
    )


@router.post("/console/policies/{policy_id}")
def update_policy(view: UserViewDep, policy_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard, row = _load_policy(view, policy_id, Action.UPDATE)
    tenant = view.ctx.session.get(Tenant, row.tenant_id)
    assert tenant is not None
    policy, button = _posted_policy(form)

    def save() -> Policy:
        return POLICIES.update(view.ctx, row, parse(PolicyUpdate, policy.api()))

    return _edit(view, tenant, policy, button, save, row.id)


@router.post("/console/policies/{policy_id}/delete")
def delete_policy(view: UserViewDep, policy_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard, row = _load_policy(view, policy_id, Action.DELETE)
    POLICIES.delete(view.ctx, row)
    view.ctx.session.flush()
    view.ctx.session.commit()
    return redirect(view, "/console/policies?done=deleted")


# --- usage --------------------------------------------------------------------------------------
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_window(month: str) -> tuple[datetime, datetime]:
    """The month's bounds in Asia/Shanghai, as UTC instants (the usage views' window)."""
    found = _MONTH.match(month)
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise ValidationError({"month": "choose a month like 2026-12"})
    year, number = int(found.group(1)), int(found.group(2))
    if not 2000 <= year <= 9998:
        raise ValidationError({"month": "choose a month between 2000 and 9998"})
    start = datetime(year, number, 1, tzinfo=SHANGHAI)
    following = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=SHANGHAI)
    return start.astimezone(UTC), following.astimezone(UTC)


@dataclass
class UsageLine:
    key: str
    name: str
    up: int  # bytes the gateway received from the peer(s): the peer's upload
    down: int  # bytes the gateway sent them


def _usage_lines(
    view: View, guard: Guard, tenant: Tenant, since: datetime, until: datetime
) -> tuple[list[UsageLine], list[UsageLine]]:
    """Per user (their devices' rows summed) and per site, from the API's usage views."""
    session = view.ctx.session
    per_device = usage.tenant_usage(guard, tenant.id, since, until, "device")
    per_site = usage.tenant_usage(guard, tenant.id, since, until, "site")
    device_ids = [uuid.UUID(r.key) for r in per_device.rows]
    owner_of = (
        {
            row[0]: row[1]
            for row in session.execute(
                select(Device.id, Device.user_id).where(Device.id.in_(device_ids))
            )
        }
        if device_ids
        else {}
    )
    user_ids = set(owner_of.values())
    people = (
        {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
        if user_ids
        else {}
    )
    users: dict[str, UsageLine] = {}
    for row in per_device.rows:
        owner = owner_of.get(uuid.UUID(row.key))
        person = people.get(owner) if owner else None
        key = str(owner) if owner else "-"
        name = _user_label(person) if person else view._("(deleted device)")
        line = users.setdefault(key, UsageLine(key, name, 0, 0))
        line.up += row.rx_bytes
        line.down += row.tx_bytes
    site_ids = [uuid.UUID(r.key) for r in per_site.rows]
    site_names = (
        {
            row[0]: row[1]
            for row in session.execute(select(Site.id, Site.name).where(Site.id.in_(site_ids)))
        }
        if site_ids
        else {}
    )
    sites = [
        UsageLine(
            row.key,
            site_names.get(uuid.UUID(row.key)) or view._("(deleted site)"),
            row.rx_bytes,
            row.tx_bytes,
        )
        for row in per_site.rows
    ]
    by_size: Callable[[UsageLine], tuple[int, str]] = lambda u: (-(u.up + u.down), u.name)  # noqa: E731
    return sorted(users.values(), key=by_size), sorted(sites, key=by_size)


def _chart(lines: list[UsageLine]) -> dict[str, Any]:
    return {
        "labels": [line.name for line in lines],
        "up": [line.up for line in lines],
        "down": [line.down for line in lines],
    }


@router.get("/console/usage")
def usage_page(
    view: UserViewDep,
    tenant: TenantQ = "",
    month: Annotated[str, Query(max_length=7)] = "",
) -> Response:
    scope = _scope(view, tenant, "devices")
    now = view.ctx.runtime.clock()
    current = now.astimezone(SHANGHAI).strftime("%Y-%m")
    chosen = month or current
    errors: dict[str, str] = {}
    users: list[UsageLine] = []
    sites: list[UsageLine] = []
    since = until = None
    status = 200
    try:
        since, until = month_window(chosen)
        if scope.tenant is not None:
            start, end = usage.window(since, until, now)
            users, sites = _usage_lines(view, scope.guard, scope.tenant, start, end)
    except ValidationError as exc:
        errors = _errors(view, exc, lambda _key, _text: "month")
        status = 422
    data = {
        "users": _chart(users),
        "sites": _chart(sites),
        "labels": {"up": view._("Up"), "down": view._("Down")},
    }
    return render(
        view,
        "network/usage.html",
        {
            "scope": scope,
            "tenants": _tenant_choices(view, scope),
            "month": chosen,
            "since": since,
            "until": until,
            "users": users,
            "sites": sites,
            "total_up": sum(u.up for u in users) + sum(s.up for s in sites),
            "total_down": sum(u.down for u in users) + sum(s.down for s in sites),
            "chart": data,
            "errors": errors,
            "last_day": (until - timedelta(seconds=1)) if until else None,
        },
        status=status,
        title=view._("Usage"),
    )


__all__ = ["NAV", "describe", "month_window", "router"]
