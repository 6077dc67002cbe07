"""SCIM 2.0 provisioning (RFC 7643/7644) for one tenant at a time.

The resources, filters and PATCH operations are scim2-models' (``User``, ``Group``,
``ScimFilter.match``, ``PatchOp.patch``); this module maps them onto Tongdao's users and groups
of the token's tenant:

* User: ``userName`` and ``externalId`` are kept beside the user (:class:`ScimUser`); the
  primary (else first) ``emails`` value, or ``userName`` when it is an e-mail address, is the
  user's e-mail; ``displayName`` (else ``name.formatted``, else given and family name) is the
  display name; ``active`` is the user's state. A user provisioned this way gets no
  invitation mail: they sign in through the company's identity provider (or an admin sends
  them one from the console).
* Group: ``displayName`` is the group's name, ``members`` its users.

A leaver (``active: false`` or DELETE) is disabled, their sessions and API tokens end and their
devices are revoked, so the gateways drop their peers (:func:`deprovision`). DELETE also hides
the user from SCIM (404 from then on); the user row and its audit trail stay.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lark.exceptions import LarkError
from pydantic import ValidationError as PydanticError
from scim2_models import (
    Context,
    Email,
    GroupMember,
    GroupMembership,
    Meta,
    Name,
    SCIMException,
    ScimFilter,
)
from scim2_models import Group as ScimGroupResource
from scim2_models import User as ScimUserResource
from sqlalchemy import select

from tongdao.audit.models import AuditEvent
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.auth.service import revoke_user_credentials
from tongdao.errors import AuthenticationError, Conflict, NotFound, ValidationError
from tongdao.runtime import Ctx
from tongdao.scim.models import ScimGroup, ScimToken, ScimUser
from tongdao.tenancy import schemas as ts
from tongdao.tenancy.models import Group, Tenant, TenantState, User, UserState
from tongdao.tenancy.models import GroupMember as Membership

TOKEN_PREFIX = "tdscim_"  # noqa: S105 (a prefix, not a secret)
TOKEN_NAME_MAX = 100
USER_NAME_MAX = 320
ACTOR_PREFIX = "scim:"
# The latest changes of a user looked at to tell who disabled them.
STATE_HISTORY = 100


class ScimError(Exception):
    """A SCIM error answer (RFC 7644 §3.12): its status, scimType and detail."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- tokens ------------------------------------------------------------------------------------
