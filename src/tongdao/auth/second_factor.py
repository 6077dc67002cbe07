"""Second factors for signing in: WebAuthn security keys and passkeys, and the operator's rule
that staff must use one (TOTP or WebAuthn).

WebAuthn ceremonies use ``webauthn`` (py_webauthn, Duo Security): it builds the options and
verifies the browser's responses (challenge, origin, RP id hash, flags, signature, counter).

Policy, stated:

* **User verification is required** when registering and when signing in: the authenticator
  must check its holder (PIN or biometrics), so a found key is not enough even with the
  password. Resident keys (passkeys) are preferred, not required.
* **Challenges** are random (py_webauthn's 64 bytes), live
  ``TONGDAO_WEBAUTHN_CHALLENGE_SECONDS`` (5 minutes), are bound to what asked for them (a
  registration to the signed-in session, a sign-in to the pending sign-in's cookie) and are
  deleted when a response comes back, right or wrong: a replay finds nothing.
* **Sign counter**: a sign-in whose counter does not rise above the stored one (when the
  authenticator keeps one) is refused and audited as a possible cloned authenticator.
* **RP id and origin** come from the settings (:attr:`tongdao.config.Settings.webauthn_rp`),
  never from a request's Host header.
* **Staff rule**: with :class:`SecondFactorPolicy` on, an operator staff member's session or API
  token made with a password alone is refused; one who has no second factor yet gets a session
  that opens only the enrolment pages (:func:`enrolment_allowed`) until they add one.
* **A lost key**: the person signs in with another key or TOTP and removes it; with none left,
  the operator admin resets a colleague's second factors (audited; never their own), and the
  colleague enrols again at their next sign-in. A tenant user asks their tenant admin the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from tongdao import validation
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.auth.models import ApiToken
from tongdao.auth.permissions import OPERATOR_ROLES, Role
from tongdao.auth.principal import ALL_SCOPES, Principal
from tongdao.auth.webauthn_models import SecondFactorPolicy, WebAuthnChallenge, WebAuthnCredential
from tongdao.errors import (
    AuthenticationError,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, TenantState, User, UserState

REGISTER = "register"
SIGN_IN = "sign_in"
TOTP = "totp"
WEBAUTHN = "webauthn"
MAX_CREDENTIALS = 10
RP_NAME = "Tongdao"
ENROL_FIRST = (
    "the operator requires a second factor for its staff: set up an authenticator app or a "
    "security key first"
)
SIGN_IN_AGAIN = "the operator requires a second factor for its staff: sign in again with it"
# A credential id as the browser sends it: base64url (the stored form has no padding).
RAW_ID = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# What a session without the required second factor may still reach: enrolment and leaving.
ENROLMENT_API = (
    "/api/v1/auth/me",
    "/api/v1/auth/logout",
    "/api/v1/auth/totp",
    "/api/v1/auth/webauthn",
    "/api/v1/auth/second-factor",
)
ENROLMENT_CONSOLE = (
    "/console/account",
    "/console/sign-out",
    "/console/language",
)


class EnrolmentRequired(PermissionDenied):
    """A session of a staff member who must add a second factor before anything else."""

    code = "second_factor_enrolment_required"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return bytes_to_base64url(data)


# --- the staff rule --------------------------------------------------------------------------


def policy(session: Session) -> SecondFactorPolicy | None:
    return session.scalar(select(SecondFactorPolicy).limit(1))


def required_for_staff(session: Session) -> bool:
    row = policy(session)
    return bool(row and row.required_for_staff)


def set_required_for_staff(ctx: Ctx, required: bool) -> SecondFactorPolicy:
    """Turn the staff rule on or off (the caller checked it is the operator admin); the ORM
    hook audits the change. Sessions made by password alone stop working at once, so the
    caller turning it on must be signed in with a second factor themselves (409 otherwise:
    they would lock themselves out)."""
    principal = ctx.require_principal()
    if required and principal.second_factor is None:
        raise Conflict(
            "sign in with your own second factor first (an authenticator app or a security "
            "key): the rule would refuse the session you are using"
        )
    row = policy(ctx.session)
    if row is None:
        row = SecondFactorPolicy(required_for_staff=required)
        ctx.session.add(row)
    else:
        row.required_for_staff = required
    ctx.session.flush()
    return row


def is_staff(roles: frozenset[Role] | set[Role], tenant_id: uuid.UUID | None) -> bool:
    return tenant_id is None and bool(set(roles) & OPERATOR_ROLES)


def has_webauthn(session: Session, user_id: uuid.UUID) -> bool:
    return bool(
        session.scalar(
            select(func.count())
            .select_from(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
        )
    )


def has_second_factor(session: Session, user: User) -> bool:
    return bool(user.totp_enabled) or has_webauthn(session, user.id)


def token_standing(session: Session, *, user_id: uuid.UUID, kind: str, totp_enabled: bool) -> bool:
    """For a staff token made without a second factor, under the staff rule: refuse it (401)
    when it is an API token or its user has a second factor to sign in with; else it is an
    enrolment-only session (returns True). Returns False when the rule is off."""
    if not required_for_staff(session):
        return False
    if kind != "session" or totp_enabled or has_webauthn(session, user_id):
        raise AuthenticationError(SIGN_IN_AGAIN)
    return True


def enrolment_allowed(path: str) -> bool:
    return path.startswith(ENROLMENT_API) or path.startswith(ENROLMENT_CONSOLE)


def mark_session(ctx: Ctx, factor: str) -> None:
    """The caller's session just proved a (new) second factor: it counts as signed in with it."""
    principal = ctx.principal
    if principal is None:
        return
    token = ctx.session.get(ApiToken, principal.token_id)
    if token is not None and token.kind == "session" and token.second_factor is None:
        token.second_factor = factor


