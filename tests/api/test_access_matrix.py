"""Every /api/v1 route × every role × own / other tenant: no leaks, no 5xx, the right status.

``SPECS`` names, for each (method, path template) of the app, the permission it needs (taken
from :mod:`tongdao.auth.permissions`, not restated), the object that fills its id and a valid
body. A route missing from the table fails :func:`test_every_route_is_in_the_table`, so a new
endpoint has to be described here before the suite passes.

Each route runs on a fresh world (one parametrized test per route) and every case acts on
objects made for it, so deletes and updates never bleed into the next case. Scopes:

* ``own``: tenant A's path and a fresh object of tenant A (for an operator creating or deleting
  a tenant: a fresh tenant; for A's employee reading a user: their own record);
* ``other``: tenant B's path and a fresh object of tenant B: a tenant role gets 404;
* ``mixed``: tenant A's path with a fresh object of tenant B: everyone gets 404 (403 is fine
  for a role without the grant, which learns nothing from it);
* ``peer``: an object of another user where the grant is own-only (A's employee and devices or
  users; anyone and API tokens or sessions): 404;
* ``readonly``: ``own`` with a read-only token: 403 on every write.

Every response is checked for 5xx, and every response to a tenant-A caller for ids of tenant B
(and other tenants); every response to A's employee for ids of other users and their devices.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.access_bench import API, Bench
from tests.support.authenticator import SoftAuthenticator
from tests.support.billing import billing_invoice, plan_body
from tests.support.privacy import bench_consent_body, notice_body
from tests.support.world import PASSWORD, Actor, World
from tongdao.auth import links
from tongdao.auth.links import LinkPurpose
from tongdao.auth.models import ApiToken
from tongdao.auth.permissions import OPERATOR_ROLES, OWN_ONLY, PERMISSIONS, Action, Role, allowed
from tongdao.auth.webauthn_models import WebAuthnCredential
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, User
from tongdao.testing.keys import public_key

READ_ONLY = frozenset({"read"})
NEW_PASSWORD = "a different long passphrase 7"
PASSWORD_RESET = LinkPurpose.PASSWORD_RESET
TENANT_OBJECTS = frozenset(
    {
        "user",
        "group",
        "site",
        "device",
        "policy",
        "prefix_allowance",
        "connector",
        "invoice",
        "issued_invoice",
        "crossborder_application",
        "crossborder_draft",
        "crossborder_approved",
        "crossborder_document",
        "sso_claim",
        "scim_token",
    }
)

Body = Callable[[Bench, "Case"], dict[str, Any] | None]
Target = Callable[[Bench, "Case"], str]


@dataclass(frozen=True)
class Case:
    actor: Actor
    scope: str  # own | other | mixed | peer | readonly

    @property
    def path_label(self) -> str:
        return "b" if self.scope == "other" else "a"

    @property
    def obj_label(self) -> str:
        return "b" if self.scope in ("other", "mixed") else "a"


@dataclass(frozen=True)
class Spec:
    resource: str | None  # key of PERMISSIONS; None: any signed-in caller, on their own account
    action: Action | None = None
    target: str | None = None  # what fills the object id of the path
    body: Body | None = None
    readonly_ok: bool = False  # documented: this write is fine with a read-only token
    ends_session: bool = False  # the call revokes the token it is made with
    anonymous: bool = False  # the route needs no token (login)
    machine: bool = False  # a gateway credential, not a user's token: every user gets 401
    session: bool = False  # sent in a signed-in session (an API token gets 403 on oneself)
    notes: str = ""
    also: frozenset[int] = field(default_factory=frozenset)  # documented extra statuses


# --- targets: a fresh object per case -----------------------------------------------------
def _tenant(bench: Bench, case: Case) -> str:
    if case.scope == "other":
        return str(bench.world.b.id)
    if case.actor.tenant_id is None:
        return bench.new_tenant()
    return str(bench.world.a.id)


def _user(bench: Bench, case: Case) -> str:
    if case.actor.role == Role.EMPLOYEE and case.scope in ("own", "readonly"):
        return str(case.actor.user_id)
    return bench.new_user(case.obj_label)


def _device(bench: Bench, case: Case) -> str:
    tenant = bench.tenant(case.obj_label)
    owner = tenant.admin if case.scope == "peer" else tenant.employee
    return bench.new_device(case.obj_label, owner.user_id)


def _token(bench: Bench, case: Case, kind: str = "api") -> str:
    if case.scope == "peer":
        return bench.foreign_token(case.actor, kind)
    if case.scope == "other":
        return bench.b_token(kind)
    return bench.token(case.actor.user_id, kind=kind)[0]


def _password(bench: Bench, case: Case) -> str:
    return bench.passwords.get(case.actor.user_id, PASSWORD)


def _password_change(bench: Bench, case: Case) -> dict[str, Any]:
    body = {"current_password": _password(bench, case), "new_password": NEW_PASSWORD}
    if case.scope == "own":  # succeeds: later cases of this user sign in with the new one
        bench.passwords[case.actor.user_id] = NEW_PASSWORD
    return body


def _totp_disable(bench: Bench, case: Case) -> dict[str, Any]:
    # The code that enabled TOTP is spent (no replay): the next time step's code.
    code = pyotp.TOTP(bench.totp_on(case.actor)).at(time.time() + 30)
    return {"code": code, "current_password": _password(bench, case)}


def _soft_key(bench: Bench) -> SoftAuthenticator:
    return SoftAuthenticator(origin=bench.world.runtime.settings.webauthn_rp[1])


def _webauthn_register(bench: Bench, case: Case) -> dict[str, Any]:
    """A real answer to registration options asked with the case's own token (the challenge
    is bound to it); a read-only token cannot ask: any answer then."""
    options = bench.world.client.post(
        f"{API}/auth/webauthn/registration-options", headers=case.actor.headers
    ).json()
    credential = _soft_key(bench).create(options)
    return {
        "name": f"Key {bench.n()}",
        "credential": credential,
        "current_password": _password(bench, case),
    }


def _webauthn_sign_in(bench: Bench, case: Case) -> dict[str, Any]:
    """The key step of signing in: the actor gets a key, the password step a challenge."""
    client = bench.world.client
    key = _soft_key(bench)
    options = client.post(
        f"{API}/auth/webauthn/registration-options", headers=case.actor.headers
    ).json()
    body = {
        "name": f"Key {bench.n()}",
        "credential": key.create(options),
        "current_password": _password(bench, case),
    }
    resp = client.post(f"{API}/auth/webauthn/credentials", json=body, headers=case.actor.headers)
    assert resp.status_code == 201, resp.text
    pending = client.post(
        f"{API}/auth/login", json={"email": _email(case.actor), "password": _password(bench, case)}
    ).json()
    return {"pending": pending["pending"], "credential": key.get(pending["options"])}


def _webauthn_credential(bench: Bench, case: Case) -> str:
    """A stored key of the caller (own), of a colleague (peer) or of tenant B (other)."""
    world = bench.world
    owner = case.actor.user_id
    if case.scope == "peer":
        owner = (
            world.a.admin.user_id if owner != world.a.admin.user_id else world.a.employee.user_id
        )
    elif case.scope == "other":
        owner = world.b.employee.user_id
    with world.runtime.db.session() as session:
        row = WebAuthnCredential(
            user_id=owner,
            name=f"Key {bench.n()}",
            credential_id=f"cred{bench.n()}-{uuid.uuid4().hex}",
            public_key="AA",
            sign_count=0,
        )
        session.add(row)
        session.commit()
        return str(row.id)


def _invoice(bench: Bench, case: Case, *, issued: bool = False) -> str:
    """A fresh invoice of the case's object tenant (a draft, or issued), one line."""
    label = case.obj_label
    runtime = bench.world.runtime
    with runtime.db.session() as session:
        invoice = billing_invoice(session, bench.tenant(label).id, issued=issued)
        session.commit()
        return bench._track(label, str(invoice.id))


