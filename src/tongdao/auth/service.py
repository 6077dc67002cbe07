"""Login (password + optional TOTP), throttling, and scoped, expiring tokens stored hashed."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import String, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongdao import validation
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.auth import second_factor
from tongdao.auth.models import ApiToken, LoginAttempt, TotpStep
from tongdao.auth.passwords import policy_problem
from tongdao.auth.permissions import Role
from tongdao.auth.principal import ALL_SCOPES, Principal
from tongdao.errors import AuthenticationError, Conflict, NotFound, Throttled, ValidationError
from tongdao.runtime import Ctx
from tongdao.store.rows import rows_updated
from tongdao.tenancy.models import Tenant, TenantState, User, UserState

TOKEN_PREFIXES = {"api": "tdp_", "session": "tds_"}
TOTP_PURPOSE = "user.totp_secret"
SIGN_IN_FAILED = "email, password or TOTP code is wrong"
KNOWN_ADDRESS_DAYS = timedelta(days=30)


class SecondFactorNeeded(AuthenticationError):
    """The password was right and the account signs in with a security key: the key's answer
    to ``pending.options`` completes the sign-in (:func:`second_factor.finish_sign_in`)."""

    code = "webauthn_required"

    def __init__(self, pending: second_factor.PendingSignIn) -> None:
        super().__init__("a security key must complete this sign-in")
        self.pending = pending


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
    source_ip: str | None = None,
    user_agent: str | None = None,
    second_factor: str | None = None,
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
        source_ip=source_ip,
        user_agent=user_agent[:200] if user_agent else None,
        second_factor=second_factor,
    )
    ctx.session.add(token)
    ctx.session.flush()
    return token, secret


def _token_query() -> Any:
    """The token, its user and the user's tenant's state, by ``:token_hash``: one statement
    of plain columns, built once (issue 10: every request runs it)."""
    global _TOKEN_QUERY
    if _TOKEN_QUERY is None:
        _TOKEN_QUERY = (
            select(
                ApiToken.id,
                ApiToken.scopes,
                ApiToken.expires_at,
                ApiToken.revoked_at,
                ApiToken.kind,
                ApiToken.second_factor,
                User.id.label("user_id"),
                User.totp_enabled,
                User.email,
                User.tenant_id,
                User.roles,
                User.state,
                Tenant.state.label("tenant_state"),
            )
            .join(User, User.id == ApiToken.user_id)
            .outerjoin(Tenant, Tenant.id == User.tenant_id)
            .where(ApiToken.token_hash == bindparam("token_hash", type_=String()))
        )
    return _TOKEN_QUERY


_TOKEN_QUERY: Any = None


def authenticate_token(ctx: Ctx, secret: str) -> Principal:
    """The principal behind a bearer token, or 401 for any unusable token.

    Read from the store on every request (no cache): a token or session revoked, a user
    disabled or a tenant terminated is refused from the commit of that change on.
    """
    if not secret.startswith(tuple(TOKEN_PREFIXES.values())):
        raise AuthenticationError("invalid token")
    row = ctx.session.execute(_token_query(), {"token_hash": hash_token(secret)}).first()
    if row is None:
        raise AuthenticationError("invalid token")
    now = ctx.runtime.clock()
    if row.revoked_at is not None or row.expires_at <= now:
        raise AuthenticationError("token expired or revoked")
    if row.state != UserState.ACTIVE:
        raise AuthenticationError("user is disabled")
    if row.tenant_id is not None and row.tenant_state == TenantState.TERMINATED:
        raise AuthenticationError("the tenant is terminated")
    roles = frozenset(Role(r) for r in row.roles)
    enrolment_only = False
    if row.second_factor is None and second_factor.is_staff(roles, row.tenant_id):
        # Only here (staff, password-only token) is the operator's rule read.
        enrolment_only = second_factor.token_standing(
            ctx.session, user_id=row.user_id, kind=row.kind, totp_enabled=bool(row.totp_enabled)
        )
    return Principal(
        user_id=row.user_id,
        email=row.email,
        tenant_id=row.tenant_id,
        roles=roles,
        scopes=frozenset(row.scopes) & ALL_SCOPES,
        token_id=row.id,
        second_factor=row.second_factor,
        enrolment_only=enrolment_only,
    )


def as_aware(value: datetime, now: datetime) -> datetime:
    """``value`` (naive from SQLite) in ``now``'s time zone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=now.tzinfo)


