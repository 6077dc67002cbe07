"""Second factors over the API: your security keys (list, register, remove), the key's step of
signing in, the operator's staff rule, and an admin's reset of a colleague's factors."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from tongdao.api.deps import AnonCtxDep, CtxDep, GuardDep
from tongdao.api.pagination import Page
from tongdao.auth import second_factor, service
from tongdao.auth.permissions import Action
from tongdao.auth.schemas import LoginResponse
from tongdao.auth.second_factor_schemas import (
    SecondFactorPolicyPublic,
    SecondFactorPolicyUpdate,
    SecondFactorsReset,
    SecondFactorStatus,
    WebAuthnCredentialPublic,
    WebAuthnRegister,
    WebAuthnRemove,
    WebAuthnSignIn,
)
from tongdao.auth.targets import staff_member, tenant_user
from tongdao.errors import AuthenticationError, Conflict, PermissionDenied, ValidationError
from tongdao.runtime import Ctx
from tongdao.tenancy.models import User
from tongdao.tenancy.schemas import UserPublic
from tongdao.tenancy.service import UserResource

router = APIRouter(tags=["auth"])


def _me(ctx: Ctx) -> User:
    user = ctx.session.get(User, ctx.require_principal().user_id)
    if user is None:  # pragma: no cover - the token lookup joined the user
        raise AuthenticationError("user no longer exists")
    return user


def _require_write(ctx: Ctx) -> None:
    if "write" not in ctx.require_principal().scopes:
        raise PermissionDenied("this token is read-only")


@router.post("/auth/login/webauthn", operation_id="login_webauthn")
def login_webauthn(ctx: AnonCtxDep, body: WebAuthnSignIn, request: Request) -> LoginResponse:
    """The security key's step of signing in: ``POST /auth/login`` with the password answered
    401 ``webauthn_required`` with ``pending`` and ``options`` (for
    ``navigator.credentials.get``); send ``pending`` and the key's answer here. A challenge
    is answered once and lives TONGDAO_WEBAUTHN_CHALLENGE_SECONDS."""
    token, secret, user = second_factor.finish_sign_in(
        ctx,
        body.pending,
        body.credential,
        ctx.source_ip or "unknown",
        request.headers.get("user-agent"),
    )
    ctx.session.commit()
    public = UserResource().to_public(ctx, user)
    assert isinstance(public, UserPublic)
    return LoginResponse(token=secret, expires_at=token.expires_at, user=public)


@router.get("/auth/second-factor", operation_id="second_factor_status")
def second_factor_status(ctx: CtxDep) -> SecondFactorStatus:
    """Your second factors, and whether the operator's rule requires one of you."""
    principal = ctx.require_principal()
    user = _me(ctx)
    return SecondFactorStatus(
        totp_enabled=bool(user.totp_enabled),
        webauthn_credentials=len(second_factor.credentials(ctx.session, user.id)),
        required=second_factor.is_staff(principal.roles, principal.tenant_id)
        and second_factor.required_for_staff(ctx.session),
        enrolment_only=principal.enrolment_only,
    )


@router.get("/auth/webauthn/credentials", operation_id="list_webauthn_credentials")
def list_credentials(ctx: CtxDep) -> Page[WebAuthnCredentialPublic]:
    rows = second_factor.credentials(ctx.session, ctx.require_principal().user_id)
    data = [WebAuthnCredentialPublic.model_validate(r) for r in rows]
    return Page[WebAuthnCredentialPublic](data=data, count=len(data))


@router.post("/auth/webauthn/registration-options", operation_id="webauthn_registration_options")
def registration_options(ctx: CtxDep) -> dict[str, Any]:
    """Options for ``navigator.credentials.create`` (user verification required, resident
    key preferred), bound to this session; answer within TONGDAO_WEBAUTHN_CHALLENGE_SECONDS."""
    _require_write(ctx)
    options = second_factor.registration_options(ctx, _me(ctx))
    ctx.session.commit()
    return options


