"""The first operator admin: made once, by ``tongdao admin bootstrap`` or the console's
first-run setup page, never again (further staff are made by an operator admin). The first
compliance officer likewise, by ``tongdao admin bootstrap --role compliance_officer`` (the
admin cannot give that role; further officers are made by an officer)."""

from __future__ import annotations

import logging

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError
from sqlalchemy import func, select

from tongdao.audit.recorder import Actor, set_actor
from tongdao.auth.passwords import policy_problem
from tongdao.auth.permissions import Role, holds_conflicting_duties
from tongdao.auth.reset import set_password
from tongdao.errors import Conflict, ValidationError
from tongdao.runtime import Ctx, Runtime
from tongdao.schemas import Email
from tongdao.tenancy.models import User

log = logging.getLogger("tongdao.operator.bootstrap")

ADMIN_EXISTS = "an operator admin exists already; they create further staff"
# pg_advisory_xact_lock key of the first admin's check-then-insert ("tongdao:first-admin").
FIRST_ADMIN_LOCK = int.from_bytes(b"tdfirstA", "big", signed=True)


def operator_admin_exists(ctx: Ctx) -> bool:
    staff = ctx.session.scalars(select(User.roles).where(User.tenant_id.is_(None))).all()
    return any(Role.OPERATOR_ADMIN.value in roles for roles in staff)


def create_first_admin(
    ctx: Ctx, email: str, display_name: str, password: str, *, actor: str
) -> User:
    """Create the first operator admin (the caller commits). Refused once one exists."""
    return _create_first(ctx, Role.OPERATOR_ADMIN, email, display_name, password, actor=actor)


OFFICER_EXISTS = (
    "an active compliance officer exists already; only a compliance officer gives or takes that "
    "role"
)


def officer_exists(ctx: Ctx) -> bool:
    staff = ctx.session.scalars(
        select(User.roles).where(User.tenant_id.is_(None), User.state == "active")
    ).all()
    return any(Role.COMPLIANCE_OFFICER.value in roles for roles in staff)


def create_first_officer(
    ctx: Ctx, email: str, display_name: str, password: str, *, actor: str
) -> User:
    """Create the first compliance officer (``tongdao admin bootstrap --role
    compliance_officer``; the caller commits). Refused while an active officer exists: the
    operator admin cannot give the role (separation of duties), so a fresh operator's first
    officer is made here, on the store, and further officers by an officer."""
    return _create_first(ctx, Role.COMPLIANCE_OFFICER, email, display_name, password, actor=actor)


def _create_first(
    ctx: Ctx, role: Role, email: str, display_name: str, password: str, *, actor: str
) -> User:
    errors: dict[str, str] = {}
    try:
        address = TypeAdapter(Email).validate_python(email)
    except PydanticError:
        errors["email"] = "is not an e-mail address"
        address = email
    name = display_name.strip()
    if not name:
        errors["display_name"] = "enter a name"
    elif len(name) > 200 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        errors["display_name"] = "must be one line of at most 200 characters"
    problem = policy_problem(password, context=[address, name])
    if problem:
        errors["password"] = problem
    if errors:
        raise ValidationError(errors)
    _serialize(ctx)
    if role is Role.OPERATOR_ADMIN and operator_admin_exists(ctx):
        raise Conflict(ADMIN_EXISTS)
    if role is Role.COMPLIANCE_OFFICER and officer_exists(ctx):
        raise Conflict(OFFICER_EXISTS)
    if ctx.session.scalar(select(User.id).where(User.email == address)):
        raise ValidationError({"email": "is in use"})
    set_actor(ctx.session, Actor(None, actor, ctx.source_ip))
    user = User(tenant_id=None, email=address, display_name=name, roles=[role.value])
    set_password(ctx, user, password)
    ctx.session.add(user)
    ctx.session.flush()
    return user


def _serialize(ctx: Ctx) -> None:
    """One first-admin creation at a time, so that two that both found no admin (two setup
    pages, a setup page and ``tongdao admin bootstrap``, two replicas) cannot both make one.

    SQLite already serializes writers (BEGIN IMMEDIATE); PostgreSQL takes a transaction-scoped
    advisory lock, and the check after it sees the other's committed admin (READ COMMITTED).
    """
    if ctx.session.get_bind().dialect.name == "postgresql":
        ctx.session.execute(select(func.pg_advisory_xact_lock(FIRST_ADMIN_LOCK)))


def conflicting_staff(ctx: Ctx) -> list[str]:
    """E-mails of active staff accounts that hold both operator_admin and compliance_officer
    (made before one account was refused both). They may not decide as the officer
    (:data:`tongdao.auth.permissions.DUTY_CONFLICT`); the server warns of them at start-up so
    that one of the two roles is removed. Nothing is changed here."""
    staff = ctx.session.execute(
        select(User.email, User.roles)
        .where(User.tenant_id.is_(None), User.state == "active")
        .order_by(User.email)
    )
    return [email for email, roles in staff if holds_conflicting_duties(roles or [])]


def warn_conflicting_staff(runtime: Runtime) -> list[str]:
    """Log a warning naming each account :func:`conflicting_staff` finds; the list."""
    with runtime.db.session(write=False) as session:
        found = conflicting_staff(Ctx(session=session, runtime=runtime))
    for email in found:
        log.warning(
            "separation of duties: staff account %s holds both operator_admin and "
            "compliance_officer; it may not make the compliance officer's decisions until one "
            "of the two roles is removed",
            email,
        )
    return found
