"""A populated control plane for API tests: every role, two tenants, tokens for all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.auth.principal import ALL_SCOPES
from tongdao.auth.service import issue_token
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import User

OPERATOR_ROLES = ("operator_admin", "compliance_officer", "billing_clerk", "auditor")
TENANT_ROLES = ("tenant_admin", "employee")
PASSWORD = "correct horse battery staple"

# Known-valid USCCs from product.md; test vectors, not customers.
USCC_A = "91110000802100433B"
USCC_B = "914403001922038216"
USCC_C = "91350100M000100Y43"


def make_user(
    runtime: Runtime,
    email: str,
    roles: list[str],
    tenant_id: uuid.UUID | None = None,
    *,
    password: str | None = PASSWORD,
    scopes: frozenset[str] = ALL_SCOPES,
) -> tuple[uuid.UUID, str]:
    """Create a user straight in the store and give them an API token."""
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        user = User(
            tenant_id=tenant_id,
            email=email,
            display_name=email.split("@")[0],
            roles=roles,
            password_hash=runtime.passwords.hash(password) if password else None,
        )
        session.add(user)
        session.flush()
        _token, secret = issue_token(
            Ctx(session=session, runtime=runtime),
            user,
            kind="api",
            name="test",
            scopes=scopes,
            ttl=timedelta(days=1),
        )
        session.commit()
        return user.id, secret


@dataclass
class Actor:
    role: str
    user_id: uuid.UUID
    token: str
    tenant_id: uuid.UUID | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class TenantFixture:
    id: uuid.UUID
    admin: Actor
    employee: Actor
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    runtime: Runtime
    client: TestClient
    operators: dict[str, Actor]
    a: TenantFixture
    b: TenantFixture

    @property
    def admin(self) -> Actor:
        return self.operators["operator_admin"]

    @classmethod
    def build(cls, runtime: Runtime, client: TestClient) -> World:
        operators = {}
        for role in OPERATOR_ROLES:
            uid, token = make_user(runtime, f"{role}@operator.example", [role])
            operators[role] = Actor(role, uid, token)
        admin = operators["operator_admin"]
        tenants = []
        for label, uscc in (("a", USCC_A), ("b", USCC_B)):
            resp = client.post(
                "/api/v1/tenants",
                json={
                    "name_en": f"Tenant {label.upper()}",
                    "name_zh": f"租户{label.upper()}",
                    "uscc": uscc,
                },
                headers=admin.headers,
            )
            assert resp.status_code == 201, resp.text
            tid = uuid.UUID(resp.json()["id"])
            actors = {}
            for role in TENANT_ROLES:
                uid, token = make_user(runtime, f"{role}@{label}.example", [role], tid)
                actors[role] = Actor(role, uid, token, tid)
            tenants.append(
                TenantFixture(tid, actors["tenant_admin"], actors["employee"], resp.json())
            )
        return cls(runtime, client, operators, tenants[0], tenants[1])

    def actor(self, role: str, tenant: str = "a") -> Actor:
        if role in self.operators:
            return self.operators[role]
        fixture = self.a if tenant == "a" else self.b
        return fixture.admin if role == "tenant_admin" else fixture.employee


def uscc_for(n: int, division: str = "110105") -> str:
    """A well-formed Beijing USCC with a correct check character, distinct per ``n``."""
    from tongdao.compliance.uscc import uscc_check_char

    first17 = f"91{division}MA{n:07d}"
    return first17 + uscc_check_char(first17)
