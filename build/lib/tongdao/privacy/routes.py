"""Routes: identity verification, consents, export and erasure of a user's personal data, and
the privacy notices."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy import select

from tongdao.api.deps import Guard, GuardDep
from tongdao.api.pagination import Page
from tongdao.auth.permissions import Action
from tongdao.errors import NotFound
from tongdao.privacy import schemas as s
from tongdao.privacy import service
from tongdao.privacy.models import PrivacyNotice
from tongdao.tenancy.models import User
from tongdao.tenancy.schemas import UserPublic
from tongdao.tenancy.service import UserResource, verify_identity, withdraw_verification

router = APIRouter()

TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
UserId = Annotated[uuid.UUID, Path(description="the user's id")]
USER = "/tenants/{tenant_id}/users/{user_id}"


def _user(
    guard: Guard, tenant_id: uuid.UUID, user_id: uuid.UUID, resource: str, action: Action
) -> User:
    """The tenant's user, when the caller may act on it: 404 out of sight, then 403."""
    tenant = guard.tenant(tenant_id)
    principal = guard.principal
    user = guard.ctx.session.scalar(
        select(User).where(User.id == user_id, User.tenant_id == tenant.id)
    )
    if user is None:
        raise NotFound("user not found")
    own = user.id == principal.user_id
    if not own and principal.own_only("users", Action.READ):
        raise NotFound("user not found")  # an employee sees no other user, so learns nothing
    guard.require(resource, action)
    if not own and principal.own_only(resource, action):
        raise NotFound("user not found")
    return user


def _groups(guard: Guard, user: User) -> UserPublic:
    public = UserResource().to_public(guard.ctx, user)
    assert isinstance(public, UserPublic)
    return public


# --- identity verification -------------------------------------------------------------------
@router.post(
    USER + "/identity-verification",
    tags=["users"],
    operation_id="verify_user_identity",
    summary="Verify a user's real identity",
)
def verify(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> UserPublic:
    """Record that the caller (a tenant admin or compliance officer, never the person) checked
    the user's legal name, ID document and mobile (rule identity.real_name). The user's pending
    devices become active; the audit log records who and when. 409 while the identity is
    incomplete."""
    user = _user(guard, tenant_id, user_id, "identity", Action.UPDATE)
    verify_identity(guard.ctx, user)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return _groups(guard, user)


@router.delete(
    USER + "/identity-verification",
    tags=["users"],
    operation_id="withdraw_user_identity_verification",
    summary="Withdraw a verification",
)
def withdraw(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> UserPublic:
    """Take a verification back (the document was false, the person left): the user's active
    devices wait as pending until the identity is verified again."""
    user = _user(guard, tenant_id, user_id, "identity", Action.UPDATE)
    withdraw_verification(guard.ctx, user)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return _groups(guard, user)


# --- personal data -------------------------------------------------------------------------------
@router.get(
    USER + "/personal-data",
    tags=["privacy"],
    operation_id="export_personal_data",
    summary="Export a user's personal data",
)
def export(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> s.PersonalDataExport:
    """Everything held about the person, ID number decrypted, as JSON (PIPL art. 45): for the
    person, their tenant's admin or the compliance officer. Each export is audited."""
    user = _user(guard, tenant_id, user_id, "personal_data", Action.READ)
    return service.export_personal_data(guard.ctx, user)


@router.post(
    USER + "/personal-data/erase",
    tags=["privacy"],
    operation_id="erase_personal_data",
    summary="Erase a user's personal data",
)
def erase(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> s.ErasureReport:
    """On the person's request (PIPL art. 47): pseudonymise the user, revoke their devices,
    end their sessions, revoke a consent to transfer abroad. Connection records within the
    retention period (rule logs.retention) are kept whole; older ones lose the public
    address. Idempotent."""
    user = _user(guard, tenant_id, user_id, "personal_data", Action.DELETE)
    report = service.erase_personal_data(guard.ctx, user)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return report


# --- consents --------------------------------------------------------------------------------
@router.get(
    USER + "/consents", tags=["privacy"], operation_id="list_consents", summary="List consents"
)
def list_consents(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> Page[s.ConsentPublic]:
    """The user's consents, newest first, revoked and lapsed ones included."""
    user = _user(guard, tenant_id, user_id, "consents", Action.READ)
    rows = service.list_consents(guard.ctx.session, user)
    return Page[s.ConsentPublic](data=rows, count=len(rows))


@router.post(
    USER + "/consents",
    tags=["privacy"],
    operation_id="give_consent",
    summary="Give (or record) a consent",
    status_code=status.HTTP_201_CREATED,
)
def give_consent(
    guard: GuardDep, tenant_id: TenantId, user_id: UserId, body: s.ConsentCreate
) -> s.ConsentPublic:
    """Accept the current notice, or consent to transfer abroad (separately, after accepting
    the notice). The person gives it through their own account; a tenant admin may record one
    given on paper, naming the evidence. Giving it again changes nothing."""
    user = _user(guard, tenant_id, user_id, "consents", Action.CREATE)
    consent = service.give_consent(guard.ctx, user, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return consent


@router.delete(
    USER + "/consents/transfer-abroad",
    tags=["privacy"],
    operation_id="revoke_transfer_abroad_consent",
    summary="Revoke the consent to transfer abroad",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def revoke_transfer_abroad(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> Response:
    """From now on the user's traffic is not carried abroad (their devices stay in service in
    China). The consent record stays, marked revoked. Idempotent."""
    user = _user(guard, tenant_id, user_id, "consents", Action.DELETE)
    service.revoke_transfer_abroad(guard.ctx, user)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- notices ---------------------------------------------------------------------------------
@router.get(
    "/privacy-notices",
    tags=["privacy"],
    operation_id="list_privacy_notices",
    summary="List privacy notices",
)
def list_notices(guard: GuardDep) -> Page[s.NoticePublic]:
    """Every published version, newest first."""
    guard.require("notices", Action.READ)
    rows = guard.ctx.session.scalars(select(PrivacyNotice).order_by(PrivacyNotice.seq.desc()))
    data = [service.notice_public(n) for n in rows]
    return Page[s.NoticePublic](data=data, count=len(data))


@router.post(
    "/privacy-notices",
    tags=["privacy"],
    operation_id="publish_privacy_notice",
    summary="Publish a privacy notice",
    status_code=status.HTTP_201_CREATED,
)
def publish(guard: GuardDep, body: s.NoticeCreate) -> s.NoticePublic:
    """Publish a new version (published versions never change). With ``reconsent_required``
    consents to earlier versions lapse, and users without a fresh consent to transfer abroad
    stop being routed abroad."""
    guard.require("notices", Action.CREATE)
    notice = service.publish_notice(guard.ctx, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return service.notice_public(notice)


@router.get(
    "/privacy-notices/current",
    tags=["privacy"],
    operation_id="get_current_privacy_notice",
    summary="The current privacy notice",
)
def current(guard: GuardDep) -> s.NoticePublic:
    """The version users accept now; 404 until the operator publishes one."""
    guard.require("notices", Action.READ)
    notice = service.current_notice(guard.ctx.session)
    if notice is None:
        raise NotFound("no privacy notice is published yet")
    return service.notice_public(notice)
