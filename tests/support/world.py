"""A populated control plane for API tests: every role, two tenants, tokens for all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.support.privacy import verify_identity
from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.auth.principal import ALL_SCOPES
from tongdao.auth.service import issue_token
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import User
from tongdao.testing import licensed

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
        # A licensed operator (nationwide B13, 49% foreign), so that tenants and PoPs can be
        # activated under the rules; tenant A is in Beijing, so it is foreign-invested.
        officer = operators["compliance_officer"].headers
        for path, body in (
            ("/api/v1/operator/licences", licensed.licence_body(runtime.clock())),
            *(("/api/v1/operator/shareholders", holder) for holder in licensed.SHAREHOLDERS),
        ):
            resp = client.post(path, json=body, headers=officer)
            assert resp.status_code == 201, resp.text
        tenants = []
        for label, uscc in (("a", USCC_A), ("b", USCC_B)):
            resp = client.post(
                "/api/v1/tenants",
                json={
                    "name_en": f"Tenant {label.upper()}",
                    "name_zh": f"租户{label.upper()}",
                    "uscc": uscc,
                    **(licensed.FOREIGN_INVESTED if label == "a" else {}),
                },
                headers=admin.headers,
            )
            assert resp.status_code == 201, resp.text
            tid = uuid.UUID(resp.json()["id"])
            actors = {}
            for role in TENANT_ROLES:
                uid, token = make_user(runtime, f"{role}@{label}.example", [role], tid)
                actors[role] = Actor(role, uid, token, tid)
                # Rule identity.real_name: devices serve only users with a verified identity.
                verify_identity(
                    client,
                    tid,
                    uid,
                    recorder=admin.headers,
                    verifier=operators["compliance_officer"].headers,
                )
            tenants.append(
                TenantFixture(tid, actors["tenant_admin"], actors["employee"], resp.json())
            )
        return cls(runtime, client, operators, tenants[0], tenants[1])

    def clear_shareholders(self) -> None:
        """Empty the shareholder register (for tests of the register itself)."""
        h = self.admin.headers
        for holder in self.client.get("/api/v1/operator/shareholders", headers=h).json()["data"]:
            resp = self.client.delete(f"/api/v1/operator/shareholders/{holder['id']}", headers=h)
            assert resp.status_code == 204, resp.text

    def approve_site(self, site: dict[str, Any]) -> dict[str, Any]:
        """Approve the site's pending declarations as the compliance officer (rule
        network.declared_only: only approved prefixes are routed); the site as it is now."""
        officer = self.operators["compliance_officer"].headers
        for decl in site["declarations"]:
            if decl["state"] == "pending":
                resp = self.client.post(
                    f"/api/v1/declarations/{decl['id']}/approve", json={}, headers=officer
                )
                assert resp.status_code == 200, resp.text
        resp = self.client.get(
            f"/api/v1/tenants/{site['tenant_id']}/sites/{site['id']}", headers=self.admin.headers
        )
        assert resp.status_code == 200, resp.text
        approved: dict[str, Any] = resp.json()
        return approved

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