def retry_after(until: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``until``, rounded up, at least 1 (``Retry-After``)."""
    return max(1, math.ceil((until - now).total_seconds()))


def throttle_address(source_ip: str) -> str:
    """The address the sign-in throttle counts by: an IPv4 address as it is, an IPv6 one by
    its /64 (one subscriber's network: an attacker holding a /64 gets no fresh free guesses
    from each of its 2^64 addresses). Anything else (``unknown``) as it is."""
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return source_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _check_throttle(ctx: Ctx, email: str, source_ip: str) -> None:
    """Refuse (429 with Retry-After) an attempt that comes too soon, before any password is
    checked, so a throttled guess learns nothing.

    Three counts over the window, none of which locks the owner out from elsewhere:

    * this account from this address (the attacker's), over ``login_memory_seconds`` (a day):
      the first ``login_max_failures`` are free, then each attempt waits 1 s after the last
      failure, doubling per failure, up to ``login_max_delay_seconds``; a success from that
      address, or an admin's unlock, clears it;
    * this address, any accounts: ``login_address_max_failures``, then it waits until the
      oldest failure leaves the window (spraying one password over many accounts);
    * this account from anywhere: past ``login_account_max_failures`` (many addresses), every
      attempt waits ``login_account_spacing_seconds`` after the account's last failure (slowed,
      not locked), except from an address the account signed in from in the last 30 days.
    """
    settings = ctx.runtime.settings
    source_ip = throttle_address(source_ip)
    _serialize_attempts(ctx, email, source_ip)
    now = ctx.runtime.clock()
    since = now - timedelta(seconds=settings.login_window_seconds)
    failed = (LoginAttempt.success.is_(False), LoginAttempt.at > since)
    counted = (*failed, LoginAttempt.cleared_at.is_(None))

    count, oldest = ctx.session.execute(
        select(func.count(), func.min(LoginAttempt.at)).where(
            *failed, LoginAttempt.source_ip == source_ip
        )
    ).one()
    if count >= settings.login_address_max_failures and oldest is not None:
        until = as_aware(oldest, now) + timedelta(seconds=settings.login_window_seconds)
        wait = retry_after(until, now)
        raise Throttled(f"too many failed sign-ins from this address; try again in {wait} s", wait)

    # Remembered longer than the window, so that waiting out the longest delay does not
    # bring the free failures back.
    remembered = now - timedelta(
        seconds=max(settings.login_memory_seconds, settings.login_window_seconds)
    )
    count, last = ctx.session.execute(
        select(func.count(), func.max(LoginAttempt.at)).where(
            LoginAttempt.success.is_(False),
            LoginAttempt.at > remembered,
            LoginAttempt.cleared_at.is_(None),
            LoginAttempt.email == email,
            LoginAttempt.source_ip == source_ip,
        )
    ).one()
    if count >= settings.login_max_failures and last is not None:
        delay = min(
            2 ** min(count - settings.login_max_failures, 30), settings.login_max_delay_seconds
        )
        until = as_aware(last, now) + timedelta(seconds=delay)
        if now < until:
            wait = retry_after(until, now)
            raise Throttled(f"too many failed sign-ins; try again in {wait} s", wait)

    count, last = ctx.session.execute(
        select(func.count(), func.max(LoginAttempt.at)).where(*counted, LoginAttempt.email == email)
    ).one()
    if count >= settings.login_account_max_failures and last is not None:
        until = as_aware(last, now) + timedelta(seconds=settings.login_account_spacing_seconds)
        if now < until and not _known_address(ctx, email, source_ip, now):
            wait = retry_after(until, now)
            raise Throttled(f"too many failed sign-ins; try again in {wait} s", wait)


def _serialize_attempts(ctx: Ctx, email: str, source_ip: str) -> None:
    """Let one attempt per account and address at a time count, check and record, so a
    burst of parallel guesses cannot all pass the check before any failure is written.

    SQLite already serializes writers (a login is a write transaction); PostgreSQL takes a
    transaction-scoped advisory lock on the pair (other pairs, such as the owner signing in
    from elsewhere, never wait for it).
    """
    one_at_a_time(ctx.session, "tongdao-login", email, source_ip)


def one_at_a_time(session: Session, *parts: str) -> None:
    """On PostgreSQL, a transaction-scoped advisory lock named by ``parts`` (hashed): one
    transaction at a time holds it. SQLite's write transactions are serial already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    session.execute(
        select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True)))
    )


