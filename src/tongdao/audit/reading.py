"""Reading the audit log: the filtered list, chain verification and regulator exports.

The API routes (:mod:`tongdao.audit.routes`) and the console's audit pages
(:mod:`tongdao.web.pages.audit`) both call these, so the same caller sees the same records.

Machine records
    A PoP gateway or site connector acts under the actor ``gateway:<id>``: acknowledging a
    version (``applied_version``, ``apply_error`` on its ``gateway`` row), interfaces
    allocated while its poll is answered, ``usage_rows_dropped`` warnings from its usage
    reports, and the connection ``session`` records its reports close. These are machine
    telemetry: :data:`MACHINE_ACTOR_PREFIX` and :data:`MACHINE_KINDS` tell them from people's
    actions (``machine=false`` leaves them out).
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Select, and_, or_, select

from tongdao.api.deps import Guard
from tongdao.audit import chain
from tongdao.audit.export import ExportQuery, write_export
from tongdao.audit.models import AuditEvent
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.audit.schemas import AuditFilters
from tongdao.auth.permissions import Action
from tongdao.errors import NotFound

MACHINE_ACTOR_PREFIX = "gateway:"
MACHINE_KINDS = frozenset({"session"})
_EQUAL = ("tenant_id", "object_type", "object_id", "action", "actor", "kind", "user_id")


def machine_clause() -> Any:
    """Records a gateway or connector made (acknowledgements, polls, usage reports)."""
    return or_(
        AuditEvent.actor.startswith(MACHINE_ACTOR_PREFIX, autoescape=True),
        AuditEvent.kind.in_(sorted(MACHINE_KINDS)),
    )


def people_clause() -> Any:
    """The other records: people's actions (a record with no actor is a person's unless its
    kind says otherwise)."""
    return and_(
        or_(
            AuditEvent.actor.is_(None),
            ~AuditEvent.actor.startswith(MACHINE_ACTOR_PREFIX, autoescape=True),
        ),
        AuditEvent.kind.not_in(sorted(MACHINE_KINDS)),
    )


def is_machine(actor: str | None, kind: str) -> bool:
    return (actor or "").startswith(MACHINE_ACTOR_PREFIX) or kind in MACHINE_KINDS


def events_query(guard: Guard, filters: AuditFilters) -> Select[Any]:
    """The records the caller may read (a tenant admin: their tenant's), filtered."""
    guard.require("audit", Action.READ)
    stmt = guard.restrict(
        select(AuditEvent), "audit", Action.READ, tenant_column=AuditEvent.tenant_id
    )
    for key in _EQUAL:
        value = getattr(filters, key)
        if value is not None:
            stmt = stmt.where(getattr(AuditEvent, key) == value)
    if filters.source_ip is not None:
        stmt = stmt.where(AuditEvent.source_ip == filters.source_ip)
    if filters.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < filters.until)
    if filters.machine is not None:
        stmt = stmt.where(machine_clause() if filters.machine else people_clause())
    return stmt


def verify(guard: Guard) -> chain.ChainReport:
    """Walk the whole hash chain (operator roles that read the log)."""
    guard.require("audit_chain", Action.READ)
    runtime = guard.ctx.runtime
    return chain.verify_chain(runtime.db, chain.SigningKey.from_settings(runtime.settings))


def export(guard: Guard, query: ExportQuery) -> tuple[IO[bytes], str]:
    """A regulator export (a zip in a temporary file, at its start) and its file name. Tenant
    admins export their own tenant only; the export itself is recorded in the audit log."""
    guard.require("audit", Action.READ)
    principal = guard.principal
    if query.tenant_id is not None and not principal.sees_tenant(query.tenant_id):
        raise NotFound("tenant not found")
    query.check()
    runtime = guard.ctx.runtime
    scope: uuid.UUID | None = None if principal.is_operator else principal.tenant_id
    now: datetime = runtime.clock()
    handle = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (the caller closes)
    try:
        with chain.snapshot(runtime.db) as session:
            manifest = write_export(
                session,
                query,
                handle,
                scope=scope,
                caller={"user_id": principal.user_id, "email": principal.email},
                now=now,
            )
        with runtime.db.session() as session:
            set_actor(session, Actor(principal.user_id, principal.email, guard.ctx.source_ip))
            record(
                session,
                "export",
                "audit_log",
                kind="export",
                tenant_id=scope or query.tenant_id,
                after={
                    "format": manifest["format"],
                    "filters": manifest["filters"],
                    "records": manifest["records"],
                    "open_sessions": manifest["open_sessions"],
                    "files": manifest["files"],
                    "chain": manifest["chain"],
                },
            )
            session.commit()
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    return handle, f"tongdao-audit-{now.strftime('%Y%m%dT%H%M%SZ')}.zip"
