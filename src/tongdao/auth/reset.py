"""Passwords chosen through one-time links: invitations, admin resets, "forgot password".

Admins never set or learn a user's password. Creating a user mails them an invitation link;
an admin's reset ends the user's sessions and tokens, voids the old password and mails a reset
link; anyone may ask for a reset link for an address, and is answered the same whether or not
the address has an account. Completing a link sets the password (through the password
policy), ends every session and token of the user and is audited.

:func:`set_password` is the one direct way to set a password, for ``tongdao admin bootstrap``
and test fixtures; no API route reaches it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from tongdao import validation
from tongdao.audit.recorder import Actor, record
from tongdao.auth import links, second_factor
from tongdao.auth.links import LinkPurpose, PasswordResetRequest
from tongdao.auth.service import check_new_password, revoke_user_credentials
from tongdao.errors import Conflict, Throttled, ValidationError
from tongdao.mail import service as mail
from tongdao.mail import texts
from tongdao.runtime import Ctx, Runtime
from tongdao.schemas import OneLine, Strict
from tongdao.tenancy.models import Tenant, TenantState, User, UserState
from tongdao.web import i18n

log = logging.getLogger("tongdao.auth")

ACCEPTED_MESSAGE = (
    "If an account uses this address, a link to choose a new password is on its way. "
    "It works once and expires."
)
BAD_LINK = "this link cannot be used: it was used already, replaced by a newer one, or expired"


# --- schemas ---------------------------------------------------------------------------------
class ResetRequest(Strict):
    email: Annotated[str, Field(min_length=3, max_length=320), OneLine]


class ResetComplete(Strict):
    token: Annotated[str, Field(min_length=1, max_length=200)]
    new_password: Annotated[str, Field(min_length=1, max_length=256)]


class ResetAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str = ACCEPTED_MESSAGE


class LinkSent(BaseModel):
    status: Literal["sent"] = "sent"
    purpose: LinkPurpose
    sessions_revoked: int = Field(description="sessions and API tokens of the user ended")


# --- the one direct way ------------------------------------------------------------------
def set_password(ctx: Ctx, user: User, password: str, *, field: str = "password") -> None:
    """Set a password directly (bootstrap, fixtures): policy-checked, not exposed by the API."""
    check_new_password(user, password, field=field)
    user.password_hash = ctx.runtime.passwords.hash(password)


# --- mail ------------------------------------------------------------------------------------
def _compose(ctx: Ctx, user: User, purpose: LinkPurpose, reason: str, url: str) -> tuple[str, str]:
    """The link mail in the person's language (``users.language``; English when unset)."""
    if purpose is LinkPurpose.INVITATION:
        kind = texts.INVITATION
    elif reason == "admin":
        kind = texts.ADMIN_RESET
    else:
        kind = texts.SELF_RESET
    return texts.link_mail(
        kind,
        texts.language_of(user.language),
        email=user.email,
        name=user.display_name,
        lifetime=links.ttl(ctx, purpose),
        url=url,
    )


def _send_link(ctx: Ctx, user: User, purpose: LinkPurpose, reason: str) -> None:
    _link, secret = links.issue(ctx, user, purpose)
    subject, text = _compose(ctx, user, purpose, reason, links.url(ctx, secret))
    mail.queue(ctx, user.email, subject, text)


def inviter_language(ctx: Ctx) -> str | None:
    """The language of the admin who invites: the console session's when the invitation is
    made in the console, else the one the admin chose in the console (kept on their account);
    None when neither is known."""
    if ctx.language in i18n.LANGUAGES:
        return ctx.language
    if ctx.principal is not None:
        inviter = ctx.session.get(User, ctx.principal.user_id)
        if inviter is not None and inviter.language in i18n.LANGUAGES:
            return inviter.language
    return None


def _can_sign_in(ctx: Ctx, user: User) -> bool:
    if user.state != UserState.ACTIVE or user.erased_at is not None:
        return False
    if user.tenant_id is not None:
        state = ctx.session.scalar(select(Tenant.state).where(Tenant.id == user.tenant_id))
        if state == TenantState.TERMINATED:
            return False
    return True


# --- invitations and admin resets --------------------------------------------------------------
def invite(ctx: Ctx, user: User) -> None:
    """Mail a new user the link to choose their first password, in the inviting admin's
    language, which becomes the new user's until they choose their own in the console."""
    if user.language is None:
        user.language = inviter_language(ctx)
    _send_link(ctx, user, LinkPurpose.INVITATION, "invitation")
    record(ctx.session, "invitation_sent", "user", user.id, tenant_id=user.tenant_id)