def remove_all(ctx: Ctx, user_id: uuid.UUID) -> int:
    """Remove every WebAuthn credential of a user (each audited); returns how many."""
    removed = 0
    for credential in credentials(ctx.session, user_id):
        ctx.session.delete(credential)
        removed += 1
    return removed


def reset_factors(ctx: Ctx, admin: Principal, user: User) -> dict[str, int]:
    """An admin's reset of a colleague's second factors after a lost key (never their own):
    TOTP off, every WebAuthn credential removed, every session and API token revoked.
    Audited as ``second_factors_reset``."""
    from tongdao.auth.service import revoke_user_credentials

    if user.id == admin.user_id:
        raise PermissionDenied(
            "you cannot reset your own second factors: another operator admin must"
        )
    removed = remove_all(ctx, user.id)
    totp = bool(user.totp_enabled)
    user.totp_enabled = False
    user.totp_secret_sealed = None
    revoked = revoke_user_credentials(ctx, user.id)
    outcome = {"webauthn_removed": removed, "totp_removed": int(totp), "revoked": revoked}
    record(
        ctx.session,
        "second_factors_reset",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after=outcome,
    )
    return outcome


# --- credentials -------------------------------------------------------------------------------


def credentials(session: Session, user_id: uuid.UUID) -> list[WebAuthnCredential]:
    return list(
        session.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
            .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)
        )
    )


def _new_challenge(
    ctx: Ctx, user_id: uuid.UUID, purpose: str, binding: str, challenge: bytes
) -> None:
    now = ctx.runtime.clock()
    # One open ceremony per binding: an earlier challenge of it, or any expired one of the
    # user's, is gone.
    ctx.session.execute(
        delete(WebAuthnChallenge).where(
            WebAuthnChallenge.user_id == user_id,
            (WebAuthnChallenge.binding == binding) | (WebAuthnChallenge.expires_at <= now),
        )
    )
    ctx.session.add(
        WebAuthnChallenge(
            user_id=user_id,
            purpose=purpose,
            binding=binding,
            challenge=_b64(challenge),
            expires_at=now + timedelta(seconds=ctx.runtime.settings.webauthn_challenge_seconds),
        )
    )
    ctx.session.flush()


def _take_challenge(ctx: Ctx, purpose: str, binding: str) -> WebAuthnChallenge | None:
    """The live challenge bound to ``binding``, deleted as it is taken (single use: of two
    racing responses, one deletes the row and the other finds nothing)."""
    row = ctx.session.scalar(
        select(WebAuthnChallenge).where(
            WebAuthnChallenge.binding == binding, WebAuthnChallenge.purpose == purpose
        )
    )
    if row is None:
        return None
    gone = ctx.session.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.id == row.id))
    ctx.session.expunge(row)
    if getattr(gone, "rowcount", 1) != 1 or row.expires_at <= ctx.runtime.clock():
        return None
    return row


def registration_options(ctx: Ctx, user: User) -> dict[str, Any]:
    """Options for ``navigator.credentials.create``, bound to the caller's session."""
    principal = ctx.require_principal()
    existing = credentials(ctx.session, user.id)
    if len(existing) >= MAX_CREDENTIALS:
        raise Conflict(f"at most {MAX_CREDENTIALS} security keys per account: remove one first")
    rp_id, _origin = ctx.runtime.settings.webauthn_rp
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_id=user.id.bytes,
        user_name=user.email,
        user_display_name=user.display_name or user.email,
        timeout=ctx.runtime.settings.webauthn_challenge_seconds * 1000,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.credential_id)) for c in existing
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    _new_challenge(ctx, user.id, REGISTER, _hash(str(principal.token_id)), options.challenge)
    parsed: dict[str, Any] = json.loads(options_to_json(options))
    return parsed


