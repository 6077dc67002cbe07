"""Login (password + optional TOTP), throttling, and scoped, expiring tokens stored hashed."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import func, select

from tongdao import validation
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.auth.models import ApiToken, LoginAttempt
from tongdao.auth.permissions import Role
from tongdao.auth.principal import ALL_SCOPES, Principal
from tongdao.errors import AuthenticationError, Conflict, NotFound, Throttled, ValidationError
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, TenantState, User, UserState

TOKEN_PREFIXES = {"api": "tdp_", "session": "tds_"}
TOTP_PURPOSE = "user.totp_secret"
IP_FAILURE_FACTOR = 4  # an address may fail this many times more than one account


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    ctx: Ctx,
    user: User,
    *,
    kind: str,
    name: str,
    scopes: frozenset[str],
    ttl: timedelta,
) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and only its hash is stored."""
    secret = TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        kind=kind,
        token_hash=hash_token(secret),
        scopes=sorted(scopes),
        expires_at=ctx.runtime.clock() + ttl,
    )
    ctx.session.add(token)
    ctx.session.flush()
    return token, secret


def authenticate_token(ctx: Ctx, secret: str) -> Principal:
    """The principal behind a bearer token, or 401 for any unusable token."""
    if not secret.startswith(tuple(TOKEN_PREFIXES.values())):
        raise AuthenticationError("invalid token")
    row = ctx.session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(secret))
    ).first()
    if row is None:
        raise AuthenticationError("invalid token")
    token, user = row
    now = ctx.runtime.clock()
    if token.revoked_at is not None or token.expires_at <= now:
        raise AuthenticationError("token expired or revoked")
    if user.state != UserState.ACTIVE:
        raise AuthenticationError("user is disabled")
    if user.tenant_id is not None:
        tenant_state = ctx.session.scalar(select(Tenant.state).where(Tenant.id == user.tenant_id))
        if tenant_state == TenantState.TERMINATED:
            raise AuthenticationError("the tenant is terminated")
    return Principal(
        user_id=user.id,
        email=user.email,
        tenant_id=user.tenant_id,
        roles=frozenset(Role(r) for r in user.roles),
        scopes=frozenset(token.scopes) & ALL_SCOPES,
        token_id=token.id,
    )


def _check_throttle(ctx: Ctx, email: str, source_ip: str) -> None:
    settings = ctx.runtime.settings
    now = ctx.runtime.clock()
    since = now - timedelta(seconds=settings.login_window_seconds)
    failures = select(func.count(), func.min(LoginAttempt.at)).where(
        LoginAttempt.success.is_(False), LoginAttempt.at > since
    )
    by_email = ctx.session.execute(failures.where(LoginAttempt.email == email)).one()
    by_ip = ctx.session.execute(failures.where(LoginAttempt.source_ip == source_ip)).one()
    for (count, oldest), limit in (
        (by_email, settings.login_max_failures),
        (by_ip, settings.login_max_failures * IP_FAILURE_FACTOR),
    ):
        if count >= limit and oldest is not None:
            oldest_at: datetime = oldest
            if oldest_at.tzinfo is None:
                oldest_at = oldest_at.replace(tzinfo=now.tzinfo)
            wait = int((oldest_at - since).total_seconds()) + 1
            raise Throttled(f"too many failed logins; try again in {wait} s", max(wait, 1))


