"""A person's own things: their account, their devices and their privacy.

Account (``/console/account``, everyone signed in)
    Change the password (the current one again), the signed-in sessions with revoke and "sign
    out everywhere else", an authenticator app (TOTP) set up and turned off: the same services
    as ``/api/v1/auth/...``.
My devices (``/console/my/devices``, tenant roles)
    The person's own devices with their state and last handshake; registering one makes the
    X25519 key pair in the browser (``static/js/me-devices.js`` with ``device-keys.js``): the
    page posts only the name and the public key, then fetches the server's configuration
    (``wireguard.conf`` without a private key, :func:`tongdao.network.service.device_config`)
    and puts the private key into it in the browser, for download and as a QR code. For a
    company's first device the gateway may not have set the company's tunnel up yet: the
    configuration answers 409 marked ``X-Tongdao-Config: waiting`` and the page keeps the key
    in memory and asks again (bounded: ``CONFIG_WAIT_SECONDS``), then completes it. Without
    script the form takes a public key made with ``wg genkey | wg pubkey``. Another person's
    device (even a tenant admin's colleague's) answers 404 here.
My privacy (``/console/my/privacy``, tenant roles)
    The current privacy notice, the person's consents (given as "self": this is their own
    signed-in session), withdrawing the consent to transfer abroad, and the export of
    everything held about them (audited by the service).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import Select

from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.auth import service as auth
from tongdao.auth.permissions import Action, Role
from tongdao.auth.schemas import PasswordChange, TotpConfirm, TotpDisable
from tongdao.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationError
from tongdao.network import service as network
from tongdao.network.models import Device, DeviceState
from tongdao.network.schemas import DeviceCreate, DeviceUpdate
from tongdao.privacy import schemas as privacy_schemas
from tongdao.privacy import service as privacy
from tongdao.privacy.models import ConsentKind
from tongdao.tenancy.models import Tenant, User
from tongdao.web.console import (
    PAGE_HEADERS,
    ConsoleRoute,
    FormDep,
    NavItem,
    UserViewDep,
    View,
    check_csrf,
    done_notice,
    field_errors,
    parse,
    parse_uuid,
    redirect,
    render,
    translate_message,
)
from tongdao.web.i18n import N_, SHANGHAI
from tongdao.web.pages.people import presence

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
TENANT_PEOPLE = frozenset({Role.TENANT_ADMIN, Role.EMPLOYEE})
NAV = [
    NavItem("/console/my/devices", N_("My devices"), TENANT_PEOPLE),
    NavItem("/console/my/privacy", N_("My privacy"), TENANT_PEOPLE),
]

# A peer whose last handshake is this recent is online: WireGuard renews a session's handshake
# every 2 minutes while it carries traffic (keepalive 25 s) and drops it after 3 (REJECT_AFTER).
PAGE_SIZE = 25
# A tenant's first device: no gateway has published the tenant's interface key yet, so the
# registration page asks for the configuration again, every few seconds (growing to 15 s),
# for at most CONFIG_WAIT_SECONDS, then says what to do (and offers to check again).
CONFIG_POLL_SECONDS = 3
CONFIG_WAIT_SECONDS = 300
CONFIG_WAITING_HEADER = "X-Tongdao-Config"
DEVICE_STATES = [state.value for state in DeviceState]


def _me(view: View) -> User:
    view.require_principal()
    if view.user is None:  # pragma: no cover - the session lookup joined the user
        raise NotFound("user not found")
    return view.user


def _tenant(view: View) -> tuple[Guard, Tenant]:
    """The person's own tenant through the API's guard (operator staff have none: 403)."""
    principal = view.require_principal()
    guard = Guard(view.ctx)
    if principal.tenant_id is None:
        raise PermissionDenied("only people of a customer company have devices and consents")
    return guard, guard.tenant(principal.tenant_id)


# === account =================================================================================
ACCOUNT_NOTICES = {
    "password": N_("Your password is changed. Your other sessions and API tokens are signed out."),
    "session": N_("The session is signed out."),
    "others": N_("Every other session of yours is signed out."),
    "totp-on": N_("Your authenticator app is on: sign-ins ask for its code from now on."),
    "totp-off": N_("Your authenticator app is off."),
}


_BROWSERS = (
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("tongdao", "tongdao CLI"),
    ("python-httpx", "httpx"),
    ("curl/", "curl"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def program(user_agent: str | None) -> str:
    """A session's program in two words ("Chrome, Linux"); the full text goes in a title."""
    if not user_agent:
        return "—"
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), "")
    return ", ".join(part for part in (browser, system) if part) or user_agent[:40]


