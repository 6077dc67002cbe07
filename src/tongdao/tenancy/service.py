"""Tenants, users and groups: the domain rules behind their endpoints."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, String, delete, exists, func, or_, select

from tongdao import validation
from tongdao.api.crud import Resource, ensure_unique
from tongdao.audit.recorder import record
from tongdao.auth import reset
from tongdao.auth.models import ApiToken
from tongdao.auth.permissions import DUTY_CONFLICT, Role, holds_conflicting_duties
from tongdao.compliance import kyc
from tongdao.compliance.identity import id_number_problem
from tongdao.compliance.licensing import china_today
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.compliance.uscc import check_uscc
from tongdao.crypto import DecryptionError, FieldCipher, mask
from tongdao.errors import Conflict, PermissionDenied, ValidationError
from tongdao.ipam import service as ipam
from tongdao.ipam.models import IpamLock
from tongdao.runtime import Ctx
from tongdao.tenancy import schemas as s
from tongdao.tenancy.models import Group, GroupMember, Tenant, TenantState, User
from tongdao.words import field_list

ID_NUMBER_PURPOSE = "user.id_number"

# Tenant lifecycle: which states each state may move to.
TENANT_TRANSITIONS: dict[TenantState, frozenset[TenantState]] = {
    TenantState.APPLIED: frozenset({TenantState.UNDER_REVIEW, TenantState.REJECTED}),
    TenantState.UNDER_REVIEW: frozenset({TenantState.APPROVED, TenantState.REJECTED}),
    TenantState.APPROVED: frozenset({TenantState.ACTIVE}),
    TenantState.REJECTED: frozenset({TenantState.UNDER_REVIEW}),
    TenantState.ACTIVE: frozenset({TenantState.SUSPENDED}),
    TenantState.SUSPENDED: frozenset({TenantState.ACTIVE}),
    TenantState.TERMINATED: frozenset(),
}
# Moves that are customer vetting: the compliance officer's alone (separation of duties).
VETTING_STATES = frozenset({TenantState.UNDER_REVIEW, TenantState.APPROVED, TenantState.REJECTED})
# Approving or activating a tenant runs the vetting and licence checks (tongdao.compliance.kyc).
VETTED_STATES = frozenset({TenantState.APPROVED, TenantState.ACTIVE})
# Only a tenant that never got past review can be deleted; the others keep their records.
DELETABLE_STATES = frozenset({TenantState.APPLIED, TenantState.UNDER_REVIEW, TenantState.REJECTED})
KYC_FIELDS = frozenset({"foreign_invested", "foreign_invested_evidence"})
# Fields a tenant admin may change on their own tenant.
TENANT_SELF_SERVICE = frozenset(
    {
        "contact_name",
        "contact_email",
        "contact_phone",
        "dns_servers",
        "invoice_buyer_name",
        "invoice_tax_id",
        "invoice_address_phone",
        "invoice_bank",
        "invoice_account",
    }
)


def _record_uscc_verification(ctx: Ctx, tenant: Tenant, verified: bool) -> None:
    """Record (or withdraw) the manual verification of a USCC whose check character fails."""
    if not verified:
        tenant.uscc_verified_at = tenant.uscc_verified_by = None
        return
    if tenant.uscc_checksum_ok:
        raise ValidationError(
            {"uscc_verified": "the check character matches; there is nothing to verify by hand"}
        )
    tenant.uscc_verified_at = ctx.runtime.clock()
    tenant.uscc_verified_by = ctx.user_id


def mask_mobile(mobile: str | None) -> str | None:
    if not mobile:
        return None
    if len(mobile) <= 7:
        return mask(mobile, 2)
    return mobile[:3] + "*" * (len(mobile) - 7) + mobile[-4:]


def _changes(data: BaseModel) -> dict[str, Any]:
    return data.model_dump(exclude_unset=True)


# --- tenants -------------------------------------------------------------------------------
class TenantResource(Resource[Tenant]):
    name = "tenants"
    label = "tenant"
    model = Tenant
    public = s.TenantPublic
    create_schema = s.TenantCreate
    update_schema = s.TenantUpdate
    filters = s.TenantFilters
    tenant_scoped = False

    def tenant_column(self) -> Any:
        return Tenant.id

    def apply_filters(self, stmt: Select[Any], filters: BaseModel) -> Select[Any]:
        assert isinstance(filters, s.TenantFilters)
        if filters.state is not None:
            stmt = stmt.where(Tenant.state == filters.state)
        if filters.uscc:
            stmt = stmt.where(Tenant.uscc == filters.uscc.strip().upper())
        if filters.needs_manual_verification is not None:
            flagged = (Tenant.uscc_checksum_ok.is_(False)) & Tenant.uscc_verified_at.is_(None)
            stmt = stmt.where(flagged if filters.needs_manual_verification else ~flagged)
        if filters.q:
            pattern = f"%{filters.q.strip()}%"
            stmt = stmt.where(or_(Tenant.name_en.ilike(pattern), Tenant.name_zh.like(pattern)))
        return stmt

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Tenant:
        assert isinstance(data, s.TenantCreate)
        check = check_uscc(data.uscc)
        ensure_unique(ctx, Tenant.uscc, check.code, what="a tenant")
        pools = ipam.allocate_tenant_pools(ctx.session, data.ipv4_pool_prefixlen)
        values = data.model_dump(
            exclude={"ipv4_pool_prefixlen", "uscc", "dns_servers", "foreign_invested"}
        )
        obj = Tenant(
            **{k: ("" if v is None else v) for k, v in values.items()},
            foreign_invested=bool(data.foreign_invested),
            uscc=check.code,
            uscc_checksum_ok=check.checksum_ok,
            division_code=check.division_code,
            dns_servers=[str(a) for a in data.dns_servers],
            ipv4_pool=str(pools.ipv4),
            ipv6_pool=str(pools.ipv6),
        )
        if not obj.invoice_tax_id:
            obj.invoice_tax_id = check.code
        if not obj.invoice_buyer_name:
            obj.invoice_buyer_name = data.name_zh or data.name_en
        ctx.session.add(obj)
        ctx.session.flush()
        ctx.session.add(IpamLock(name=ipam.tenant_lock_name(obj.id)))
        return obj

    def update(self, ctx: Ctx, obj: Tenant, data: Any) -> Tenant:
        changes = _changes(data)
        principal = ctx.require_principal()
        if not principal.is_operator:
            refused = sorted(set(changes) - TENANT_SELF_SERVICE)
            if refused:
                raise PermissionDenied(
                    "only the operator changes these fields; they are for: operator_admin, "
                    "compliance_officer",
                    dict.fromkeys(refused, "changed by the operator only"),
                )
        new: TenantState | None = None
        if changes.get("state") is not None and changes["state"] != obj.state:
            new = TenantState(changes["state"])
            current = TenantState(obj.state)
            if new is not TenantState.TERMINATED and new not in TENANT_TRANSITIONS[current]:
                allowed = ", ".join(sorted(TENANT_TRANSITIONS[current])) or "nothing"
                raise ValidationError(
                    {"state": f"a {current.value} tenant can move to {allowed}, not {new.value}"}
                )
            if current is TenantState.TERMINATED:
                raise ValidationError({"state": "a terminated tenant stays terminated"})
            if new is TenantState.ACTIVE and current is TenantState.SUSPENDED:
                from tongdao.billing.dunning import held_for_nonpayment

                if held_for_nonpayment(ctx.session, obj.id):
                    raise Conflict(
                        "the tenant is suspended for non-payment; the billing clerk lifts that "
                        "suspension (POST /tenants/{id}/billing/suspension/lift)",
                        {"state": "suspended for non-payment: lifted by the billing clerk"},
                    )
        vetting = [key for key in ("uscc_verified",) if changes.get(key) is not None]
        if new in VETTING_STATES:
            vetting.append("state")
        if vetting and Role.COMPLIANCE_OFFICER not in principal.roles:
            # Separation of duties: the operator admin runs the service, the compliance
            # officer vets the customer.
            raise PermissionDenied(
                "customer vetting (review, approval, rejection, manual USCC verification) is "
                f"the compliance officer's decision; it is for: {Role.COMPLIANCE_OFFICER.value}",
                dict.fromkeys(vetting, "decided by the compliance officer"),
            )
        if vetting and holds_conflicting_duties(principal.roles):
            raise PermissionDenied(
                DUTY_CONFLICT,
                dict.fromkeys(
                    vetting, "separate duties: operator_admin and compliance_officer on one account"
                ),
            )
        verified = changes.pop("uscc_verified", None)
        reason = changes.pop("state_reason", None)
        kyc_touched = verified is not None or any(k in changes for k in KYC_FIELDS)
        if changes.get("foreign_invested", False) is None:
            del changes["foreign_invested"]
        if "dns_servers" in changes and changes["dns_servers"] is not None:
            changes["dns_servers"] = [str(a) for a in changes["dns_servers"]]
        for key, value in changes.items():
            if value is None and key != "state":
                value = [] if key == "dns_servers" else ""
            if value is not None:
                setattr(obj, key, value)
        if verified is not None:
            _record_uscc_verification(ctx, obj, verified)
        if new is not None:
            if new is TenantState.REJECTED and not reason:
                raise ValidationError({"state_reason": "give the reason for the rejection"})
            obj.state_reason = reason or ""
            if new in VETTED_STATES:
                kyc.require_vetted(ctx, obj)
            if new is TenantState.TERMINATED:
                from tongdao.crossborder.service import end_for_tenant

                end_for_tenant(ctx, obj)
        else:
            if reason is not None:
                obj.state_reason = reason
            if kyc_touched and TenantState(obj.state) in VETTED_STATES:
                # The vetting of an approved or active tenant must stay true.
                found = kyc.kyc_refusal(obj)
                if found is not None:
                    refusal, key = found
                    raise ComplianceRefusal(refusal.rule_id, refusal.detail, {key: refusal.detail})
        return obj

    def delete(self, ctx: Ctx, obj: Tenant) -> None:
        from tongdao.access.models import Policy
        from tongdao.crossborder.models import CrossBorderApplication
        from tongdao.network.models import Device, PrefixAllowance, Site

        if TenantState(obj.state) not in DELETABLE_STATES:
            raise ComplianceRefusal(
                "logs.retention",
                f"a tenant that was {obj.state} keeps its records: terminate it instead of "
                "deleting it",
                {"state": "terminate the tenant; its records are kept"},
            )
        for model, what in (
            (User, "users"),
            (Device, "devices"),
            (Site, "sites"),
            (PrefixAllowance, "prefix allowances"),
            (Group, "groups"),
            (Policy, "policies"),
            (CrossBorderApplication, "cross-border applications"),
        ):
            if ctx.session.scalar(select(exists().where(model.tenant_id == obj.id))):
                raise Conflict(
                    f"the tenant still has {what}; delete them first, or terminate the tenant "
                    "to keep its records"
                )
        ctx.session.execute(delete(IpamLock).where(IpamLock.name == ipam.tenant_lock_name(obj.id)))
        ctx.session.delete(obj)


# --- users ---------------------------------------------------------------------------------
def _apply_identity(ctx: Ctx, user: User, changes: dict[str, Any]) -> None:
    touched = {"legal_name", "id_type", "id_number", "mobile"} & set(changes)
    if not touched:
        return
    before = (user.legal_name, user.mobile, user.id_type, user.id_number_sealed)
    old_number = _open_id_number(ctx, user) if "id_number" in changes else None
    if "legal_name" in changes:
        user.legal_name = changes["legal_name"]
    if "mobile" in changes:
        user.mobile = changes["mobile"]
    number_changed = False
    if "id_number" in changes:
        id_type, number = changes.get("id_type"), changes["id_number"]
        if number is None:
            user.id_type = user.id_number_sealed = user.id_number_last4 = None
            user.id_number_length = None
            number_changed = old_number is not None
        else:
            number = number.strip().upper()
            problem = id_number_problem(str(id_type), number, china_today(ctx.runtime.clock()))
            if problem:
                raise ValidationError({"id_number": problem})
            number_changed = (number, str(id_type)) != (old_number, before[2])
            if number_changed:
                user.id_type = str(id_type)
                user.id_number_sealed = ctx.runtime.cipher.seal(number, ID_NUMBER_PURPOSE)
                user.id_number_last4 = number[-4:]
                user.id_number_length = len(number)
    if number_changed or (user.legal_name, user.mobile) != before[:2]:
        # A changed identity has to be verified again; until then the user's devices wait.
        _unverify(ctx, user)


def _open_id_number(ctx: Ctx, user: User) -> str | None:
    if user.id_number_sealed is None:
        return None
    try:
        return ctx.runtime.cipher.open(user.id_number_sealed, ID_NUMBER_PURPOSE)
    except DecryptionError as exc:
        key_id = FieldCipher.key_id_of(user.id_number_sealed)
        raise Conflict(
            f"the stored ID number cannot be opened with the configured data keys (it is "
            f"sealed under key {key_id!r}); the operator must configure that key"
        ) from exc


def identity_missing(user: User) -> dict[str, str]:
    """The fields rule identity.real_name requires that the user lacks, keyed by field."""
    present = {
        "legal_name": user.legal_name,
        "id_type": user.id_type,
        "id_number": user.id_number_sealed,
        "mobile": user.mobile,
    }
    return {
        name: "record it before the identity is verified"
        for name in rule("identity.real_name").param("required_fields")
        if not present.get(name)
    }


def _move_devices(ctx: Ctx, user: User, source: str, target: str) -> int:
    """The user's devices in state ``source`` go to ``target`` (through the ORM, so each
    change is audited and reaches the gateways); how many moved."""
    from tongdao.network.models import Device

    moved = 0
    for device in ctx.session.scalars(
        select(Device).where(Device.user_id == user.id, Device.state == source)
    ):
        device.state = target
        moved += 1
    return moved


def hold_devices(ctx: Ctx, user: User) -> int:
    """Active devices of a user whose identity is no longer verified wait as pending."""
    from tongdao.network.models import DeviceState

    return _move_devices(ctx, user, DeviceState.ACTIVE, DeviceState.PENDING)


def release_devices(ctx: Ctx, user: User) -> int:
    """Pending devices of a user whose identity is now verified become active."""
    from tongdao.network.models import DeviceState

    return _move_devices(ctx, user, DeviceState.PENDING, DeviceState.ACTIVE)


def _unverify(ctx: Ctx, user: User) -> int:
    """The user's identity is no longer verified: their active devices wait as pending
    again; how many. The caller records why (or the user's audited update shows it)."""
    held = hold_devices(ctx, user) if user.identity_verified_at is not None else 0
    user.identity_verified_at = None
    user.identity_verified_by = None
    return held


def refuse_if_erased(user: User) -> None:
    if user.erased_at is not None:
        raise Conflict(
            "the user's personal data was erased; the pseudonymised record is kept for the "
            "logs that refer to it and cannot be changed"
        )


def _is_admin(roles: Iterable[str]) -> bool:
    """Whether the roles make an admin whose identity only the compliance officer verifies."""
    return bool(set(map(str, roles)) & set(rule("identity.real_name").param("admin_roles")))


def _refuse_unqualified_verifier(ctx: Ctx, user: User) -> None:
    """Rule identity.real_name: the compliance officer verifies anyone; a tenant admin only
    employees, and only once their own identity is verified (by the officer: a promotion
    withdraws a tenant admin's verification), so that the chain of verifications starts
    with the officer and no admin account verifies another."""
    principal = ctx.require_principal()
    officers = set(rule("identity.real_name").param("admin_verifier_roles"))
    if principal.tenant_id is None and {str(r) for r in principal.roles} & officers:
        return
    if _is_admin(user.roles):
        raise ComplianceRefusal(
            "identity.real_name",
            "a tenant admin's identity is verified by the operator's compliance officer, "
            "never by a tenant admin",
            {"roles": "holds tenant_admin: the operator's compliance officer verifies it"},
        )
    verifier = ctx.session.get(User, principal.user_id)
    if verifier is None or verifier.identity_verified_at is None:
        raise ComplianceRefusal(
            "identity.real_name",
            "your own identity is not verified yet: a tenant admin verifies employees once "
            "the operator's compliance officer has verified the admin",
        )


def _verified_by_officer(ctx: Ctx, user: User) -> bool:
    """Whether the user's verification was made by the operator's compliance officer: the
    verifier is operator staff (no tenant) holding a role rule identity.real_name names for
    verifying admins. A verifier since deleted or no longer holding that role counts as not
    (fail closed: the officer verifies again)."""
    if user.identity_verified_at is None or user.identity_verified_by is None:
        return False
    verifier = ctx.session.get(User, user.identity_verified_by)
    officers = set(rule("identity.real_name").param("admin_verifier_roles"))
    return (
        verifier is not None
        and verifier.tenant_id is None
        and bool({str(r) for r in verifier.roles} & officers)
    )


def _unverify_promoted_admin(ctx: Ctx, user: User, roles: Iterable[str]) -> None:
    """Rule identity.real_name: granting tenant_admin keeps only a verification the
    compliance officer made. One a tenant admin made is withdrawn (audited; the user's
    devices wait again), else a verified admin could verify an account they hold under a
    made-up identity as an employee and promote it to an admin nobody checked."""
    if _is_admin(user.roles) or not _is_admin(roles) or user.identity_verified_at is None:
        return
    if not _verified_by_officer(ctx, user):
        withdraw_verification(
            ctx,
            user,
            reason="granted tenant_admin: a tenant admin's identity is verified by the "
            "operator's compliance officer, and a tenant admin had verified this one",
        )


def _refuse_demoting_unverified_admin(user: User, roles: Iterable[str]) -> None:
    """An admin whose identity is not verified keeps the role until the compliance officer
    verifies it: demoted, a tenant admin could verify them as an employee and promote them
    back. Disabling or deleting the account stays possible."""
    if _is_admin(user.roles) and not _is_admin(roles) and user.identity_verified_at is None:
        raise ComplianceRefusal(
            "identity.real_name",
            "this tenant admin's identity is not verified, and only the operator's compliance "
            "officer verifies it; the role stays until then (disable the account instead)",
            {
                "roles": "tenant_admin stays until the operator's compliance officer has "
                "verified this user's identity"
            },
        )


def verify_identity(ctx: Ctx, user: User) -> User:
    """Record that a tenant admin or compliance officer checked the user's real identity."""
    principal = ctx.require_principal()
    refuse_if_erased(user)
    if user.id == principal.user_id:
        raise PermissionDenied(
            "nobody verifies their own identity: another tenant admin or a compliance officer does"
        )
    _refuse_unqualified_verifier(ctx, user)
    missing = identity_missing(user)
    if missing:
        raise ComplianceRefusal(
            "identity.real_name",
            f"the real identity is incomplete ({field_list(missing)} missing)",
            missing,
        )
    if user.identity_verified_at is not None:
        return user  # verified already: nothing changes, nothing is recorded twice
    now = ctx.runtime.clock()
    user.identity_verified_at = now
    user.identity_verified_by = principal.user_id
    released = release_devices(ctx, user)
    record(
        ctx.session,
        "verify_identity",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={
            "verified_at": now.isoformat(),
            "verified_by": str(principal.user_id),
            "verifier_roles": sorted(str(r) for r in principal.roles),
            "id_type": user.id_type,
            "devices_activated": released,
        },
    )
    return user


def withdraw_verification(ctx: Ctx, user: User, *, reason: str | None = None) -> User:
    """Take a verification back (e.g. the document turned out false, or the user was granted
    tenant_admin on a tenant admin's verification, the ``reason`` recorded): devices wait
    again."""
    refuse_if_erased(user)
    if user.identity_verified_at is None:
        return user
    held = _unverify(ctx, user)
    after: dict[str, Any] = {"devices_pending": held}
    if reason is not None:
        after["reason"] = reason
    record(
        ctx.session,
        "withdraw_identity_verification",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after=after,
    )
    return user


def _email_free(ctx: Ctx, email: str) -> None:
    ensure_unique(ctx, User.email, email, what="a user")


def _sync_memberships(
    ctx: Ctx,
    field: str,
    wanted_ids: Sequence[uuid.UUID],
    candidates: Any,
    current: dict[uuid.UUID, GroupMember],
    make: Any,
    what: str,
) -> None:
    """Make a user's groups, or a group's members, exactly ``wanted_ids``.

    ``candidates`` selects the ids that may be named (same tenant); ``current`` maps the
    other side's id to its membership; ``make(id)`` builds a new membership.
    """
    found = set(
        ctx.session.scalars(candidates.where(candidates.selected_columns[0].in_(set(wanted_ids))))
    )
    missing = {
        f"{field}.{i}": f"no such {what} in this tenant"
        for i, other in enumerate(wanted_ids)
        if other not in found
    }
    if missing:
        raise ValidationError(missing)
    for other, membership in current.items():
        if other not in found:
            ctx.session.delete(membership)
    for other in dict.fromkeys(wanted_ids):
        if other not in current:
            ctx.session.add(make(other))


def _set_groups(ctx: Ctx, user: User, tenant_id: uuid.UUID, group_ids: Sequence[uuid.UUID]) -> None:
    _sync_memberships(
        ctx,
        "group_ids",
        group_ids,
        select(Group.id).where(Group.tenant_id == tenant_id),
        {m.group_id: m for m in user.memberships},
        lambda gid: GroupMember(group_id=gid, user_id=user.id, tenant_id=tenant_id),
        "group",
    )


def _group_ids_by_user(ctx: Ctx, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    out: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    ids = list(user_ids)
    if ids:
        for user_id, group_id in ctx.session.execute(
            select(GroupMember.user_id, GroupMember.group_id)
            .where(GroupMember.user_id.in_(ids))
            .order_by(GroupMember.group_id)
        ):
            out[user_id].append(group_id)
    return out


def user_public(user: User, group_ids: list[uuid.UUID]) -> s.UserPublic:
    masked = None
    if user.id_number_last4 is not None and user.id_number_length is not None:
        masked = "*" * (user.id_number_length - len(user.id_number_last4)) + user.id_number_last4
    return s.UserPublic.model_validate(
        {
            **{k: getattr(user, k) for k in s.UserPublic.model_fields if hasattr(user, k)},
            "group_ids": group_ids,
            "id_number_masked": masked,
            "mobile_masked": mask_mobile(user.mobile),
        }
    )


def _delete_user(ctx: Ctx, user: User) -> None:
    from tongdao.network.models import Device
    from tongdao.privacy.service import refuse_deleting_logged_devices

    if user.tenant_id is not None:
        refuse_deleting_logged_devices(
            ctx,
            user.tenant_id,
            list(ctx.session.scalars(select(Device.id).where(Device.user_id == user.id))),
            "erase the user's personal data instead (POST .../personal-data/erase), which "
            "keeps them",
        )
    for device in ctx.session.scalars(select(Device).where(Device.user_id == user.id)):
        ctx.session.delete(device)
    for token in ctx.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)):
        ctx.session.delete(token)
    ctx.session.delete(user)