def _known_address(ctx: Ctx, email: str, source_ip: str, now: datetime) -> bool:
    """The account signed in from this address recently (it is the owner's, most likely)."""
    return (
        ctx.session.scalar(
            select(LoginAttempt.id)
            .where(
                LoginAttempt.email == email,
                LoginAttempt.source_ip == source_ip,
                LoginAttempt.success.is_(True),
                LoginAttempt.at > now - KNOWN_ADDRESS_DAYS,
            )
            .limit(1)
        )
        is not None
    )


def _record_attempt(ctx: Ctx, email: str, source_ip: str, *, success: bool) -> None:
    source_ip = throttle_address(source_ip)
    now = ctx.runtime.clock()
    ctx.session.add(LoginAttempt(email=email, source_ip=source_ip, success=success, at=now))
    if success:  # the owner got in from here: their earlier typos stop counting
        ctx.session.execute(
            update(LoginAttempt)
            .where(
                LoginAttempt.email == email,
                LoginAttempt.source_ip == source_ip,
                LoginAttempt.success.is_(False),
                LoginAttempt.cleared_at.is_(None),
            )
            .values(cleared_at=now)
        )


def login(
    ctx: Ctx,
    email: str,
    password: str,
    totp_code: str | None,
    source_ip: str,
    user_agent: str | None = None,
) -> tuple[ApiToken, str, User]:
    """Check credentials and issue a session token. Every outcome is recorded.

    A wrong password, an unknown e-mail, a missing TOTP code and a wrong or replayed one, and a
    right password of a disabled account or a terminated tenant, all answer the same
    (:data:`SIGN_IN_FAILED`) and count as failures: no password is confirmed to whoever
    guessed it. The audit log records the real reason.
    """
    email = validation.normalise_email(email)
    _check_throttle(ctx, email, source_ip)
    user = ctx.session.scalar(select(User).where(User.email == email))
    ok = ctx.runtime.passwords.verify(user.password_hash if user else None, password)
    problem: str | None = None
    if not ok or user is None:
        problem = "email or password is wrong"
    elif user.state != UserState.ACTIVE:
        problem = "user is disabled"  # the audit log says why; the answer stays the same
    elif user.tenant_id is not None:
        tenant = ctx.session.get(Tenant, user.tenant_id)
        if tenant is None or tenant.state == TenantState.TERMINATED:
            problem = "tenant is terminated"
    factor: str | None = None
    if problem is None and user is not None:
        if user.totp_enabled and totp_code:
            if _consume_totp(ctx, user, totp_code):
                factor = second_factor.TOTP
            else:
                problem = "TOTP code is wrong or already used"
        elif second_factor.has_webauthn(ctx.session, user.id):
            # The password was right: a security key must answer next (its own step).
            raise SecondFactorNeeded(second_factor.begin_sign_in(ctx, user))
        elif user.totp_enabled:
            problem = "TOTP code missing"
    actor = Actor(user.id if user else None, email, source_ip)
    _record_attempt(ctx, email, source_ip, success=problem is None)
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
        raise AuthenticationError(SIGN_IN_FAILED)
    set_actor(ctx.session, actor)
    token, secret = issue_token(
        ctx,
        user,
        kind="session",
        name="login",
        scopes=ALL_SCOPES,
        ttl=timedelta(seconds=ctx.runtime.settings.session_ttl_seconds),
        source_ip=source_ip,
        user_agent=user_agent,
        second_factor=factor,
    )
    record(
        ctx.session,
        "login",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"second_factor": factor} if factor else None,
        actor=actor,
    )
    from tongdao.lifetime.service import signed_in

    signed_in(ctx, user)  # device lifetime: the clock starts again, held devices come back
    return token, secret, user


