"""Every console page × every role × own / other tenant: the right answer, no leaks, no 5xx.

``PAGES`` names each console route (method, path template) with who may open it and, for pages
of one object, how to fill the path with tenant A's object and with tenant B's. A route missing
from the table fails :func:`test_every_console_route_is_in_the_table`, so a new page has to be
described here before the suite passes. Then, per page:

* anonymous: a GET is sent to the sign-in page (303), a POST is refused (403 without its CSRF
  token, or 303 to sign in);
* each role of tenant A and each operator role: 200 where allowed, 403 where not (404 for an
  object page the role cannot see at all);
* another tenant's object: 404 for tenant roles, whatever their grants;
* a state-changing route posted without its CSRF token: 403, nothing changed;
* no answer to a tenant-A person shows tenant B's name or ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.support.console import ConsoleClient, anonymous, as_person
from tests.support.world import Actor, World
from tests.web.test_network_pages import policy_of, site_of
from tests.web.test_people_pages import PEOPLE_READERS, people_device, people_group
from tongdao.auth.permissions import OPERATOR_ROLES, Role

ALL = frozenset(Role)
OPERATORS = frozenset(OPERATOR_ROLES)
PUBLIC = None  # pages anyone may open, signed in or not

Fill = Callable[[World], str]


@dataclass(frozen=True)
class Page:
    roles: frozenset[Role] | None  # who may open it (None: public)
    own: Fill | None = None  # the path with tenant A's object (pages of one object)
    other: Fill | None = None  # the path with tenant B's object: tenant roles get 404
    csrf: bool = False  # a state change: refused without its CSRF token
    public_post: bool = False  # a form anyone may post (sign-in, setup)
    allowed_status: tuple[int, ...] = (200, 303)  # what an allowed person gets
    notes: str = ""


# --- me: the objects its pages are opened with ---
TENANT_PEOPLE = frozenset({Role.TENANT_ADMIN, Role.EMPLOYEE})
EMPLOYEE = frozenset({Role.EMPLOYEE})


def _my_device(world: World, tenant: str) -> str:
    """A device of the tenant's employee, made through the API once per world."""
    fixture = world.a if tenant == "a" else world.b
    if "me_device" not in fixture.data:
        from tongdao.testing.keys import public_key

        resp = world.client.post(
            f"/api/v1/tenants/{fixture.id}/devices",
            json={"name": "me laptop", "public_key": public_key()},
            headers=fixture.employee.headers,
        )
        assert resp.status_code == 201, resp.text
        fixture.data["me_device"] = resp.json()["id"]
    return str(fixture.data["me_device"])


# --- end of me ---


# --- network: sites, access policy, usage (tongdao.web.pages.network) ---
_NET_READERS = frozenset(
    {Role.TENANT_ADMIN, Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR}
)
_NET_WRITERS = frozenset({Role.TENANT_ADMIN, Role.OPERATOR_ADMIN})


def _site_path(label: str, tail: str = "") -> Fill:
    return lambda w: f"/console/sites/{site_of(w, label)['id']}{tail}"


def _policy_path(label: str, tail: str = "") -> Fill:
    return lambda w: f"/console/policies/{policy_of(w, label)['id']}{tail}"


def _site_post(tail: str) -> Page:
    return Page(_NET_WRITERS, own=_site_path("a", tail), other=_site_path("b", tail), csrf=True)


NETWORK_PAGES: dict[tuple[str, str], Page] = {
    ("GET", "/console/sites"): Page(_NET_READERS),
    ("POST", "/console/sites"): Page(_NET_WRITERS, csrf=True),
    ("GET", "/console/sites/{site_id}"): Page(
        _NET_READERS, own=_site_path("a"), other=_site_path("b")
    ),
    ("POST", "/console/sites/{site_id}/prefixes"): _site_post("/prefixes"),
    ("POST", "/console/sites/{site_id}/prefixes/withdraw"): _site_post("/prefixes/withdraw"),
    ("POST", "/console/sites/{site_id}/enrolments"): _site_post("/enrolments"),
    ("POST", "/console/sites/{site_id}/connectors/{connector_id}/revoke"): _site_post(
        "/connectors/00000000-0000-4000-8000-000000000000/revoke"
    ),
    ("POST", "/console/sites/{site_id}/router-key"): _site_post("/router-key"),
    ("POST", "/console/sites/{site_id}/state"): _site_post("/state"),
    ("POST", "/console/sites/{site_id}/router-config"): _site_post("/router-config"),
    ("GET", "/console/policies"): Page(_NET_READERS),
    ("GET", "/console/policies/new"): Page(
        _NET_WRITERS, notes="an operator admin is sent to the list to choose a tenant"
    ),
    ("POST", "/console/policies/new"): Page(_NET_WRITERS, csrf=True),
    ("GET", "/console/policies/{policy_id}"): Page(
        _NET_READERS, own=_policy_path("a"), other=_policy_path("b")
    ),
    ("POST", "/console/policies/{policy_id}"): Page(
        _NET_WRITERS, own=_policy_path("a"), other=_policy_path("b"), csrf=True
    ),
    ("POST", "/console/policies/{policy_id}/delete"): Page(
        _NET_WRITERS,
        own=_policy_path("a", "/delete"),
        other=_policy_path("b", "/delete"),
        csrf=True,
    ),
    ("GET", "/console/usage"): Page(_NET_READERS | {Role.EMPLOYEE}),
}