class UserResource(Resource[User]):
    name = "users"
    label = "user"
    model = User
    public = s.UserPublic
    create_schema = s.UserCreate
    update_schema = s.UserUpdate
    filters = s.UserFilters
    owner_attr = "id"

    def apply_filters(self, stmt: Select[Any], filters: BaseModel) -> Select[Any]:
        assert isinstance(filters, s.UserFilters)
        if filters.email:
            stmt = stmt.where(User.email == validation.normalise_email(filters.email))
        if filters.state:
            stmt = stmt.where(User.state == filters.state)
        if filters.identity_verified is not None:
            verified = User.identity_verified_at.is_not(None)
            stmt = stmt.where(verified if filters.identity_verified else ~verified)
        if filters.role:
            # roles is a short JSON list; match the quoted role name in its text form.
            stmt = stmt.where(func.cast(User.roles, String()).like(f'%"{filters.role.value}"%'))
        if filters.group_id:
            stmt = stmt.where(
                exists().where(
                    GroupMember.user_id == User.id, GroupMember.group_id == filters.group_id
                )
            )
        return stmt

    def to_public(self, ctx: Ctx, obj: User) -> BaseModel:
        return user_public(obj, _group_ids_by_user(ctx, [obj.id]).get(obj.id, []))

    def to_public_many(self, ctx: Ctx, objs: Sequence[User]) -> list[BaseModel]:
        groups = _group_ids_by_user(ctx, (o.id for o in objs))
        return [user_public(o, groups.get(o.id, [])) for o in objs]

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> User:
        assert isinstance(data, s.UserCreate) and tenant is not None
        _email_free(ctx, data.email)
        user = User(
            tenant_id=tenant.id,
            email=data.email,
            display_name=data.display_name,
            roles=sorted({str(r) for r in data.roles}),
        )
        _apply_identity(ctx, user, data.model_dump(exclude_unset=True))
        ctx.session.add(user)
        ctx.session.flush()
        if data.group_ids:
            _set_groups(ctx, user, tenant.id, data.group_ids)
        reset.invite(ctx, user)  # they choose their own password; the admin never knows it
        return user

    def update(self, ctx: Ctx, obj: User, data: Any) -> User:
        assert isinstance(data, s.UserUpdate)
        refuse_if_erased(obj)
        changes = _changes(data)
        for key in ("display_name", "state"):
            if changes.get(key) is not None:
                setattr(obj, key, changes[key])
        if changes.get("roles") is not None:
            _refuse_demoting_unverified_admin(obj, changes["roles"])
            _unverify_promoted_admin(ctx, obj, changes["roles"])
            obj.roles = sorted({str(r) for r in changes["roles"]})
        _apply_identity(ctx, obj, changes)
        if changes.get("group_ids") is not None and obj.tenant_id is not None:
            _set_groups(ctx, obj, obj.tenant_id, changes["group_ids"])
        return obj

    def delete(self, ctx: Ctx, obj: User) -> None:
        _delete_user(ctx, obj)


