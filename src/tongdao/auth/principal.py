"""Who is calling: the authenticated user behind a request, with roles and token scopes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tongdao.auth.permissions import OPERATOR_ROLES, Action, Role, allowed, own_only

READ_SCOPE = "read"
WRITE_SCOPE = "write"
ALL_SCOPES = frozenset({READ_SCOPE, WRITE_SCOPE})


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    email: str
    tenant_id: uuid.UUID | None
    roles: frozenset[Role]
    scopes: frozenset[str]
    token_id: uuid.UUID
    # The second factor the token's sign-in passed ("totp", "webauthn") or None.
    second_factor: str | None = None
    # A staff session under the operator's second-factor rule whose user has none yet: it
    # opens only the enrolment pages (tongdao.auth.second_factor.enrolment_allowed).
    enrolment_only: bool = False

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None and bool(self.roles & OPERATOR_ROLES)

    def can(self, resource: str, action: Action) -> bool:
        if action is Action.READ:
            if READ_SCOPE not in self.scopes:
                return False
        elif WRITE_SCOPE not in self.scopes:
            return False
        return allowed(self.roles, resource, action)

    def own_only(self, resource: str, action: Action) -> bool:
        return own_only(self.roles, resource, action)

    def sees_tenant(self, tenant_id: uuid.UUID) -> bool:
        return self.is_operator or self.tenant_id == tenant_id