PAGES: dict[tuple[str, str], Page] = {
    ("GET", "/console/"): Page(PUBLIC, notes="redirects to setup, sign-in or home"),
    ("GET", "/console/sign-in"): Page(PUBLIC),
    ("POST", "/console/sign-in"): Page(PUBLIC, csrf=True, public_post=True),
    ("POST", "/console/sign-out"): Page(ALL, csrf=True),
    ("POST", "/console/language"): Page(PUBLIC, csrf=True, public_post=True),
    ("GET", "/console/setup"): Page(PUBLIC, notes="only until an operator admin exists"),
    ("POST", "/console/setup"): Page(PUBLIC, csrf=True, public_post=True),
    ("GET", "/console/home"): Page(ALL),
    ("GET", "/console/password/reset"): Page(
        PUBLIC, allowed_status=(410,), notes="the mailed link's page; 410 without a live link"
    ),
    ("POST", "/console/password/reset"): Page(
        PUBLIC, public_post=True, notes="the link's secret is the credential"
    ),
    ("GET", "/console/password/forgot"): Page(PUBLIC),
    ("POST", "/console/password/forgot"): Page(
        PUBLIC, public_post=True, notes="answers the same for any address"
    ),
    # --- people (users, groups, devices: tenant admin; operator staff read) -------------------
    ("GET", "/console/users"): Page(PEOPLE_READERS),
    ("GET", "/console/users/new"): Page(frozenset({Role.TENANT_ADMIN})),
    ("POST", "/console/users"): Page(frozenset({Role.TENANT_ADMIN}), csrf=True),
    ("GET", "/console/users/{user_id}"): Page(
        PEOPLE_READERS,
        own=lambda w: f"/console/users/{w.a.admin.user_id}",
        other=lambda w: f"/console/users/{w.b.employee.user_id}",
    ),
    **{
        ("POST", f"/console/users/{{user_id}}/{action}"): Page(
            frozenset({Role.TENANT_ADMIN, Role.OPERATOR_ADMIN}),
            own=lambda w, action=action: f"/console/users/{w.a.employee.user_id}/{action}",
            csrf=True,
        )
        for action in (
            "roles",
            "groups",
            "state",
            "identity",
            "verification",
            "password-reset",
            "sign-in-unlock",
        )
    },
    ("GET", "/console/groups"): Page(PEOPLE_READERS),
    ("POST", "/console/groups"): Page(frozenset({Role.TENANT_ADMIN}), csrf=True),
    ("GET", "/console/groups/{group_id}"): Page(
        PEOPLE_READERS,
        own=lambda w: f"/console/groups/{people_group(w, w.a)}",
        other=lambda w: f"/console/groups/{people_group(w, w.b)}",
    ),
    ("POST", "/console/groups/{group_id}/members"): Page(
        frozenset({Role.TENANT_ADMIN, Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/groups/{people_group(w, w.a)}/members",
        csrf=True,
    ),
    ("GET", "/console/devices"): Page(PEOPLE_READERS),
    ("GET", "/console/devices/{device_id}"): Page(
        PEOPLE_READERS,
        own=lambda w: f"/console/devices/{people_device(w, w.a)}",
        other=lambda w: f"/console/devices/{people_device(w, w.b)}",
    ),
    ("POST", "/console/devices/{device_id}/revoke"): Page(
        frozenset({Role.TENANT_ADMIN, Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/devices/{people_device(w, w.a)}/revoke",
        csrf=True,
    ),
    # --- end of people ---------------------------------------------------------------------------
    # --- me: account, my devices, my privacy (tongdao.web.pages.me) ---
    ("GET", "/console/account"): Page(ALL),
    ("POST", "/console/account/password"): Page(ALL, csrf=True),
    ("POST", "/console/account/sessions/revoke-others"): Page(ALL, csrf=True),
    ("POST", "/console/account/sessions/{session_id}/revoke"): Page(
        ALL, own=lambda w: f"/console/account/sessions/{uuid.uuid4()}/revoke", csrf=True
    ),
    ("POST", "/console/account/totp"): Page(ALL, csrf=True),
    ("POST", "/console/account/totp/confirm"): Page(ALL, csrf=True),
    ("POST", "/console/account/totp/disable"): Page(ALL, csrf=True),
    # --- second factors: security keys, the key's sign-in step, the staff rule (pages.keys) ---
    ("GET", "/console/account/keys"): Page(ALL),
    ("POST", "/console/account/keys"): Page(ALL, csrf=True),
    ("POST", "/console/account/keys/options"): Page(ALL, csrf=True),
    ("POST", "/console/account/keys/{key_id}/remove"): Page(
        ALL, own=lambda w: f"/console/account/keys/{uuid.uuid4()}/remove", csrf=True
    ),
    ("POST", "/console/sign-in/key"): Page(PUBLIC, csrf=True, public_post=True),
    ("GET", "/console/second-factors"): Page(OPERATORS),
    ("POST", "/console/second-factors"): Page(frozenset({Role.OPERATOR_ADMIN}), csrf=True),
    ("POST", "/console/second-factors/staff/{staff_id}/reset"): Page(
        frozenset({Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/second-factors/staff/{w.operators['auditor'].user_id}/reset",
        csrf=True,
    ),
    ("GET", "/console/my/devices"): Page(TENANT_PEOPLE),
    ("GET", "/console/my/devices/new"): Page(TENANT_PEOPLE),
    ("POST", "/console/my/devices/new"): Page(TENANT_PEOPLE, csrf=True),
    ("GET", "/console/my/devices/{device_id}"): Page(
        EMPLOYEE,
        own=lambda w: f"/console/my/devices/{_my_device(w, 'a')}",
        other=lambda w: f"/console/my/devices/{_my_device(w, 'b')}",
        notes="the employee's own device; a colleague (the tenant admin) gets 404 too",
    ),
    ("GET", "/console/my/devices/{device_id}/wireguard.conf"): Page(
        EMPLOYEE,
        own=lambda w: f"/console/my/devices/{_my_device(w, 'a')}/wireguard.conf",
        other=lambda w: f"/console/my/devices/{_my_device(w, 'b')}/wireguard.conf",
        allowed_status=(200, 409),
        notes="409 with the reason while no PoP serves the tenant",
    ),
    ("POST", "/console/my/devices/{device_id}/revoke"): Page(
        EMPLOYEE, own=lambda w: f"/console/my/devices/{_my_device(w, 'a')}/revoke", csrf=True
    ),
    ("GET", "/console/my/privacy"): Page(TENANT_PEOPLE),
    ("POST", "/console/my/privacy/consents"): Page(TENANT_PEOPLE, csrf=True),
    ("POST", "/console/my/privacy/consents/transfer-abroad/withdraw"): Page(
        TENANT_PEOPLE, csrf=True
    ),
    ("GET", "/console/my/privacy/export"): Page(TENANT_PEOPLE),
    # --- end of me ---
    # --- network: sites, access policy, usage (tongdao.web.pages.network) ---
    **NETWORK_PAGES,
    # --- usage over time (tongdao.web.pages.ledger): every role reads usage (an employee
    # their own devices'; operator staff pick a tenant) ---
    ("GET", "/console/usage-trend"): Page(ALL),
    ("GET", "/console/usage-trend.csv"): Page(ALL),
    # --- end of usage over time ---
    # --- operator admin's pages (area: operator; helpers at the end of this file) ---
    ("GET", "/console/operator"): Page(OPERATORS),
    ("GET", "/console/operator/pops"): Page(OPERATORS),
    ("POST", "/console/operator/pops"): Page(frozenset({Role.OPERATOR_ADMIN}), csrf=True),
    ("GET", "/console/operator/pops/{pop_id}"): Page(
        OPERATORS,
        own=lambda w: f"/console/operator/pops/{_op_pop(w)}",
        other=lambda _w: f"/console/operator/pops/{uuid.uuid4()}",
    ),
    ("POST", "/console/operator/pops/{pop_id}/enrolments"): Page(
        frozenset({Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/operator/pops/{_op_pop(w)}/enrolments",
        csrf=True,
    ),
    ("POST", "/console/operator/pops/{pop_id}/gateways/{gateway_id}/revoke"): Page(
        frozenset({Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/operator/pops/{_op_pop(w)}/gateways/{uuid.uuid4()}/revoke",
        csrf=True,
    ),
    ("POST", "/console/operator/pops/{pop_id}/state"): Page(
        frozenset({Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/operator/pops/{_op_pop(w)}/state",
        csrf=True,
    ),
    ("GET", "/console/operator/links"): Page(OPERATORS),
    ("POST", "/console/operator/links"): Page(frozenset({Role.OPERATOR_ADMIN}), csrf=True),
    ("GET", "/console/operator/links/{link_id}"): Page(
        OPERATORS,
        own=lambda w: f"/console/operator/links/{_op_link(w)}",
        other=lambda _w: f"/console/operator/links/{uuid.uuid4()}",
    ),
    ("POST", "/console/operator/links/{link_id}"): Page(
        frozenset({Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/operator/links/{_op_link(w)}",
        csrf=True,
    ),
    ("GET", "/console/operator/staff"): Page(
        frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR})
    ),
    ("POST", "/console/operator/staff"): Page(frozenset({Role.OPERATOR_ADMIN}), csrf=True),
    ("GET", "/console/operator/staff/{staff_id}"): Page(
        frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR}),
        own=lambda w: f"/console/operator/staff/{w.operators['auditor'].user_id}",
        other=lambda w: f"/console/operator/staff/{w.b.admin.user_id}",
        notes="a tenant's user is no staff member: 404",
    ),
    ("POST", "/console/operator/staff/{staff_id}/roles"): Page(
        frozenset({Role.OPERATOR_ADMIN}), own=lambda w: _op_staff(w, "roles"), csrf=True
    ),
    ("POST", "/console/operator/staff/{staff_id}/state"): Page(
        frozenset({Role.OPERATOR_ADMIN}), own=lambda w: _op_staff(w, "state"), csrf=True
    ),
    ("POST", "/console/operator/staff/{staff_id}/password-reset"): Page(
        frozenset({Role.OPERATOR_ADMIN}), own=lambda w: _op_staff(w, "password-reset"), csrf=True
    ),
    ("POST", "/console/operator/staff/{staff_id}/sign-in-unlock"): Page(
        frozenset({Role.OPERATOR_ADMIN}), own=lambda w: _op_staff(w, "sign-in-unlock"), csrf=True
    ),
    ("GET", "/console/operator/tenants"): Page(OPERATORS),
    ("POST", "/console/operator/tenants"): Page(
        frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER}), csrf=True
    ),
    ("GET", "/console/operator/tenants/{tenant_id}"): Page(
        OPERATORS,
        own=lambda w: f"/console/operator/tenants/{w.a.id}",
        other=lambda w: f"/console/operator/tenants/{w.b.id}",
    ),
    ("POST", "/console/operator/tenants/{tenant_id}/state"): Page(
        frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER}),
        own=lambda w: f"/console/operator/tenants/{w.a.id}/state",
        csrf=True,
    ),
    # --- operator: a tenant's first admin, outgoing mail (s17-journey) ---
    ("POST", "/console/operator/tenants/{tenant_id}/users"): Page(
        frozenset({Role.OPERATOR_ADMIN}),
        own=lambda w: f"/console/operator/tenants/{w.a.id}/users",
        csrf=True,
    ),
    ("GET", "/console/operator/mail"): Page(frozenset({Role.OPERATOR_ADMIN})),
    ("POST", "/console/operator/mail"): Page(frozenset({Role.OPERATOR_ADMIN}), csrf=True),
    # --- end of operator ---
}


# --- compliance and audit (s17-compliance) -------------------------------------------------
_OFFICER = frozenset({Role.COMPLIANCE_OFFICER})
_KEEPERS = frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER})
_AUDIT_READERS = frozenset(
    {Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR, Role.TENANT_ADMIN}
)
_MISSING = "01a24aec-4702-7000-8e7b-300cbb3b930a"  # an id no object has


def _declaration(world: World, label: str) -> str:
    """A pending declaration of tenant ``label``'s site (made once per world)."""
    fixture = world.a if label == "a" else world.b
    if "declaration" not in fixture.data:
        resp = world.client.post(
            f"/api/v1/tenants/{fixture.id}/sites",
            json={"name": "hq", "country": "DE", "purpose": "hq", "prefixes": ["192.0.2.0/24"]},
            headers=fixture.admin.headers,
        )
        assert resp.status_code == 201, resp.text
        fixture.data["declaration"] = resp.json()["declarations"][0]["id"]
    return str(fixture.data["declaration"])


def _shareholder(world: World) -> str:
    holders = world.client.get("/api/v1/operator/shareholders", headers=world.admin.headers)
    return str(holders.json()["data"][0]["id"])


def _compliance_pages() -> dict[tuple[str, str], Page]:
    tenant = "/console/compliance/tenants/{tenant_id}"
    network = "/console/compliance/networks/{declaration_id}"
    identity = "/console/compliance/identities/{user_id}"
    holder = "/console/compliance/shareholders/{holder_id}"

    def tenant_path(suffix: str = "") -> tuple[Fill, Fill]:
        return (
            lambda w: f"/console/compliance/tenants/{w.a.id}{suffix}",
            lambda w: f"/console/compliance/tenants/{w.b.id}{suffix}",
        )

    def network_path(suffix: str = "") -> tuple[Fill, Fill]:
        return (
            lambda w: f"/console/compliance/networks/{_declaration(w, 'a')}{suffix}",
            lambda w: f"/console/compliance/networks/{_declaration(w, 'b')}{suffix}",
        )

    def identity_path(suffix: str = "") -> tuple[Fill, Fill]:
        return (
            lambda w: f"/console/compliance/identities/{w.a.admin.user_id}{suffix}",
            lambda w: f"/console/compliance/identities/{w.b.admin.user_id}{suffix}",
        )

    holder_paths: tuple[Fill, Fill] = (
        lambda w: f"/console/compliance/shareholders/{_shareholder(w)}",
        lambda w: f"/console/compliance/shareholders/{_MISSING}",
    )
    pages = {
        ("GET", "/console/compliance"): Page(_OFFICER),
        ("GET", "/console/compliance/licences"): Page(OPERATORS),
        ("POST", "/console/compliance/licences"): Page(_KEEPERS, csrf=True),
        ("POST", "/console/compliance/shareholders"): Page(_KEEPERS, csrf=True),
        ("GET", "/console/compliance/dashboard"): Page(OPERATORS),
        ("GET", tenant): Page(_OFFICER, *tenant_path()),
        ("POST", tenant + "/vetting"): Page(_OFFICER, *tenant_path("/vetting"), csrf=True),
        ("POST", tenant + "/decision"): Page(_OFFICER, *tenant_path("/decision"), csrf=True),
        ("GET", network): Page(_OFFICER, *network_path()),
        ("POST", network + "/approve"): Page(_OFFICER, *network_path("/approve"), csrf=True),
        ("POST", network + "/reject"): Page(_OFFICER, *network_path("/reject"), csrf=True),
        ("GET", identity): Page(_OFFICER, *identity_path()),
        ("POST", identity + "/verify"): Page(_OFFICER, *identity_path("/verify"), csrf=True),
        ("POST", identity + "/withdraw"): Page(_OFFICER, *identity_path("/withdraw"), csrf=True),
        ("GET", holder): Page(_KEEPERS, *holder_paths),
        ("POST", holder): Page(_KEEPERS, *holder_paths, csrf=True),
        ("GET", "/console/audit"): Page(_AUDIT_READERS),
        ("GET", "/console/audit/verify"): Page(OPERATORS - {Role.BILLING_CLERK}),
        ("GET", "/console/audit/export"): Page(_AUDIT_READERS),
        ("GET", "/console/audit/export/download"): Page(
            _AUDIT_READERS, allowed_status=(200,), notes="the zip (a read, audited like the API's)"
        ),
    }
    return pages


PAGES.update(_compliance_pages())
# --- end of compliance and audit -----------------------------------------------------------


# --- s20-compliance: the scheduled compliance check's grace period ------------------------
PAGES[("POST", "/console/compliance/watch")] = Page(_KEEPERS, csrf=True)
# --- end of s20-compliance ------------------------------------------------------------------


# --- s18-notice: privacy notices (compliance area) -----------------------------------------
def _published_notice(world: World) -> str:
    """A published privacy notice (through the API, once per world)."""
    if "notice" not in world.a.data:
        from tests.support.privacy import publish_notice

        world.a.data["notice"] = publish_notice(world.client, world.admin.headers)["id"]
    return str(world.a.data["notice"])


PAGES.update(
    {
        ("GET", "/console/privacy-notices"): Page(OPERATORS),
        ("GET", "/console/privacy-notices/new"): Page(_KEEPERS),
        ("POST", "/console/privacy-notices"): Page(_KEEPERS, csrf=True),
        ("GET", "/console/privacy-notices/{notice_id}"): Page(
            OPERATORS,
            own=lambda w: f"/console/privacy-notices/{_published_notice(w)}",
            other=lambda _w: f"/console/privacy-notices/{_MISSING}",
            notes="notices are the operator's: no tenant has one; an unknown id is 404",
        ),
    }
)
# --- end of s18-notice ---------------------------------------------------------------------


# --- billing: plans, subscriptions, the run, invoices, payments (tongdao.web.pages.billing) ---
_BILL_READERS = frozenset(
    {Role.OPERATOR_ADMIN, Role.BILLING_CLERK, Role.AUDITOR, Role.TENANT_ADMIN}
)
_PLAN_WRITERS = frozenset({Role.OPERATOR_ADMIN, Role.BILLING_CLERK})
_CLERK = frozenset({Role.BILLING_CLERK})


def _bill_plan(world: World) -> str:
    """A plan (through the API, once per world)."""
    if "bill_plan" not in world.a.data:
        from tests.support.billing import plan_body

        made = world.client.post(
            "/api/v1/billing/plans", json=plan_body(), headers=world.admin.headers
        )
        assert made.status_code == 201, made.text
        world.a.data["bill_plan"] = made.json()["id"]
    return str(world.a.data["bill_plan"])


def _bill_invoice(world: World, label: str, tail: str = "") -> str:
    """The path of a draft invoice of tenant ``label`` (made on the store once per world)."""
    from tests.support.billing import billing_invoice

    fixture = world.a if label == "a" else world.b
    if "bill_invoice" not in fixture.data:
        with world.runtime.db.session() as session:
            fixture.data["bill_invoice"] = billing_invoice(session, fixture.id).id
            session.commit()
    return f"/console/billing/tenants/{fixture.id}/invoices/{fixture.data['bill_invoice']}{tail}"


def _billing_pages() -> dict[tuple[str, str], Page]:
    invoice = "/console/billing/tenants/{tenant_id}/invoices/{invoice_id}"

    def inv(tail: str = "") -> tuple[Fill, Fill]:
        return (lambda w: _bill_invoice(w, "a", tail), lambda w: _bill_invoice(w, "b", tail))

    pages = {
        ("GET", "/console/billing"): Page(_BILL_READERS),
        ("GET", "/console/billing/plans"): Page(_BILL_READERS),
        ("POST", "/console/billing/plans"): Page(_PLAN_WRITERS, csrf=True),
        ("GET", "/console/billing/plans/{plan_id}"): Page(
            _BILL_READERS,
            own=lambda w: f"/console/billing/plans/{_bill_plan(w)}",
            other=lambda _w: f"/console/billing/plans/{_MISSING}",
            notes="plans are the operator's: no tenant has one; an unknown id is 404",
        ),
        ("POST", "/console/billing/plans/{plan_id}"): Page(
            _PLAN_WRITERS, own=lambda w: f"/console/billing/plans/{_bill_plan(w)}", csrf=True
        ),
        ("GET", "/console/billing/tenants"): Page(
            _BILL_READERS, notes="the overview's tenant picker: without a tenant, 303 back"
        ),
        ("GET", "/console/billing/tenants/{tenant_id}"): Page(
            _BILL_READERS,
            own=lambda w: f"/console/billing/tenants/{w.a.id}",
            other=lambda w: f"/console/billing/tenants/{w.b.id}",
        ),
        ("POST", "/console/billing/tenants/{tenant_id}/subscriptions"): Page(
            _CLERK,
            own=lambda w: f"/console/billing/tenants/{w.a.id}/subscriptions",
            other=lambda w: f"/console/billing/tenants/{w.b.id}/subscriptions",
            csrf=True,
        ),
        ("POST", "/console/billing/tenants/{tenant_id}/suspension"): Page(
            _CLERK,
            own=lambda w: f"/console/billing/tenants/{w.a.id}/suspension",
            other=lambda w: f"/console/billing/tenants/{w.b.id}/suspension",
            csrf=True,
        ),
        ("POST", "/console/billing/tenants/{tenant_id}/suspension/lift"): Page(
            _CLERK,
            own=lambda w: f"/console/billing/tenants/{w.a.id}/suspension/lift",
            other=lambda w: f"/console/billing/tenants/{w.b.id}/suspension/lift",
            csrf=True,
        ),
        ("GET", "/console/billing/run"): Page(_CLERK),
        ("POST", "/console/billing/run"): Page(_CLERK, csrf=True),
        ("GET", "/console/billing/invoices"): Page(_BILL_READERS),
        ("GET", "/console/billing/payments"): Page(_BILL_READERS),
        ("GET", invoice): Page(_BILL_READERS, *inv()),
    }
    for tail in ("/pdf", "/csv", "/e-fapiao"):
        pages[("GET", invoice + tail)] = Page(_BILL_READERS, *inv(tail), allowed_status=(200,))
    for tail in ("/issue", "/void", "/fapiao", "/credit-notes", "/payments"):
        pages[("POST", invoice + tail)] = Page(_CLERK, *inv(tail), csrf=True)
    return pages


PAGES.update(_billing_pages())
# --- end of billing --------------------------------------------------------------------------


# --- quotas: limits, users' overrides, events (tongdao.web.pages.quotas) ---------------------
_Q_READERS = frozenset(
    {
        Role.OPERATOR_ADMIN,
        Role.BILLING_CLERK,
        Role.COMPLIANCE_OFFICER,
        Role.AUDITOR,
        Role.TENANT_ADMIN,
    }
)
_Q_SETTERS = frozenset({Role.OPERATOR_ADMIN, Role.BILLING_CLERK})
_Q_USER_SETTERS = _Q_SETTERS | {Role.TENANT_ADMIN}
_QT = "/console/quotas/tenants/{tenant_id}"
PAGES.update(
    {
        ("GET", "/console/quotas"): Page(_Q_READERS),
        ("GET", _QT): Page(
            _Q_READERS,
            own=lambda w: f"/console/quotas/tenants/{w.a.id}",
            other=lambda w: f"/console/quotas/tenants/{w.b.id}",
        ),
        ("POST", _QT): Page(
            _Q_SETTERS,
            own=lambda w: f"/console/quotas/tenants/{w.a.id}",
            other=lambda w: f"/console/quotas/tenants/{w.b.id}",
            csrf=True,
        ),
        ("GET", _QT + "/users/{user_id}"): Page(
            _Q_READERS,
            own=lambda w: f"/console/quotas/tenants/{w.a.id}/users/{w.a.employee.user_id}",
            other=lambda w: f"/console/quotas/tenants/{w.b.id}/users/{w.b.employee.user_id}",
        ),
        ("POST", _QT + "/users/{user_id}"): Page(
            _Q_USER_SETTERS,
            own=lambda w: f"/console/quotas/tenants/{w.a.id}/users/{w.a.employee.user_id}",
            other=lambda w: f"/console/quotas/tenants/{w.b.id}/users/{w.b.employee.user_id}",
            csrf=True,
        ),
    }
)
# --- end of quotas ---------------------------------------------------------------------------


def console_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI flattens included routers into app.routes
        routes = [(getattr(r, "path", ""), r) for r in app.routes]
    else:
        routes = [(c.path or "", c.original_route) for c in iter_route_contexts(app.routes)]
    for path, route in routes:
        if isinstance(route, APIRoute) and path.startswith("/console/"):
            if path.startswith("/console/static/"):
                continue
            for method in sorted(route.methods):
                yield method, path


def test_every_console_route_is_in_the_table(app: FastAPI) -> None:
    present = set(console_routes(app))
    missing = sorted(present - PAGES.keys())
    stale = sorted(PAGES.keys() - present)
    assert not missing, f"console routes with no entry in PAGES (describe them): {missing}"
    assert not stale, f"PAGES entries for routes that no longer exist: {stale}"
    for key, page in PAGES.items():
        if "{" in key[1] and key[0] == "GET":
            assert page.own is not None and page.other is not None, key


def _people(world: World) -> list[tuple[str, Actor]]:
    people = [(f"operator:{role}", actor) for role, actor in world.operators.items()]
    people += [("a:tenant_admin", world.a.admin), ("a:employee", world.a.employee)]
    return people


def _forbidden_text(world: World) -> list[str]:
    return [str(world.b.id), "Tenant B", "租户B", str(world.b.admin.user_id)]


GETS = sorted(key for key in PAGES if key[0] == "GET")
POSTS = sorted(key for key in PAGES if key[0] == "POST")


@pytest.mark.parametrize(("method", "path"), GETS, ids=[p for _, p in GETS])
def test_a_page_answers_each_role_as_the_table_says(
    world: World, app: FastAPI, method: str, path: str
) -> None:
    page = PAGES[(method, path)]
    own = page.own(world) if page.own else path
    anon = anonymous(app).get(own)
    assert anon.status_code < 500
    if page.roles is not None:
        assert anon.status_code == 303, (own, anon.status_code)
        assert anon.headers["location"].startswith("/console/sign-in")
    for name, actor in _people(world):
        client = as_person(world, actor)
        answer = client.get(own)
        assert answer.status_code < 500, (name, own, answer.text[:500])
        role = Role(actor.role)
        if page.roles is None or role in page.roles:
            assert answer.status_code in page.allowed_status, (name, own, answer.status_code)
        else:
            assert answer.status_code in (403, 404), (name, own, answer.status_code)
        if actor.tenant_id is not None:
            for text in _forbidden_text(world):
                assert text not in answer.text, (name, own, text)
        if page.other is not None and actor.tenant_id is not None:
            foreign = client.get(page.other(world))
            assert foreign.status_code == 404, (name, page.other(world), foreign.status_code)


@pytest.mark.parametrize(("method", "path"), POSTS, ids=[p for _, p in POSTS])
def test_a_form_without_its_csrf_token_is_refused(
    world: World, app: FastAPI, method: str, path: str
) -> None:
    page = PAGES[(method, path)]
    if not page.csrf:
        pytest.skip(f"{path}: {page.notes}")
    target = page.own(world) if page.own else path
    anon = anonymous(app).post(target, data={"x": "1"})
    assert anon.status_code in (303, 403), (target, anon.status_code)
    for name, actor in _people(world):
        client: ConsoleClient = as_person(world, actor)
        answer = client.http.post(target, data={"x": "1"})
        assert answer.status_code in (403, 404), (name, target, answer.status_code)
        forged = client.http.post(target, data={"csrf_token": "forged", "x": "1"})
        assert forged.status_code in (403, 404), (name, target, forged.status_code)


# --- operator area helpers ---
def _op_pop(world: World) -> str:
    """The id of a PoP in the world (made on first use through the API)."""
    h = world.admin.headers
    found = world.client.get("/api/v1/pops", headers=h).json()["data"]
    if found:
        return str(found[0]["id"])
    body = {"name": "cn-bj-1", "region": "CN-BJ", "country": "CN", "endpoint_host": "203.0.113.1"}
    made = world.client.post("/api/v1/pops", json=body, headers=h)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _op_link(world: World) -> str:
    """The id of a link between two PoPs in China (made on first use through the API)."""
    h = world.admin.headers
    found = world.client.get("/api/v1/links", headers=h).json()["data"]
    if found:
        return str(found[0]["id"])
    first = _op_pop(world)
    body = {"name": "cn-sh-1", "region": "CN-SH", "country": "CN", "endpoint_host": "203.0.113.2"}
    made = world.client.post("/api/v1/pops", json=body, headers=h)
    assert made.status_code == 201, made.text
    link = {
        "name": "bj-sh",
        "pop_a_id": first,
        "pop_b_id": made.json()["id"],
        "circuit_ref": "CT-1",
        "capacity_mbps": 100,
    }
    made = world.client.post("/api/v1/links", json=link, headers=h)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _op_staff(world: World, action: str) -> str:
    return f"/console/operator/staff/{world.operators['auditor'].user_id}/{action}"


# --- cross-border service (tongdao.web.pages.crossborder) ------------------------------------
_XB_APPLICANT = frozenset({Role.TENANT_ADMIN})
_XB_READERS = frozenset(
    {Role.TENANT_ADMIN, Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR}
)
_XB_OFFICER = frozenset({Role.COMPLIANCE_OFFICER})


def _xb_app(world: World, label: str) -> str:
    """A draft application of tenant ``label`` with one document (API, once per world)."""
    from tongdao.testing import crossborder

    fixture = world.a if label == "a" else world.b
    if "xb_app" not in fixture.data:
        h = fixture.admin.headers
        site = world.client.post(
            f"/api/v1/tenants/{fixture.id}/sites",
            json={"name": "xb-hq", "country": "DE", "purpose": "hq",
                  "prefixes": ["198.18.77.0/24"]},
            headers=h,
        )  # fmt: skip
        assert site.status_code == 201, site.text
        base = f"/api/v1/tenants/{fixture.id}/crossborder/applications"
        app = world.client.post(
            base, json=crossborder.application_body([site.json()["id"]]), headers=h
        )
        assert app.status_code == 201, app.text
        doc = world.client.post(
            f"{base}/{app.json()['id']}/documents",
            params={"kind": "other"},
            content=crossborder.sample_png(),
            headers={**h, "Content-Type": "image/png"},
        )
        assert doc.status_code == 201, doc.text
        fixture.data["xb_app"] = app.json()["id"]
        fixture.data["xb_doc"] = doc.json()["id"]
    return str(fixture.data["xb_app"])


def _xb(label: str, tail: str = "") -> Fill:
    return lambda w: f"/console/crossborder/{_xb_app(w, label)}{tail}"


def _xb_doc(label: str) -> Fill:
    def fill(w: World) -> str:
        _xb_app(w, label)
        fixture = w.a if label == "a" else w.b
        return f"/console/crossborder/documents/{fixture.data['xb_doc']}"

    return fill


PAGES.update(
    {
        ("GET", "/console/crossborder"): Page(_XB_APPLICANT),
        ("POST", "/console/crossborder"): Page(_XB_APPLICANT, csrf=True),
        ("GET", "/console/crossborder/letter.pdf"): Page(_XB_READERS, allowed_status=(200,)),
        ("GET", "/console/crossborder/{app_id}"): Page(_XB_READERS, _xb("a"), _xb("b")),
        ("POST", "/console/crossborder/{app_id}/documents"): Page(
            _XB_APPLICANT, _xb("a", "/documents"), _xb("b", "/documents"), csrf=True
        ),
        ("POST", "/console/crossborder/{app_id}/submit"): Page(
            _XB_APPLICANT, _xb("a", "/submit"), _xb("b", "/submit"), csrf=True
        ),
        ("GET", "/console/crossborder/documents/{doc_id}"): Page(
            _XB_READERS, _xb_doc("a"), _xb_doc("b"), allowed_status=(200,)
        ),
        **{
            ("POST", f"/console/crossborder/{{app_id}}/{verb}"): Page(
                _XB_OFFICER, _xb("a", f"/{verb}"), _xb("b", f"/{verb}"), csrf=True
            )
            for verb in ("review", "approve", "reject", "revoke")
        },
        ("GET", "/console/crossborder-queue"): Page(
            frozenset({Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR})
        ),
    }
)
# --- end of cross-border ----------------------------------------------------------------------
