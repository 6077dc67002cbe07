"""The auditor's pages: the audit log with filters, chain verification and the regulator
export.

They call what the API routes call (:mod:`tongdao.audit.reading`): the same records for the
same caller (a tenant admin reads and exports their own tenant's), the same chain walk, the
same audited export. Times are entered and shown in Asia/Shanghai.

Actions and object kinds are shown in words beside their codes (:mod:`.audit_labels`).

Machine records (what gateways and connectors write: acknowledgements, interfaces allocated
on a poll, usage warnings, connection sessions) are left out unless asked for, so that
people's actions are not drowned.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.api.pagination import PageParams, paginate
from tongdao.audit import reading
from tongdao.audit.export import ExportQuery
from tongdao.audit.models import AuditEvent
from tongdao.audit.schemas import AuditFilters
from tongdao.auth.permissions import Action, Role
from tongdao.errors import NotFound, ValidationError
from tongdao.gateway.models import Gateway
from tongdao.network.models import Device, Pop, PrefixDeclaration, Site
from tongdao.operator.models import Licence, Shareholder
from tongdao.tenancy.models import Group, Tenant, User
from tongdao.web.console import (
    PAGE_HEADERS,
    ConsoleRoute,
    NavItem,
    UserViewDep,
    View,
    finish,
    parse,
    render,
    tenant_options,
    translate_message,
)
from tongdao.web.i18n import N_, SHANGHAI
from tongdao.web.pages import audit_labels

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
READERS = frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR, Role.TENANT_ADMIN})
NAV = [NavItem("/console/audit", N_("Audit log"), READERS)]

PAGE_SIZE = 50
LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
# Object kinds with a name to show beside their id.
NAMED: dict[str, tuple[type[Any], str]] = {
    "tenant": (Tenant, "name_en"),
    "user": (User, "display_name"),
    "device": (Device, "name"),
    "site": (Site, "name"),
    "pop": (Pop, "name"),
    "group": (Group, "name"),
    "licence": (Licence, "number"),
    "shareholder": (Shareholder, "name"),
    "gateway": (Gateway, "hostname"),
    "prefix_declaration": (PrefixDeclaration, "cidr"),
}
KINDS = ("change", "event", "session", "export", "erase", "checkpoint")


# --- filters -----------------------------------------------------------------------------------


def local_to_utc(text: str) -> datetime | None:
    """A time entered in Asia/Shanghai (``datetime-local``), as an aware instant."""
    text = text.strip()
    if not text:
        return None
    for fmt in LOCAL_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=SHANGHAI)
        except ValueError:
            continue
    raise ValueError(text)


def _local(value: datetime | None) -> str:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M") if value else ""


@dataclass
class LogQuery:
    """The log page's filters as entered (shown back as entered) and as the API takes them."""

    values: dict[str, str]
    filters: AuditFilters | None
    errors: dict[str, str]


FILTER_NAMES = ("actor", "action", "object_type", "tenant", "since", "until", "source_ip")


