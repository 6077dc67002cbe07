"""Login, the caller's own account, its sessions, TOTP, API tokens, and admins' sign-in unlock."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import select

from tongdao.api.deps import AnonCtxDep, CtxDep, GuardDep
from tongdao.api.pagination import Page
from tongdao.auth import service
from tongdao.auth.models import ApiToken
from tongdao.auth.permissions import Action
from tongdao.auth.schemas import (
    LoginRequest,
    LoginResponse,
    PasswordChange,
    SessionPublic,
    SessionsRevoked,
    SignInUnlocked,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    TotpConfirm,
    TotpDisable,
    TotpSetup,
)
from tongdao.auth.targets import staff_member, tenant_user
from tongdao.errors import AuthenticationError, PermissionDenied, ValidationError
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


@router.post("/auth/login", operation_id="login")
def login(ctx: AnonCtxDep, body: LoginRequest, request: Request) -> LoginResponse:
    """Sign in. Every credential failure (unknown e-mail, wrong password, missing, wrong or
    reused TOTP code) answers the same 401 and counts against this account from this address;
    too many answer 429 with Retry-After. An account with a security key (and no TOTP code
    sent) answers 401 ``webauthn_required`` with ``pending`` and ``options``: finish with
    ``POST /auth/login/webauthn``."""
    try:
        token, secret, user = service.login(
            ctx,
            body.email,
            body.password,
            body.totp_code,
            ctx.source_ip or "unknown",
            request.headers.get("user-agent"),
        )
    except service.SecondFactorNeeded as needed:
        # The account signs in with a security key: its answer goes to /auth/login/webauthn.
        ctx.session.commit()
        return JSONResponse(  # type: ignore[return-value]
            {
                "error": {"code": needed.code, "message": needed.message},
                "pending": needed.pending.secret,
                "options": needed.pending.options,
            },
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    ctx.session.commit()
    public = UserResource().to_public(ctx, user)
    assert isinstance(public, UserPublic)
    return LoginResponse(token=secret, expires_at=token.expires_at, user=public)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="logout",
    response_class=Response,
)
def logout(ctx: CtxDep) -> Response:
    service.revoke_token(ctx, ctx.require_principal(), ctx.require_principal().token_id)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/me", operation_id="me")
def me(ctx: CtxDep) -> UserPublic:
    public = UserResource().to_public(ctx, _me(ctx))
    assert isinstance(public, UserPublic)
    return public


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="change_password",
    response_class=Response,
)
def change_password(ctx: CtxDep, body: PasswordChange) -> Response:
    """Change your password. Every other session and API token of yours is revoked; the
    credential making this request is kept."""
    _require_write(ctx)
    user = _me(ctx)
    service.reauthenticate(ctx, user, body.current_password)
    service.change_password(
        ctx, user, body.new_password, keep_token_id=ctx.require_principal().token_id
    )
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _require_write(ctx: Ctx) -> None:
    if "write" not in ctx.require_principal().scopes:
        raise PermissionDenied("this token is read-only")


@router.post("/auth/totp", operation_id="begin_totp")
def begin_totp(ctx: CtxDep) -> TotpSetup:
    _require_write(ctx)
    secret, uri = service.begin_totp(ctx, _me(ctx))
    ctx.session.commit()
    return TotpSetup(secret=secret, otpauth_uri=uri)


@router.post(
    "/auth/totp/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="confirm_totp",
    response_class=Response,
)
def confirm_totp(ctx: CtxDep, body: TotpConfirm) -> Response:
    """Turn TOTP on with a code of the new authenticator and your password."""
    _require_write(ctx)
    user = _me(ctx)
    service.reauthenticate(ctx, user, body.current_password)
    service.confirm_totp(ctx, user, body.code)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/totp/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="disable_totp",
    response_class=Response,
)
def disable_totp(ctx: CtxDep, body: TotpDisable) -> Response:
    """Turn TOTP off, with a fresh code and your password. Without TOTP a password needs 15
    characters and must not be listed: a weaker one is replaced in the same request
    (``new_password``, which revokes your other sessions and tokens)."""
    _require_write(ctx)
    service.disable_totp(ctx, _me(ctx), body.code, body.current_password, body.new_password)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tokens", operation_id="list_tokens")
def list_tokens(ctx: CtxDep) -> Page[TokenPublic]:
    rows = list(
        ctx.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == ctx.require_principal().user_id, ApiToken.kind == "api")
            .order_by(ApiToken.id)
        )
    )
    return Page[TokenPublic](data=[TokenPublic.model_validate(r) for r in rows], count=len(rows))


@router.post("/tokens", status_code=status.HTTP_201_CREATED, operation_id="create_token")
def create_token(ctx: CtxDep, body: TokenCreate) -> TokenCreated:
    """Mint an API token. It outlives the session or token that asks, so it takes your
    password again (and a TOTP code when TOTP is on), and lives at most
    TONGDAO_API_TOKEN_MAX_DAYS days."""
    principal = ctx.require_principal()
    _require_write(ctx)
    scopes = frozenset(body.scopes)
    if not scopes <= principal.scopes:
        raise ValidationError({"scopes": "a token cannot have scopes its creator lacks"})
    most = ctx.runtime.settings.api_token_max_days
    if body.expires_in_days > most:
        raise ValidationError({"expires_in_days": f"must be at most {most}"})
    user = _me(ctx)
    service.reauthenticate(ctx, user, body.current_password, body.totp_code, totp=True)
    token, secret = service.issue_token(
        ctx,
        user,
        kind="api",
        name=body.name,
        scopes=scopes,
        ttl=timedelta(days=body.expires_in_days),
        # A token made with a fresh TOTP code, or from a session signed in with a second
        # factor, carries it (the operator's staff rule refuses password-only tokens).
        second_factor="totp" if user.totp_enabled else principal.second_factor,
    )
    ctx.session.commit()
    return TokenCreated(**TokenPublic.model_validate(token).model_dump(), token=secret)


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="revoke_token",
    response_class=Response,
)
def revoke_token(ctx: CtxDep, token_id: Annotated[uuid.UUID, Path()]) -> Response:
    _require_write(ctx)
    service.revoke_token(ctx, ctx.require_principal(), token_id)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the caller's sessions -------------------------------------------------------------------
@router.get("/auth/sessions", operation_id="list_sessions")
def list_sessions(ctx: CtxDep) -> Page[SessionPublic]:
    """Your signed-in sessions that still work (console, CLI), newest first: when and from
    which address and program each began; ``current`` marks the one asking."""
    principal = ctx.require_principal()
    rows = service.live_sessions(ctx, principal.user_id)
    data = [
        SessionPublic.model_validate(r).model_copy(update={"current": r.id == principal.token_id})
        for r in rows
    ]
    return Page[SessionPublic](data=data, count=len(data))


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="revoke_session",
    response_class=Response,
)
def revoke_session(ctx: CtxDep, session_id: Annotated[uuid.UUID, Path()]) -> Response:
    """Sign one of your sessions out (another user's: 404)."""
    _require_write(ctx)
    service.revoke_session(ctx, ctx.require_principal(), session_id)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/sessions/revoke-others", operation_id="revoke_other_sessions")
def revoke_other_sessions(ctx: CtxDep) -> SessionsRevoked:
    """Sign out everywhere else: every session of yours but the one asking. API tokens are
    revoked one by one (``DELETE /tokens/{id}``) or all at once by a password change."""
    _require_write(ctx)
    revoked = service.revoke_other_sessions(ctx, ctx.require_principal())
    ctx.session.commit()
    return SessionsRevoked(revoked=revoked)


# --- admins: clear a user's failed sign-ins ---------------------------------------------------
@router.post(
    "/tenants/{tenant_id}/users/{user_id}/sign-in-unlock",
    tags=["users"],
    operation_id="unlock_user_sign_in",
)
def unlock_user_sign_in(
    guard: GuardDep,
    tenant_id: Annotated[uuid.UUID, Path()],
    user_id: Annotated[uuid.UUID, Path()],
) -> SignInUnlocked:
    """Clear the failed sign-ins counted against a user's account, so its owner can sign in
    without waiting (tenant admins: their tenant's users; the operator admin: anyone).
    Audited. The failures still count against the addresses they came from."""
    user = tenant_user(guard, tenant_id, user_id, "sign_in", Action.UPDATE)
    cleared = service.unlock_sign_in(guard.ctx, user)
    guard.ctx.session.commit()
    return SignInUnlocked(user_id=user.id, cleared_failures=cleared)


@router.post(
    "/operator/staff/{object_id}/sign-in-unlock",
    tags=["operator"],
    operation_id="unlock_staff_sign_in",
)
def unlock_staff_sign_in(
    guard: GuardDep, object_id: Annotated[uuid.UUID, Path()]
) -> SignInUnlocked:
    """The same for an operator staff member (the operator admin only)."""
    user = staff_member(guard, object_id)
    cleared = service.unlock_sign_in(guard.ctx, user)
    guard.ctx.session.commit()
    return SignInUnlocked(user_id=user.id, cleared_failures=cleared)
