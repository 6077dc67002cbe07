"""Invariants of the role table."""

from __future__ import annotations

import uuid

from tongdao.auth.permissions import (
    OPERATOR_ROLES,
    PERMISSIONS,
    TENANT_ROLES,
    Action,
    Role,
    own_only,
)
from tongdao.auth.principal import Principal

OPERATOR_ONLY = {"operator", "staff", "pops", "links"}


def test_auditor_only_reads() -> None:
    for resource, grants in PERMISSIONS.items():
        assert grants.get(Role.AUDITOR, frozenset()) <= {Action.READ}, resource


def test_tenant_roles_never_reach_operator_resources() -> None:
    for resource in OPERATOR_ONLY:
        assert not set(PERMISSIONS[resource]) & TENANT_ROLES, resource


def test_employee_is_own_only_unless_also_admin() -> None:
    employee = frozenset({Role.EMPLOYEE})
    both = frozenset({Role.EMPLOYEE, Role.TENANT_ADMIN})
    assert own_only(employee, "devices", Action.CREATE)
    assert not own_only(both, "devices", Action.CREATE)
    assert not own_only(frozenset({Role.OPERATOR_ADMIN}), "devices", Action.READ)


def test_read_only_token_cannot_write() -> None:
    principal = Principal(
        user_id=uuid.uuid4(),
        email="x@example.com",
        tenant_id=None,
        roles=frozenset(OPERATOR_ROLES),
        scopes=frozenset({"read"}),
        token_id=uuid.uuid4(),
    )
    assert principal.can("tenants", Action.READ)
    assert not principal.can("tenants", Action.CREATE)