def _credential_json(credential: str | dict[str, Any], field: str = "credential") -> str:
    if isinstance(credential, dict):
        return json.dumps(credential)
    if not credential.strip():
        raise ValidationError({field: "is missing: the browser gave no answer"})
    return credential


def register(
    ctx: Ctx, user: User, name: str, credential: str | dict[str, Any]
) -> WebAuthnCredential:
    """Verify the browser's answer to :func:`registration_options` and keep the credential.

    The caller has checked the password again (a stolen session must not bind the account to
    a key its owner does not hold). The calling session then counts as signed in with it."""
    principal = ctx.require_principal()
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100:
        raise ValidationError({"name": "give the key a name of 1 to 100 characters"})
    try:
        validation.single_line(name)
    except ValueError as exc:
        raise ValidationError({"name": str(exc)}) from exc
    if any(c.name == name for c in credentials(ctx.session, user.id)):
        raise ValidationError({"name": "you already have a key of this name"})
    text = _credential_json(credential)
    challenge = _take_challenge(ctx, REGISTER, _hash(str(principal.token_id)))
    if challenge is None or challenge.user_id != user.id:
        raise ValidationError(
            {"credential": "the registration expired or was already used: start again"}
        )
    rp_id, origin = ctx.runtime.settings.webauthn_rp
    try:
        verified = verify_registration_response(
            credential=text,
            expected_challenge=base64url_to_bytes(challenge.challenge),
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, InvalidJSONStructure, ValueError, KeyError) as exc:
        raise ValidationError({"credential": f"the key's answer is refused: {exc}"}) from exc
    credential_id = _b64(verified.credential_id)
    taken = ctx.session.scalar(
        select(WebAuthnCredential.id).where(WebAuthnCredential.credential_id == credential_id)
    )
    if taken is not None:
        raise Conflict("this key is already registered")
    transports: list[str] = []
    try:
        parsed = json.loads(text)
        raw = parsed.get("response", {}).get("transports", []) if isinstance(parsed, dict) else []
        transports = [t for t in raw if t in {m.value for m in AuthenticatorTransport}][:8]
    except (ValueError, AttributeError):
        transports = []
    row = WebAuthnCredential(
        user_id=user.id,
        name=name,
        credential_id=credential_id,
        public_key=_b64(verified.credential_public_key),
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        device_type=str(verified.credential_device_type.value),
        backed_up=verified.credential_backed_up,
        transports=transports,
    )
    ctx.session.add(row)
    ctx.session.flush()
    mark_session(ctx, WEBAUTHN)
    return row


def own_credential(ctx: Ctx, user: User, credential_id: uuid.UUID) -> WebAuthnCredential:
    """One of the user's own keys (another's: 404)."""
    row = ctx.session.get(WebAuthnCredential, credential_id)
    if row is None or row.user_id != user.id:
        raise NotFound("security key not found")
    return row


def remove(ctx: Ctx, user: User, credential_id: uuid.UUID) -> None:
    """Remove one of the user's own keys (another's: 404; the caller has checked the
    password again: without its keys the account signs in with less). Under the staff rule a
    staff member keeps at least one second factor."""
    row = own_credential(ctx, user, credential_id)
    roles = frozenset(Role(r) for r in user.roles)
    if (
        is_staff(roles, user.tenant_id)
        and required_for_staff(ctx.session)
        and not user.totp_enabled
        and len(credentials(ctx.session, user.id)) == 1
    ):
        raise Conflict(
            "the operator requires a second factor for its staff: add another key or an "
            "authenticator app before removing your last key"
        )
    ctx.session.delete(row)
    ctx.session.flush()


def tenant_terminated(session: Session, tenant_id: uuid.UUID) -> bool:
    tenant = session.get(Tenant, tenant_id)
    return tenant is None or tenant.state == TenantState.TERMINATED


# --- signing in with a key --------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSignIn:
    """The password was right and a key must follow: ``secret`` goes in a cookie (console) or
    back to the client (API) and binds the challenge in ``options``."""

    secret: str
    options: dict[str, Any]