def _sso_claim(bench: Bench, case: Case) -> str:
    """A pending e-mail domain claim of the case's tenant (made by its admin)."""
    tenant = bench.tenant(case.obj_label)
    data = bench.call(
        "POST",
        f"/tenants/{tenant.id}/sso/domains",
        {"domain": f"d{bench.n()}.example", "evidence": "DNS TXT record tongdao=1"},
        headers=tenant.admin.headers,
    )
    return bench._track(case.obj_label, data["id"])


def _sso_provider_body(bench: Bench, case: Case) -> dict[str, Any]:
    return {
        "name": "Corporate IdP",
        "issuer": "https://idp.example.com",
        "client_id": "tongdao",
        "client_secret": "s3cret-from-the-provider",
    }


def _with_sso_provider(bench: Bench, case: Case) -> None:
    """Make sure the path's tenant has an identity provider (GET and DELETE need one)."""
    tenant = bench.tenant(case.path_label)
    bench.call(
        "PUT",
        f"/tenants/{tenant.id}/sso/provider",
        _sso_provider_body(bench, case),
        headers=tenant.admin.headers,
    )


def _scim_token(bench: Bench, case: Case) -> str:
    """A fresh SCIM token of the case's object tenant."""
    from tongdao.scim import service as scim

    label = case.obj_label
    runtime = bench.world.runtime
    with runtime.db.session() as session:
        tenant = session.get(Tenant, bench.tenant(label).id)
        assert tenant is not None
        token, _secret = scim.create_token(
            Ctx(session=session, runtime=runtime), tenant, f"idp {bench.n()}"
        )
        session.commit()
        return bench._track(label, str(token.id))


TARGETS: dict[str, Target] = {
    "scim_token": _scim_token,
    "invoice": _invoice,
    "issued_invoice": lambda bench, case: _invoice(bench, case, issued=True),
    "plan": lambda bench, case: bench.call(
        "POST", "/billing/plans", plan_body(f"Plan {bench.n()}")
    )["id"],
    "tenant": _tenant,
    "sso_claim": _sso_claim,
    "user": _user,
    "device": _device,
    "token": _token,
    "webauthn_credential": _webauthn_credential,
    "session": lambda bench, case: _token(bench, case, "session"),
    "group": lambda bench, case: bench.new_group(case.obj_label),
    "site": lambda bench, case: bench.new_site(case.obj_label),
    "policy": lambda bench, case: bench.new_policy(case.obj_label),
    "declaration": lambda bench, case: bench.new_declaration(case.obj_label),
    "prefix_allowance": lambda bench, case: bench.new_allowance(case.obj_label),
    "staff": lambda bench, case: bench.new_staff(),
    "pop": lambda bench, case: bench.new_pop(),
    "link": lambda bench, case: bench.new_link(),
    "licence": lambda bench, case: bench.new_licence(),
    "shareholder": lambda bench, case: bench.new_shareholder(),
    "gateway": lambda bench, case: bench.new_gateway(),
    "connector": lambda bench, case: bench.new_connector(case.obj_label),
    "crossborder_application": lambda bench, case: bench.new_crossborder_application(
        case.obj_label
    ),
    "crossborder_draft": lambda bench, case: bench.new_crossborder_application(
        case.obj_label, submitted=False
    ),
    "crossborder_approved": lambda bench, case: bench.new_crossborder_application(
        case.obj_label, approved=True
    ),
    "crossborder_document": lambda bench, case: bench.new_crossborder_document(case.obj_label),
}


def _reset_link(bench: Bench) -> dict[str, Any]:
    """A fresh user's one-time link (as mailed to them) and a new password."""
    runtime = bench.world.runtime
    with runtime.db.session() as session:
        user = session.get(User, uuid.UUID(bench.new_user("a")))
        assert user is not None
        _link, secret = links.issue(Ctx(session=session, runtime=runtime), user, PASSWORD_RESET)
        session.commit()
    return {"token": secret, "new_password": "a fresh long passphrase 9"}


