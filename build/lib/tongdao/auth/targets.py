"""The person an admin acts on (password reset, sign-in unlock): looked up with the caller's
sight, so another tenant's user answers 404."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tongdao.api.deps import Guard
from tongdao.auth.permissions import Action
from tongdao.errors import NotFound
from tongdao.tenancy.models import User


def tenant_user(
    guard: Guard, tenant_id: uuid.UUID, user_id: uuid.UUID, resource: str, action: Action
) -> User:
    """The tenant's user: 404 when out of sight (another tenant's; another user, for a caller
    who sees only their own), then 403 unless the caller may `action` `resource`."""
    tenant = guard.tenant(tenant_id)
    principal = guard.principal
    user = guard.ctx.session.scalar(
        select(User).where(User.id == user_id, User.tenant_id == tenant.id)
    )
    if user is None or (user.id != principal.user_id and principal.own_only("users", Action.READ)):
        raise NotFound("user not found")
    guard.require(resource, action)
    return user


def staff_member(guard: Guard, staff_id: uuid.UUID) -> User:
    """An operator staff member, for a caller who may update staff (403 first, then 404)."""
    guard.require("staff", Action.UPDATE)
    user = guard.ctx.session.scalar(
        select(User).where(User.id == staff_id, User.tenant_id.is_(None))
    )
    if user is None:
        raise NotFound("staff member not found")
    return user