def admin_reset(ctx: Ctx, user: User) -> LinkSent:
    """An admin's reset: end the user's sessions and tokens, void the password, mail a link.

    The admin learns neither the password nor the link. A user who never chose a password gets
    a fresh invitation instead. TOTP is turned off and security keys are removed too (the
    person enrols again once signed in): a reset is how someone who lost their authenticator,
    or had one bound to their account with a stolen session, gets back in. An admin's reset of
    their own password keeps their second factors (another admin resets those: a stolen
    session with the mailbox must not shed them).
    """
    if user.erased_at is not None:
        raise Conflict("the user's personal data was erased; nothing to reset")
    if user.state != UserState.ACTIVE:
        raise Conflict("the user is disabled; enable them first", {"state": "disabled"})
    purpose = LinkPurpose.PASSWORD_RESET if user.password_hash else LinkPurpose.INVITATION
    user.password_hash = None
    totp_cleared, keys_removed = False, 0
    if ctx.principal is None or ctx.principal.user_id != user.id:
        totp_cleared = bool(user.totp_enabled)
        user.totp_enabled = False
        user.totp_secret_sealed = None
        keys_removed = second_factor.remove_all(ctx, user.id)
    revoked = revoke_user_credentials(ctx, user.id)
    _send_link(ctx, user, purpose, "admin")
    record(
        ctx.session,
        "password_reset",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={
            "purpose": purpose.value,
            "sessions_revoked": revoked,
            "totp_cleared": totp_cleared,
            "webauthn_removed": keys_removed,
        },
    )
    return LinkSent(purpose=purpose, sessions_revoked=revoked)


# --- forgot password -----------------------------------------------------------------------------
def record_request(ctx: Ctx, email: str, source_ip: str) -> str | None:
    """Count a "forgot password" request; the address to look up, or None to stay quiet.

    Throttled per source address (429, counted whether or not the account exists) and per
    e-mail (quietly: the answer stays the same, no more mail goes out). Whether an account
    uses the address is looked up only afterwards, by :func:`send_reset_link`, after the
    answer has gone: the answer and its timing are the same either way.
    """
    settings = ctx.runtime.settings
    try:  # the console's form reaches here without the schema
        validation.single_line(email)
    except ValueError as exc:
        raise ValidationError({"email": str(exc)}) from exc
    address = validation.normalise_email(email)
    now = ctx.runtime.clock()
    since = now - timedelta(seconds=settings.password_reset_window_seconds)
    recent = select(func.count(), func.min(PasswordResetRequest.at)).where(
        PasswordResetRequest.at > since
    )
    by_ip, oldest = ctx.session.execute(
        recent.where(PasswordResetRequest.source_ip == source_ip)
    ).one()
    if by_ip >= settings.password_reset_max_per_address and oldest is not None:
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)
        wait = max(int((oldest - since).total_seconds()) + 1, 1)
        raise Throttled(f"too many password reset requests; try again in {wait} s", wait)
    by_email = ctx.session.execute(recent.where(PasswordResetRequest.email == address)).one()[0]
    ctx.session.add(PasswordResetRequest(email=address, source_ip=source_ip, at=now))
    if by_email >= settings.password_reset_max_per_email:
        return None
    return address


def send_reset_link(runtime: Runtime, address: str, source_ip: str) -> None:
    """Mail a reset link when ``address`` names an account that may sign in; else nothing.

    Runs after the answer was sent (a background task), in its own transaction.
    """
    try:
        with runtime.db.session() as session:
            ctx = Ctx(session=session, runtime=runtime, source_ip=source_ip)
            user = session.scalar(select(User).where(User.email == address))
            if user is None or not _can_sign_in(ctx, user):
                return
            _send_link(ctx, user, LinkPurpose.PASSWORD_RESET, "self")
            record(
                session,
                "password_reset_requested",
                "user",
                user.id,
                tenant_id=user.tenant_id,
                actor=Actor(None, address, source_ip),
            )
            session.commit()
    except Exception:  # the answer has gone; the person may ask again
        log.exception("a password reset link could not be prepared")


# --- completing a link ---------------------------------------------------------------------------
def complete(ctx: Ctx, secret: str, new_password: str) -> User:
    """Set the password through a link: once, before it expires, for an active user."""
    refused = ValidationError({"token": BAD_LINK})
    link = links.find_open(ctx, secret)
    if link is None:
        raise refused
    user = ctx.session.get(User, link.user_id)
    if user is None or not _can_sign_in(ctx, user):
        raise refused
    check_new_password(user, new_password)  # refused: the link stays usable
    if not links.consume(ctx, link):
        raise refused  # used by a concurrent request
    user.password_hash = ctx.runtime.passwords.hash(new_password)
    revoked = revoke_user_credentials(ctx, user.id)
    links.void_open_links(ctx, user.id)
    record(
        ctx.session,
        "password_set_by_link",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"purpose": link.purpose, "sessions_revoked": revoked},
        actor=Actor(user.id, user.email, ctx.source_ip),
    )
    return user