def create_token(ctx: Ctx, tenant: Tenant, name: str) -> tuple[ScimToken, str]:
    """A new bearer token for the tenant's identity provider; the secret is returned once and
    only its hash is kept."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "name the token (e.g. the identity provider's)"})
    if len(name) > TOKEN_NAME_MAX or any(ch in name for ch in "\r\n\t"):
        raise ValidationError({"name": f"one line of at most {TOKEN_NAME_MAX} characters"})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ScimToken(
        tenant_id=tenant.id,
        name=name,
        token_hash=hash_secret(secret),
        hint=secret[: len(TOKEN_PREFIX) + 4],
        created_by=ctx.user_id,
    )
    ctx.session.add(token)
    ctx.session.flush()
    return token, secret


def tokens(ctx: Ctx, tenant_id: uuid.UUID) -> list[ScimToken]:
    return list(
        ctx.session.scalars(
            select(ScimToken)
            .where(ScimToken.tenant_id == tenant_id)
            .order_by(ScimToken.created_at.desc(), ScimToken.id.desc())
        )
    )


def get_token(ctx: Ctx, tenant_id: uuid.UUID, token_id: uuid.UUID) -> ScimToken:
    token = ctx.session.get(ScimToken, token_id)
    if token is None or token.tenant_id != tenant_id:
        raise NotFound("SCIM token not found")
    return token


def revoke_token(ctx: Ctx, token: ScimToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = ctx.runtime.clock()


def authenticate(ctx: Ctx, secret: str) -> ScimToken:
    """The live token behind a bearer secret, or 401. Read on every request: a revoked token
    is refused from the commit of its revocation on."""
    if not secret.startswith(TOKEN_PREFIX):
        raise AuthenticationError("a SCIM token is required")
    token = ctx.session.scalar(select(ScimToken).where(ScimToken.token_hash == hash_secret(secret)))
    if token is None or token.revoked_at is not None:
        raise AuthenticationError("invalid or revoked SCIM token")
    state = ctx.session.scalar(select(Tenant.state).where(Tenant.id == token.tenant_id))
    if state in (None, TenantState.TERMINATED):
        raise AuthenticationError("the tenant is terminated")
    set_actor(ctx.session, Actor(None, f"{ACTOR_PREFIX}{token.name} ({token.id})", ctx.source_ip))
    return token


# --- leavers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deprovisioned:
    sessions: int
    devices: int


def deprovision(ctx: Ctx, user: User, *, how: str) -> Deprovisioned:
    """Disable a leaver: state disabled, every session and API token revoked, every device
    revoked through the device service (the gateways drop the peers); audited."""
    from tongdao.network.models import Device, DeviceState
    from tongdao.network.schemas import DeviceUpdate
    from tongdao.network.service import DeviceResource

    user.state = UserState.DISABLED
    sessions = revoke_user_credentials(ctx, user.id)
    devices = 0
    resource = DeviceResource()
    for device in ctx.session.scalars(
        select(Device)
        .where(Device.user_id == user.id, Device.state != DeviceState.REVOKED)
        .order_by(Device.id)
    ):
        resource.update(ctx, device, DeviceUpdate(state=DeviceState.REVOKED))
        devices += 1
    record(
        ctx.session,
        "scim_deprovisioned",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"by": how, "sessions_revoked": sessions, "devices_revoked": devices},
    )
    return Deprovisioned(sessions, devices)


# --- users -------------------------------------------------------------------------------------
def _email_of(resource: ScimUserResource[Any]) -> str:
    emails = resource.emails or []
    chosen = next((e for e in emails if e.primary), emails[0] if emails else None)
    value = chosen.value if chosen is not None and chosen.value else resource.user_name
    try:
        checked = ts.UserCreate.model_validate({"email": value, "display_name": "x"})
    except PydanticError as exc:
        raise ScimError(
            400, "emails: a user needs a valid e-mail address (emails or userName)", "invalidValue"
        ) from exc
    return str(checked.email)


def _display_name_of(resource: ScimUserResource[Any]) -> str:
    name = resource.name
    candidates = [
        resource.display_name,
        name.formatted if name else None,
        " ".join(p for p in ((name.given_name, name.family_name) if name else ()) if p),
        resource.user_name,
    ]
    text = next((c.strip() for c in candidates if c and c.strip()), "")
    try:
        ts.UserUpdate.model_validate({"display_name": text})
    except PydanticError as exc:
        raise ScimError(
            400, "displayName: one line of at most 200 characters", "invalidValue"
        ) from exc
    return text


def _attributes_of(resource: ScimUserResource[Any]) -> dict[str, Any]:
    dumped = resource.model_dump(scim_ctx=Context.DEFAULT)
    return {
        k: dumped[k]
        for k in ("name", "emails", "displayName", "active")
        if dumped.get(k) is not None
    }


def _link(ctx: Ctx, user_id: uuid.UUID) -> ScimUser | None:
    return ctx.session.scalar(select(ScimUser).where(ScimUser.user_id == user_id))


def _visible_users(ctx: Ctx, tenant_id: uuid.UUID) -> list[tuple[User, ScimUser | None]]:
    rows = ctx.session.execute(
        select(User, ScimUser)
        .outerjoin(ScimUser, ScimUser.user_id == User.id)
        .where(User.tenant_id == tenant_id, User.erased_at.is_(None))
        .order_by(User.created_at, User.id)
    )
    return [(u, link) for u, link in rows if link is None or link.attributes.get("deleted") is None]


def _groups_of(ctx: Ctx, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Group]]:
    out: dict[uuid.UUID, list[Group]] = {}
    ids = list(user_ids)
    if ids:
        for user_id, group in ctx.session.execute(
            select(Membership.user_id, Group)
            .join(Group, Group.id == Membership.group_id)
            .where(Membership.user_id.in_(ids))
            .order_by(Group.name)
        ):
            out.setdefault(user_id, []).append(group)
    return out


def user_resource(
    user: User, link: ScimUser | None, groups: Sequence[Group], base: str
) -> ScimUserResource[Any]:
    attributes = link.attributes if link is not None else {}
    emails = [Email.model_validate(e) for e in attributes.get("emails") or []]
    if not any((e.value or "").lower() == user.email for e in emails):
        emails = [Email(value=user.email, primary=True, type="work")]
    name = Name.model_validate(attributes["name"]) if attributes.get("name") else None
    return ScimUserResource(
        id=str(user.id),
        external_id=link.external_id if link else None,
        user_name=link.user_name if link else user.email,
        # What the provider removed stays removed in its view (Tongdao keeps a display name).
        display_name=user.display_name if link is None or "displayName" in attributes else None,
        name=name,
        emails=emails,
        active=user.state == UserState.ACTIVE if link is None or "active" in attributes else None,
        groups=[
            GroupMembership(value=str(g.id), display=g.name, ref=f"{base}/Groups/{g.id}")
            for g in groups
        ]
        or None,
        meta=Meta(
            resource_type="User",
            created=user.created_at,
            last_modified=user.updated_at,
            location=f"{base}/Users/{user.id}",
        ),
    )


# The lookups identity providers make for every user of a sync: one attribute equal to one
# value (RFC 7644 §3.4.2.2), with the attribute's name in any case.
_LOOKUP = re.compile(r'\s*(userName|externalId|id)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', re.IGNORECASE)
MAX_FILTER_LENGTH = 2000
MAX_FILTER_OPERATORS = 20  # and / or / not in one filter


def _checked_filter(scim_filter: str | None) -> str | None:
    """A filter within the bounds (matching is in Python, over every resource of the tenant);
    400 ``invalidFilter`` beyond them."""
    if not scim_filter:
        return None
    if len(scim_filter) > MAX_FILTER_LENGTH:
        raise ScimError(400, f"filter: at most {MAX_FILTER_LENGTH} characters", "invalidFilter")
    outside_quotes = re.sub(r'"(?:[^"\\]|\\.)*"', '""', scim_filter)
    operators = len(re.findall(r"\b(?:and|or|not)\b", outside_quotes, re.IGNORECASE))
    if operators > MAX_FILTER_OPERATORS:
        raise ScimError(
            400, f"filter: at most {MAX_FILTER_OPERATORS} and/or/not operators", "invalidFilter"
        )
    return scim_filter


def _candidates(
    rows: list[tuple[User, ScimUser | None]], scim_filter: str | None
) -> list[tuple[User, ScimUser | None]]:
    """For a filter that is one ``userName`` / ``externalId`` / ``id`` ``eq`` lookup, the users
    that can match (compared without case: a superset; the filter is still matched on each),
    so a sync's lookups do not build every user of the tenant. Other filters: every user."""
    found = _LOOKUP.fullmatch(scim_filter or "")
    if found is None:
        return rows
    attribute, quoted = found.group(1).lower(), found.group(2)
    try:
        value = json.loads(f'"{quoted}"').lower()
    except ValueError:
        return rows
    if attribute == "id":
        return [(u, link) for u, link in rows if str(u.id) == value]
    if attribute == "externalid":
        return [
            (u, link) for u, link in rows if (link and (link.external_id or "").lower()) == value
        ]
    return [
        (u, link)
        for u, link in rows
        if (link.user_name if link is not None else u.email).lower() == value
    ]


