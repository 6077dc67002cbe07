"""Second factors in the console: security keys and passkeys (WebAuthn).

Your security keys (``/console/account/keys``, everyone signed in)
    The keys of your account with their names and last use; add one (a name and your password,
    then the browser asks the key: ``static/js/webauthn.js``), remove one. A staff member the
    operator requires a second factor of, who has none yet, is sent here at sign-in and can
    open nothing else (but the account page's authenticator app) until they add one.
The key's step of signing in (``POST /console/sign-in/key``)
    After a right password, an account with a key gets a page that asks the key; the pending
    sign-in is a cookie bound to a one-time challenge.
Second factors for staff (``/console/second-factors``, operator staff)
    The operator's rule (the operator admin turns it on and off) and each staff member's
    factors, with a reset for a colleague who lost their key (the operator admin; not
    their own).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from tongdao.api.deps import Guard
from tongdao.auth import second_factor, service
from tongdao.auth.permissions import OPERATOR_ROLES, Action
from tongdao.auth.webauthn_models import WebAuthnCredential
from tongdao.errors import AuthenticationError, Conflict, NotFound, Throttled, ValidationError
from tongdao.tenancy.models import User
from tongdao.web.console import (
    PAGE_HEADERS,
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    ViewDep,
    _secure,
    check_csrf,
    done_notice,
    field_errors,
    parse_uuid,
    redirect,
    render,
    safe_next,
    translate_message,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
NAV = [NavItem("/console/second-factors", N_("Second factors"), OPERATOR_ROLES)]
PENDING_COOKIE = "tongdao_pending_sign_in"
KEY_NOTICES = {
    "added": N_("The security key is added: signing in asks for it from now on."),
    "removed": N_("The security key is removed."),
}
POLICY_NOTICES = {
    "on": N_("Every operator staff member must now sign in with a second factor."),
    "off": N_("A second factor is no longer required of operator staff."),
    "reset": N_("The staff member's second factors are removed and their sessions ended."),
}


def _me(view: View) -> User:
    view.require_principal()
    if view.user is None:  # pragma: no cover - the session lookup joined the user
        raise NotFound("user not found")
    return view.user


def pending_cookie_name(view: View) -> str:
    return ("__Host-" if _secure(view.request) else "") + PENDING_COOKIE


# === your security keys =====================================================================


def _keys_page(
    view: View,
    *,
    errors: dict[str, str] | None = None,
    name: str = "",
    status: int = 200,
    notice: str = "",
) -> Response:
    user = _me(view)
    principal = view.require_principal()
    required = second_factor.is_staff(
        principal.roles, principal.tenant_id
    ) and second_factor.required_for_staff(view.ctx.session)
    return render(
        view,
        "me/keys.html",
        {
            "keys": second_factor.credentials(view.ctx.session, user.id),
            "totp_enabled": bool(user.totp_enabled),
            "required": required,
            "enrolment_only": principal.enrolment_only,
            "errors": errors or {},
            "name": name,
            "notice": notice,
            "rp_id": view.ctx.runtime.settings.webauthn_rp[0],
        },
        status=status,
        title=view._("Security keys and passkeys"),
    )


@router.get("/console/account/keys")
def keys(view: UserViewDep, done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _keys_page(view, notice=done_notice(view, done, KEY_NOTICES))


@router.post("/console/account/keys/options")
def key_options(view: UserViewDep, form: FormDep) -> Response:
    """Options for ``navigator.credentials.create``, bound to this session (JSON for the
    page's script)."""
    check_csrf(view, form)
    try:
        options: dict[str, Any] = second_factor.registration_options(view.ctx, _me(view))
    except Conflict as exc:
        view.ctx.session.rollback()
        return JSONResponse(
            {"error": translate_message(view.locale, exc.message)},
            status_code=409,
            headers=PAGE_HEADERS,
        )
    view.ctx.session.commit()
    return JSONResponse(options, headers=PAGE_HEADERS)


@router.post("/console/account/keys")
def add_key(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    user = _me(view)
    name = form.text("name")
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = view._("give the key a name, such as where you keep it")
    if not form.get("current_password"):
        errors["current_password"] = view._("enter your password")
    if errors:
        return _keys_page(view, errors=errors, name=name, status=422)
    try:
        # A key outlives the session: with TOTP on, its code too (as for an API token).
        service.reauthenticate(
            view.ctx, user, form.get("current_password"), form.text("totp_code"), totp=True
        )
        second_factor.register(view.ctx, user, name, form.get("credential"))
    except ValidationError as exc:
        view.ctx.session.commit()  # the challenge is spent either way
        return _keys_page(view, errors=field_errors(view, exc), name=name, status=422)
    except Conflict as exc:
        view.ctx.session.commit()
        errors = {"form": translate_message(view.locale, exc.message)}
        return _keys_page(view, errors=errors, name=name, status=409)
    view.ctx.session.commit()
    return redirect(view, "/console/account/keys?done=added")


@router.post("/console/account/keys/{key_id}/remove")
def remove_key(view: UserViewDep, form: FormDep, key_id: str) -> Response:
    check_csrf(view, form)
    user = _me(view)
    key = second_factor.own_credential(view.ctx, user, parse_uuid(key_id, "security key")).id
    try:
        # Without its keys the account signs in with less: not for a stolen session alone.
        service.reauthenticate(view.ctx, user, form.get("current_password"))
    except ValidationError:
        errors = {"form": view._("your password is wrong: the key stays")}
        return _keys_page(view, errors=errors, status=422)
    try:
        second_factor.remove(view.ctx, user, key)
    except Conflict as exc:
        view.ctx.session.rollback()
        errors = {"form": translate_message(view.locale, exc.message)}
        return _keys_page(view, errors=errors, status=409)
    view.ctx.session.commit()
    return redirect(view, "/console/account/keys?done=removed")


# === the key's step of signing in ============================================================


def key_step_page(
    view: View, pending: second_factor.PendingSignIn, next_path: str, status: int = 200
) -> Response:
    """The page that asks the key, with the pending sign-in's cookie."""
    response = render(
        view,
        "sign_in_key.html",
        {"options": json.dumps(pending.options), "next": next_path},
        status=status,
        title=view._("Use your security key"),
    )
    response.set_cookie(
        pending_cookie_name(view),
        pending.secret,
        max_age=view.ctx.runtime.settings.webauthn_challenge_seconds,
        httponly=True,
        samesite="strict",
        secure=_secure(view.request),
        path="/",
    )
    return response


@router.post("/console/sign-in/key")
def sign_in_with_key(view: ViewDep, form: FormDep) -> Response:
    from tongdao.web.pages.session import sign_in_refused, signed_in

    check_csrf(view, form)
    next_path = safe_next(form.get("next"), "")
    secret = view.request.cookies.get(pending_cookie_name(view), "")
    try:
        _token, session_secret, user = second_factor.finish_sign_in(
            view.ctx,
            secret,
            form.get("credential"),
            view.ctx.source_ip or "unknown",
            view.request.headers.get("user-agent"),
        )
    except (AuthenticationError, ValidationError) as exc:
        message = view._("the security key did not confirm the sign-in: sign in again")
        if isinstance(exc, AuthenticationError) and "expired" in exc.message:
            message = view._("the sign-in expired or was already answered: sign in again")
        response = sign_in_refused(view, message, next_path, status=401)
        response.delete_cookie(pending_cookie_name(view), path="/")
        return response
    except Throttled as exc:
        message = view._(
            "too many failed sign-ins; try again in %(seconds)s s", seconds=exc.retry_after
        )
        response = sign_in_refused(view, message, next_path, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    view.ctx.session.commit()
    response = signed_in(view, user, session_secret, next_path)
    response.delete_cookie(pending_cookie_name(view), path="/")
    return response


# === the operator's rule ====================================================================


def _policy_page(
    view: View, notice: str = "", errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    guard = Guard(view.ctx)
    guard.require("second_factor_policy", Action.READ)
    keys_of = dict(
        view.ctx.session.execute(
            select(WebAuthnCredential.user_id, func.count()).group_by(WebAuthnCredential.user_id)
        ).all()
    )
    staff = [
        user
        for user in view.ctx.session.scalars(
            select(User).where(User.tenant_id.is_(None)).order_by(User.email)
        )
        if set(user.roles) & {str(r) for r in OPERATOR_ROLES}
    ]
    return render(
        view,
        "operator/second_factor.html",
        {
            "required": second_factor.required_for_staff(view.ctx.session),
            "may_change": view.can("second_factor_policy", Action.UPDATE),
            "may_reset": view.can("staff", Action.UPDATE),
            "staff": staff,
            "keys_of": keys_of,
            "me": view.require_principal().user_id,
            "notice": notice,
            "errors": errors or {},
        },
        status=status,
        title=view._("Second factors for staff"),
    )


@router.get("/console/second-factors")
def policy_page(view: UserViewDep, done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _policy_page(view, notice=done_notice(view, done, POLICY_NOTICES))


@router.post("/console/second-factors")
def change_policy(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    Guard(view.ctx).require("second_factor_policy", Action.UPDATE)
    required = form.text("required_for_staff") == "on"
    try:
        second_factor.set_required_for_staff(view.ctx, required)
    except Conflict as exc:
        view.ctx.session.rollback()
        errors = {"form": translate_message(view.locale, exc.message)}
        return _policy_page(view, errors=errors, status=409)
    view.ctx.session.commit()
    return redirect(view, f"/console/second-factors?done={'on' if required else 'off'}")


@router.post("/console/second-factors/staff/{staff_id}/reset")
def reset_staff(view: UserViewDep, form: FormDep, staff_id: str) -> Response:
    """A colleague lost their key: their keys and TOTP are removed and they are signed out
    everywhere (the operator admin; not their own)."""
    from tongdao.auth.targets import staff_member
    from tongdao.errors import PermissionDenied

    check_csrf(view, form)
    guard = Guard(view.ctx)
    user = staff_member(guard, parse_uuid(staff_id, "staff member"))
    try:
        second_factor.reset_factors(view.ctx, guard.principal, user)
    except PermissionDenied as exc:
        view.ctx.session.rollback()
        errors = {"form": translate_message(view.locale, exc.message)}
        return _policy_page(view, errors=errors, status=403)
    view.ctx.session.commit()
    return redirect(view, "/console/second-factors?done=reset")


__all__ = ["NAV", "router"]