def _account_page(
    view: View,
    *,
    errors: dict[str, str] | None = None,
    form: str = "",
    totp_setup: tuple[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> Response:
    user = _me(view)
    principal = view.require_principal()
    sessions = auth.live_sessions(view.ctx, user.id)
    return render(
        view,
        "me/account.html",
        {
            "account": user,
            "sessions": sessions,
            "program": program,
            "current_session": principal.token_id,
            "totp_pending": bool(user.totp_secret_sealed) and not user.totp_enabled,
            "totp_setup": totp_setup,
            "errors": errors or {},
            "failed_form": form,
            "notice": notice,
        },
        status=status,
        title=view._("Your account"),
    )


def _fields(view: View, exc: DomainError) -> dict[str, str]:
    """A refusal's field messages (a 422's or a rule's 409), translated where known."""
    return {key: translate_message(view.locale, text) for key, text in exc.fields.items()}


@router.get("/console/account")
def account(view: UserViewDep, done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _account_page(view, notice=done_notice(view, done, ACCOUNT_NOTICES))


@router.post("/console/account/password")
def change_password(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    user = _me(view)
    try:
        body = parse(
            PasswordChange,
            {
                "current_password": form.get("current_password"),
                "new_password": form.get("new_password"),
            },
        )
        if form.get("new_password") != form.get("confirm_password"):
            raise ValidationError({"confirm_password": "the two passwords differ"})
        auth.reauthenticate(view.ctx, user, body.current_password)
        auth.change_password(
            view.ctx, user, body.new_password, keep_token_id=view.require_principal().token_id
        )
    except ValidationError as exc:
        view.ctx.session.rollback()
        return _account_page(view, errors=field_errors(view, exc), form="password", status=422)
    view.ctx.session.commit()
    return redirect(view, "/console/account?done=password")


@router.post("/console/account/sessions/revoke-others")
def revoke_other_sessions(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    auth.revoke_other_sessions(view.ctx, view.require_principal())
    view.ctx.session.commit()
    return redirect(view, "/console/account?done=others")


@router.post("/console/account/sessions/{session_id}/revoke")
def revoke_session(view: UserViewDep, form: FormDep, session_id: str) -> Response:
    check_csrf(view, form)
    principal = view.require_principal()
    auth.revoke_session(view.ctx, principal, parse_uuid(session_id, "session"))
    view.ctx.session.commit()
    return redirect(view, "/console/account?done=session")


@router.post("/console/account/totp")
def begin_totp(view: UserViewDep, form: FormDep) -> Response:
    """A new secret, shown once on the page this answers (as text and as a QR code)."""
    check_csrf(view, form)
    user = _me(view)
    try:
        secret, uri = auth.begin_totp(view.ctx, user)
    except Conflict as exc:
        errors = {"totp": translate_message(view.locale, exc.message)}
        return _account_page(view, errors=errors, form="totp", status=409)
    view.ctx.session.commit()
    return _account_page(view, totp_setup=(secret, uri))


@router.post("/console/account/totp/confirm")
def confirm_totp(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    user = _me(view)
    try:
        body = parse(
            TotpConfirm,
            {"code": form.text("code"), "current_password": form.get("current_password")},
        )
        auth.reauthenticate(view.ctx, user, body.current_password)
        auth.confirm_totp(view.ctx, user, body.code)
    except ValidationError as exc:
        view.ctx.session.rollback()
        return _account_page(view, errors=field_errors(view, exc), form="confirm", status=422)
    except Conflict as exc:
        view.ctx.session.rollback()
        errors = {"code": translate_message(view.locale, exc.message)}
        return _account_page(view, errors=errors, form="confirm", status=409)
    view.ctx.session.commit()
    return redirect(view, "/console/account?done=totp-on")


@router.post("/console/account/totp/disable")
def disable_totp(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    user = _me(view)
    try:
        body = parse(
            TotpDisable,
            {
                "code": form.text("code"),
                "current_password": form.get("current_password"),
                "new_password": form.get("new_password") or None,
            },
        )
        auth.disable_totp(view.ctx, user, body.code, body.current_password, body.new_password)
    except ValidationError as exc:
        view.ctx.session.rollback()
        return _account_page(view, errors=field_errors(view, exc), form="disable", status=422)
    except Conflict as exc:
        view.ctx.session.rollback()
        errors = {"code": translate_message(view.locale, exc.message)}
        return _account_page(view, errors=errors, form="disable", status=409)
    view.ctx.session.commit()
    return redirect(view, "/console/account?done=totp-off")


# === my devices ==============================================================================
DEVICE_NOTICES = {
    "registered": N_("The device is registered."),
    "revoked": N_("The device is revoked: it can no longer connect."),
}


def _own_devices(guard: Guard, tenant: Tenant) -> Select[Any]:
    """The person's own devices, through the API's device query (tenant, owner)."""
    stmt = network.DeviceResource().base_query(guard, tenant, Action.READ)
    return stmt.where(Device.user_id == guard.principal.user_id)


def _own_device(view: View, device_id: str, action: Action = Action.READ) -> tuple[Tenant, Device]:
    """One of the person's own devices, or 404 (another person's, another tenant's, none)."""
    guard, tenant = _tenant(view)
    object_id = parse_uuid(device_id, "device")
    guard.require("devices", action)
    device = network.DeviceResource().load(guard, tenant, object_id, action)
    if device.user_id != guard.principal.user_id:
        raise NotFound("device not found")
    return tenant, device


def _activity(guard: Guard, devices: list[Device]) -> dict[str, dict[str, Any]]:
    """Per device id: its last handshake, whether online and its bytes this month, decided
    as the tenant admin's devices pages decide them (:func:`tongdao.web.pages.people.presence`)."""
    return {
        str(device_id): {
            "last_handshake": seen.last_handshake,
            "online": seen.online,
            "bytes": seen.month_bytes,
        }
        for device_id, seen in presence(guard, devices).items()
    }


AWAITING_GATEWAY = N_(
    "The network gateway is still setting up your company's tunnel, so the configuration is "
    "not ready yet. This usually takes under a minute: reload this page."
)


def _config_problem(view: View, tenant: Tenant, device: Device) -> str:
    """Why the server has no configuration for the device now ('' when it has one)."""
    try:
        network.device_config(view.ctx, tenant, device)
    except network.AwaitingGateway:
        return view._(AWAITING_GATEWAY)
    except DomainError as exc:
        return translate_message(view.locale, exc.message)
    return ""


@router.get("/console/my/devices")
def my_devices(
    view: UserViewDep,
    state: Annotated[str, Query(max_length=20)] = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    guard, tenant = _tenant(view)
    guard.require("devices", Action.READ)
    stmt = _own_devices(guard, tenant)
    if state in DEVICE_STATES:
        stmt = stmt.where(Device.state == state)
    else:
        state = ""
    params = PageParams(limit=PAGE_SIZE, cursor=cursor or None)
    try:
        rows, total, next_cursor = paginate(view.ctx.session, stmt, Device.id, params)
    except ValidationError:
        raise NotFound("no such page of devices") from None
    return render(
        view,
        "me/devices.html",
        {
            "devices": rows,
            "total": total,
            "next_cursor": next_cursor,
            "state": state,
            "states": DEVICE_STATES,
            "activity": _activity(guard, list(rows)),
            "notice": done_notice(view, done, DEVICE_NOTICES),
        },
        title=view._("My devices"),
    )


def _new_device_page(
    view: View, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Response:
    user = _me(view)
    return render(
        view,
        "me/device_new.html",
        {
            "values": values,
            "errors": errors,
            "unverified": user.identity_verified_at is None,
            "poll_seconds": CONFIG_POLL_SECONDS,
            "wait_seconds": CONFIG_WAIT_SECONDS,
            "wait_minutes": max(1, round(CONFIG_WAIT_SECONDS / 60)),
        },
        status=status,
        title=view._("Register a device"),
    )


@router.get("/console/my/devices/new")
def new_device_page(view: UserViewDep) -> Response:
    guard, _tenant_row = _tenant(view)
    guard.require("devices", Action.CREATE)
    return _new_device_page(view, {}, {})


def _wants_json(view: View) -> bool:
    return "application/json" in view.request.headers.get("accept", "")


@router.post("/console/my/devices/new")
def register_device(view: UserViewDep, form: FormDep) -> Response:
    """Register a device with its public key. The page's script asks for JSON (the device's
    id and where its configuration is) and stays on the page, holding the private key."""
    check_csrf(view, form)
    guard, tenant = _tenant(view)
    guard.require("devices", Action.CREATE)
    values = {"name": form.text("name"), "public_key": form.text("public_key")}
    try:
        body = parse(DeviceCreate, values)
        device = network.DeviceResource().create(view.ctx, tenant, body)
        view.ctx.session.flush()
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        errors = _fields(view, exc)
        if not errors:
            errors = {"form": translate_message(view.locale, exc.message)}
        status = 422 if isinstance(exc, ValidationError) else 409
        if _wants_json(view):
            return JSONResponse({"errors": errors}, status_code=status, headers=PAGE_HEADERS)
        return _new_device_page(view, values, errors, status=status)
    view.ctx.session.commit()
    page = f"/console/my/devices/{device.id}"
    if _wants_json(view):
        return JSONResponse(
            {
                "id": str(device.id),
                "state": device.state,
                "page": page,
                "config": f"{page}/wireguard.conf",
                "file_name": _file_name(device),
            },
            status_code=201,
            headers=PAGE_HEADERS,
        )
    return redirect(view, f"{page}?done=registered")


def _file_name(device: Device) -> str:
    """``tongdao-<name>.conf`` in letters, digits and dashes (what wg-quick takes as a name)."""
    base = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in device.name)
    base = "-".join(part for part in base.split("-") if part)[:40] or str(device.id)[:8]
    return f"tongdao-{base}.conf"


@router.get("/console/my/devices/{device_id}")
def my_device(
    view: UserViewDep, device_id: str, done: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    tenant, device = _own_device(view, device_id)
    guard = Guard(view.ctx)
    activity = _activity(guard, [device]).get(str(device.id), {})
    problem = _config_problem(view, tenant, device) if device.state == DeviceState.ACTIVE else ""
    return render(
        view,
        "me/device.html",
        {
            "device": device,
            "activity": activity,
            "config_problem": problem,
            "file_name": _file_name(device),
            "notice": done_notice(view, done, DEVICE_NOTICES),
        },
        title=device.name,
    )


@router.get("/console/my/devices/{device_id}/wireguard.conf")
def my_device_config(view: UserViewDep, device_id: str) -> Response:
    """The server's part of the configuration (no private key: the line to fill is marked),
    as ``GET /api/v1/tenants/{t}/devices/{d}/wireguard.conf`` gives it."""
    tenant, device = _own_device(view, device_id)
    try:
        text = network.device_config(view.ctx, tenant, device)
    except network.AwaitingGateway as exc:
        # Not refused: the gateway has yet to set the tenant up. The page asks again.
        return PlainTextResponse(
            translate_message(view.locale, exc.message),
            status_code=exc.status_code,
            headers={
                **PAGE_HEADERS,
                "Retry-After": str(CONFIG_POLL_SECONDS),
                CONFIG_WAITING_HEADER: "waiting",
            },
        )
    except (Conflict, ValidationError) as exc:
        return PlainTextResponse(
            translate_message(view.locale, exc.message),
            status_code=exc.status_code,
            headers=PAGE_HEADERS,
        )
    return PlainTextResponse(
        text,
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="{_file_name(device)}"',
        },
    )


@router.post("/console/my/devices/{device_id}/revoke")
def revoke_device(view: UserViewDep, form: FormDep, device_id: str) -> Response:
    """Revoke the device as ``PATCH .../devices/{d}`` with ``state: revoked`` does."""
    check_csrf(view, form)
    _tenant_row, device = _own_device(view, device_id, Action.UPDATE)
    network.DeviceResource().update(view.ctx, device, DeviceUpdate(state=DeviceState.REVOKED))
    view.ctx.session.flush()
    view.ctx.session.commit()
    return redirect(view, f"/console/my/devices/{device.id}?done=revoked")


# === my privacy ==============================================================================
PRIVACY_NOTICES = {
    "notice": N_("You accepted the privacy notice."),
    "transfer_abroad": N_("You consented to the transfer of your data abroad."),
    "withdrawn": N_("Your consent to transfer abroad is withdrawn."),
}


def _privacy_page(
    view: View, errors: dict[str, str] | None = None, status: int = 200, notice: str = ""
) -> Response:
    guard, _tenant_row = _tenant(view)
    guard.require("consents", Action.READ)
    user = _me(view)
    consents = privacy.list_consents(view.ctx.session, user)
    current = privacy.current_notice(view.ctx.session)
    live = {c.kind for c in consents if c.current}
    return render(
        view,
        "me/privacy.html",
        {
            "consents": consents,
            "privacy_notice": privacy.notice_public(current) if current else None,
            "accepted": ConsentKind.NOTICE in live,
            "abroad": ConsentKind.TRANSFER_ABROAD in live,
            "abroad_any": any(
                c.kind == ConsentKind.TRANSFER_ABROAD and c.revoked_at is None for c in consents
            ),
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
        title=view._("My privacy"),
    )


@router.get("/console/my/privacy")
def my_privacy(view: UserViewDep, done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _privacy_page(view, notice=done_notice(view, done, PRIVACY_NOTICES))


@router.post("/console/my/privacy/consents")
def give_consent(view: UserViewDep, form: FormDep) -> Response:
    """Your own consent, from your own signed-in session (recorded as given by you)."""
    check_csrf(view, form)
    guard, _tenant_row = _tenant(view)
    guard.require("consents", Action.CREATE)
    user = _me(view)
    try:
        body = parse(
            privacy_schemas.ConsentCreate,
            {"kind": form.text("kind"), "notice_version": form.text("notice_version")},
        )
        privacy.give_consent(view.ctx, user, body)
    except (ValidationError, Conflict) as exc:
        view.ctx.session.rollback()
        errors = _fields(view, exc)
        errors.setdefault("form", translate_message(view.locale, exc.message))
        status = 422 if isinstance(exc, ValidationError) else 409
        return _privacy_page(view, errors, status=status)
    view.ctx.session.commit()
    return redirect(view, f"/console/my/privacy?done={body.kind.value}")


@router.post("/console/my/privacy/consents/transfer-abroad/withdraw")
def withdraw_transfer_abroad(view: UserViewDep, form: FormDep) -> Response:
    check_csrf(view, form)
    guard, _tenant_row = _tenant(view)
    guard.require("consents", Action.DELETE)
    privacy.revoke_transfer_abroad(view.ctx, _me(view))
    view.ctx.session.commit()
    return redirect(view, "/console/my/privacy?done=withdrawn")


@router.get("/console/my/privacy/export")
def export_personal_data(view: UserViewDep) -> Response:
    """Everything held about you as JSON (the API's export; audited by the service)."""
    guard, _tenant_row = _tenant(view)
    guard.require("personal_data", Action.READ)
    user = _me(view)
    export = privacy.export_personal_data(view.ctx, user)
    stamp = view.ctx.runtime.clock().astimezone(SHANGHAI).strftime("%Y%m%d")
    body = json.dumps(export.model_dump(mode="json"), ensure_ascii=False, indent=2)
    return Response(
        body.encode(),
        media_type="application/json",
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="tongdao-personal-data-{stamp}.json"',
        },
    )


__all__ = ["NAV", "router"]