def list_users(
    ctx: Ctx, tenant_id: uuid.UUID, base: str, scim_filter: str | None
) -> list[ScimUserResource[Any]]:
    scim_filter = _checked_filter(scim_filter)
    rows = _candidates(_visible_users(ctx, tenant_id), scim_filter)
    groups = _groups_of(ctx, (u.id for u, _ in rows))
    out = [user_resource(u, link, groups.get(u.id, []), base) for u, link in rows]
    return _filtered(ScimUserResource, out, scim_filter)


def _filtered(model: Any, items: list[Any], scim_filter: str | None) -> list[Any]:
    if not scim_filter:
        return items
    try:
        parsed = ScimFilter[model](scim_filter)
        return [item for item in items if parsed.match(item)]
    except SCIMException as exc:
        raise ScimError(400, f"filter: {exc.detail or exc}", "invalidFilter") from exc
    except (ValueError, PydanticError, LarkError) as exc:
        # The parser's message names the position; its list of expected tokens is noise.
        first = str(exc).strip().splitlines()[0][:200]
        raise ScimError(400, f"filter: {first}", "invalidFilter") from exc


def get_user(ctx: Ctx, tenant_id: uuid.UUID, user_id: str) -> tuple[User, ScimUser | None]:
    try:
        uid = uuid.UUID(user_id)
    except ValueError as exc:
        raise ScimError(404, "user not found") from exc
    user = ctx.session.get(User, uid)
    if user is None or user.tenant_id != tenant_id or user.erased_at is not None:
        raise ScimError(404, "user not found")
    link = _link(ctx, user.id)
    if link is not None and link.attributes.get("deleted") is not None:
        raise ScimError(404, "user not found")
    return user, link