def _time_fields(view: View, values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in ("since", "until"):
        try:
            data[name] = local_to_utc(values.get(name, ""))
        except ValueError:
            errors[name] = view._("enter a date and time like 2026-12-06 18:30 (Asia/Shanghai)")
    if not errors and data["since"] and data["until"] and data["since"] >= data["until"]:
        errors["since"] = view._("must be before the end of the range")
    return data, errors


def _tenant_field(view: View, guard: Guard, text: str) -> tuple[uuid.UUID | None, str | None]:
    """A tenant chosen by id (an operator's choice); another tenant's is not found."""
    if not text:
        return None, None
    try:
        tenant_id = uuid.UUID(text)
    except ValueError:
        return None, view._("choose a tenant from the list")
    if (
        not guard.principal.sees_tenant(tenant_id)
        or view.ctx.session.get(Tenant, tenant_id) is None
    ):
        return None, view._("choose a tenant from the list")
    return tenant_id, None


def log_query(view: View, guard: Guard, params: dict[str, str]) -> LogQuery:
    values = {name: params.get(name, "").strip() for name in FILTER_NAMES}
    values["machine"] = "yes" if params.get("machine") == "yes" else ""
    data, errors = _time_fields(view, values)
    tenant_id, tenant_error = _tenant_field(view, guard, values["tenant"])
    if tenant_error:
        errors["tenant"] = tenant_error
    body: dict[str, Any] = {
        "actor": values["actor"].lower() or None,
        "action": values["action"] or None,
        "object_type": values["object_type"] or None,
        "tenant_id": tenant_id,
        "source_ip": values["source_ip"] or None,
        "since": data.get("since"),
        "until": data.get("until"),
        # Machine records only when asked for (a filter on connection sessions asks).
        "machine": None if values["machine"] else False,
    }
    filters = None
    try:
        filters = parse(AuditFilters, body)
    except ValidationError as exc:
        for key, text in exc.fields.items():
            name = "tenant" if key == "tenant_id" else key
            errors.setdefault(name, translate_message(view.locale, text))
    return LogQuery(values, None if errors else filters, errors)


# --- names and diffs ---------------------------------------------------------------------------


class Names:
    """Names of the objects a page of records refers to, looked up once per kind."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.found: dict[tuple[str, str], str] = {}

    def load(self, events: Iterable[AuditEvent]) -> Names:
        wanted: dict[str, set[str]] = {}

        def want(kind: str, value: object) -> None:
            if value is not None and kind in NAMED:
                wanted.setdefault(kind, set()).add(str(value))

        for event in events:
            want(event.object_type, event.object_id)
            want("user", event.actor_id)
            want("user", event.user_id)
            want("tenant", event.tenant_id)
            want("device", event.device_id)
            want("pop", event.pop_id)
        for kind, ids in wanted.items():
            model, column = NAMED[kind]
            keys = []
            for text in ids:
                try:
                    keys.append(uuid.UUID(text))
                except ValueError:
                    continue
            if not keys:
                continue
            if model is Tenant:
                rows = self.view.ctx.session.execute(
                    select(Tenant.id, Tenant.name_en, Tenant.name_zh).where(Tenant.id.in_(keys))
                )
                for key, en, zh in rows:
                    self.found[(kind, str(key))] = self.view.locale.pick(en, zh)
                continue
            for key, name in self.view.ctx.session.execute(
                select(model.id, getattr(model, column)).where(model.id.in_(keys))
            ):
                if name:
                    self.found[(kind, str(key))] = str(name)
        return self

    def __call__(self, kind: str, value: object) -> str:
        if value is None:
            return ""
        return self.found.get((kind, str(value)), "")


@dataclass(frozen=True)
class Change:
    field: str
    before: str | None  # None: the field was not there
    after: str | None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _items(record: dict[str, Any] | None) -> dict[str, Any]:
    """A record's fields, a list of documents (an invoice's lines) spread out one per row:
    ``lines[1]``, ``lines[2]``, ..."""
    out: dict[str, Any] = {}
    for key, value in (record or {}).items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.update({f"{key}[{i}]": v for i, v in enumerate(value, start=1)})
        else:
            out[key] = value
    return out


def _in_order(key: str) -> tuple[str, int]:
    """Fields by name, a list's items by number (``lines[2]`` before ``lines[10]``)."""
    name, _, index = key.partition("[")
    return (name, int(index.rstrip("]"))) if index.rstrip("]").isdigit() else (key, 0)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """Field by field: what was removed and what was added (unchanged fields left out)."""
    old, new = _items(before), _items(after)
    changes = []
    for key in sorted(set(old) | set(new), key=_in_order):
        was = _shown(old[key]) if key in old else None
        now = _shown(new[key]) if key in new else None
        if was != now:
            changes.append(Change(key, was, now))
    return changes


# --- the log -----------------------------------------------------------------------------------


def _guard(view: View) -> Guard:
    view.require_principal()
    return Guard(view.ctx)


