"""Login, the caller's own account, TOTP and API tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy import select

from tongdao.api.deps import AnonCtxDep, CtxDep
from tongdao.api.pagination import Page
from tongdao.auth import service
from tongdao.auth.models import ApiToken
from tongdao.auth.passwords import policy_problem
from tongdao.auth.schemas import (
    LoginRequest,
    LoginResponse,
    PasswordChange,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    TotpCode,
    TotpSetup,
)
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
def login(ctx: AnonCtxDep, body: LoginRequest) -> LoginResponse:
    token, secret, user = service.login(
        ctx, body.email, body.password, body.totp_code, ctx.source_ip or "unknown"
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
    _require_write(ctx)
    user = _me(ctx)
    if not ctx.runtime.passwords.verify(user.password_hash, body.current_password):
        raise ValidationError({"current_password": "is wrong"})
    problem = policy_problem(body.new_password)
    if problem:
        raise ValidationError({"new_password": problem})
    user.password_hash = ctx.runtime.passwords.hash(body.new_password)
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
def confirm_totp(ctx: CtxDep, body: TotpCode) -> Response:
    _require_write(ctx)
    service.confirm_totp(ctx, _me(ctx), body.code)
    ctx.session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/totp/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="disable_totp",
    response_class=Response,
)
def disable_totp(ctx: CtxDep, body: TotpCode) -> Response:
    _require_write(ctx)
    service.disable_totp(ctx, _me(ctx), body.code)
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
    principal = ctx.require_principal()
    _require_write(ctx)
    scopes = frozenset(body.scopes)
    if not scopes <= principal.scopes:
        raise ValidationError({"scopes": "a token cannot have scopes its creator lacks"})
    token, secret = service.issue_token(
        ctx,
        _me(ctx),
        kind="api",
        name=body.name,
        scopes=scopes,
        ttl=timedelta(days=body.expires_in_days),
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