def read_user(ctx: Ctx, tenant_id: uuid.UUID, user_id: str, base: str) -> ScimUserResource[Any]:
    user, link = get_user(ctx, tenant_id, user_id)
    return user_resource(user, link, _groups_of(ctx, [user.id]).get(user.id, []), base)


def _user_name_free(
    ctx: Ctx, tenant_id: uuid.UUID, user_name: str, own: uuid.UUID | None = None
) -> None:
    taken = ctx.session.scalar(
        select(ScimUser.user_id).where(
            ScimUser.tenant_id == tenant_id, ScimUser.user_name == user_name
        )
    )
    if taken is not None and taken != own:
        raise ScimError(409, "userName: another user has it", "uniqueness")


def _domain_ours(ctx: Ctx, tenant_id: uuid.UUID, email: str) -> None:
    """An e-mail domain approved for another tenant is not this tenant's to hand out (its
    people could no longer sign in with their own tenant's identity provider)."""
    from tongdao.sso.models import ClaimState, SsoDomainClaim

    domain = email.rpartition("@")[2].lower()
    other = ctx.session.scalar(
        select(SsoDomainClaim.id).where(
            SsoDomainClaim.domain == domain,
            SsoDomainClaim.state == ClaimState.APPROVED,
            SsoDomainClaim.tenant_id != tenant_id,
        )
    )
    if other is not None:
        raise ScimError(
            400, f"emails: the domain {domain} is approved for another tenant", "invalidValue"
        )


def _email_free(ctx: Ctx, email: str, own: uuid.UUID | None = None) -> None:
    taken = ctx.session.scalar(select(User.id).where(User.email == email))
    if taken is not None and taken != own:
        raise ScimError(409, "emails: another user has this e-mail address", "uniqueness")


def _user_name_of(resource: ScimUserResource[Any]) -> str:
    if not resource.user_name or not resource.user_name.strip():
        raise ScimError(400, "userName is required", "invalidValue")
    user_name = str(resource.user_name).strip()
    if len(user_name) > USER_NAME_MAX:
        raise ScimError(400, f"userName: at most {USER_NAME_MAX} characters", "invalidValue")
    return user_name


def _refuse_nul(resource: Any) -> None:
    """The databases keep no NUL character (PostgreSQL refuses it in text and JSON)."""
    if "\\u0000" in json.dumps(resource.model_dump(scim_ctx=Context.DEFAULT)):
        raise ScimError(400, "a value holds a NUL character", "invalidValue")


def _privileged(user: User) -> bool:
    """A user with more than the employee role (a tenant admin)."""
    return any(role != "employee" for role in user.roles)


def _disabled_by_scim(ctx: Ctx, user: User) -> bool:
    """Whether the latest change of the user's state was SCIM's (the audit trail says who):
    a user the tenant admin, the operator or compliance disabled stays disabled for SCIM."""
    for actor_id, actor, after in ctx.session.execute(
        select(AuditEvent.actor_id, AuditEvent.actor, AuditEvent.after)
        .where(
            AuditEvent.object_type == "user",
            AuditEvent.object_id == str(user.id),
            AuditEvent.kind == "change",
        )
        .order_by(AuditEvent.id.desc())
        .limit(STATE_HISTORY)
    ):
        if after and "state" in after:
            return actor_id is None and (actor or "").startswith(ACTOR_PREFIX)
    return False


def create_user(
    ctx: Ctx, tenant: Tenant, resource: ScimUserResource[Any], base: str
) -> ScimUserResource[Any]:
    _refuse_nul(resource)
    user_name = _user_name_of(resource)
    email = _email_of(resource)
    display_name = _display_name_of(resource)
    _user_name_free(ctx, tenant.id, user_name)
    _email_free(ctx, email)
    _domain_ours(ctx, tenant.id, email)
    user = User(
        tenant_id=tenant.id,
        email=email,
        display_name=display_name,
        roles=["employee"],
        state=UserState.DISABLED if resource.active is False else UserState.ACTIVE,
    )
    ctx.session.add(user)
    ctx.session.flush()
    link = ScimUser(
        user_id=user.id,
        tenant_id=tenant.id,
        user_name=user_name,
        external_id=_external_id(resource.external_id),
        attributes=_attributes_of(resource),
    )
    ctx.session.add(link)
    ctx.session.flush()
    return user_resource(user, link, [], base)


def _external_id(value: str | None) -> str | None:
    if value is not None and len(value) > 200:
        raise ScimError(400, "externalId: at most 200 characters", "invalidValue")
    return value