def begin_sign_in(ctx: Ctx, user: User) -> PendingSignIn:
    rp_id, _origin = ctx.runtime.settings.webauthn_rp
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=ctx.runtime.settings.webauthn_challenge_seconds * 1000,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.credential_id))
            for c in credentials(ctx.session, user.id)
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    secret = "tdw_" + secrets.token_urlsafe(32)
    _new_challenge(ctx, user.id, SIGN_IN, _hash(secret), options.challenge)
    parsed: dict[str, Any] = json.loads(options_to_json(options))
    return PendingSignIn(secret=secret, options=parsed)


def _raw_id(text: str) -> str:
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ValidationError({"credential": "is not the browser's answer (JSON)"}) from exc
    raw = parsed.get("rawId") if isinstance(parsed, dict) else None
    if not isinstance(raw, str) or len(raw) > 1400 or not RAW_ID.fullmatch(raw):
        raise ValidationError({"credential": "is not the browser's answer (no rawId)"})
    return raw.rstrip("=")


def finish_sign_in(
    ctx: Ctx,
    pending_secret: str,
    credential: str | dict[str, Any],
    source_ip: str,
    user_agent: str | None = None,
) -> tuple[ApiToken, str, User]:
    """Check the key's answer to the pending sign-in's challenge and issue a session.

    Refused (401, audited as ``login_failed`` with the reason, counted by the sign-in throttle):
    no such pending sign-in (expired, already answered, never made), a key that is not one of
    this user's, a wrong origin or RP id, no user verification, a bad signature, and a counter
    that went back (possible clone)."""
    from tongdao.auth.service import SIGN_IN_FAILED, _check_throttle, _record_attempt, issue_token

    text = credential if isinstance(credential, str) else json.dumps(credential)
    challenge = _take_challenge(ctx, SIGN_IN, _hash(pending_secret)) if pending_secret else None
    if challenge is None:
        ctx.session.commit()
        raise AuthenticationError("the sign-in expired or was already answered: start again")
    user = ctx.session.get(User, challenge.user_id)
    if user is None:  # pragma: no cover - the challenge cascades with its user
        ctx.session.commit()
        raise AuthenticationError(SIGN_IN_FAILED)
    _check_throttle(ctx, user.email, source_ip)
    actor = Actor(user.id, user.email, source_ip)
    problem: str | None = None
    row: WebAuthnCredential | None = None
    if user.state != UserState.ACTIVE:
        problem = "user is disabled"
    elif user.tenant_id is not None and tenant_terminated(ctx.session, user.tenant_id):
        problem = "tenant is terminated"  # since the password step, as there
    else:
        try:
            raw_id = _raw_id(text)
        except ValidationError:
            problem = "security key answer is not well formed"
        else:
            # Locked until this sign-in commits: a racing one checks its counter against
            # the counter this one stores (no lost update letting a clone's lower one pass).
            row = ctx.session.scalar(
                select(WebAuthnCredential)
                .where(
                    WebAuthnCredential.user_id == user.id,
                    WebAuthnCredential.credential_id == raw_id,
                )
                .with_for_update()
            )
            if row is None:
                problem = "security key is not one of this account's"
    if problem is None and row is not None:
        rp_id, origin = ctx.runtime.settings.webauthn_rp
        try:
            verified = verify_authentication_response(
                credential=text,
                expected_challenge=base64url_to_bytes(challenge.challenge),
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=base64url_to_bytes(row.public_key),
                credential_current_sign_count=row.sign_count,
                require_user_verification=True,
            )
        except (InvalidAuthenticationResponse, InvalidJSONStructure, ValueError, KeyError) as exc:
            # The library's message may quote the answer (its origin): no controls in the log.
            message = validation.one_line_text(exc)
            if "sign count" in message.lower():
                problem = f"sign counter went back: possible cloned authenticator ({row.name})"
            else:
                problem = f"security key answer refused: {message}"[:300]
        else:
            row.sign_count = verified.new_sign_count
            row.backed_up = verified.credential_backed_up
            row.last_used_at = ctx.runtime.clock()
    _record_attempt(ctx, user.email, source_ip, success=problem is None)
    if problem is not None:
        record(
            ctx.session,
            "login_failed",
            "user",
            user.id,
            tenant_id=user.tenant_id,
            after={"reason": problem, "second_factor": WEBAUTHN},
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
        second_factor=WEBAUTHN,
    )
    record(
        ctx.session,
        "login",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"second_factor": WEBAUTHN},
        actor=actor,
    )
    from tongdao.lifetime.service import signed_in

    signed_in(ctx, user)  # device lifetime: the clock starts again, held devices come back
    return token, secret, user