def _email(actor: Actor) -> str:
    return f"{actor.role}@{'operator' if actor.tenant_id is None else 'a'}.example"


def _crud(
    base: str,
    resource: str,
    target: str,
    create: Body,
    update: Body,
) -> dict[tuple[str, str], Spec]:
    item = base + "/{object_id}"
    return {
        ("GET", base): Spec(resource, Action.READ),
        ("POST", base): Spec(resource, Action.CREATE, body=create),
        ("GET", item): Spec(resource, Action.READ, target),
        ("PATCH", item): Spec(resource, Action.UPDATE, target, body=update),
        ("DELETE", item): Spec(resource, Action.DELETE, target),
    }


T = "/tenants/{tenant_id}"
SPECS: dict[tuple[str, str], Spec] = {
    # --- the caller's own account ----------------------------------------------------------
    ("POST", "/auth/login"): Spec(
        None,
        anonymous=True,
        body=lambda bench, case: {"email": _email(case.actor), "password": PASSWORD},
    ),
    ("POST", "/auth/logout"): Spec(
        None,
        readonly_ok=True,
        ends_session=True,
        notes="a read-only token may end its own session",
    ),
    ("GET", "/auth/me"): Spec(None),
    ("POST", "/auth/password"): Spec(None, body=_password_change),
    ("POST", "/auth/totp"): Spec(None),
    ("POST", "/auth/totp/confirm"): Spec(
        None,
        body=lambda bench, case: {
            "code": pyotp.TOTP(bench.totp_begun(case.actor)).now(),
            "current_password": _password(bench, case),
        },
    ),
    ("POST", "/auth/totp/disable"): Spec(None, body=_totp_disable),
    ("GET", "/auth/sessions"): Spec(None),
    ("DELETE", "/auth/sessions/{session_id}"): Spec(None, target="session"),
    ("POST", "/auth/sessions/revoke-others"): Spec(None),
    ("POST", "/auth/password-reset"): Spec(
        None, anonymous=True, body=lambda bench, case: {"email": _email(case.actor)}
    ),
    ("POST", "/auth/password-reset/complete"): Spec(
        None, anonymous=True, body=lambda bench, case: _reset_link(bench)
    ),
    ("GET", "/tokens"): Spec(None),
    ("POST", "/tokens"): Spec(
        None,
        body=lambda bench, case: {"name": "ci", "current_password": _password(bench, case)},
    ),
    ("DELETE", "/tokens/{token_id}"): Spec(None, target="token"),
    # --- operator ----------------------------------------------------------------------------
    ("GET", "/operator"): Spec("operator", Action.READ),
    ("GET", "/operator/compliance"): Spec("operator", Action.READ),
    # s20-compliance: the scheduled compliance check's settings and open breaches
    ("GET", "/operator/compliance/watch"): Spec("operator", Action.READ),
    ("PUT", "/operator/compliance/watch"): Spec(
        "operator", Action.UPDATE, body=lambda bench, case: {"grace_days": 10}
    ),
    **_crud(
        "/operator/licences",
        "operator",
        "licence",
        lambda bench, case: bench.licence_body(),
        lambda bench, case: {"issuing_authority": "MIIT (renewed)"},
    ),
    **_crud(
        "/operator/shareholders",
        "operator",
        "shareholder",
        lambda bench, case: bench.shareholder_body(),
        lambda bench, case: {"stake_percent": 0.25},
    ),
    # s20-compliance: the whole register in one change (after the others: it fills it to 100%)
    ("PUT", "/operator/shareholders"): Spec(
        "operator",
        Action.UPDATE,
        body=lambda bench, case: {
            "shareholders": [
                {
                    "name": "Tongdao Holdings (Beijing) Co., Ltd.",
                    "foreign": False,
                    "stake_percent": "51",
                },
                {"name": "Overseas Telecom Ltd", "foreign": True, "stake_percent": "49"},
            ]
        },
    ),
    ("GET", "/operator/mail"): Spec("mail", Action.READ),
    ("PUT", "/operator/mail"): Spec(
        "mail",
        Action.UPDATE,
        body=lambda bench, case: {
            "host": "127.0.0.1",
            "port": 9,
            "security": "none",
            "sender": "noc@operator.example",
        },
        notes="a loopback port where nothing listens: invitations of later cases wait",
    ),
    ("POST", "/operator/staff/{object_id}/password-reset"): Spec("staff", Action.UPDATE, "staff"),
    ("PUT", "/operator"): Spec(
        "operator",
        Action.UPDATE,
        body=lambda bench, case: {"legal_name": "Tongdao JV Ltd", "uscc": "91350100M000100Y43"},
    ),
    **_crud(
        "/operator/staff",
        "staff",
        "staff",
        lambda bench, case: bench.staff_body(),
        lambda bench, case: {"display_name": "Renamed staff"},
    ),
    **_crud(
        "/pops",
        "pops",
        "pop",
        lambda bench, case: bench.pop_body(),
        lambda bench, case: {"endpoint_host": "198.51.100.7"},
    ),
    ("GET", "/pops/{pop_id}/interfaces"): Spec("pops", Action.READ),
    ("POST", "/pops/{pop_id}/enrolments"): Spec(
        "pops", Action.UPDATE, body=lambda bench, case: {"ttl_hours": 1}
    ),
    ("GET", "/pops/{pop_id}/gateways"): Spec("pops", Action.READ),
    ("DELETE", "/pops/{pop_id}/gateways/{gateway_id}"): Spec("pops", Action.UPDATE, "gateway"),
    # --- gateway agents (machine credentials) ------------------------------------------------
    ("POST", "/gateway/enrol"): Spec(
        None, anonymous=True, body=lambda bench, case: {"token": bench.enrolment_token()}
    ),
    ("GET", "/gateway/desired-state"): Spec(None, machine=True),
    ("PUT", "/gateway/interfaces/{tenant_id}"): Spec(
        None, machine=True, body=lambda bench, case: {"public_key": public_key()}
    ),
    ("POST", "/gateway/ack"): Spec(None, machine=True, body=lambda bench, case: {"version": 1}),
    ("POST", "/gateway/reports"): Spec(
        None,
        machine=True,
        body=lambda bench, case: {
            "seq": 1,
            "period_start": "2026-01-01T00:00:00Z",
            "period_end": "2026-01-01T00:00:30Z",
            "peers": [],
        },
    ),
    ("GET", "/pops/{pop_id}/usage"): Spec("pops", Action.READ),
    ("PUT", "/pops/{pop_id}/interfaces/{tenant_id}"): Spec(
        "pops", Action.UPDATE, body=lambda bench, case: {"public_key": public_key()}
    ),
    **_crud(
        "/links",
        "links",
        "link",
        lambda bench, case: bench.link_body(),
        lambda bench, case: {"capacity_mbps": 200},
    ),
    ("GET", "/links/{object_id}/usage/reconciliation"): Spec(
        "links",
        Action.READ,
        "link",
        notes="also needs usage read, which every role reading links has",
    ),
    # --- tenants and what they hold ------------------------------------------------------------
    **_crud(
        "/tenants",
        "tenants",
        "tenant",
        lambda bench, case: bench.tenant_body(),
        # a self-service field, so that a tenant admin may change it too
        lambda bench, case: {"contact_name": "Li Lei"},
    ),
    **_crud(
        T + "/users",
        "users",
        "user",
        lambda bench, case: bench.user_body(case.obj_label),
        lambda bench, case: {"display_name": "Renamed user"},
    ),
    # Real identity (the bench's users have one recorded), personal data, consents, notices.
    ("POST", T + "/users/{user_id}/identity-verification"): Spec(
        "identity", Action.UPDATE, "user", notes="an employee's own record: 403, never self"
    ),
    ("DELETE", T + "/users/{user_id}/identity-verification"): Spec(
        "identity", Action.UPDATE, "user"
    ),
    ("POST", T + "/users/{user_id}/password-reset"): Spec(
        "users", Action.UPDATE, "user", notes="ends the user's sessions; mails them a link"
    ),
    ("GET", T + "/users/{user_id}/personal-data"): Spec("personal_data", Action.READ, "user"),
    ("POST", T + "/users/{user_id}/sign-in-unlock"): Spec("sign_in", Action.UPDATE, "user"),
    ("POST", "/operator/staff/{object_id}/sign-in-unlock"): Spec("staff", Action.UPDATE, "staff"),
    ("POST", T + "/users/{user_id}/personal-data/erase"): Spec(
        "personal_data", Action.DELETE, "user"
    ),
    ("GET", T + "/users/{user_id}/consents"): Spec("consents", Action.READ, "user"),
    ("POST", T + "/users/{user_id}/consents"): Spec(
        "consents",
        Action.CREATE,
        "user",
        body=lambda bench, case: bench_consent_body(bench),
        session=True,
        notes="one's own consent only in one's own session: test_privacy.py",
    ),
    ("DELETE", T + "/users/{user_id}/consents/transfer-abroad"): Spec(
        "consents", Action.DELETE, "user"
    ),
    ("POST", "/privacy-notices"): Spec(
        "notices", Action.CREATE, body=lambda bench, case: notice_body(f"v{bench.n()}")
    ),
    ("GET", "/privacy-notices"): Spec("notices", Action.READ),
    ("GET", "/privacy-notices/current"): Spec(
        "notices", Action.READ, notes="after the POST above has published one"
    ),
    **_crud(
        T + "/groups",
        "groups",
        "group",
        lambda bench, case: bench.group_body(),
        lambda bench, case: {"description": "renamed"},
    ),
    **_crud(
        T + "/sites",
        "sites",
        "site",
        lambda bench, case: bench.site_body(),
        lambda bench, case: {"purpose": "hq"},
    ),
    **_crud(
        T + "/devices",
        "devices",
        "device",
        lambda bench, case: bench.device_body(bench.tenant(case.obj_label).employee.user_id),
        lambda bench, case: {"name": "renamed-laptop"},
    ),
    ("GET", T + "/devices/{device_id}/wireguard.conf"): Spec(
        "devices",
        Action.READ,
        "device",
        notes="409 while no PoP has published a key for the tenant; the bench publishes one",
    ),
    **_crud(
        T + "/policies",
        "policies",
        "policy",
        lambda bench, case: bench.policy_body(case.obj_label),
        lambda bench, case: {"description": "tightened"},
    ),
    ("GET", T + "/usage"): Spec(
        "devices", Action.READ, notes="an employee sees the usage of their own devices only"
    ),
    # --- usage ledger series (s20-ledger) ---
    ("GET", T + "/usage/series"): Spec(
        "usage", Action.READ, notes="an employee's tenant series sums their own devices"
    ),
    ("GET", T + "/users/{object_id}/usage/series"): Spec("usage", Action.READ, "user"),
    ("GET", T + "/devices/{object_id}/usage/series"): Spec("usage", Action.READ, "device"),
    ("GET", T + "/sites/{object_id}/usage/series"): Spec(
        "usage", Action.READ, "site", also=frozenset({404}), notes="an employee owns no site: 404"
    ),
    ("GET", "/pops/{pop_id}/usage/series"): Spec(
        "pops", Action.READ, notes="also needs usage read, which every role reading PoPs has"
    ),
    ("GET", T + "/sites/{site_id}/paths"): Spec("sites", Action.READ, "site"),
    ("GET", T + "/sites/{site_id}/wireguard.conf"): Spec(
        "sites",
        Action.READ,
        "site",
        also=frozenset({409}),
        notes="409 until the site is active, has a router key and its PoP published a key",
    ),
    ("POST", T + "/sites/{site_id}/enrolments"): Spec(
        "sites", Action.UPDATE, "site", body=lambda bench, case: {"ttl_hours": 1}
    ),
    ("GET", T + "/sites/{site_id}/connectors"): Spec("sites", Action.READ, "site"),
    ("DELETE", T + "/sites/{site_id}/connectors/{connector_id}"): Spec(
        "sites", Action.UPDATE, "connector", notes="revoking is changing the site, like enrolling"
    ),
    # --- declared networks ---------------------------------------------------------------
    ("GET", "/declarations"): Spec(
        "declarations", Action.READ, notes="a tenant admin lists their own tenant's"
    ),
    ("GET", "/declarations/{object_id}"): Spec("declarations", Action.READ, "declaration"),
    ("POST", "/declarations/{object_id}/approve"): Spec(
        "declarations",
        Action.UPDATE,
        "declaration",
        body=lambda bench, case: {"reason": "HQ LAN per contract"},
    ),
    ("POST", "/declarations/{object_id}/reject"): Spec(
        "declarations",
        Action.UPDATE,
        "declaration",
        body=lambda bench, case: {"reason": "not an office network"},
    ),
    **_crud(
        T + "/prefix-allowances",
        "prefix_allowances",
        "prefix_allowance",
        lambda bench, case: bench.allowance_body(),
        lambda bench, case: {"reason": "renewed contract"},
    ),
    # --- cross-border service (tongdao.crossborder) -------------------------------------------
    ("GET", "/crossborder/letter-template.pdf"): Spec("crossborder", Action.READ),
    ("GET", T + "/crossborder/status"): Spec("crossborder", Action.READ),
    ("GET", T + "/crossborder/applications"): Spec("crossborder", Action.READ),
    ("POST", T + "/crossborder/applications"): Spec(
        "crossborder",
        Action.CREATE,
        body=lambda bench, case: bench.crossborder_body(case.path_label),
    ),
    ("GET", T + "/crossborder/applications/{object_id}"): Spec(
        "crossborder", Action.READ, "crossborder_application"
    ),
    ("PATCH", T + "/crossborder/applications/{object_id}"): Spec(
        "crossborder",
        Action.UPDATE,
        "crossborder_draft",
        body=lambda bench, case: {"headcount": 55},
    ),
    ("POST", T + "/crossborder/applications/{object_id}/submit"): Spec(
        "crossborder",
        Action.UPDATE,
        "crossborder_draft",
        also=frozenset({422}),
        notes="a fresh draft has no documents: 422 naming them (tests/api/test_crossborder.py)",
    ),
    ("POST", T + "/crossborder/applications/{object_id}/documents"): Spec(
        "crossborder",
        Action.UPDATE,
        "crossborder_draft",
        also=frozenset({422}),
        notes="the matrix sends JSON, not a document: 422 (uploads: tests/api/test_crossborder.py)",
    ),
    ("GET", T + "/crossborder/documents/{object_id}"): Spec(
        "crossborder", Action.READ, "crossborder_document"
    ),
    ("GET", "/crossborder/applications"): Spec(
        "crossborder", Action.READ, notes="a tenant admin lists their own tenant's"
    ),
    ("POST", "/crossborder/applications/{object_id}/review"): Spec(
        "crossborder_decisions", Action.UPDATE, "crossborder_application"
    ),
    ("POST", "/crossborder/applications/{object_id}/approve"): Spec(
        "crossborder_decisions",
        Action.UPDATE,
        "crossborder_application",
        body=lambda bench, case: bench.crossborder_approval(),
    ),
    ("POST", "/crossborder/applications/{object_id}/reject"): Spec(
        "crossborder_decisions",
        Action.UPDATE,
        "crossborder_application",
        body=lambda bench, case: {"reason": "the letter is not stamped"},
    ),
    ("POST", "/crossborder/applications/{object_id}/revoke"): Spec(
        "crossborder_decisions",
        Action.UPDATE,
        "crossborder_approved",
        body=lambda bench, case: {"reason": "the carrier withdrew its approval"},
    ),
    # --- billing ---------------------------------------------------------------------------
    **_crud(
        "/billing/plans",
        "billing_plans",
        "plan",
        lambda bench, case: plan_body(f"Plan {bench.n()}"),
        lambda bench, case: {"name_zh": "远程接入套餐"},
    ),
    ("GET", T + "/subscriptions"): Spec("subscriptions", Action.READ),
    ("POST", T + "/subscriptions"): Spec(
        "subscriptions",
        Action.CREATE,
        body=lambda bench, case: {"plan_id": None, "starts_on": "2027-03-01"},
    ),
    ("POST", "/billing/runs"): Spec(
        "invoices", Action.CREATE, body=lambda bench, case: {"month": "2026-11"}
    ),
    ("GET", "/billing/overdue"): Spec("invoices", Action.READ, notes="a tenant admin: own"),
    ("GET", T + "/invoices"): Spec("invoices", Action.READ),
    ("GET", T + "/invoices/{object_id}"): Spec("invoices", Action.READ, "invoice"),
    ("GET", T + "/invoices/{object_id}/csv"): Spec("invoices", Action.READ, "invoice"),
    ("GET", T + "/invoices/{object_id}/e-fapiao"): Spec("invoices", Action.READ, "invoice"),
    ("GET", T + "/invoices/{object_id}/pdf"): Spec("invoices", Action.READ, "invoice"),
    ("POST", T + "/invoices/{object_id}/issue"): Spec("invoices", Action.UPDATE, "invoice"),
    ("POST", T + "/invoices/{object_id}/void"): Spec(
        "invoices", Action.UPDATE, "invoice", body=lambda bench, case: {"reason": "duplicate"}
    ),
    ("POST", T + "/invoices/{object_id}/fapiao"): Spec(
        "invoices",
        Action.UPDATE,
        "issued_invoice",
        body=lambda bench, case: {"fapiao_number": f"{bench.n():020d}"},
    ),
    ("POST", T + "/invoices/{object_id}/credit-notes"): Spec(
        "invoices",
        Action.UPDATE,
        "issued_invoice",
        body=lambda bench, case: {"reason": "price error"},
    ),
    ("POST", T + "/invoices/{object_id}/payments"): Spec(
        "payments",
        Action.CREATE,
        "issued_invoice",
        body=lambda bench, case: {"amount": "1.00", "received_on": "2026-12-01"},
    ),
    ("GET", T + "/payments"): Spec("payments", Action.READ),
    ("GET", T + "/balance"): Spec("invoices", Action.READ),
    ("GET", T + "/billing/reminders"): Spec("invoices", Action.READ),
    ("GET", T + "/billing/suspensions"): Spec("nonpayment_suspensions", Action.READ),
    ("POST", T + "/billing/suspension"): Spec(
        "nonpayment_suspensions",
        Action.CREATE,
        body=lambda bench, case: {"reason": "unpaid"},
        also=frozenset({409}),
        notes="409 without an overdue invoice (tests/api/test_dunning.py)",
    ),
    ("POST", T + "/billing/suspension/lift"): Spec(
        "nonpayment_suspensions",
        Action.UPDATE,
        body=lambda bench, case: {"reason": "paid"},
        also=frozenset({409}),
        notes="409 without a suspension for non-payment (tests/api/test_dunning.py)",
    ),
    # --- quotas (issue 13) -------------------------------------------------------------------
    ("GET", T + "/limits"): Spec("tenant_limits", Action.READ),
    ("PUT", T + "/limits"): Spec(
        "tenant_limits", Action.UPDATE, body=lambda bench, case: {"tenant_cap_mb": 100}
    ),
    ("GET", T + "/users/{user_id}/limits"): Spec("user_limits", Action.READ, "user"),
    ("PUT", T + "/users/{user_id}/limits"): Spec(
        "user_limits", Action.UPDATE, "user", body=lambda bench, case: {"cap_mb": 10}
    ),
    ("GET", T + "/quota-events"): Spec("quota_events", Action.READ),
    # --- single sign-on (issue 15) ----------------------------------------------------------
    ("POST", "/auth/sso/begin"): Spec(
        None,
        anonymous=True,
        body=lambda bench, case: {
            "email": _email(case.actor),
            "redirect_uri": "http://127.0.0.1:8400/callback",
            "binding_challenge": "0" * 64,
        },
        also=frozenset({422}),
        notes="422: no SSO for the address's domain (tests/sso/test_cli_sso.py)",
    ),
    ("POST", "/auth/sso/complete"): Spec(
        None,
        anonymous=True,
        body=lambda bench, case: {"state": "forged", "code": "x", "binding_verifier": "x"},
        also=frozenset({401}),
        notes="401 without a live sign-in (tests/sso/test_cli_sso.py)",
    ),
    ("GET", T + "/sso/provider"): Spec(
        "sso_providers", Action.READ, body=_with_sso_provider, notes="the body makes one"
    ),
    ("PUT", T + "/sso/provider"): Spec("sso_providers", Action.UPDATE, body=_sso_provider_body),
    ("DELETE", T + "/sso/provider"): Spec(
        "sso_providers", Action.DELETE, body=_with_sso_provider, notes="the body makes one"
    ),
    ("GET", T + "/sso/domains"): Spec("sso_domains", Action.READ),
    ("POST", T + "/sso/domains"): Spec(
        "sso_domains",
        Action.CREATE,
        body=lambda bench, case: {
            "domain": f"c{bench.n()}.example",
            "evidence": "DNS TXT record tongdao=1",
        },
    ),
    ("DELETE", T + "/sso/domains/{object_id}"): Spec("sso_domains", Action.DELETE, "sso_claim"),
    ("POST", T + "/sso/domains/{object_id}/decision"): Spec(
        "sso_domain_decisions",
        Action.UPDATE,
        "sso_claim",
        body=lambda bench, case: {"decision": "approve"},
    ),
    # --- SCIM tokens and device lifetime (issue 15) ----------------------------------------
    ("GET", T + "/scim-tokens"): Spec("scim_tokens", Action.READ),
    ("POST", T + "/scim-tokens"): Spec(
        "scim_tokens", Action.CREATE, body=lambda bench, case: {"name": f"idp {bench.n()}"}
    ),
    ("DELETE", T + "/scim-tokens/{token_id}"): Spec("scim_tokens", Action.DELETE, "scim_token"),
    ("GET", T + "/device-lifetime"): Spec("device_lifetime", Action.READ),
    ("PUT", T + "/device-lifetime"): Spec(
        "device_lifetime", Action.UPDATE, body=lambda bench, case: {"days": 30}
    ),
    ("GET", "/audit/events"): Spec("audit", Action.READ),
    ("GET", "/audit/verify"): Spec(
        "audit_chain", Action.READ, notes="the whole chain: operator roles that read the log"
    ),
    ("GET", "/audit/export"): Spec(
        "audit", Action.READ, notes="a zip; a tenant admin's export holds their tenant only"
    ),
}
# Second factors (tongdao.auth.second_factor_routes), last of their family: registering a
# key changes how the actor signs in for the routes after it.
SPECS.update(
    {
        # --- second factors (tongdao.auth.second_factor_routes) ---
        ("GET", "/auth/second-factor"): Spec(None),
        ("GET", "/auth/webauthn/credentials"): Spec(None),
        ("POST", "/auth/webauthn/registration-options"): Spec(None),
        ("POST", "/auth/webauthn/credentials"): Spec(None, body=_webauthn_register),
        ("DELETE", "/auth/webauthn/credentials/{credential_id}"): Spec(
            None,
            target="webauthn_credential",
            body=lambda bench, case: {"current_password": _password(bench, case)},
        ),
        ("POST", "/auth/login/webauthn"): Spec(None, anonymous=True, body=_webauthn_sign_in),
        ("GET", "/operator/second-factor-policy"): Spec("second_factor_policy", Action.READ),
        ("PUT", "/operator/second-factor-policy"): Spec(
            "second_factor_policy",
            Action.UPDATE,
            body=lambda bench, case: {"required_for_staff": False},
        ),
        ("POST", "/operator/staff/{object_id}/second-factor-reset"): Spec(
            "staff", Action.UPDATE, "staff"
        ),
        ("POST", T + "/users/{user_id}/second-factor-reset"): Spec(
            "sign_in", Action.UPDATE, "user"
        ),
    }
)