def replace_user(
    ctx: Ctx, tenant: Tenant, user_id: str, resource: ScimUserResource[Any], base: str, *, how: str
) -> ScimUserResource[Any]:
    """PUT, and the end of a PATCH (the patched resource is stored the same way)."""
    user, link = get_user(ctx, tenant.id, user_id)
    _refuse_nul(resource)
    user_name = _user_name_of(resource)
    email = _email_of(resource)
    display_name = _display_name_of(resource)
    _user_name_free(ctx, tenant.id, user_name, own=user.id)
    _email_free(ctx, email, own=user.id)
    if email != user.email and _privileged(user):
        # Else the token's holder could take the admin's account over by a password reset.
        raise ScimError(
            403, "emails: a tenant admin's e-mail address is changed in Tongdao, not by SCIM"
        )
    if email != user.email:
        _domain_ours(ctx, tenant.id, email)
    reviving = resource.active is True and user.state != UserState.ACTIVE
    if reviving and not _disabled_by_scim(ctx, user):
        raise ScimError(
            403, "active: this user was disabled in Tongdao; only Tongdao can enable them"
        )
    if user.email != email:
        user.email = email
    if user.display_name != display_name:
        user.display_name = display_name
    if link is None:
        link = ScimUser(user_id=user.id, tenant_id=tenant.id, user_name=user_name, attributes={})
        ctx.session.add(link)
    link.user_name = user_name
    link.external_id = _external_id(resource.external_id)
    link.attributes = _attributes_of(resource)
    if resource.active is False and user.state == UserState.ACTIVE:
        deprovision(ctx, user, how=how)
    elif resource.active is True and user.state != UserState.ACTIVE:
        user.state = UserState.ACTIVE
    ctx.session.flush()
    return user_resource(user, link, _groups_of(ctx, [user.id]).get(user.id, []), base)


def delete_user(ctx: Ctx, tenant: Tenant, user_id: str) -> None:
    """A leaver: disabled and deprovisioned; SCIM no longer shows them."""
    user, link = get_user(ctx, tenant.id, user_id)
    deprovision(ctx, user, how="scim_delete")
    if link is None:
        link = ScimUser(user_id=user.id, tenant_id=tenant.id, user_name=user.email, attributes={})
        ctx.session.add(link)
    # The userName is free again for a new person; the row remembers the deletion.
    link.user_name = f"deleted:{user.id}"
    link.attributes = {**link.attributes, "deleted": ctx.runtime.clock().isoformat()}
    ctx.session.flush()


# --- groups ------------------------------------------------------------------------------------
def group_resource(
    group: Group, link: ScimGroup | None, members: Sequence[User], base: str
) -> ScimGroupResource:
    return ScimGroupResource(
        id=str(group.id),
        external_id=link.external_id if link else None,
        display_name=group.name,
        members=[
            GroupMember(value=str(u.id), type="User", ref=f"{base}/Users/{u.id}") for u in members
        ]
        or None,
        meta=Meta(
            resource_type="Group",
            created=group.created_at,
            last_modified=group.updated_at,
            location=f"{base}/Groups/{group.id}",
        ),
    )


def _members_of(ctx: Ctx, group_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[User]]:
    out: dict[uuid.UUID, list[User]] = {}
    ids = list(group_ids)
    if ids:
        for group_id, user in ctx.session.execute(
            select(Membership.group_id, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.group_id.in_(ids))
            .order_by(User.created_at, User.id)
        ):
            out.setdefault(group_id, []).append(user)
    return out


def list_groups(
    ctx: Ctx, tenant_id: uuid.UUID, base: str, scim_filter: str | None
) -> list[ScimGroupResource]:
    scim_filter = _checked_filter(scim_filter)
    rows = list(
        ctx.session.execute(
            select(Group, ScimGroup)
            .outerjoin(ScimGroup, ScimGroup.group_id == Group.id)
            .where(Group.tenant_id == tenant_id)
            .order_by(Group.created_at, Group.id)
        )
    )
    members = _members_of(ctx, (g.id for g, _ in rows))
    out = [group_resource(g, link, members.get(g.id, []), base) for g, link in rows]
    return _filtered(ScimGroupResource, out, scim_filter)


def get_group(ctx: Ctx, tenant_id: uuid.UUID, group_id: str) -> tuple[Group, ScimGroup | None]:
    try:
        gid = uuid.UUID(group_id)
    except ValueError as exc:
        raise ScimError(404, "group not found") from exc
    group = ctx.session.get(Group, gid)
    if group is None or group.tenant_id != tenant_id:
        raise ScimError(404, "group not found")
    link = ctx.session.scalar(select(ScimGroup).where(ScimGroup.group_id == group.id))
    return group, link


