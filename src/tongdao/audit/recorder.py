"""Writes an :class:`AuditEvent` for every change, inside the flush that makes the change.

A ``before_flush`` hook on every session turns new, changed and deleted audited objects into
events, so no service can forget to audit and the event commits or rolls back with the
change. The actor and source address come from ``session.info`` (see :func:`set_actor`).
Every event joins the hash chain when its transaction commits (:mod:`tongdao.audit.chain`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.orm.base import NO_VALUE

from tongdao.audit import chain
from tongdao.audit.models import AuditEvent
from tongdao.clock import utcnow
from tongdao.store.base import Base

_ACTOR_KEY = "tongdao.audit_actor"
_IGNORED_COLUMNS = frozenset({"created_at", "updated_at"})
REDACTED = "[redacted]"
SEALED = "[encrypted]"


@dataclass(frozen=True)
class Actor:
    id: uuid.UUID | None
    label: str
    source_ip: str | None = None


SYSTEM = Actor(None, "system")


def set_actor(session: Session, actor: Actor) -> None:
    session.info[_ACTOR_KEY] = actor


def actor_of(session: Session) -> Actor:
    actor = session.info.get(_ACTOR_KEY)
    return actor if isinstance(actor, Actor) else SYSTEM


def record(
    session: Session,
    action: str,
    object_type: str,
    object_id: object | None = None,
    *,
    tenant_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor: Actor | None = None,
    kind: str = "event",
    user_id: uuid.UUID | None = None,
    source_ip: str | None = None,
    source_port: int | None = None,
    device_id: uuid.UUID | None = None,
    pop_id: uuid.UUID | None = None,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    rx_bytes: int | None = None,
    tx_bytes: int | None = None,
    signature: str | None = None,
    occurred_at: datetime | None = None,
) -> AuditEvent:
    """Add an explicit event (a login, a decision, a connection session) to the session's
    transaction; it joins the hash chain when the transaction commits.

    ``user_id`` is the user the record is about (for a ``user`` object, its id by default);
    ``source_ip`` defaults to the actor's address.
    """
    who = actor or actor_of(session)
    oid = None if object_id is None else str(object_id)
    if user_id is None and object_type == "user" and oid is not None:
        try:
            user_id = uuid.UUID(oid)
        except ValueError:
            user_id = None
    ev = AuditEvent(
        occurred_at=occurred_at or utcnow(),
        kind=kind,
        actor_id=who.id,
        actor=who.label,
        action=action,
        object_type=object_type,
        object_id=oid,
        tenant_id=tenant_id,
        user_id=user_id,
        before=None if before is None else jsonable(before),
        after=None if after is None else jsonable(after),
        source_ip=who.source_ip if source_ip is None else source_ip,
        source_port=source_port,
        device_id=device_id,
        pop_id=pop_id,
        started_at=started_at,
        ended_at=ended_at,
        rx_bytes=rx_bytes,
        tx_bytes=tx_bytes,
        signature=signature,
    )
    chain.seal_personal(ev)
    session.add(ev)
    chain.track(session, ev)
    return ev


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def _shown(obj: Base | type[Base], key: str, value: Any) -> Any:
    if key in obj.__audit_masked__:
        return None if value is None else SEALED
    return jsonable(value)


def snapshot(obj: Base) -> dict[str, Any]:
    """The audited columns of an object, JSON-ready, secrets left out or redacted."""
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        if key in obj.__audit_exclude__:
            continue
        value = state.attrs[key].loaded_value
        if value is NO_VALUE:  # never set (a new object: stored as NULL) or not loaded
            value = None if state.pending or state.transient else getattr(obj, key)
        out[key] = _shown(obj, key, value)
    return out


def row_snapshot(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    """What :func:`snapshot` gives for a new row of ``model`` written with ``values`` (every
    column) by a Core statement, which the flush hook does not see (a bulk write that audits
    its rows itself, e.g. the monthly billing run)."""
    out: dict[str, Any] = {}
    for attr in inspect(model).column_attrs:
        key = attr.key
        if key in model.__audit_exclude__:
            continue
        out[key] = _shown(model, key, values.get(key))
    return out


def _changes(obj: Base) -> tuple[dict[str, Any], dict[str, Any]]:
    state = inspect(obj)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        if key in _IGNORED_COLUMNS:
            continue
        hist = state.attrs[key].history
        if not hist.has_changes():
            continue
        old = hist.deleted[0] if hist.deleted else None
        new = hist.added[0] if hist.added else None
        if old == new:
            continue
        if key in obj.__audit_exclude__:
            before[key] = after[key] = REDACTED
            continue
        before[key] = _shown(obj, key, old)
        after[key] = _shown(obj, key, new)
    return before, after


def _identity(obj: Base) -> tuple[str | None, uuid.UUID | None]:
    mapper = inspect(obj).mapper
    keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    if len(keys) == 1:
        object_id = getattr(obj, keys[0])
        oid = None if object_id is None else str(object_id)
    else:
        oid = "/".join(str(getattr(obj, key)) for key in keys)
    tenant_id = getattr(obj, "tenant_id", None)
    if tenant_id is None and obj.__audit_type__ == "tenant":
        tenant_id = getattr(obj, "id", None)
    return oid, tenant_id


def _apply_python_defaults(obj: Base) -> None:
    """Fill unset columns from their Python-side defaults now (the INSERT would anyway), so
    the creation event shows the stored values, keys included."""
    state = inspect(obj)
    for attr in state.mapper.column_attrs:
        if attr.key in state.dict:
            continue
        column = attr.columns[0]
        default = column.default
        if default is None or not (default.is_scalar or default.is_callable):
            continue
        value = default.arg(None) if default.is_callable else default.arg
        setattr(obj, attr.key, value)


@event.listens_for(Session, "before_flush")
def _audit_before_flush(session: Session, _ctx: UOWTransaction, _instances: object) -> None:
    events: list[tuple[str, Base, dict[str, Any] | None, dict[str, Any] | None]] = []
    for obj in list(session.new):
        if isinstance(obj, Base) and obj.__audit_type__:
            _apply_python_defaults(obj)
            events.append(("create", obj, None, snapshot(obj)))
    for obj in list(session.dirty):
        if isinstance(obj, Base) and obj.__audit_type__ and session.is_modified(obj):
            before, after = _changes(obj)
            if after:
                events.append(("update", obj, before, after))
    for obj in list(session.deleted):
        if isinstance(obj, Base) and obj.__audit_type__:
            events.append(("delete", obj, snapshot(obj), None))
    for action, obj, old, new in events:
        object_id, tenant_id = _identity(obj)
        subject = getattr(obj, "user_id", None)
        record(
            session,
            action,
            obj.__audit_type__ or "",
            object_id,
            tenant_id=tenant_id,
            before=old,
            after=new,
            kind="change",
            user_id=subject if isinstance(subject, uuid.UUID) else None,
        )