def reauthenticate(
    ctx: Ctx,
    user: User,
    password: str,
    totp_code: str | None = None,
    *,
    totp: bool = False,
    totp_field: str = "totp_code",
) -> None:
    """Check a signed-in user's password again (and, with ``totp``, their TOTP code when it
    is on) before something a stolen session must not do alone. Throttled and counted like a
    sign-in, so a session is no way around the login throttle; 422 keyed by field."""
    source_ip = ctx.source_ip or "unknown"
    _check_throttle(ctx, user.email, source_ip)
    problem: dict[str, str] = {}
    if not ctx.runtime.passwords.verify(user.password_hash, password):
        problem = {"current_password": "is wrong"}
    elif totp and user.totp_enabled:
        if not totp_code:
            problem = {totp_field: "required: this account uses TOTP"}
        elif not _consume_totp(ctx, user, totp_code):
            problem = {totp_field: "is wrong or already used"}
    if not problem:
        return
    _record_attempt(ctx, user.email, source_ip, success=False)
    record(
        ctx.session,
        "reauthentication_failed",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"reason": "; ".join(f"{k} {v}" for k, v in problem.items())},
    )
    ctx.session.commit()
    raise ValidationError(problem)


def _totp(ctx: Ctx, user: User) -> pyotp.TOTP:
    if user.totp_secret_sealed is None:
        raise Conflict("TOTP is not set up for this account")
    return pyotp.TOTP(ctx.runtime.cipher.open(user.totp_secret_sealed, TOTP_PURPOSE))


def _matching_step(ctx: Ctx, user: User, code: str) -> int | None:
    """The time step (now, or one either side for clock drift) whose code this is."""
    totp = _totp(ctx, user)
    current = int(totp.timecode(ctx.runtime.clock()))
    given = code.strip().encode()  # bytes: compare_digest refuses non-ASCII text
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(str(totp.generate_otp(step)).encode(), given):
            return step
    return None


def _consume_totp(ctx: Ctx, user: User, code: str) -> bool:
    """Accept a code once: its step must be later than the last step accepted for the user.

    A conditional update decides, so two requests racing with one code cannot both win.
    """
    step = _matching_step(ctx, user, code)
    if step is None:
        return False
    moved = rows_updated(
        ctx.session,
        update(TotpStep)
        .where(TotpStep.user_id == user.id, TotpStep.last_step < step)
        .values(last_step=step),
    )
    if moved == 1:
        return True
    if ctx.session.scalar(select(TotpStep.user_id).where(TotpStep.user_id == user.id)):
        return False  # this step (or a later one) was used already
    try:
        with ctx.session.begin_nested():
            ctx.session.add(TotpStep(user_id=user.id, last_step=step))
    except IntegrityError:
        return False
    return True


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
    if user.totp_enabled:
        raise Conflict("TOTP is already enabled")
    if not _consume_totp(ctx, user, code):
        raise ValidationError({"code": "TOTP code is wrong"})
    user.totp_enabled = True
    second_factor.mark_session(ctx, second_factor.TOTP)


def disable_totp(
    ctx: Ctx, user: User, code: str, current_password: str, new_password: str | None
) -> int:
    """Turn TOTP off. The password then stands alone, so it must meet the single-factor
    minimum (15 characters): a shorter one has to be replaced in the same request
    (``new_password``), which revokes the user's other sessions and tokens like any change.
    Returns how many credentials were revoked."""
    if not user.totp_enabled:
        raise Conflict("TOTP is not enabled")
    reauthenticate(ctx, user, current_password, code, totp=True, totp_field="code")
    roles = frozenset(Role(r) for r in user.roles)
    if (
        second_factor.is_staff(roles, user.tenant_id)
        and second_factor.required_for_staff(ctx.session)
        and not second_factor.has_webauthn(ctx.session, user.id)
    ):
        raise Conflict(
            "the operator requires a second factor for its staff: add a security key before "
            "turning the authenticator app off"
        )
    if new_password is None:
        problem = policy_problem(current_password, has_second_factor=False, context=[user.email])
        if problem:
            raise ValidationError(
                {"new_password": f"required: without TOTP your password {problem}"}
            )
    user.totp_enabled = False
    user.totp_secret_sealed = None
    revoked = 0
    if new_password is not None:
        revoked = change_password(
            ctx, user, new_password, keep_token_id=ctx.require_principal().token_id
        )
    return revoked


