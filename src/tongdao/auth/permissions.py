"""Roles and what each may do, as data: resource → role → actions.

Operator roles act across tenants; tenant roles act inside their own tenant. Some grants are
"own only": an employee sees and manages only their own devices and their own user record.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OPERATOR_ADMIN = "operator_admin"
    COMPLIANCE_OFFICER = "compliance_officer"
    BILLING_CLERK = "billing_clerk"
    AUDITOR = "auditor"
    TENANT_ADMIN = "tenant_admin"
    EMPLOYEE = "employee"


OPERATOR_ROLES = frozenset(
    {Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.BILLING_CLERK, Role.AUDITOR}
)
TENANT_ROLES = frozenset({Role.TENANT_ADMIN, Role.EMPLOYEE})


class Action(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


R = frozenset({Action.READ})
RU = frozenset({Action.READ, Action.UPDATE})
ALL = frozenset(Action)

_OP_READ = {Role.COMPLIANCE_OFFICER: R, Role.BILLING_CLERK: R, Role.AUDITOR: R}
_TENANT_OPS = {Role.OPERATOR_ADMIN: ALL, Role.COMPLIANCE_OFFICER: R, Role.AUDITOR: R}

PERMISSIONS: dict[str, dict[Role, frozenset[Action]]] = {
    "operator": {Role.OPERATOR_ADMIN: ALL, Role.COMPLIANCE_OFFICER: ALL, **_OP_READ},
    "staff": {Role.OPERATOR_ADMIN: ALL, Role.COMPLIANCE_OFFICER: R, Role.AUDITOR: R},
    "pops": {Role.OPERATOR_ADMIN: ALL, **_OP_READ},
    "links": {Role.OPERATOR_ADMIN: ALL, **_OP_READ},
    "tenants": {
        Role.OPERATOR_ADMIN: ALL,
        Role.COMPLIANCE_OFFICER: ALL,
        Role.BILLING_CLERK: R,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: RU,  # self-service fields only, see tenancy.service
        Role.EMPLOYEE: R,
    },
    "users": {**_TENANT_OPS, Role.TENANT_ADMIN: ALL, Role.EMPLOYEE: R},
    "groups": {**_TENANT_OPS, Role.TENANT_ADMIN: ALL},
    "devices": {**_TENANT_OPS, Role.TENANT_ADMIN: ALL, Role.EMPLOYEE: ALL},
    "sites": {**_TENANT_OPS, Role.TENANT_ADMIN: ALL},
    "policies": {**_TENANT_OPS, Role.TENANT_ADMIN: ALL},
    "audit": {
        Role.OPERATOR_ADMIN: R,
        Role.COMPLIANCE_OFFICER: R,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
}

# Grants that reach only the principal's own objects.
OWN_ONLY: frozenset[tuple[Role, str]] = frozenset(
    {(Role.EMPLOYEE, "devices"), (Role.EMPLOYEE, "users")}
)


def allowed(roles: frozenset[Role], resource: str, action: Action) -> bool:
    grants = PERMISSIONS[resource]
    return any(action in grants.get(role, frozenset()) for role in roles)


def own_only(roles: frozenset[Role], resource: str, action: Action) -> bool:
    """True when every role that grants the action grants it for own objects only."""
    grants = PERMISSIONS[resource]
    granting = [role for role in roles if action in grants.get(role, frozenset())]
    return bool(granting) and all((role, resource) in OWN_ONLY for role in granting)
