"""Routes for passwords chosen through one-time links (see :mod:`tongdao.auth.reset`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Response, status

from tongdao.api.deps import AnonCtxDep, GuardDep
from tongdao.auth import reset
from tongdao.auth.permissions import Action
from tongdao.auth.targets import staff_member, tenant_user

router = APIRouter()

TenantId = Annotated[uuid.UUID, Path(description="the tenant's id")]
UserId = Annotated[uuid.UUID, Path(description="the user's id")]
StaffId = Annotated[uuid.UUID, Path(description="the staff member's id")]


@router.post(
    "/auth/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["auth"],
    operation_id="request_password_reset",
    summary="Forgot password: mail a reset link",
)
def request_password_reset(
    ctx: AnonCtxDep, body: reset.ResetRequest, background: BackgroundTasks
) -> reset.ResetAccepted:
    """Anonymous. Answers the same, as fast, whether or not an account uses the address (the
    account is looked up after the answer); the link goes only to an active account's
    address. 429 after too many requests from one address."""
    source_ip = ctx.source_ip or "unknown"
    address = reset.record_request(ctx, body.email, source_ip)
    ctx.session.commit()
    if address is not None:
        background.add_task(reset.send_reset_link, ctx.runtime, address, source_ip)
    return reset.ResetAccepted()


@router.post(
    "/auth/password-reset/complete",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    operation_id="complete_password_reset",
    summary="Choose a password with a mailed link",
    response_class=Response,
)
def complete_password_reset(ctx: AnonCtxDep, body: reset.ResetComplete) -> Response:
    """Anonymous: the link's secret is the credential. Sets the password, ends every session
    and API token of the user; the link works once (422 on `token` afterwards)."""
    reset.complete(ctx, body.token, body.new_password)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/tenants/{tenant_id}/users/{user_id}/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["users"],
    operation_id="reset_user_password",
    summary="Reset a user's password: end their sessions, mail them a link",
)
def reset_user_password(guard: GuardDep, tenant_id: TenantId, user_id: UserId) -> reset.LinkSent:
    """The user's sessions and API tokens end and their password stops working; they get a
    one-time link by mail to choose a new one. The caller sees neither password nor link."""
    result = reset.admin_reset(
        guard.ctx, tenant_user(guard, tenant_id, user_id, "users", Action.UPDATE)
    )
    guard.ctx.session.commit()
    return result


@router.post(
    "/operator/staff/{object_id}/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["operator"],
    operation_id="reset_staff_password",
    summary="Reset a staff member's password: end their sessions, mail them a link",
)
def reset_staff_password(guard: GuardDep, object_id: StaffId) -> reset.LinkSent:
    """As for a tenant's user, for operator staff (operator admin)."""
    result = reset.admin_reset(guard.ctx, staff_member(guard, object_id))
    guard.ctx.session.commit()
    return result