def check_new_password(user: User, password: str, *, field: str = "new_password") -> None:
    """Refuse (422 on ``field``) a password the policy refuses for this account: shorter is
    enough with TOTP on, and it must not be the account's own address."""
    problem = policy_problem(
        password, has_second_factor=bool(user.totp_enabled), context=[user.email or ""]
    )
    if problem:
        raise ValidationError({field: problem})


def change_password(
    ctx: Ctx, user: User, new_password: str, *, keep_token_id: uuid.UUID | None
) -> int:
    """Set a new password (checked against the policy for this account) and revoke every
    other session and API token of the user; returns how many were revoked."""
    check_new_password(user, new_password)
    user.password_hash = ctx.runtime.passwords.hash(new_password)
    revoked = revoke_user_credentials(ctx, user.id, keep_token_id=keep_token_id)
    record(
        ctx.session,
        "password_changed",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"revoked_credentials": revoked},
    )
    return revoked


def revoke_token(ctx: Ctx, principal: Principal, token_id: uuid.UUID) -> None:
    token = ctx.session.get(ApiToken, token_id)
    if token is None or token.user_id != principal.user_id:
        raise NotFound("token not found")
    if token.revoked_at is None:
        token.revoked_at = ctx.runtime.clock()


def revoke_user_credentials(
    ctx: Ctx,
    user_id: uuid.UUID,
    *,
    keep_token_id: uuid.UUID | None = None,
    kind: str | None = None,
) -> int:
    """Revoke every live session and API token of a user (but ``keep_token_id``; only those
    of ``kind`` when given).

    Called when the user's password changes or is reset, and when they are disabled or erased:
    nothing minted under the old secret outlives it. Returns how many were revoked.
    """
    now = ctx.runtime.clock()
    live = select(ApiToken).where(
        ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > now
    )
    if kind is not None:
        live = live.where(ApiToken.kind == kind)
    revoked = 0
    for token in ctx.session.scalars(live):
        if token.id != keep_token_id:
            token.revoked_at = now
            revoked += 1
    return revoked


def live_sessions(ctx: Ctx, user_id: uuid.UUID) -> list[ApiToken]:
    """A user's sessions that still work, newest first."""
    return list(
        ctx.session.scalars(
            select(ApiToken)
            .where(
                ApiToken.user_id == user_id,
                ApiToken.kind == "session",
                ApiToken.revoked_at.is_(None),
                ApiToken.expires_at > ctx.runtime.clock(),
            )
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def revoke_session(ctx: Ctx, principal: Principal, session_id: uuid.UUID) -> None:
    token = ctx.session.get(ApiToken, session_id)
    if token is None or token.user_id != principal.user_id or token.kind != "session":
        raise NotFound("session not found")
    if token.revoked_at is None:
        token.revoked_at = ctx.runtime.clock()


def revoke_other_sessions(ctx: Ctx, principal: Principal) -> int:
    """Sign out everywhere else: every live session of the caller but the one calling."""
    return revoke_user_credentials(
        ctx, principal.user_id, keep_token_id=principal.token_id, kind="session"
    )


def unlock_sign_in(ctx: Ctx, user: User) -> int:
    """An admin clears the failed sign-ins counted against a user's account (from every
    address), so its owner is not kept waiting; audited. The failures still count against
    the addresses they came from. Returns how many were cleared."""
    now = ctx.runtime.clock()
    cleared = rows_updated(
        ctx.session,
        update(LoginAttempt)
        .where(
            LoginAttempt.email == user.email,
            LoginAttempt.success.is_(False),
            LoginAttempt.cleared_at.is_(None),
        )
        .values(cleared_at=now),
    )
    record(
        ctx.session,
        "sign_in_unlocked",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"cleared_failures": cleared},
    )
    return cleared