# --- the app's routes -----------------------------------------------------------------------
def api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, path below /api/v1, route) for every API route, however routers nest."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI flattens included routers into app.routes
        contexts: list[Any] = list(app.routes)
        routes = [(getattr(r, "path", ""), r) for r in contexts]
    else:
        routes = [(c.path or "", c.original_route) for c in iter_route_contexts(app.routes)]
    for path, route in routes:
        if isinstance(route, APIRoute) and path.startswith(API + "/"):
            for method in sorted(route.methods):
                yield method, path.removeprefix(API), route


def test_every_route_is_in_the_table(app: FastAPI) -> None:
    present = {(method, path) for method, path, _ in api_routes(app)}
    missing = sorted(present - SPECS.keys())
    stale = sorted(SPECS.keys() - present)
    assert not missing, f"routes with no entry in SPECS (describe them): {missing}"
    assert not stale, f"SPECS entries for routes that no longer exist: {stale}"
    for key, spec in SPECS.items():
        if spec.resource is not None:
            assert spec.resource in PERMISSIONS, key
            assert spec.action is not None, key


# --- expectations from the permission table ----------------------------------------------
def scopes_for(path: str, spec: Spec, role: str) -> list[str]:
    tenant_path = "{tenant_id}" in path
    tenant_object = spec.target in TENANT_OBJECTS and tenant_path
    scopes = ["own"]
    if role not in OPERATOR_ROLES and (
        tenant_path
        or spec.target in ("tenant", "token", "session", "declaration", "webauthn_credential")
    ):
        scopes.append("other")
    if tenant_object:
        scopes.append("mixed")
    if spec.target in ("token", "session", "webauthn_credential") or (
        spec.target is not None
        and spec.resource is not None
        and (Role(role), spec.resource) in OWN_ONLY
    ):
        scopes.append("peer")
    return scopes


