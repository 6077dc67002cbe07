"""Fresh objects on demand for access tests, built through the API as the operator admin.

:class:`Bench` wraps a :class:`~tests.support.world.World`: it publishes the operator profile,
a PoP with a WireGuard interface for tenants A and B, and then makes any object a test asks for
(a device, a user, a licence, a token, ...) so that every case can act on an object of its own.
It also remembers which ids a tenant-A caller must never see (tenant B's, other tenants') and
which ids tenant A's employee must never see (other users and their devices).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pyotp
from fastapi.testclient import TestClient

from tests.support.privacy import identity_body
from tests.support.world import PASSWORD, USCC_C, Actor, TenantFixture, World
from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.auth.principal import ALL_SCOPES
from tongdao.auth.service import issue_token
from tongdao.compliance.uscc import uscc_check_char
from tongdao.runtime import Ctx
from tongdao.tenancy.models import User
from tongdao.testing.keys import public_key

API = "/api/v1"


def fresh_uscc(serial: int) -> str:
    """A structurally valid Beijing USCC with a correct check character."""
    first17 = f"91110000{700000000 + serial:09d}"
    return first17 + uscc_check_char(first17)


class Bench:
    def __init__(self, world: World) -> None:
        self.world = world
        self.client: TestClient = world.client
        self.admin = world.admin.headers
        self._serial = itertools.count(1)
        # Ids a tenant-A caller must never be shown, and ids A's employee must never be shown.
        self.foreign_to_a: set[str] = {str(world.b.id)}
        self.private_in_a: set[str] = {str(world.a.admin.user_id)}
        for actor in (world.b.admin, world.b.employee):
            self.foreign_to_a.add(str(actor.user_id))
        self.totp_secrets: dict[uuid.UUID, str] = {}
        self.passwords: dict[uuid.UUID, str] = {}  # users whose password a case changed
        self.totp_enabled: set[uuid.UUID] = set()
        self.connector_sites: dict[str, str] = {}
        self.cached: dict[str, str] = {}

        self.call("PUT", "/operator", {"legal_name": "Tongdao JV Ltd", "uscc": USCC_C})
        self.pop = self.new_pop("active")
        self.interfaces = {
            label: self.call(
                "PUT",
                f"/pops/{self.pop}/interfaces/{self.tenant(label).id}",
                {"public_key": public_key()},
            )["id"]
            for label in ("a", "b")
        }
        self.foreign_to_a.add(self.interfaces["b"])
        # Shareholder cases add stakes: start from an empty register. Without a complete one
        # nothing can be activated, so the bench's later PoPs are made disabled.
        world.clear_shareholders()
        self.groups = {label: self.new_group(label) for label in ("a", "b")}
        for label in ("a", "b"):
            tenant = self.tenant(label)
            for owner in (tenant.admin, tenant.employee):
                self.new_device(label, owner.user_id)

    # --- plumbing -----------------------------------------------------------------------
    def n(self) -> int:
        return next(self._serial)

    def tenant(self, label: str) -> TenantFixture:
        return self.world.a if label == "a" else self.world.b

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        resp = self.client.request(
            method, API + path, json=body, headers=dict(headers or self.admin)
        )
        assert resp.status_code in (200, 201), f"{method} {path}: {resp.status_code} {resp.text}"
        data: dict[str, Any] = resp.json()
        return data

    def _track(self, label: str | None, object_id: str, *, private: bool = False) -> str:
        if label == "b" or (label is None and private):
            self.foreign_to_a.add(object_id)
        elif label == "a" and private:
            self.private_in_a.add(object_id)
        return object_id

    # --- tenant-scoped objects -------------------------------------------------------------
    def new_tenant(self) -> str:
        n = self.n()
        data = self.call("POST", "/tenants", {"name_en": f"Tenant {n}", "uscc": fresh_uscc(n)})
        return self._track(None, data["id"], private=True)

    def new_user(self, label: str) -> str:
        n = self.n()
        data = self.call(
            "POST",
            f"/tenants/{self.tenant(label).id}/users",
            {"email": f"user{n}@{label}.example", "display_name": f"User {n}", **identity_body()},
        )
        return self._track(label, data["id"], private=True)

    def new_group(self, label: str) -> str:
        data = self.call("POST", f"/tenants/{self.tenant(label).id}/groups", self.group_body())
        return self._track(label, data["id"])

    def new_site(self, label: str) -> str:
        data = self.call("POST", f"/tenants/{self.tenant(label).id}/sites", self.site_body())
        return self._track(label, data["id"])

    def new_declaration(self, label: str) -> str:
        """A pending declaration: the prefix of a fresh site of the tenant."""
        site = self.call("POST", f"/tenants/{self.tenant(label).id}/sites", self.site_body())
        self._track(label, site["id"])
        return self._track(label, site["declarations"][0]["id"])

    def new_allowance(self, label: str) -> str:
        data = self.call(
            "POST", f"/tenants/{self.tenant(label).id}/prefix-allowances", self.allowance_body()
        )
        return self._track(label, data["id"])

    def new_policy(self, label: str) -> str:
        data = self.call(
            "POST", f"/tenants/{self.tenant(label).id}/policies", self.policy_body(label)
        )
        return self._track(label, data["id"])

    def new_device(self, label: str, owner: uuid.UUID) -> str:
        tenant = self.tenant(label)
        data = self.call("POST", f"/tenants/{tenant.id}/devices", self.device_body(owner))
        return self._track(label, data["id"], private=owner != tenant.employee.user_id)

    # --- operator objects ------------------------------------------------------------------
    def new_pop(self, state: str = "disabled") -> str:
        return str(self.call("POST", "/pops", self.pop_body(state))["id"])

    def new_link(self) -> str:
        return str(self.call("POST", "/links", self.link_body())["id"])

    def new_licence(self) -> str:
        return str(self.call("POST", "/operator/licences", self.licence_body())["id"])

    def new_shareholder(self) -> str:
        return str(self.call("POST", "/operator/shareholders", self.shareholder_body())["id"])

    def new_staff(self) -> str:
        return str(self.call("POST", "/operator/staff", self.staff_body())["id"])

    # --- cross-border applications (tongdao.crossborder) -----------------------------------
    def crossborder_site(self, label: str) -> str:
        """The tenant's HQ site abroad (one per tenant)."""
        key = f"xb-site-{label}"
        if key not in self.cached:
            body = {**self.site_body(), "country": "DE", "purpose": "hq"}
            site = self.call("POST", f"/tenants/{self.tenant(label).id}/sites", body)
            self.cached[key] = self._track(label, site["id"])
        return self.cached[key]

    def crossborder_link(self) -> str:
        """A registered link from a PoP in China to one abroad (one per bench)."""
        if "xb-link" not in self.cached:
            abroad = {**self.pop_body(), "region": "DE-FRA", "country": "DE"}
            body = {
                **self.link_body(),
                "pop_b_id": self.call("POST", "/pops", abroad)["id"],
                "capacity_mbps": 1_000_000,
            }
            self.cached["xb-link"] = str(self.call("POST", "/links", body)["id"])
        return self.cached["xb-link"]

    def crossborder_body(self, label: str) -> dict[str, Any]:
        from tongdao.testing.crossborder import application_body

        return application_body([self.crossborder_site(label)])

    def crossborder_approval(self) -> dict[str, Any]:
        """The compliance officer's approval body: valid from today for a year."""
        from datetime import timedelta

        from tongdao.billing.money import shanghai_today

        today = shanghai_today(self.world.runtime.clock())
        return {
            "approval_ref": "CU-XB-1",
            "link_id": self.crossborder_link(),
            "approved_mbps": 10,
            "valid_from": today.isoformat(),
            "valid_to": (today + timedelta(days=365)).isoformat(),
        }

    def new_crossborder_application(
        self, label: str, *, submitted: bool = True, approved: bool = False
    ) -> str:
        """A fresh application of the tenant: a draft, or submitted with its documents."""
        from tongdao.testing import crossborder

        tenant = self.tenant(label)
        self._make_room_for_an_application(tenant.id)
        base = f"/tenants/{tenant.id}/crossborder/applications"
        app = self.call("POST", base, self.crossborder_body(label), tenant.admin.headers)
        self._track(label, app["id"])
        if submitted:
            for kind, content, ctype in (
                ("business_licence", crossborder.sample_png(), "image/png"),
                ("commitment_letter", crossborder.sample_pdf(), "application/pdf"),
            ):
                self.upload(label, app["id"], kind, content, ctype)
            self.call("POST", f"{base}/{app['id']}/submit", None, tenant.admin.headers)
        if approved:
            officer = self.world.operators["compliance_officer"].headers
            path = f"/crossborder/applications/{app['id']}/approve"
            self.call("POST", path, self.crossborder_approval(), officer)
        return str(app["id"])

    def _make_room_for_an_application(self, tenant_id: Any) -> None:
        """A tenant has at most a few open applications; the bench makes one per case, so the
        earlier cases' open ones are closed first (in the store: there is no such action)."""
        from sqlalchemy import update

        from tongdao.crossborder.models import CrossBorderApplication
        from tongdao.crossborder.service import OPEN_STATES

        with self.world.runtime.db.session() as session:
            session.execute(
                update(CrossBorderApplication)
                .where(
                    CrossBorderApplication.tenant_id == tenant_id,
                    CrossBorderApplication.state.in_([st.value for st in OPEN_STATES]),
                )
                .values(state="rejected", reason="closed by the test bench")
            )
            session.commit()

    def upload(self, label: str, app_id: str, kind: str, content: bytes, ctype: str) -> str:
        tenant = self.tenant(label)
        resp = self.client.post(
            f"{API}/tenants/{tenant.id}/crossborder/applications/{app_id}/documents",
            params={"kind": kind},
            content=content,
            headers={**tenant.admin.headers, "Content-Type": ctype},
        )
        assert resp.status_code == 201, resp.text
        return self._track(label, str(resp.json()["id"]))

    def new_crossborder_document(self, label: str) -> str:
        from tongdao.testing.crossborder import sample_png

        app_id = self.new_crossborder_application(label, submitted=False)
        return self.upload(label, app_id, "other", sample_png(), "image/png")

    # --- gateways ---------------------------------------------------------------------------
    def enrolment_token(self) -> str:
        return str(self.call("POST", f"/pops/{self.pop}/enrolments", {"ttl_hours": 1})["token"])

    def new_gateway(self) -> str:
        enrolled = self.call("POST", "/gateway/enrol", {"token": self.enrolment_token()}, {})
        return str(enrolled["gateway_id"])

    def new_connector(self, label: str) -> str:
        """An enrolled connector of a fresh site of the tenant (its site in connector_sites)."""
        site = self.new_site(label)
        path = f"/tenants/{self.tenant(label).id}/sites/{site}/enrolments"
        token = self.call("POST", path, {"ttl_hours": 1})["token"]
        enrolled = self.call("POST", "/gateway/enrol", {"token": token}, {})
        connector = self._track(label, str(enrolled["gateway_id"]))
        self.connector_sites[connector] = site
        return connector

    # --- tokens and TOTP --------------------------------------------------------------------
    def token(
        self, user_id: uuid.UUID, scopes: frozenset[str] = ALL_SCOPES, kind: str = "api"
    ) -> tuple[str, str]:
        """(id, secret) of a new API token (or session) of the user, made in the store."""
        runtime = self.world.runtime
        with runtime.db.session() as session:
            set_actor(session, SYSTEM)
            user = session.get(User, user_id)
            assert user is not None
            token, secret = issue_token(
                Ctx(session=session, runtime=runtime),
                user,
                kind=kind,
                name="bench",
                scopes=scopes,
                ttl=timedelta(hours=1),
            )
            session.commit()
            token_id = str(token.id)
        return token_id, secret

    def headers(self, actor: Actor, scopes: frozenset[str] = ALL_SCOPES) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(actor.user_id, scopes)[1]}"}

    def session_headers(self, actor: Actor) -> dict[str, str]:
        """A signed-in session of the actor (some acts are a person's own, never a token's)."""
        return {"Authorization": f"Bearer {self.token(actor.user_id, kind='session')[1]}"}

    def foreign_token(self, actor: Actor, kind: str = "api") -> str:
        """A token of another user in the actor's own realm (operator or tenant A)."""
        if actor.tenant_id is None:
            other = next(a for a in self.world.operators.values() if a.user_id != actor.user_id)
        else:
            other = self.world.a.employee if actor.role == "tenant_admin" else self.world.a.admin
        token_id = self.token(other.user_id, kind=kind)[0]
        if actor.tenant_id is not None:
            self.private_in_a.add(token_id)
        return token_id

    def b_token(self, kind: str = "api") -> str:
        token_id = self.token(self.world.b.admin.user_id, kind=kind)[0]
        self.foreign_to_a.add(token_id)
        return token_id

    def totp_begun(self, actor: Actor) -> str:
        """Start TOTP enrolment for the actor (unless it is enabled); returns the secret."""
        if actor.user_id not in self.totp_enabled:
            resp = self.client.post(API + "/auth/totp", headers=actor.headers)
            if resp.status_code == 409:  # a confirm call under test enabled it
                self.totp_enabled.add(actor.user_id)
            else:
                assert resp.status_code == 200, resp.text
                self.totp_secrets[actor.user_id] = resp.json()["secret"]
        return self.totp_secrets[actor.user_id]

    def totp_on(self, actor: Actor) -> str:
        secret = self.totp_begun(actor)
        if actor.user_id not in self.totp_enabled:
            resp = self.client.post(
                API + "/auth/totp/confirm",
                json={
                    "code": pyotp.TOTP(secret).now(),
                    "current_password": self.passwords.get(actor.user_id, PASSWORD),
                },
                headers=actor.headers,
            )
            assert resp.status_code == 204, resp.text
            self.totp_enabled.add(actor.user_id)
        return secret

    # --- valid request bodies ---------------------------------------------------------------
    def group_body(self) -> dict[str, Any]:
        return {"name": f"group-{self.n()}", "description": "engineering"}

    def site_body(self) -> dict[str, Any]:
        n = self.n()
        return {
            "name": f"site-{n}",
            "country": "CN",
            "prefixes": [f"198.{18 + n // 256}.{n % 256}.0/24"],
            "purpose": "office",
        }

    def policy_body(self, label: str) -> dict[str, Any]:
        return {
            "name": f"policy-{self.n()}",
            "rules": [
                {
                    "sources": [{"kind": "group", "id": self.groups[label]}],
                    # the tenant's own pool: no declaration needed (network.declared_only)
                    "destinations": [
                        {"kind": "prefix", "cidr": self.tenant(label).data["ipv4_pool"]}
                    ],
                    "protocol": "tcp",
                    "ports": ["443"],
                }
            ],
        }

    def allowance_body(self) -> dict[str, Any]:
        n = self.n()
        return {"cidr": f"8.{n // 256 % 256}.{n % 256}.0/24", "reason": "contract clause 7"}

    def device_body(self, owner: uuid.UUID) -> dict[str, Any]:
        return {"name": f"laptop-{self.n()}", "public_key": public_key(), "user_id": str(owner)}

    def user_body(self, label: str) -> dict[str, Any]:
        n = self.n()
        return {"email": f"new{n}@{label}.example", "display_name": f"New {n}"}

    def tenant_body(self) -> dict[str, Any]:
        n = self.n()
        return {"name_en": f"Applicant {n}", "uscc": fresh_uscc(n)}

    def pop_body(self, state: str = "disabled") -> dict[str, Any]:
        n = self.n()
        return {
            "name": f"pop-{n}",
            "region": "CN-BJ",
            "country": "CN",
            "endpoint_host": f"203.0.113.{n % 250 + 1}",
            "state": state,
        }

    def link_body(self) -> dict[str, Any]:
        return {
            "name": f"link-{self.n()}",
            "pop_a_id": self.new_pop(),
            "pop_b_id": self.new_pop(),
            "circuit_ref": "CIRCUIT-1",
            "approval_ref": "MIIT-APPROVAL-1",
            "capacity_mbps": 100,
        }

    def licence_body(self) -> dict[str, Any]:
        return {
            "number": f"B1.B2-2010{self.n():04d}",
            "service_codes": ["B13"],
            "issuing_authority": "MIIT",
            "provinces": ["11"],
            "valid_from": "2024-01-01",
            "valid_to": "2029-01-01",
        }

    def shareholder_body(self) -> dict[str, Any]:
        return {"name": f"Holder {self.n()}", "foreign": True, "stake_percent": 0.5}

    def staff_body(self) -> dict[str, Any]:
        n = self.n()
        return {
            "email": f"staff{n}@operator.example",
            "display_name": f"Staff {n}",
            "roles": ["auditor"],
        }
