"""The tenant admin's people and devices: users (invite, roles, groups, state, identity and its
verification, password reset link, sign-in unlock), groups and the tenant's devices.

Every job calls what its API route calls: :class:`~tongdao.tenancy.service.UserResource` and
:class:`~tongdao.tenancy.service.GroupResource` (create / update), the invitation mailed by
:func:`tongdao.auth.reset.invite` inside the user's creation, :func:`~tongdao.auth.reset.
admin_reset`, :func:`~tongdao.auth.service.unlock_sign_in`, :func:`~tongdao.tenancy.service.
verify_identity` / ``withdraw_verification`` and :class:`~tongdao.network.service.
DeviceResource` (a revocation is its update to ``revoked``). Objects are looked up with the
API's own sight (:func:`tongdao.auth.targets.tenant_user`, :class:`~tongdao.api.deps.Guard`):
another tenant's user, group or device is a 404 page, and a role without the grant gets 403.

Operator staff who may read users, groups and devices (operator admin, compliance officer,
auditor) see every tenant's, with the tenant named; the forms that create something in a
tenant are the tenant admin's. Employees manage their own account and devices on their own
pages, not here.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from sqlalchemy import Select, func, or_, select

from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.audit.models import OpenConnection
from tongdao.audit.sessions import INACTIVITY
from tongdao.auth import reset
from tongdao.auth import service as auth_service
from tongdao.auth.permissions import Action, Role
from tongdao.auth.targets import tenant_user
from tongdao.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationError
from tongdao.gateway.models import UsageRecord
from tongdao.gateway.usage import tenant_usage
from tongdao.lifetime.service import held as lifetime_held
from tongdao.network.models import Device, DeviceState, Pop
from tongdao.network.schemas import DeviceFilters, DeviceUpdate
from tongdao.network.service import DeviceResource
from tongdao.tenancy import schemas as ts
from tongdao.tenancy.models import Group, GroupMember, IdType, Tenant, User, UserState
from tongdao.tenancy.service import (
    GroupResource,
    UserResource,
    user_public,
    verify_identity,
    withdraw_verification,
)
from tongdao.web.console import (
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    check_csrf,
    done_notice,
    parse,
    parse_uuid,
    redirect,
    render,
    tenant_options,
    translate_message,
)
from tongdao.web.i18n import N_, SHANGHAI

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

READERS = frozenset({Role.TENANT_ADMIN, Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR})
NAV = [
    NavItem("/console/users", N_("Users"), READERS),
    NavItem("/console/devices", N_("Devices"), READERS),
]
PAGE_SIZE = 25
ONLINE_WITHIN = INACTIVITY  # a connection reported active this recently counts as online

USERS = UserResource()
GROUPS = GroupResource()
DEVICES = DeviceResource()

ROLE_LABELS = {
    Role.TENANT_ADMIN: N_("Tenant admin"),
    Role.EMPLOYEE: N_("Employee"),
}
ID_TYPE_LABELS = {
    IdType.PRC_RESIDENT_ID: N_("PRC resident identity card"),
    IdType.PASSPORT: N_("Passport"),
    IdType.FOREIGN_PERMANENT_RESIDENCE: N_("Foreign permanent residence card"),
}
# Refusals these pages show next to their fields that the services' catalogue (errors.po)
# does not hold: tenancy.service.identity_missing and compliance.identity.id_number_problem.
SHOWN_REFUSALS = (
    N_("record it before the identity is verified"),
    N_("a PRC resident ID is 17 digits and a check digit or X"),
    N_("the birth date inside the resident ID is not a date"),
    N_("the resident ID's check digit does not match (GB 11643)"),
    N_("a passport number is 5-20 letters and digits"),
    N_("a foreign permanent-residence ID is 15-18 letters and digits"),
)
NOTICES = {
    "invited": N_("The invitation is on its way: the person chooses a password with the link."),
    "roles": N_("The roles are saved."),
    "groups": N_("The groups are saved."),
    "disabled": N_("The account is disabled: its owner cannot sign in."),
    "enabled": N_("The account is enabled again."),
    "identity": N_("The identity is saved. A changed identity is verified again."),
    "verified": N_("The identity is verified; the person's waiting devices are active."),
    "withdrawn": N_("The verification is withdrawn; the person's devices wait again."),
    "reset": N_(
        "The password is reset: the person's sessions ended and a link to choose a new one "
        "is on its way."
    ),
    "unlocked": N_("The failed sign-ins are cleared: the person can sign in now."),
    "group-created": N_("The group is created."),
    "members": N_("The members are saved."),
    "revoked": N_("The device is revoked: it can no longer connect."),
}


Done = Annotated[str, Query(max_length=20)]
Cursor = Annotated[str, Query(max_length=64)]


# --- sight ---------------------------------------------------------------------------------------
def _reader(view: View, resource: str) -> Guard:
    """The guard of someone who reads a whole tenant's ``resource`` (403 otherwise)."""
    guard = Guard(view.ctx)
    guard.require(resource, Action.READ)
    _not_own_only(guard, resource, Action.READ)
    return guard


