"""Roles and what each may do, as data: resource → role → actions.

Operator roles act across tenants; tenant roles act inside their own tenant. Some grants are
"own only": an employee sees and manages only their own devices and their own user record.
"""

from __future__ import annotations

from collections.abc import Iterable
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

_RC = frozenset({Action.READ, Action.CREATE})
_RD = frozenset({Action.READ, Action.DELETE})
_RCD = frozenset({Action.READ, Action.CREATE, Action.DELETE})

_OP_READ = {Role.COMPLIANCE_OFFICER: R, Role.BILLING_CLERK: R, Role.AUDITOR: R}
_TENANT_OPS = {Role.OPERATOR_ADMIN: ALL, Role.COMPLIANCE_OFFICER: R, Role.AUDITOR: R}

PERMISSIONS: dict[str, dict[Role, frozenset[Action]]] = {
    # The compliance officer keeps the licences and the shareholder register (not only reads).
    "operator": {**_OP_READ, Role.OPERATOR_ADMIN: ALL, Role.COMPLIANCE_OFFICER: ALL},
    "staff": {Role.OPERATOR_ADMIN: ALL, Role.COMPLIANCE_OFFICER: R, Role.AUDITOR: R},
    # Also a PoP's gateway credentials: read lists them, update enrols and revokes.
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
    # Also a site's connector credentials: read lists them, update enrols and revokes.
    "sites": {**_TENANT_OPS, Role.TENANT_ADMIN: ALL},
    "policies": {**_TENANT_OPS, Role.TENANT_ADMIN: ALL},
    # Declared site prefixes: tenants declare them through their sites; only a compliance
    # officer decides them (update = approve / reject), not the operator admin who runs them.
    "declarations": {
        Role.OPERATOR_ADMIN: R,
        Role.COMPLIANCE_OFFICER: RU,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
    # Operator exceptions to network.no_default_or_public, per tenant.
    "prefix_allowances": {
        Role.OPERATOR_ADMIN: ALL,
        Role.COMPLIANCE_OFFICER: R,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
    "audit": {
        Role.OPERATOR_ADMIN: R,
        Role.COMPLIANCE_OFFICER: R,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
    # Verifying the whole hash chain (all tenants): operator roles that read the log. Purging
    # is not an API action (`tongdao audit purge`, on the store).
    "audit_chain": {Role.OPERATOR_ADMIN: R, Role.COMPLIANCE_OFFICER: R, Role.AUDITOR: R},
    # Real identity: verifying it (update) is for the roles rule identity.real_name names.
    "identity": {
        Role.OPERATOR_ADMIN: R,
        Role.AUDITOR: R,
        Role.COMPLIANCE_OFFICER: RU,
        Role.TENANT_ADMIN: RU,
    },
    # A user's personal data decrypted (read: export) and its erasure (delete): the person
    # themselves (read only), their tenant's admin and the compliance officer; nobody else.
    "personal_data": {
        Role.COMPLIANCE_OFFICER: _RD,
        Role.TENANT_ADMIN: _RD,
        Role.EMPLOYEE: R,
    },
    # Consents: given by the person (or recorded by their admin from a signed form).
    "consents": {
        Role.OPERATOR_ADMIN: R,
        Role.AUDITOR: R,
        Role.COMPLIANCE_OFFICER: _RD,
        Role.TENANT_ADMIN: _RCD,
        Role.EMPLOYEE: _RCD,
    },
    # Clearing the failed sign-ins counted against a tenant user's account (a staff
    # member's: "staff" update, the operator admin).
    "sign_in": {
        Role.OPERATOR_ADMIN: frozenset({Action.UPDATE}),
        Role.TENANT_ADMIN: frozenset({Action.UPDATE}),
    },
    # The operator's rule that staff sign in with a second factor (tongdao.auth.second_factor):
    # the operator admin, who runs staff accounts, sets it; other staff read it.
    "second_factor_policy": {**_OP_READ, Role.OPERATOR_ADMIN: RU},
    # The SMTP relay outgoing mail leaves by (its password is write-only).
    "mail": {Role.OPERATOR_ADMIN: RU},
    # Billing (tongdao.billing): plans are the billing clerk's and the operator admin's;
    # invoices (create: the monthly run; update: issue, void, fapiao number, credit note) and
    # payments are the billing clerk's; a tenant admin reads their own; the auditor reads.
    "billing_plans": {
        Role.OPERATOR_ADMIN: ALL,
        Role.BILLING_CLERK: ALL,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
    "subscriptions": {
        Role.OPERATOR_ADMIN: R,
        Role.BILLING_CLERK: _RC,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
    "invoices": {
        Role.OPERATOR_ADMIN: R,
        Role.BILLING_CLERK: frozenset({Action.READ, Action.CREATE, Action.UPDATE}),
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
    "payments": {
        Role.OPERATOR_ADMIN: R,
        Role.BILLING_CLERK: _RC,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
    },
    # Suspension for non-payment (tongdao.billing.dunning): the billing clerk's decision
    # (create: suspend, update: lift); the operator admin, compliance officer and auditor read,
    # a tenant admin reads their own.
    "nonpayment_suspensions": {
        **_OP_READ,
        Role.BILLING_CLERK: frozenset({Action.READ, Action.CREATE, Action.UPDATE}),
        Role.OPERATOR_ADMIN: R,
        Role.TENANT_ADMIN: R,
    },
    # Quotas (tongdao.quotas): operator staff set a tenant's caps and bandwidth limits; its
    # admin reads them and sets per-user values within them; both read the 80%/100% events.
    "tenant_limits": {
        **_OP_READ,
        Role.OPERATOR_ADMIN: RU,
        Role.BILLING_CLERK: RU,
        Role.TENANT_ADMIN: R,
    },
    "user_limits": {
        **_OP_READ,
        Role.OPERATOR_ADMIN: RU,
        Role.BILLING_CLERK: RU,
        Role.TENANT_ADMIN: RU,
    },
    "quota_events": {**_OP_READ, Role.OPERATOR_ADMIN: R, Role.TENANT_ADMIN: R},
    # The usage ledger's series (tongdao.gateway.ledger_routes): operator staff all, a tenant
    # admin their tenant, an employee their own devices.
    "usage": {
        Role.OPERATOR_ADMIN: R,
        **_OP_READ,
        Role.TENANT_ADMIN: R,
        Role.EMPLOYEE: R,
    },
    # Cross-border service (tongdao.crossborder): a tenant admin applies for their tenant
    # (create, update a draft, upload, submit); the decision is the compliance officer's alone.
    "crossborder": {
        Role.OPERATOR_ADMIN: R,
        Role.COMPLIANCE_OFFICER: R,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: frozenset({Action.READ, Action.CREATE, Action.UPDATE}),
    },
    "crossborder_decisions": {Role.COMPLIANCE_OFFICER: RU},
    # Privacy notices: published by the operator, read by everyone who signs in.
    "notices": {
        Role.OPERATOR_ADMIN: _RC,
        Role.COMPLIANCE_OFFICER: _RC,
        Role.BILLING_CLERK: R,
        Role.AUDITOR: R,
        Role.TENANT_ADMIN: R,
        Role.EMPLOYEE: R,
    },
}

# Grants that reach only the principal's own objects.
OWN_ONLY: frozenset[tuple[Role, str]] = frozenset(
    {
        (Role.EMPLOYEE, "devices"),
        (Role.EMPLOYEE, "users"),
        (Role.EMPLOYEE, "personal_data"),
        (Role.EMPLOYEE, "consents"),
        (Role.EMPLOYEE, "usage"),
    }
)


def allowed(roles: frozenset[Role], resource: str, action: Action) -> bool:
    grants = PERMISSIONS[resource]
    return any(action in grants.get(role, frozenset()) for role in roles)


def roles_allowed(resource: str, action: Action) -> list[Role]:
    """The roles that may do ``action`` on ``resource`` (a 403 names them)."""
    grants = PERMISSIONS[resource]
    return [role for role in Role if action in grants.get(role, frozenset())]


def own_only(roles: frozenset[Role], resource: str, action: Action) -> bool:
    """True when every role that grants the action grants it for own objects only."""
    grants = PERMISSIONS[resource]
    granting = [role for role in roles if action in grants.get(role, frozenset())]
    return bool(granting) and all((role, resource) in OWN_ONLY for role in granting)


# Separation of duties: the operator admin runs the service, the compliance officer vets the
# customers and decides cross-border applications. One account never holds both (creating or
# changing staff refuses it); an account that holds both from before that rule existed may not
# decide anything the officer decides until one of the two roles is removed.
EXCLUSIVE_ROLES = frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER})
DUTY_CONFLICT = (
    "this account holds both operator_admin and compliance_officer, which are separate duties: "
    "it may not make the compliance officer's decisions until one of the two roles is removed"
)


def holds_conflicting_duties(roles: Iterable[str]) -> bool:
    """Whether ``roles`` (role names or :class:`Role`) hold both separate duties."""
    return {str(r) for r in roles} >= {str(r) for r in EXCLUSIVE_ROLES}