# Separation of duties: the operator admin runs the service, the compliance officer vets the
# customers; one account holding both would let the admin vet alone (or grant itself the role).
def _officer_role_by_officer(ctx: Ctx, before: Iterable[Any], after: Iterable[Any]) -> None:
    """Giving or taking the compliance_officer role is an officer's act: the operator admin
    could otherwise make a second account an officer (or replace the real one) and vet alone.
    The first officer of a fresh operator comes from ``tongdao admin bootstrap --role
    compliance_officer``."""
    officer = Role.COMPLIANCE_OFFICER.value
    if (officer in {str(r) for r in before}) == (officer in {str(r) for r in after}):
        return
    roles = ctx.require_principal().roles
    if Role.COMPLIANCE_OFFICER not in roles or holds_conflicting_duties(roles):
        raise PermissionDenied(
            "only a compliance officer gives or takes the compliance_officer role (separation "
            "of duties); it is for: compliance_officer",
            {"roles": "the compliance_officer role is given and taken by a compliance officer"},
        )


def _separate_duties(roles: Iterable[Any]) -> None:
    if holds_conflicting_duties(roles):
        raise ValidationError(
            {
                "roles": "operator_admin and compliance_officer are separate duties: one "
                "account holds at most one of them"
            }
        )


class StaffResource(Resource[User]):
    """Operator staff: users with no tenant and operator roles."""

    name = "staff"
    label = "staff_member"
    model = User
    public = s.UserPublic
    create_schema = s.StaffCreate
    update_schema = s.StaffUpdate
    filters = s.StaffFilters
    tenant_scoped = False

    def tenant_column(self) -> Any:
        return None

    def base_query(self, guard: Any, tenant: Tenant | None, action: Any) -> Select[Any]:
        return select(User).where(User.tenant_id.is_(None))

    def apply_filters(self, stmt: Select[Any], filters: BaseModel) -> Select[Any]:
        assert isinstance(filters, s.StaffFilters)
        if filters.email:
            stmt = stmt.where(User.email == validation.normalise_email(filters.email))
        if filters.state:
            stmt = stmt.where(User.state == filters.state)
        return stmt

    def to_public(self, ctx: Ctx, obj: User) -> BaseModel:
        return user_public(obj, [])

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> User:
        assert isinstance(data, s.StaffCreate)
        _separate_duties(data.roles)
        _officer_role_by_officer(ctx, [], data.roles)
        _email_free(ctx, data.email)
        user = User(
            tenant_id=None,
            email=data.email,
            display_name=data.display_name,
            roles=sorted({str(r) for r in data.roles}),
        )
        ctx.session.add(user)
        ctx.session.flush()
        reset.invite(ctx, user)
        return user

    def update(self, ctx: Ctx, obj: User, data: Any) -> User:
        assert isinstance(data, s.StaffUpdate)
        changes = _changes(data)
        for key in ("display_name", "state"):
            if changes.get(key) is not None:
                setattr(obj, key, changes[key])
        if changes.get("roles") is not None:
            _separate_duties(changes["roles"])
            _officer_role_by_officer(ctx, obj.roles or [], changes["roles"])
            obj.roles = sorted({str(r) for r in changes["roles"]})
        self._keep_an_admin(ctx, obj)
        return obj

    def delete(self, ctx: Ctx, obj: User) -> None:
        _officer_role_by_officer(ctx, obj.roles or [], [])
        obj.roles = []
        self._keep_an_admin(ctx, obj)
        _delete_user(ctx, obj)

    @staticmethod
    def _keep_an_admin(ctx: Ctx, changed: User) -> None:
        """Refuse a change that would leave no active operator admin."""
        admins = [
            u
            for u in ctx.session.scalars(select(User).where(User.tenant_id.is_(None)))
            if Role.OPERATOR_ADMIN in u.roles and u.state == "active"
        ]
        if not admins or (
            admins == [changed]
            and (Role.OPERATOR_ADMIN not in changed.roles or changed.state != "active")
        ):
            raise Conflict("this would leave no active operator admin")