@router.get("/console/audit")
def audit_log(
    view: UserViewDep,
    request: Request,
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    guard = _guard(view)
    guard.require("audit", Action.READ)
    params = {k: v[:400] for k, v in request.query_params.items()}
    query = log_query(view, guard, params)
    events: list[AuditEvent] = []
    total = 0
    next_cursor: str | None = None
    errors = dict(query.errors)
    if query.filters is not None:
        try:
            stmt = reading.events_query(guard, query.filters)
            events, total, next_cursor = paginate(
                view.ctx.session,
                stmt,
                AuditEvent.id,
                PageParams(limit=PAGE_SIZE, cursor=cursor or None),
                descending=True,
            )
        except ValidationError as exc:
            errors.update({k: translate_message(view.locale, t) for k, t in exc.fields.items()})
            if "cursor" in errors:
                errors["form"] = errors.pop("cursor")
    shown = {k: v for k, v in query.values.items() if v}
    options = tenant_options(view)
    return render(
        view,
        "audit/log.html",
        {
            "events": events,
            "total": total,
            "page": {"next_cursor": next_cursor},
            "base_query": urlencode(shown),
            "values": query.values,
            "errors": _shown_errors(errors, options),
            "names": Names(view).load(events),
            "diff": diff,
            "is_machine": reading.is_machine,
            "tenant_options": options,
            "object_kinds": audit_labels.kind_options(view.locale),
            "action_label": lambda code: audit_labels.action_label(view.locale, code),
            "kind_label": lambda code: audit_labels.kind_label(view.locale, code),
            "record_kind": lambda code: audit_labels.record_kind_label(view.locale, code),
            "can_verify": guard.principal.can("audit_chain", Action.READ),
        },
        status=422 if errors else 200,
        title=view._("Audit log"),
    )


# --- chain verification ------------------------------------------------------------------------


@router.get("/console/audit/verify")
def verify_page(view: UserViewDep, run: Annotated[str, Query(max_length=4)] = "") -> Response:
    guard = _guard(view)
    guard.require("audit_chain", Action.READ)
    report = reading.verify(guard) if run == "1" else None
    return render(
        view,
        "audit/verify.html",
        {
            "report": report,
            "can_verify": True,
            "tr": lambda text: translate_message(view.locale, text),
        },
        title=view._("Chain verification"),
    )


# --- the regulator export ----------------------------------------------------------------------


def _shown_errors(errors: dict[str, str], options: list[tuple[str, str]]) -> dict[str, str]:
    """A refusal of the tenant field shows above the form when there is no field to choose."""
    if not options and "tenant" in errors:
        errors = dict(errors)
        errors.setdefault("form", errors.pop("tenant"))
    return errors


def _export_page(
    view: View,
    guard: Guard,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    options = tenant_options(view)
    return render(
        view,
        "audit/export.html",
        {
            "values": values,
            "errors": _shown_errors(errors, options),
            "tenant_options": options,
            "scoped": not guard.principal.is_operator,
            "can_verify": guard.principal.can("audit_chain", Action.READ),
        },
        status=status,
        title=view._("Regulator export"),
    )


@router.get("/console/audit/export")
def export_page(view: UserViewDep) -> Response:
    guard = _guard(view)
    guard.require("audit", Action.READ)
    return _export_page(view, guard, {"format": "csv"}, {})


def _user_field(view: View, guard: Guard, email: str) -> tuple[uuid.UUID | None, str | None]:
    if not email:
        return None, None
    stmt = guard.restrict(
        select(User.id).where(User.email == email.lower()),
        "audit",
        Action.READ,
        tenant_column=User.tenant_id,
    )
    user_id = view.ctx.session.scalar(stmt)
    if user_id is None:
        return None, view._("no user with this e-mail address")
    return user_id, None


def _stream(handle: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := handle.read(1 << 16):
            yield chunk
    finally:
        handle.close()


@router.get("/console/audit/export/download")
def export_download(view: UserViewDep, request: Request) -> Response:
    """The zip, as ``GET /audit/export`` makes it (a read, like the API's: the export records
    itself in the audit log through its own session)."""
    guard = _guard(view)
    guard.require("audit", Action.READ)
    values = {
        name: request.query_params.get(name, "").strip()[:400]
        for name in ("format", "tenant", "user", "source_ip", "since", "until")
    }
    data, errors = _time_fields(view, values)
    tenant_id, tenant_error = _tenant_field(view, guard, values["tenant"])
    if tenant_error:
        errors["tenant"] = tenant_error
    user_id, user_error = _user_field(view, guard, values["user"])
    if user_error:
        errors["user"] = user_error
    query: ExportQuery | None = None
    try:
        query = parse(
            ExportQuery,
            {
                "format": values["format"] or "csv",
                "tenant_id": tenant_id,
                "user_id": user_id,
                "source_ip": values["source_ip"] or None,
                "since": data.get("since"),
                "until": data.get("until"),
            },
        )
    except ValidationError as exc:
        for key, text in exc.fields.items():
            errors.setdefault(key, translate_message(view.locale, text))
    if errors or query is None:
        return _export_page(view, guard, values, errors, status=422)
    try:
        handle, filename = reading.export(guard, query)
    except ValidationError as exc:
        errors = {k: translate_message(view.locale, t) for k, t in exc.fields.items()}
        return _export_page(view, guard, values, errors, status=422)
    except NotFound:
        return _export_page(
            view, guard, values, {"tenant": view._("choose a tenant from the list")}, status=422
        )
    response = StreamingResponse(
        _stream(handle),
        media_type="application/zip",
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
    finish(view, response)
    return response


__all__ = ["diff", "local_to_utc", "router"]
