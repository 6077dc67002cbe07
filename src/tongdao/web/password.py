"""The pages a mailed one-time link opens (invitation or reset), and "forgot your password".

Rendered on the server from the same services as ``POST /api/v1/auth/password-reset`` and
``.../complete`` (:mod:`tongdao.auth.reset`): plain forms posted back here, no script. The
link's secret is the only credential of the reset form, so it carries no CSRF token; the
forgot form answers the same for any address, so a forged post learns nothing. Both still
refuse a post the browser marks as cross-site (``Sec-Fetch-Site``, ``Origin``), so another
site cannot make its visitors' browsers send reset mails or use a link it holds.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Response

from tongdao.auth import links, reset
from tongdao.auth.links import LinkPurpose
from tongdao.errors import Throttled, ValidationError
from tongdao.web.console import (
    ConsoleRoute,
    FormDep,
    View,
    ViewDep,
    check_same_site,
    field_errors,
    render,
)
from tongdao.web.i18n import N_

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
MAX_FIELD = 512

LINK_UNUSABLE = N_("This link is not usable: it was used, replaced by a newer one, or it expired.")


def _message(
    view: View,
    heading: str,
    *,
    status: int,
    problem: str = "",
    done: str = "",
    advice: str = "",
) -> Response:
    return render(
        view,
        "password/message.html",
        {"heading": heading, "problem": problem, "done": done, "advice": advice},
        status=status,
        title=heading,
    )


def _unusable(view: View) -> Response:
    return _message(
        view,
        view._("Link not usable"),
        status=410,
        problem=view._(LINK_UNUSABLE),
        advice=view._("Ask for a new one from the sign-in page, or from your administrator."),
    )


def _choose(
    view: View, token: str, purpose: str, errors: dict[str, str], status: int = 200
) -> Response:
    return render(
        view,
        "password/choose.html",
        {"token": token, "invitation": purpose == LinkPurpose.INVITATION, "errors": errors},
        status=status,
        title=view._("Choose a password"),
    )


@router.get("/console/password/reset")
def reset_page(view: ViewDep, token: Annotated[str, Query(max_length=MAX_FIELD)] = "") -> Response:
    link = links.find_open(view.ctx, token)
    if link is None:
        return _unusable(view)
    return _choose(view, token, link.purpose, {})


@router.post("/console/password/reset")
def reset_submit(view: ViewDep, form: FormDep) -> Response:
    check_same_site(view)
    token = form.get("token")[:MAX_FIELD]
    password = form.get("new_password")[:MAX_FIELD]
    link = links.find_open(view.ctx, token)
    if link is None:
        return _unusable(view)
    if not password:
        errors = {"new_password": view._("choose a password")}
        return _choose(view, token, link.purpose, errors, status=422)
    if password != form.get("confirm_password")[:MAX_FIELD]:
        errors = {"confirm_password": view._("the two passwords differ")}
        return _choose(view, token, link.purpose, errors, status=422)
    try:
        reset.complete(view.ctx, token, password)
    except ValidationError as exc:
        if "token" in exc.fields:
            return _unusable(view)
        return _choose(view, token, link.purpose, field_errors(view, exc), status=422)
    view.ctx.session.commit()
    return _message(
        view,
        view._("Password set"),
        status=200,
        done=view._("Your password is set; every earlier session of your account was ended."),
    )


@router.get("/console/password/forgot")
def forgot_page(view: ViewDep) -> Response:
    return _forgot(view, "", {})


def _forgot(view: View, email: str, errors: dict[str, str], status: int = 200) -> Response:
    return render(
        view,
        "password/forgot.html",
        {"email": email, "errors": errors},
        status=status,
        title=view._("Forgot your password?"),
    )


@router.post("/console/password/forgot")
def forgot_submit(view: ViewDep, form: FormDep, background: BackgroundTasks) -> Response:
    check_same_site(view)
    address = form.text("email")[:MAX_FIELD]
    if not 3 <= len(address) <= 320:
        errors = {"email": view._("enter the e-mail address of your account")}
        return _forgot(view, address, errors, status=422)
    source_ip = view.ctx.source_ip or "unknown"
    try:
        lookup = reset.record_request(view.ctx, address, source_ip)
    except ValidationError as exc:
        return _forgot(view, address, field_errors(view, exc), status=422)
    except Throttled as exc:
        response = _message(
            view,
            view._("Try again later"),
            status=429,
            problem=view._(
                "too many password reset requests; try again in %(wait)s s", wait=exc.retry_after
            ),
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    view.ctx.session.commit()
    if lookup is not None:
        background.add_task(reset.send_reset_link, view.ctx.runtime, lookup, source_ip)
    return _message(
        view,
        view._("Check your mail"),
        status=202,
        done=view._(
            "If an account uses this address, a link to choose a new password is on its way. "
            "It works once and expires."
        ),
    )