def login(
    ctx: Ctx, email: str, password: str, totp_code: str | None, source_ip: str
) -> tuple[ApiToken, str, User]:
    """Check credentials and issue a session token. Every outcome is recorded."""
    email = validation.normalise_email(email)
    _check_throttle(ctx, email, source_ip)
    user = ctx.session.scalar(select(User).where(User.email == email))
    ok = ctx.runtime.passwords.verify(user.password_hash if user else None, password)
    problem: str | None = None
    if not ok or user is None:
        problem = "email or password is wrong"
    elif user.state != UserState.ACTIVE:
        problem = "user is disabled"
    elif user.tenant_id is not None:
        tenant = ctx.session.get(Tenant, user.tenant_id)
        if tenant is None or tenant.state == TenantState.TERMINATED:
            problem = "tenant is terminated"
    if problem is None and user is not None and user.totp_enabled:
        if not totp_code:
            ctx.session.rollback()
            raise AuthenticationError(
                "a TOTP code is required", {"totp_code": "required for this account"}
            )
        if not _totp_ok(ctx, user, totp_code):
            problem = "TOTP code is wrong"
    actor = Actor(user.id if user else None, email, source_ip)
    ctx.session.add(LoginAttempt(email=email, source_ip=source_ip, success=problem is None))
    if problem is not None or user is None:
        record(
            ctx.session,
            "login_failed",
            "user",
            user.id if user else None,
            tenant_id=user.tenant_id if user else None,
            after={"reason": problem},
            actor=actor,
        )
        ctx.session.commit()
        raise AuthenticationError(problem or "email or password is wrong")
    set_actor(ctx.session, actor)
    token, secret = issue_token(
        ctx,
        user,
        kind="session",
        name="login",
        scopes=ALL_SCOPES,
        ttl=timedelta(seconds=ctx.runtime.settings.session_ttl_seconds),
    )
    record(ctx.session, "login", "user", user.id, tenant_id=user.tenant_id, actor=actor)
    return token, secret, user


def _totp(ctx: Ctx, user: User) -> pyotp.TOTP:
    if user.totp_secret_sealed is None:
        raise Conflict("TOTP is not set up for this account")
    return pyotp.TOTP(ctx.runtime.cipher.open(user.totp_secret_sealed, TOTP_PURPOSE))


def _totp_ok(ctx: Ctx, user: User, code: str) -> bool:
    return bool(_totp(ctx, user).verify(code.strip(), valid_window=1))


def begin_totp(ctx: Ctx, user: User) -> tuple[str, str]:
    """Make a new (not yet enabled) TOTP secret; returns the secret and its otpauth URI."""
    if user.totp_enabled:
        raise Conflict("TOTP is already enabled; disable it first")
    secret = pyotp.random_base32()
    user.totp_secret_sealed = ctx.runtime.cipher.seal(secret, TOTP_PURPOSE)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="Tongdao")
    return secret, str(uri)


def confirm_totp(ctx: Ctx, user: User, code: str) -> None:
    if user.totp_secret_sealed is None:
        raise Conflict("start TOTP enrolment first")
    if not _totp_ok(ctx, user, code):
        raise ValidationError({"code": "TOTP code is wrong"})
    user.totp_enabled = True


def disable_totp(ctx: Ctx, user: User, code: str) -> None:
    if not user.totp_enabled:
        raise Conflict("TOTP is not enabled")
    if not _totp_ok(ctx, user, code):
        raise ValidationError({"code": "TOTP code is wrong"})
    user.totp_enabled = False
    user.totp_secret_sealed = None


def revoke_token(ctx: Ctx, principal: Principal, token_id: uuid.UUID) -> None:
    token = ctx.session.get(ApiToken, token_id)
    if token is None or token.user_id != principal.user_id:
        raise NotFound("token not found")
    if token.revoked_at is None:
        token.revoked_at = ctx.runtime.clock()


def revoke_user_credentials(
    ctx: Ctx, user_id: uuid.UUID, *, keep_token_id: uuid.UUID | None = None
) -> int:
    """Revoke every live session and API token of a user (but ``keep_token_id``).

    Called when the user's password changes or is reset, and when they are disabled or erased:
    nothing minted under the old secret outlives it. Returns how many were revoked.
    """
    now = ctx.runtime.clock()
    tokens = ctx.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    ).all()
    revoked = 0
    for token in tokens:
        if token.id != keep_token_id:
            token.revoked_at = now
            revoked += 1
    return revoked