def expected(spec: Spec, success: int, role: str, scope: str) -> frozenset[int]:
    ok = frozenset({success}) | spec.also
    if spec.machine:
        return frozenset({401})
    if scope == "readonly":
        if spec.readonly_ok:
            return ok
        return frozenset({403})
    if spec.resource is None:
        return ok if scope == "own" else frozenset({404})
    assert spec.action is not None
    granted = allowed(frozenset({Role(role)}), spec.resource, spec.action)
    if scope == "other":
        return frozenset({404})
    if scope in ("mixed", "peer"):
        return frozenset({404}) if granted else frozenset({403, 404})
    return ok if granted else frozenset({403})


# --- running one case ----------------------------------------------------------------------
@dataclass
class Runner:
    bench: Bench
    client: TestClient
    method: str
    path: str
    spec: Spec
    success: int
    failures: list[str]
    shared: dict[tuple[str, str, uuid.UUID | None], str] = field(default_factory=dict)
    readonly: dict[uuid.UUID, dict[str, str]] = field(default_factory=dict)

    def target(self, case: Case) -> str:
        """The object of the case: fresh when the call may change it, else a shared one."""
        target = self.spec.target
        assert target is not None, (self.method, self.path)
        if self.method != "GET" and case.scope == "own":
            return TARGETS[target](self.bench, case)
        per_actor = target in ("token", "session", "tenant", "user", "webauthn_credential")
        key = (target, case.scope, case.actor.user_id if per_actor else None)
        if key not in self.shared:
            self.shared[key] = TARGETS[target](self.bench, case)
        return self.shared[key]

    def url(self, case: Case) -> str:
        params: dict[str, str] = {}
        if "{tenant_id}" in self.path:
            params["tenant_id"] = str(self.bench.tenant(case.path_label).id)
        if "{pop_id}" in self.path:
            params["pop_id"] = self.bench.pop
        for name in (
            "object_id",
            "device_id",
            "token_id",
            "session_id",
            "gateway_id",
            "site_id",
            "user_id",
            "credential_id",
        ):
            if "{" + name + "}" in self.path:
                params[name] = self.target(case)
        if "{connector_id}" in self.path:  # the connector's own site fills site_id
            params["connector_id"] = self.target(case)
            params["site_id"] = self.bench.connector_sites[params["connector_id"]]
        return API + self.path.format(**params)

    def headers(self, case: Case) -> dict[str, str]:
        actor = case.actor
        if self.spec.anonymous:
            return {}
        if self.spec.ends_session:
            scopes = READ_ONLY if case.scope == "readonly" else frozenset({"read", "write"})
            return self.bench.headers(actor, scopes)
        if self.spec.session and case.scope != "readonly":
            return self.bench.session_headers(actor)
        if case.scope == "readonly":
            if actor.user_id not in self.readonly:
                self.readonly[actor.user_id] = self.bench.headers(actor, READ_ONLY)
            return self.readonly[actor.user_id]
        return actor.headers

    def run(self, case: Case) -> None:
        label = f"{self.method} {self.path} as {case.actor.role} [{case.scope}]"
        headers = self.headers(case)
        url = self.url(case)
        body = self.spec.body(self.bench, case) if self.spec.body else None
        try:
            resp = self.client.request(self.method, url, json=body, headers=headers)
        except Exception as exc:  # an unhandled error is a 500 in production
            self.failures.append(f"{label}: raised {type(exc).__name__}: {exc}")
            return
        want = expected(self.spec, self.success, case.actor.role, case.scope)
        if resp.status_code >= 500 or resp.status_code not in want:
            self.failures.append(
                f"{label}: {resp.status_code} (want {sorted(want)}) {resp.text[:300]}"
            )
        self.check_visibility(label, case, resp.text)
        if 200 <= resp.status_code < 300 and self.method == "GET":
            self.check_lists(label, case, resp)

    def check_visibility(self, label: str, case: Case, text: str) -> None:
        actor = case.actor
        if actor.tenant_id is None:
            return
        leaked = {i for i in self.bench.foreign_to_a if i in text}
        if actor.role == Role.EMPLOYEE:
            leaked |= {i for i in self.bench.private_in_a if i in text}
        if leaked:
            self.failures.append(f"{label}: response shows ids it must not: {sorted(leaked)}")

    def check_lists(self, label: str, case: Case, resp: Any) -> None:
        if "json" not in resp.headers.get("content-type", ""):
            return
        data = resp.json()
        items = data.get("data") if isinstance(data, dict) and "count" in data else None
        actor = case.actor
        world = self.bench.world
        problems: list[str] = []
        if self.path in ("/tokens", "/auth/sessions") and items is not None:
            with world.runtime.db.session() as session:
                owners = set(
                    session.scalars(
                        select(ApiToken.user_id).where(
                            ApiToken.id.in_([uuid.UUID(t["id"]) for t in items])
                        )
                    )
                )
            if owners - {actor.user_id}:
                problems.append("tokens of other users listed")
        if self.path == "/auth/me" and data.get("id") != str(actor.user_id):
            problems.append("me is somebody else")
        if actor.tenant_id is not None:
            mine = str(actor.tenant_id)
            for item in items if items is not None else [data]:
                if not isinstance(item, dict):
                    continue
                if "tenant_id" in item and item["tenant_id"] != mine:
                    problems.append(f"item of tenant {item['tenant_id']}")
                if self.path.startswith("/tenants") and "uscc" in item and item["id"] != mine:
                    problems.append(f"tenant {item['id']}")
                if actor.role == Role.EMPLOYEE:
                    if "public_key" in item and item.get("user_id") != str(actor.user_id):
                        problems.append(f"device {item['id']} of another user")
                    if "email" in item and item["id"] != str(actor.user_id):
                        problems.append(f"user {item['id']}")
            own_lists = (T + "/devices", T + "/users", "/tenants")
            if items is not None and self.path in own_lists and not items:
                problems.append("own objects missing from the list")
        if problems:
            self.failures.append(f"{label}: {'; '.join(problems)}")

    def unauthenticated(self) -> None:
        if self.spec.anonymous:
            return
        url = API + self.path.format(
            **{
                name: str(uuid.uuid4())
                for name in (
                    "tenant_id",
                    "object_id",
                    "pop_id",
                    "device_id",
                    "token_id",
                    "session_id",
                    "gateway_id",
                    "site_id",
                    "user_id",
                    "connector_id",
                    "credential_id",
                )
            }
        )
        for headers in ({}, {"Authorization": "Bearer tdp_not-a-token"}):
            label = f"{self.method} {self.path} with {headers or 'no token'}"
            try:
                resp = self.client.request(self.method, url, headers=headers)
            except Exception as exc:
                self.failures.append(f"{label}: raised {type(exc).__name__}: {exc}")
                continue
            if resp.status_code != 401:
                self.failures.append(f"{label}: {resp.status_code} {resp.text[:200]}")