def read_group(ctx: Ctx, tenant_id: uuid.UUID, group_id: str, base: str) -> ScimGroupResource:
    group, link = get_group(ctx, tenant_id, group_id)
    return group_resource(group, link, _members_of(ctx, [group.id]).get(group.id, []), base)


def _group_name(resource: ScimGroupResource) -> str:
    name = (resource.display_name or "").strip()
    if not name:
        raise ScimError(400, "displayName is required", "invalidValue")
    try:
        ts.GroupCreate.model_validate({"name": name})
    except PydanticError as exc:
        raise ScimError(
            400, "displayName: one line of at most 100 characters", "invalidValue"
        ) from exc
    return name


def _member_ids(ctx: Ctx, tenant_id: uuid.UUID, resource: ScimGroupResource) -> list[uuid.UUID]:
    wanted: list[uuid.UUID] = []
    for member in resource.members or []:
        if member.type not in (None, "User"):
            raise ScimError(400, "members: only users can be members", "invalidValue")
        try:
            uid = uuid.UUID(member.value or "")
        except ValueError as exc:
            raise ScimError(400, f"members: no such user {member.value!r}", "invalidValue") from exc
        wanted.append(uid)
    found = set(
        ctx.session.scalars(
            select(User.id).where(User.tenant_id == tenant_id, User.id.in_(set(wanted)))
        )
    )
    missing = [str(u) for u in wanted if u not in found]
    if missing:
        raise ScimError(400, f"members: no such user {missing[0]}", "invalidValue")
    return list(dict.fromkeys(wanted))


def _set_members(ctx: Ctx, group: Group, member_ids: Sequence[uuid.UUID]) -> None:
    current = {
        m.user_id: m
        for m in ctx.session.scalars(select(Membership).where(Membership.group_id == group.id))
    }
    for user_id, membership in current.items():
        if user_id not in member_ids:
            ctx.session.delete(membership)
    for user_id in member_ids:
        if user_id not in current:
            ctx.session.add(
                Membership(group_id=group.id, user_id=user_id, tenant_id=group.tenant_id)
            )


def _group_name_free(ctx: Ctx, tenant_id: uuid.UUID, name: str, own: uuid.UUID | None) -> None:
    taken = ctx.session.scalar(
        select(Group.id).where(Group.tenant_id == tenant_id, Group.name == name)
    )
    if taken is not None and taken != own:
        raise ScimError(409, "displayName: another group has this name", "uniqueness")


def create_group(
    ctx: Ctx, tenant: Tenant, resource: ScimGroupResource, base: str
) -> ScimGroupResource:
    _refuse_nul(resource)
    name = _group_name(resource)
    _group_name_free(ctx, tenant.id, name, None)
    member_ids = _member_ids(ctx, tenant.id, resource)
    group = Group(tenant_id=tenant.id, name=name, description="")
    ctx.session.add(group)
    ctx.session.flush()
    link = ScimGroup(
        group_id=group.id, tenant_id=tenant.id, external_id=_external_id(resource.external_id)
    )
    ctx.session.add(link)
    _set_members(ctx, group, member_ids)
    ctx.session.flush()
    return read_group(ctx, tenant.id, str(group.id), base)


def replace_group(
    ctx: Ctx, tenant: Tenant, group_id: str, resource: ScimGroupResource, base: str
) -> ScimGroupResource:
    group, link = get_group(ctx, tenant.id, group_id)
    _refuse_nul(resource)
    name = _group_name(resource)
    _group_name_free(ctx, tenant.id, name, group.id)
    member_ids = _member_ids(ctx, tenant.id, resource)
    if group.name != name:
        group.name = name
    if link is None:
        link = ScimGroup(group_id=group.id, tenant_id=tenant.id)
        ctx.session.add(link)
    link.external_id = _external_id(resource.external_id)
    _set_members(ctx, group, member_ids)
    ctx.session.flush()
    return read_group(ctx, tenant.id, str(group.id), base)


def delete_group(ctx: Ctx, tenant: Tenant, group_id: str) -> None:
    from tongdao.tenancy.service import GroupResource

    group, _link = get_group(ctx, tenant.id, group_id)
    try:
        GroupResource().delete(ctx, group)
        ctx.session.flush()
    except Conflict as exc:
        raise ScimError(409, exc.message, "mutability") from exc
