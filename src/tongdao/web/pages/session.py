"""Signing in and out, the language switch, first-run setup and the landing page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from tongdao.auth import service
from tongdao.auth.permissions import Role
from tongdao.errors import AuthenticationError, Conflict, Throttled, ValidationError
from tongdao.operator.bootstrap import create_first_admin, operator_admin_exists
from tongdao.tenancy.models import User
from tongdao.web import i18n
from tongdao.web.console import (
    LANGUAGE_COOKIE,
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    ViewDep,
    check_csrf,
    delete_session_cookie,
    done_notice,
    field_errors,
    finish,
    redirect,
    render,
    safe_next,
    set_session_cookie,
)
from tongdao.web.first_run import FirstRun
from tongdao.web.i18n import N_
from tongdao.web.pages.keys import key_step_page

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
NAV = [NavItem("/console/home", N_("Home"), frozenset(Role))]


def first_run(request: Request) -> FirstRun:
    state: FirstRun = request.app.state.first_run
    return state


@router.get("/console/")
def console_root(view: ViewDep) -> Response:
    if not operator_admin_exists(view.ctx):
        return redirect(view, "/console/setup")
    if view.principal is None:
        return redirect(view, "/console/sign-in")
    return redirect(view, "/console/home")


# --- sign in / out -----------------------------------------------------------------------


def _sign_in_page(
    view: View,
    *,
    email: str = "",
    next_path: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    return render(
        view,
        "sign_in.html",
        {"email": email, "next": next_path, "errors": errors or {}, "notice": notice},
        status=status,
        title=view._("Sign in"),
    )


@router.get("/console/sign-in")
def sign_in_page(
    view: ViewDep,
    next_path: Annotated[str, Query(alias="next", max_length=2000)] = "",
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    if view.principal is not None:
        return redirect(view, safe_next(next_path))
    notices = {
        "signed-out": N_("You are signed out."),
        "setup": N_("The first operator admin is set up: sign in."),
    }
    notice = done_notice(view, done, notices)
    return _sign_in_page(view, next_path=safe_next(next_path, ""), notice=notice)


@router.post("/console/sign-in")
def sign_in(view: ViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    email = form.text("email")
    next_path = safe_next(form.get("next"), "")
    errors: dict[str, str] = {}
    if not email:
        errors["email"] = view._("enter the e-mail address of your account")
    if not form.get("password"):
        errors["password"] = view._("enter your password")
    if errors:
        return _sign_in_page(view, email=email, next_path=next_path, errors=errors, status=422)
    try:
        _token, secret, user = service.login(
            view.ctx,
            email,
            form.get("password"),
            form.optional("totp_code"),
            view.ctx.source_ip or "unknown",
            view.request.headers.get("user-agent"),
        )
    except service.SecondFactorNeeded as needed:
        # The password was right; the account's security key completes the sign-in.
        view.ctx.session.commit()
        return key_step_page(view, needed.pending, next_path)
    except AuthenticationError:
        errors = {"form": view._("e-mail, password or authentication code is wrong")}
        return _sign_in_page(view, email=email, next_path=next_path, errors=errors, status=401)
    except Throttled as exc:
        errors = {
            "form": view._(
                "too many failed sign-ins; try again in %(seconds)s s", seconds=exc.retry_after
            )
        }
        response = _sign_in_page(view, email=email, next_path=next_path, errors=errors, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except ValidationError as exc:
        errors = field_errors(view, exc)
        return _sign_in_page(view, email=email, next_path=next_path, errors=errors, status=422)
    view.ctx.session.commit()
    return signed_in(view, user, secret, next_path)


def signed_in(view: View, user: User, secret: str, next_path: str) -> Response:
    """The answer to a sign-in that succeeded: the session cookie, on to the page asked for."""
    response = redirect(view, safe_next(next_path))
    set_session_cookie(
        response, view.request, secret, view.ctx.runtime.settings.session_ttl_seconds
    )
    if user.language:
        view.language_cookie = user.language
        finish(view, response)
    return response


def sign_in_refused(view: View, message: str, next_path: str, *, status: int) -> Response:
    """The sign-in page again with ``message`` (a step after the password failed)."""
    return _sign_in_page(view, next_path=next_path, errors={"form": message}, status=status)


@router.post("/console/sign-out")
def sign_out(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    principal = view.require_principal()
    service.revoke_token(view.ctx, principal, principal.token_id)
    view.ctx.session.commit()
    response = redirect(None, "/console/sign-in?done=signed-out")
    delete_session_cookie(response, view.request)
    return response


# --- language ------------------------------------------------------------------------------


@router.post("/console/language")
def choose_language(view: ViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    language = form.text("language")
    if language not in i18n.LANGUAGES:
        language = i18n.DEFAULT
    view.language_cookie = language
    if view.user is not None and view.user.language != language:
        view.user.language = language
        view.ctx.session.commit()
    target = form.get("next")
    return redirect(view, target if target == "/console/" else safe_next(target, "/console/"))


# --- first run -----------------------------------------------------------------------------


def _setup_page(
    view: View, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Response:
    return render(
        view,
        "setup.html",
        {"values": values, "errors": errors},
        status=status,
        title=view._("Set up Tongdao"),
    )


@router.get("/console/setup")
def setup_page(view: ViewDep, request: Request) -> Response:
    if operator_admin_exists(view.ctx):
        first_run(request).finish()
        return redirect(view, "/console/")
    first_run(request).code()  # printed on the server's console if not yet
    return _setup_page(view, {}, {})


@router.post("/console/setup")
def setup(view: ViewDep, form: FormDep, request: Request) -> Response:
    check_csrf(view, form)
    state = first_run(request)
    if operator_admin_exists(view.ctx):
        state.finish()
        return redirect(view, "/console/")
    values = {name: form.text(name) for name in ("setup_code", "email", "display_name")}
    errors: dict[str, str] = {}
    if not state.check(form.text("setup_code")):
        errors["setup_code"] = view._(
            "is not the setup code the server printed on its console and in its log"
        )
        return _setup_page(view, values, errors, status=422)
    if form.get("password") != form.get("confirm_password"):
        errors["confirm_password"] = view._("the two passwords differ")
        return _setup_page(view, values, errors, status=422)
    try:
        create_first_admin(
            view.ctx,
            values["email"],
            values["display_name"],
            form.get("password"),
            actor="console:first-run setup",
        )
    except ValidationError as exc:
        return _setup_page(view, values, field_errors(view, exc), status=422)
    except Conflict:
        state.finish()
        return redirect(view, "/console/")
    view.ctx.session.commit()
    state.finish()
    return redirect(view, "/console/sign-in?done=setup")


# --- landing -------------------------------------------------------------------------------


@router.get("/console/home")
def home(view: UserViewDep) -> Response:
    return render(view, "home.html", title=view._("Home"))


__all__ = ["LANGUAGE_COOKIE", "router"]