@router.post(
    "/auth/webauthn/credentials",
    status_code=status.HTTP_201_CREATED,
    operation_id="register_webauthn_credential",
)
def register_credential(ctx: CtxDep, body: WebAuthnRegister) -> WebAuthnCredentialPublic:
    """Keep a new security key or passkey: its answer to the registration options, a name,
    and your password again (and a TOTP code when TOTP is on: a key outlives the session, as
    an API token does). This session then counts as signed in with a second factor."""
    _require_write(ctx)
    user = _me(ctx)
    service.reauthenticate(ctx, user, body.current_password, body.totp_code, totp=True)
    try:
        row = second_factor.register(ctx, user, body.name, body.credential)
    except (ValidationError, Conflict):
        ctx.session.commit()  # the challenge is spent by any answer, right or wrong
        raise
    ctx.session.commit()
    return WebAuthnCredentialPublic.model_validate(row)


@router.delete(
    "/auth/webauthn/credentials/{credential_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="remove_webauthn_credential",
    response_class=Response,
)
def remove_credential(
    ctx: CtxDep, credential_id: Annotated[uuid.UUID, Path()], body: WebAuthnRemove
) -> Response:
    """Remove one of your keys (another person's: 404), with your password again: without
    its keys the account signs in with less. Under the staff rule your last second factor
    stays (409)."""
    _require_write(ctx)
    user = _me(ctx)
    second_factor.own_credential(ctx, user, credential_id)
    service.reauthenticate(ctx, user, body.current_password)
    second_factor.remove(ctx, user, credential_id)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the operator's rule ----------------------------------------------------------------------
@router.get(
    "/operator/second-factor-policy", tags=["operator"], operation_id="get_second_factor_policy"
)
def get_policy(guard: GuardDep) -> SecondFactorPolicyPublic:
    guard.require("second_factor_policy", Action.READ)
    return SecondFactorPolicyPublic(
        required_for_staff=second_factor.required_for_staff(guard.ctx.session)
    )


@router.put(
    "/operator/second-factor-policy", tags=["operator"], operation_id="set_second_factor_policy"
)
def set_policy(guard: GuardDep, body: SecondFactorPolicyUpdate) -> SecondFactorPolicyPublic:
    """Require a second factor (TOTP or a security key) of every operator staff member (the
    operator admin only; audited). From then on a staff session or API token made with a
    password alone is refused; staff without a second factor can only set one up."""
    guard.require("second_factor_policy", Action.UPDATE)
    row = second_factor.set_required_for_staff(guard.ctx, body.required_for_staff)
    guard.ctx.session.commit()
    return SecondFactorPolicyPublic(required_for_staff=row.required_for_staff)


# --- an admin resets a colleague's second factors (a lost key) --------------------------------
@router.post(
    "/operator/staff/{object_id}/second-factor-reset",
    tags=["operator"],
    operation_id="reset_staff_second_factors",
)
def reset_staff(guard: GuardDep, object_id: Annotated[uuid.UUID, Path()]) -> SecondFactorsReset:
    """A staff member lost their key: remove their security keys and TOTP and sign them out
    everywhere (the operator admin; never their own; audited). Under the staff rule they
    enrol again at their next sign-in."""
    user = staff_member(guard, object_id)
    outcome = second_factor.reset_factors(guard.ctx, guard.principal, user)
    guard.ctx.session.commit()
    return SecondFactorsReset(user_id=user.id, **outcome)


@router.post(
    "/tenants/{tenant_id}/users/{user_id}/second-factor-reset",
    tags=["users"],
    operation_id="reset_user_second_factors",
)
def reset_user(
    guard: GuardDep,
    tenant_id: Annotated[uuid.UUID, Path()],
    user_id: Annotated[uuid.UUID, Path()],
) -> SecondFactorsReset:
    """The same for a tenant's user (their tenant admin, or the operator admin)."""
    user = tenant_user(guard, tenant_id, user_id, "sign_in", Action.UPDATE)
    outcome = second_factor.reset_factors(guard.ctx, guard.principal, user)
    guard.ctx.session.commit()
    return SecondFactorsReset(user_id=user.id, **outcome)


__all__ = ["router"]