def _not_own_only(guard: Guard, resource: str, action: Action) -> None:
    if guard.principal.own_only(resource, action):
        raise PermissionDenied(f"your roles do not allow {action.value} on {resource}")


def _tenant_scope(guard: Guard) -> Tenant | None:
    """The caller's own tenant; None for operator staff (they read every tenant's)."""
    tenant_id = guard.principal.tenant_id
    return guard.tenant(tenant_id) if tenant_id is not None else None


def _load_user(view: View, user_id: str, resource: str, action: Action) -> tuple[Guard, User]:
    """A tenant's user as the API finds it: 404 out of sight, then 403 without the grant."""
    guard = Guard(view.ctx)
    uid = parse_uuid(user_id, "user")
    found = view.ctx.session.get(User, uid)
    if found is None or found.tenant_id is None:
        raise NotFound("user not found")
    user = tenant_user(guard, found.tenant_id, uid, resource, action)
    _not_own_only(guard, "users", Action.READ)
    return guard, user


def _load_group(view: View, group_id: str, action: Action) -> tuple[Guard, Group]:
    guard = Guard(view.ctx)
    group = view.ctx.session.get(Group, parse_uuid(group_id, "group"))
    if group is None:
        raise NotFound("group not found")
    guard.tenant(group.tenant_id)
    guard.require("groups", action)
    return guard, group


def _load_device(view: View, device_id: str, action: Action) -> tuple[Guard, Device]:
    guard = Guard(view.ctx)
    device = view.ctx.session.get(Device, parse_uuid(device_id, "device"))
    if device is None:
        raise NotFound("device not found")
    guard.tenant(device.tenant_id)
    guard.visible(device, "devices", Action.READ, owner=device.user_id, what="device")
    guard.require("devices", action)
    _not_own_only(guard, "devices", action)
    return guard, device


# --- helpers -------------------------------------------------------------------------------------
def _errors(
    view: View, exc: DomainError, general: str = "form", shown: Collection[str] = ()
) -> dict[str, str]:
    """A refusal's messages keyed by field (translated), plus the whole refusal under
    ``general`` when no field names it, or for a form whose fields do not show them all (a
    form listing its fields in ``shown`` gets no summary repeating what is next to them)."""
    errors = {key: translate_message(view.locale, text) for key, text in exc.fields.items()}
    if errors and set(errors) <= set(shown):
        return errors
    if not errors or general != "form":
        errors.setdefault(general, _message(view, exc))
    return errors


def _message(view: View, exc: DomainError) -> str:
    return translate_message(view.locale, exc.message)


