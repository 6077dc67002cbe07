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
    # --- end of operator ---
}


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