def _route(app: FastAPI, method: str, path: str) -> APIRoute:
    for m, p, route in api_routes(app):
        if (m, p) == (method, path):
            return route
    pytest.fail(f"{method} {path} is in SPECS but not in the app")


def family(path: str) -> str:
    """The resource a route belongs to; one test (one fresh world) runs a family's routes."""
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    if parts[0] in ("auth", "tokens"):
        return "account"
    if parts[0] in ("tenants", "operator") and len(parts) > 1:
        return parts[1]
    return parts[0]


FAMILIES: dict[str, list[tuple[str, str]]] = {}
for _key in SPECS:
    FAMILIES.setdefault(family(_key[1]), []).append(_key)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_route_access(world: World, app: FastAPI, name: str) -> None:
    bench = Bench(world)
    failures: list[str] = []
    roles = [*world.operators, "tenant_admin", "employee"]
    for method, path in FAMILIES[name]:
        spec = SPECS[(method, path)]
        success = _route(app, method, path).status_code or 200
        runner = Runner(bench, world.client, method, path, spec, success, failures)
        for role in roles:
            actor = world.actor(role, "a")
            if method != "GET" and not spec.anonymous:
                runner.run(Case(actor, "readonly"))
            for scope in scopes_for(path, spec, role):
                runner.run(Case(actor, scope))
        runner.unauthenticated()
    assert not failures, "\n".join(failures)


# --- outside /api/v1: the control plane's Prometheus metrics --------------------------------------
def test_metrics_opens_to_no_role(world: World) -> None:
    """``GET /metrics`` is for the operator's monitoring, not for any role: without
    TONGDAO_METRICS_TOKEN only a loopback client reads it (tests/api/test_metrics.py); from
    elsewhere every role's token, of either tenant, gets 404, as does no token at all."""
    client = world.client  # its client address is not loopback
    for role in [*world.operators, "tenant_admin", "employee"]:
        for tenant in ("a", "b"):
            resp = client.get("/metrics", headers=world.actor(role, tenant).headers)
            assert resp.status_code == 404, (role, tenant, resp.status_code)
            assert "tongdao_" not in resp.text
    assert client.get("/metrics").status_code == 404