def _tenant_names(view: View, tenant_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not tenant_ids:
        return {}
    rows = view.ctx.session.execute(
        select(Tenant.id, Tenant.name_en, Tenant.name_zh).where(Tenant.id.in_(tenant_ids))
    )
    return {tid: view.locale.pick(en, zh) for tid, en, zh in rows}


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _query(**values: str) -> str:
    return urlencode({k: v for k, v in values.items() if v})


def _page(
    view: View, stmt: Select[Any], key: Any, cursor: str
) -> tuple[list[Any], int, str | None]:
    """One page of ``stmt`` (newest first); a bad cursor starts again from the first page."""
    try:
        rows, total, next_cursor = paginate(
            view.ctx.session,
            stmt,
            key,
            PageParams(limit=PAGE_SIZE, cursor=cursor or None),
            descending=True,
        )
    except ValidationError:
        rows, total, next_cursor = paginate(
            view.ctx.session, stmt, key, PageParams(limit=PAGE_SIZE), descending=True
        )
    return rows, total, next_cursor


def _role_options(view: View) -> list[tuple[str, str]]:
    return [(role.value, view._(label)) for role, label in ROLE_LABELS.items()]


def _id_type_options(view: View) -> list[tuple[str, str]]:
    return [(kind.value, view._(label)) for kind, label in ID_TYPE_LABELS.items()]


def _group_choices(view: View, tenant_id: uuid.UUID) -> list[Group]:
    return list(
        view.ctx.session.scalars(
            select(Group).where(Group.tenant_id == tenant_id).order_by(Group.name).limit(500)
        )
    )


# --- users ---------------------------------------------------------------------------------------
@router.get("/console/users")
def users_page(
    view: UserViewDep,
    q: Annotated[str, Query(max_length=100)] = "",
    role: Annotated[str, Query(max_length=30)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    verified: Annotated[str, Query(max_length=5)] = "",
    tenant: Annotated[str, Query(max_length=40)] = "",
    cursor: Cursor = "",
    done: Done = "",
) -> Response:
    guard = _reader(view, "users")
    scope = _tenant_scope(guard)
    filters = ts.UserFilters(
        state=UserState(state) if state in set(UserState) else None,
        role=Role(role) if role in {r.value for r in ROLE_LABELS} else None,
        identity_verified={"yes": True, "no": False}.get(verified),
    )
    stmt = USERS.apply_filters(USERS.base_query(guard, scope, Action.READ), filters)
    stmt = stmt.where(User.tenant_id.is_not(None))
    tenant_id = _uuid_or_none(tenant) if scope is None else None
    if tenant_id is not None:
        stmt = stmt.where(User.tenant_id == tenant_id)
    if q.strip():
        pattern = f"%{q.strip()}%"
        stmt = stmt.where(or_(User.display_name.ilike(pattern), User.email.ilike(pattern)))
    rows, total, next_cursor = _page(view, stmt, User.id, cursor)
    values = {"q": q.strip(), "role": role, "state": state, "verified": verified}
    if scope is None:
        values["tenant"] = str(tenant_id) if tenant_id else ""
    return render(
        view,
        "people/users.html",
        {
            "users": [user_public(u, []) for u in rows],
            "total": total,
            "page": {"next_cursor": next_cursor},
            "base_query": _query(**values),
            "values": values,
            "filtered": any(values.values()),
            "tenants": _tenant_names(view, {u.tenant_id for u in rows if u.tenant_id}),
            "tenant_options": tenant_options(view),
            "role_options": _role_options(view),
            "can_invite": scope is not None and guard.principal.can("users", Action.CREATE),
            "notice": done_notice(view, done, NOTICES),
        },
        title=view._("Users"),
    )


def _invite_page(
    view: View,
    guard: Guard,
    tenant: Tenant,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    return render(
        view,
        "people/invite.html",
        {
            "values": values,
            "errors": errors,
            "role_options": _role_options(view),
            "group_options": [(str(g.id), g.name) for g in _group_choices(view, tenant.id)],
            "link_days": max(1, view.ctx.runtime.settings.invitation_link_ttl_seconds // 86400),
        },
        status=status,
        title=view._("Invite a user"),
    )


def _inviter(view: View) -> tuple[Guard, Tenant]:
    guard = _reader(view, "users")
    tenant = _tenant_scope(guard)
    if tenant is None:
        raise PermissionDenied("users are invited by their tenant's admin")
    guard.require("users", Action.CREATE)
    return guard, tenant


@router.get("/console/users/new")
def invite_page(view: UserViewDep) -> Response:
    guard, tenant = _inviter(view)
    return _invite_page(view, guard, tenant, {"roles": [Role.EMPLOYEE.value], "group_ids": []}, {})


@router.post("/console/users")
def invite(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    guard, tenant = _inviter(view)
    values: dict[str, Any] = {
        "email": form.text("email"),
        "display_name": form.text("display_name"),
        "roles": form.getlist("roles"),
        "group_ids": form.getlist("group_ids"),
    }
    try:
        data = parse(ts.UserCreate, values)
        user = USERS.create(view.ctx, tenant, data)
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        status = 422 if isinstance(exc, ValidationError) else 409
        return _invite_page(view, guard, tenant, values, _errors(view, exc), status)
    view.ctx.session.commit()
    return redirect(view, f"/console/users/{user.id}?done=invited")


def _user_page(
    view: View,
    guard: Guard,
    user: User,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
    done: str = "",
) -> Response:
    session = view.ctx.session
    assert user.tenant_id is not None
    public = user_public(user, [m.group_id for m in user.memberships])
    groups = _group_choices(view, user.tenant_id)
    verifier = session.get(User, user.identity_verified_by) if user.identity_verified_by else None
    devices = list(
        session.scalars(
            select(Device).where(Device.user_id == user.id).order_by(Device.name).limit(100)
        )
    )
    principal = guard.principal
    return render(
        view,
        "people/user.html",
        {
            "user": public,
            "is_self": user.id == principal.user_id,
            "tenant_name": _tenant_names(view, {user.tenant_id})[user.tenant_id],
            "groups": groups,
            "group_options": [(str(g.id), g.name) for g in groups],
            "member_of": {str(gid) for gid in public.group_ids},
            "verifier": verifier,
            "devices": devices,
            "errors": errors or {},
            "values": values or {"legal_name": user.legal_name or ""},
            "role_options": _role_options(view),
            "id_type_options": _id_type_options(view),
            "id_type_labels": {k.value: view._(v) for k, v in ID_TYPE_LABELS.items()},
            "can_update": principal.can("users", Action.UPDATE),
            "can_verify": principal.can("identity", Action.UPDATE),
            "can_unlock": principal.can("sign_in", Action.UPDATE),
            "notice": done_notice(view, done, NOTICES),
        },
        status=status,
        title=user.display_name,
    )


@router.get("/console/users/{user_id}")
def user_page(view: UserViewDep, user_id: str, done: Done = "") -> Response:
    guard, user = _load_user(view, user_id, "users", Action.READ)
    return _user_page(view, guard, user, done=done)


def _refused(
    view: View,
    guard: Guard,
    user_id: str,
    exc: DomainError,
    general: str,
    values: dict[str, Any] | None = None,
    shown: Collection[str] = (),
) -> Response:
    """The user's page again with the refusal next to its field; nothing stored."""
    view.ctx.session.rollback()
    _guard, user = _load_user(view, user_id, "users", Action.READ)
    status = 422 if isinstance(exc, ValidationError) else exc.status_code
    return _user_page(
        view, guard, user, errors=_errors(view, exc, general, shown), values=values, status=status
    )


def _update_user(
    view: View,
    user_id: str,
    data: dict[str, Any],
    general: str,
    values: dict[str, Any] | None = None,
    shown: Collection[str] = (),
) -> Response | None:
    guard, user = _load_user(view, user_id, "users", Action.UPDATE)
    try:
        USERS.update(view.ctx, user, parse(ts.UserUpdate, data))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        return _refused(view, guard, user_id, exc, general, values, shown)
    view.ctx.session.commit()
    return None


@router.post("/console/users/{user_id}/roles")
def change_roles(view: UserViewDep, user_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    refused = _update_user(view, user_id, {"roles": form.getlist("roles")}, "roles")
    return refused or redirect(view, f"/console/users/{user_id}?done=roles")


@router.post("/console/users/{user_id}/groups")
def change_groups(view: UserViewDep, user_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    refused = _update_user(view, user_id, {"group_ids": form.getlist("group_ids")}, "group_ids")
    return refused or redirect(view, f"/console/users/{user_id}?done=groups")


@router.post("/console/users/{user_id}/state")
def change_state(view: UserViewDep, user_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    state = form.text("state")
    refused = _update_user(view, user_id, {"state": state}, "state")
    done = "disabled" if state == UserState.DISABLED else "enabled"
    return refused or redirect(view, f"/console/users/{user_id}?done={done}")


IDENTITY_FIELDS = ("legal_name", "id_type", "id_number", "mobile")


@router.post("/console/users/{user_id}/identity")
def capture_identity(view: UserViewDep, user_id: str, form: FormDep) -> Response:
    """Legal name, ID document and mobile (``PATCH .../users/{id}``'s identity fields): a blank
    ID number or mobile keeps the stored one, which is never shown in full."""
    check_csrf(view, form)
    data: dict[str, Any] = {}
    values = {name: form.text(name) for name in ("legal_name", "id_type", "mobile")}
    if values["legal_name"]:
        data["legal_name"] = values["legal_name"]
    if form.text("id_number"):
        data["id_number"] = form.text("id_number")
        data["id_type"] = values["id_type"] or None
    if values["mobile"]:
        data["mobile"] = values["mobile"]
    refused = _update_user(view, user_id, data, "identity", values, IDENTITY_FIELDS)
    return refused or redirect(view, f"/console/users/{user_id}?done=identity")


@router.post("/console/users/{user_id}/verification")
def verification(view: UserViewDep, user_id: str, form: FormDep) -> Response:
    """Verify (or withdraw) the identity, as ``POST|DELETE .../identity-verification``: the
    service refuses a self-verification and an admin's (the compliance officer's job)."""
    check_csrf(view, form)
    guard, user = _load_user(view, user_id, "identity", Action.UPDATE)
    withdraw = form.text("action") == "withdraw"
    try:
        if withdraw:
            withdraw_verification(view.ctx, user)
        else:
            verify_identity(view.ctx, user)
        view.ctx.session.flush()
    except (PermissionDenied, Conflict) as exc:
        return _refused(view, guard, user_id, exc, "verification")
    view.ctx.session.commit()
    return redirect(
        view, f"/console/users/{user_id}?done={'withdrawn' if withdraw else 'verified'}"
    )


@router.post("/console/users/{user_id}/password-reset")
def password_reset(view: UserViewDep, user_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    guard, user = _load_user(view, user_id, "users", Action.UPDATE)
    try:
        reset.admin_reset(view.ctx, user)
    except Conflict as exc:
        return _refused(view, guard, user_id, exc, "password")
    view.ctx.session.commit()
    return redirect(view, f"/console/users/{user_id}?done=reset")


@router.post("/console/users/{user_id}/sign-in-unlock")
def sign_in_unlock(view: UserViewDep, user_id: str, form: FormDep) -> Response:
    check_csrf(view, form)
    _guard, user = _load_user(view, user_id, "sign_in", Action.UPDATE)
    auth_service.unlock_sign_in(view.ctx, user)
    view.ctx.session.commit()
    return redirect(view, f"/console/users/{user_id}?done=unlocked")


# --- groups --------------------------------------------------------------------------------------
def _groups_page(
    view: View,
    guard: Guard,
    *,
    q: str = "",
    cursor: str = "",
    done: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    scope = _tenant_scope(guard)
    stmt = GROUPS.base_query(guard, scope, Action.READ)
    if q.strip():
        stmt = stmt.where(Group.name.ilike(f"%{q.strip()}%"))
    rows, total, next_cursor = _page(view, stmt, Group.id, cursor)
    counts: dict[uuid.UUID, int] = {}
    for group_id, number in view.ctx.session.execute(
        select(GroupMember.group_id, func.count())
        .where(GroupMember.group_id.in_([g.id for g in rows]))
        .group_by(GroupMember.group_id)
    ):
        counts[group_id] = number
    return render(
        view,
        "people/groups.html",
        {
            "groups": rows,
            "counts": counts,
            "total": total,
            "page": {"next_cursor": next_cursor},
            "base_query": _query(q=q.strip()),
            "q": q.strip(),
            "tenants": _tenant_names(view, {g.tenant_id for g in rows}),
            "can_create": scope is not None and guard.principal.can("groups", Action.CREATE),
            "values": values or {},
            "errors": errors or {},
            "notice": done_notice(view, done, NOTICES),
        },
        status=status,
        title=view._("Groups"),
    )


@router.get("/console/groups")
def groups_page(
    view: UserViewDep,
    q: Annotated[str, Query(max_length=100)] = "",
    cursor: Cursor = "",
    done: Done = "",
) -> Response:
    return _groups_page(view, _reader(view, "groups"), q=q, cursor=cursor, done=done)


@router.post("/console/groups")
def create_group(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    guard = _reader(view, "groups")
    tenant = _tenant_scope(guard)
    if tenant is None:
        raise PermissionDenied("groups are created by their tenant's admin")
    guard.require("groups", Action.CREATE)
    values = {"name": form.text("name"), "description": form.text("description")}
    try:
        group = GROUPS.create(view.ctx, tenant, parse(ts.GroupCreate, values))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        status = 422 if isinstance(exc, ValidationError) else 409
        return _groups_page(view, guard, values=values, errors=_errors(view, exc), status=status)
    view.ctx.session.commit()
    return redirect(view, f"/console/groups/{group.id}?done=group-created")


def _group_page(
    view: View,
    guard: Guard,
    group: Group,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
    done: str = "",
) -> Response:
    session = view.ctx.session
    members = list(
        session.scalars(
            select(User)
            .join(GroupMember, GroupMember.user_id == User.id)
            .where(GroupMember.group_id == group.id)
            .order_by(User.display_name)
        )
    )
    member_ids = {m.id for m in members}
    others = [
        u
        for u in session.scalars(
            select(User)
            .where(User.tenant_id == group.tenant_id)
            .order_by(User.display_name)
            .limit(1000)
        )
        if u.id not in member_ids
    ]
    return render(
        view,
        "people/group.html",
        {
            "group": group,
            "members": members,
            "others_options": [(str(u.id), f"{u.display_name} <{u.email}>") for u in others],
            "tenant_name": _tenant_names(view, {group.tenant_id})[group.tenant_id],
            "can_update": guard.principal.can("groups", Action.UPDATE),
            "errors": errors or {},
            "notice": done_notice(view, done, NOTICES),
        },
        status=status,
        title=group.name,
    )


@router.get("/console/groups/{group_id}")
def group_page(view: UserViewDep, group_id: str, done: Done = "") -> Response:
    guard, group = _load_group(view, group_id, Action.READ)
    return _group_page(view, guard, group, done=done)


@router.post("/console/groups/{group_id}/members")
def change_members(view: UserViewDep, group_id: str, form: FormDep) -> Response:
    """Add one member (``add``) or take one out (``remove``): the group's members through
    ``PATCH .../groups/{id}`` (``member_ids``)."""
    check_csrf(view, form)
    guard, group = _load_group(view, group_id, Action.UPDATE)
    current = [str(m.user_id) for m in group.memberships]
    added, removed = form.text("add"), form.text("remove")
    wanted = [*current, added] if added else [m for m in current if m != removed]
    try:
        GROUPS.update(view.ctx, group, parse(ts.GroupUpdate, {"member_ids": wanted}))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        guard, group = _load_group(view, group_id, Action.READ)
        errors = {"add": "; ".join(_errors(view, exc).values())}
        return _group_page(view, guard, group, errors=errors, status=422)
    view.ctx.session.commit()
    return redirect(view, f"/console/groups/{group_id}?done=members")


# --- devices -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Presence:
    online: bool = False
    last_handshake: datetime | None = None
    endpoint: str | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0

    @property
    def month_bytes(self) -> int:
        return self.rx_bytes + self.tx_bytes


def month_start(now: datetime) -> datetime:
    """The first instant of this calendar month in Asia/Shanghai (the console's zone)."""
    local = now.astimezone(SHANGHAI)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def presence(guard: Guard, devices: list[Device]) -> dict[uuid.UUID, Presence]:
    """Per device: online (an open connection a gateway reported active within
    :data:`ONLINE_WITHIN`), its last handshake and endpoint (the gateways' usage reports) and
    the bytes of this month (:func:`tongdao.gateway.usage.tenant_usage`, as
    ``GET .../usage?group_by=device``)."""
    session = guard.ctx.session
    now = guard.ctx.runtime.clock()
    refs = [str(d.id) for d in devices]
    if not refs:
        return {}
    handshakes: dict[str, datetime | None] = {}
    for ref, at in session.execute(
        select(UsageRecord.peer_ref, func.max(UsageRecord.last_handshake))
        .where(UsageRecord.peer_kind == "device", UsageRecord.peer_ref.in_(refs))
        .group_by(UsageRecord.peer_ref)
    ):
        handshakes[ref] = at
    live: dict[str, tuple[datetime, str | None]] = {}
    for ref, active, endpoint in session.execute(
        select(
            OpenConnection.peer_ref, OpenConnection.last_active_at, OpenConnection.endpoint
        ).where(OpenConnection.peer_kind == "device", OpenConnection.peer_ref.in_(refs))
    ):
        active = _utc(active)
        if ref not in live or active > live[ref][0]:
            live[ref] = (active, endpoint)
    since = month_start(now).astimezone(UTC)
    used: dict[str, tuple[int, int]] = {}
    for tenant_id in {d.tenant_id for d in devices}:
        summary = tenant_usage(guard, tenant_id, since, now, "device")
        for row in summary.rows:
            used[row.key] = (row.rx_bytes, row.tx_bytes)
    out: dict[uuid.UUID, Presence] = {}
    for device in devices:
        ref = str(device.id)
        seen = live.get(ref)
        rx, tx = used.get(ref, (0, 0))
        out[device.id] = Presence(
            online=seen is not None
            and now - seen[0] <= ONLINE_WITHIN
            and device.state == DeviceState.ACTIVE,
            last_handshake=_utc(handshakes.get(ref)),
            endpoint=seen[1] if seen else None,
            rx_bytes=rx,
            tx_bytes=tx,
        )
    return out


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@router.get("/console/devices")
def devices_page(
    view: UserViewDep,
    q: Annotated[str, Query(max_length=100)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    user: Annotated[str, Query(max_length=40)] = "",
    tenant: Annotated[str, Query(max_length=40)] = "",
    cursor: Cursor = "",
    done: Done = "",
) -> Response:
    guard = _reader(view, "devices")
    scope = _tenant_scope(guard)
    filters = DeviceFilters(
        state=DeviceState(state) if state in set(DeviceState) else None,
        user_id=_uuid_or_none(user),
    )
    stmt = DEVICES.apply_filters(DEVICES.base_query(guard, scope, Action.READ), filters)
    tenant_id = _uuid_or_none(tenant) if scope is None else None
    if tenant_id is not None:
        stmt = stmt.where(Device.tenant_id == tenant_id)
    if q.strip():
        pattern = f"%{q.strip()}%"
        owners = select(User.id).where(
            or_(User.display_name.ilike(pattern), User.email.ilike(pattern))
        )
        stmt = stmt.where(or_(Device.name.ilike(pattern), Device.user_id.in_(owners)))
    rows, total, next_cursor = _page(view, stmt, Device.id, cursor)
    owners_by_id = {
        u.id: u
        for u in view.ctx.session.scalars(
            select(User).where(User.id.in_({d.user_id for d in rows}))
        )
    }
    values = {"q": q.strip(), "state": state, "user": str(filters.user_id or "")}
    if scope is None:
        values["tenant"] = str(tenant_id) if tenant_id else ""
    return render(
        view,
        "people/devices.html",
        {
            "devices": rows,
            "presence": presence(guard, rows),
            "owners": owners_by_id,
            "total": total,
            "page": {"next_cursor": next_cursor},
            "base_query": _query(**values),
            "values": values,
            "filtered": any(values.values()),
            "tenants": _tenant_names(view, {d.tenant_id for d in rows}),
            "tenant_options": tenant_options(view),
            "state_options": [(s.value, view.locale.state(s.value)) for s in DeviceState],
            "month": view.locale.day(month_start(view.ctx.runtime.clock()))[:7],
            "notice": done_notice(view, done, NOTICES),
        },
        title=view._("Devices"),
    )


def _device_page(
    view: View,
    guard: Guard,
    device: Device,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
    done: str = "",
) -> Response:
    session = view.ctx.session
    pop = session.get(Pop, device.pop_id) if device.pop_id else None
    return render(
        view,
        "people/device.html",
        {
            "device": device,
            "owner": session.get(User, device.user_id),
            "pop": pop,
            "presence": presence(guard, [device])[device.id],
            "lifetime_hold": lifetime_held(view.ctx, [device.id]).get(device.id),
            "tenant_name": _tenant_names(view, {device.tenant_id})[device.tenant_id],
            "can_revoke": guard.principal.can("devices", Action.UPDATE)
            and device.state != DeviceState.REVOKED,
            "errors": errors or {},
            "notice": done_notice(view, done, NOTICES),
        },
        status=status,
        title=device.name,
    )


@router.get("/console/devices/{device_id}")
def device_page(view: UserViewDep, device_id: str, done: Done = "") -> Response:
    guard, device = _load_device(view, device_id, Action.READ)
    return _device_page(view, guard, device, done=done)


@router.post("/console/devices/{device_id}/revoke")
def revoke_device(view: UserViewDep, device_id: str, form: FormDep) -> Response:
    """``PATCH .../devices/{id}`` with ``state: revoked``: the gateways drop its peer."""
    check_csrf(view, form)
    guard, device = _load_device(view, device_id, Action.UPDATE)
    try:
        DEVICES.update(view.ctx, device, DeviceUpdate(state=DeviceState.REVOKED))
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        guard, device = _load_device(view, device_id, Action.READ)
        return _device_page(view, guard, device, errors=_errors(view, exc, "state"), status=422)
    view.ctx.session.commit()
    return redirect(view, f"/console/devices/{device_id}?done=revoked")