# --- groups --------------------------------------------------------------------------------
def _members_by_group(ctx: Ctx, group_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    out: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    ids = list(group_ids)
    if ids:
        for group_id, user_id in ctx.session.execute(
            select(GroupMember.group_id, GroupMember.user_id)
            .where(GroupMember.group_id.in_(ids))
            .order_by(GroupMember.user_id)
        ):
            out[group_id].append(user_id)
    return out


class GroupResource(Resource[Group]):
    name = "groups"
    label = "group"
    model = Group
    public = s.GroupPublic
    create_schema = s.GroupCreate
    update_schema = s.GroupUpdate
    filters = s.GroupFilters

    def to_public_many(self, ctx: Ctx, objs: Sequence[Group]) -> list[BaseModel]:
        members = _members_by_group(ctx, (o.id for o in objs))
        return [
            s.GroupPublic.model_validate(
                {
                    **{
                        k: getattr(o, k)
                        for k in (
                            "id",
                            "created_at",
                            "updated_at",
                            "tenant_id",
                            "name",
                            "description",
                        )
                    },
                    "member_ids": members.get(o.id, []),
                }
            )
            for o in objs
        ]

    def to_public(self, ctx: Ctx, obj: Group) -> BaseModel:
        return self.to_public_many(ctx, [obj])[0]

    def _set_members(self, ctx: Ctx, group: Group, member_ids: Sequence[uuid.UUID]) -> None:
        _sync_memberships(
            ctx,
            "member_ids",
            member_ids,
            select(User.id).where(User.tenant_id == group.tenant_id),
            {m.user_id: m for m in group.memberships},
            lambda uid: GroupMember(group_id=group.id, user_id=uid, tenant_id=group.tenant_id),
            "user",
        )

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Group:
        assert isinstance(data, s.GroupCreate) and tenant is not None
        ensure_unique(ctx, Group.name, data.name, tenant_id=tenant.id, what="a group")
        group = Group(tenant_id=tenant.id, name=data.name, description=data.description)
        ctx.session.add(group)
        ctx.session.flush()
        self._set_members(ctx, group, data.member_ids)
        return group

    def update(self, ctx: Ctx, obj: Group, data: Any) -> Group:
        assert isinstance(data, s.GroupUpdate)
        changes = _changes(data)
        if changes.get("name") is not None:
            ensure_unique(
                ctx,
                Group.name,
                changes["name"],
                own=obj.id,
                tenant_id=obj.tenant_id,
                what="a group",
            )
            obj.name = changes["name"]
        if changes.get("description") is not None:
            obj.description = changes["description"]
        if changes.get("member_ids") is not None:
            self._set_members(ctx, obj, changes["member_ids"])
        return obj

    def delete(self, ctx: Ctx, obj: Group) -> None:
        from tongdao.access.service import references_to

        users = references_to(ctx, obj.tenant_id, "group", obj.id)
        if users:
            raise Conflict(f"the group is used by policies: {', '.join(users)}")
        ctx.session.delete(obj)
