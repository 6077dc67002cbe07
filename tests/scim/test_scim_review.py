"""Attacks on SCIM provisioning by the holder of a tenant's SCIM token (security review): a
tenant admin's e-mail (the password reset would go to the attacker), a user someone else
disabled coming back, and values the database refuses answering a 500."""

from __future__ import annotations

from sqlalchemy import select

from tests.conftest import both_stores
from tests.scim.support import USER, Scim
from tests.support.world import World
from tongdao.tenancy.models import User, UserState

API = "/api/v1"


def _user(world: World, email: str) -> User:
    with world.runtime.db.session() as s:
        user = s.scalar(select(User).where(User.email == email))
        assert user is not None
        s.expunge(user)
        return user


def test_scim_cannot_change_a_tenant_admins_e_mail(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    admin = scim.find_user("tenant_admin@a.example")
    for body in (
        {
            "op": "replace",
            "path": "emails",
            "value": [{"value": "evil@attacker.example", "primary": True}],
        },
        {"op": "replace", "value": {"userName": "evil@attacker.example", "emails": []}},
    ):
        resp = scim.patch(f"/Users/{admin['id']}", body)
        assert resp.status_code == 403, resp.text
        assert resp.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    resp = scim.request(
        "PUT",
        f"/Users/{admin['id']}",
        {"schemas": [USER], "userName": "evil@attacker.example"},
    )
    assert resp.status_code == 403, resp.text
    assert _user(world, "tenant_admin@a.example").email == "tenant_admin@a.example"
    # The admin's name still follows the identity provider, and a leaver is still a leaver.
    resp = scim.patch(
        f"/Users/{admin['id']}", {"op": "replace", "path": "displayName", "value": "Boss"}
    )
    assert resp.status_code == 200, resp.text
    # An employee's e-mail is the identity provider's to change.
    emp = scim.find_user("employee@a.example")
    resp = scim.patch(
        f"/Users/{emp['id']}",
        {"op": "replace", "path": "emails", "value": [{"value": "emp2@a.example"}]},
    )
    assert resp.status_code == 200, resp.text


def test_scim_roles_do_not_make_a_tenant_admin(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    emp = scim.find_user("employee@a.example")
    resp = scim.patch(
        f"/Users/{emp['id']}", {"op": "add", "path": "roles", "value": [{"value": "tenant_admin"}]}
    )
    assert resp.status_code == 200, resp.text
    assert _user(world, "employee@a.example").roles == ["employee"]


def test_scim_does_not_bring_back_a_user_someone_else_disabled(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    emp = scim.find_user("employee@a.example")
    for who in (world.a.admin.headers, world.admin.headers):
        resp = world.client.patch(
            f"{API}/tenants/{world.a.id}/users/{emp['id']}",
            json={"state": "disabled"},
            headers=who,
        )
        assert resp.status_code == 200, resp.text
        for attempt in (
            lambda: scim.patch(
                f"/Users/{emp['id']}", {"op": "replace", "path": "active", "value": True}
            ),
            lambda: scim.request(
                "PUT",
                f"/Users/{emp['id']}",
                {"schemas": [USER], "userName": "employee@a.example", "active": True},
            ),
        ):
            resp = attempt()
            assert resp.status_code == 403, resp.text
            assert _user(world, "employee@a.example").state == UserState.DISABLED
        resp = world.client.patch(
            f"{API}/tenants/{world.a.id}/users/{emp['id']}",
            json={"state": "active"},
            headers=world.a.admin.headers,
        )
        assert resp.status_code == 200, resp.text

    # A user SCIM disabled, SCIM may enable again (a rehire, an undo).
    resp = scim.patch(f"/Users/{emp['id']}", {"op": "replace", "path": "active", "value": False})
    assert resp.status_code == 200, resp.text
    resp = scim.patch(f"/Users/{emp['id']}", {"op": "replace", "path": "active", "value": True})
    assert resp.status_code == 200, resp.text
    assert _user(world, "employee@a.example").state == UserState.ACTIVE
    # Created disabled by SCIM: SCIM may enable.
    resp = scim.request(
        "POST",
        "/Users",
        {"schemas": [USER], "userName": "later@a.example", "active": False},
    )
    assert resp.status_code == 201, resp.text
    resp = scim.patch(
        f"/Users/{resp.json()['id']}", {"op": "replace", "path": "active", "value": True}
    )
    assert resp.status_code == 200, resp.text


@both_stores
def test_values_the_database_refuses_are_scim_errors(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    emp = scim.find_user("employee@a.example")
    for op in (
        {"op": "replace", "path": "userName", "value": "z" * 400},
        {"op": "replace", "path": "userName", "value": "a\x00b"},
        {"op": "replace", "path": "externalId", "value": "a\x00b"},
        {"op": "replace", "path": "displayName", "value": "a\x00b"},
    ):
        resp = scim.patch(f"/Users/{emp['id']}", op)
        assert resp.status_code == 400, (op, resp.text)
        assert resp.json()["scimType"] == "invalidValue"
    for body in (
        {"schemas": [USER], "userName": "nul@a.example", "externalId": "a\x00b"},
        {"schemas": [USER], "userName": "nul\x00", "emails": [{"value": "nul@a.example"}]},
    ):
        resp = scim.request("POST", "/Users", body)
        assert resp.status_code == 400, (body, resp.text)
    assert scim.find_user("employee@a.example")["userName"] == "employee@a.example"


def test_a_patch_has_a_bounded_number_of_operations(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    emp = scim.find_user("employee@a.example")
    op = {"op": "replace", "path": "displayName", "value": "Wei"}
    resp = scim.request(
        "PATCH",
        f"/Users/{emp['id']}",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [op] * 1001},
    )
    assert resp.status_code == 400, resp.text
    assert "Operations" in resp.json()["detail"]
    assert scim.find_user("employee@a.example")["displayName"] != "Wei"
    resp = scim.request(
        "PATCH",
        f"/Users/{emp['id']}",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [op] * 3},
    )
    assert resp.status_code == 200, resp.text


def test_scim_cannot_squat_another_tenants_approved_domain(world: World) -> None:
    """Tenant B's approved e-mail domain: A's token cannot give one of its users an address
    there (B's people could then not sign in with B's identity provider)."""
    from tests.sso.support import claim_and_approve

    claim_and_approve(world, world.b.id, world.b.admin, "b.example")
    scim = Scim(world, world.a.id, world.a.admin.headers)
    resp = scim.request("POST", "/Users", {"schemas": [USER], "userName": "ceo@b.example"})
    assert resp.status_code == 400, resp.text
    assert "b.example" in resp.json()["detail"]
    emp = scim.find_user("employee@a.example")
    resp = scim.patch(
        f"/Users/{emp['id']}",
        {"op": "replace", "path": "emails", "value": [{"value": "cfo@b.example"}]},
    )
    assert resp.status_code == 400, resp.text
    assert _user(world, "employee@a.example").tenant_id == world.a.id
    # Its own (or nobody's) domains are fine.
    resp = scim.request("POST", "/Users", {"schemas": [USER], "userName": "new@a.example"})
    assert resp.status_code == 201, resp.text


def test_lookups_find_the_one_user_and_filters_are_bounded(world: World) -> None:
    """A sync looks every user up by userName / externalId / id (narrowed before the users
    are built, then matched as any filter); a filter has bounded size and operators."""
    scim = Scim(world, world.a.id, world.a.admin.headers)
    made = []
    for n in range(3):
        body = {
            "schemas": [USER],
            "userName": f"Lookup{n}@a.example",
            "externalId": f"ext-{n}",
            "emails": [{"value": f"lookup{n}@a.example", "primary": True}],
        }
        resp = scim.request("POST", "/Users", body)
        assert resp.status_code == 201, resp.text
        made.append(resp.json())
    for query, expected in (
        ('userName eq "lookup1@A.EXAMPLE"', made[1]["id"]),  # userName: any case
        ('USERNAME Eq "Lookup2@a.example"', made[2]["id"]),  # attribute and operator too
        ('externalId eq "ext-0"', made[0]["id"]),
        (f'id eq "{made[2]["id"]}"', made[2]["id"]),
        ('userName eq "employee@a.example"', scim.find_user("employee@a.example")["id"]),
    ):
        resp = scim.request("GET", "/Users", filter=query)
        assert resp.status_code == 200, resp.text
        assert [r["id"] for r in resp.json()["Resources"]] == [expected], query
    assert scim.request("GET", "/Users", filter='externalId eq "EXT-0"').json()["totalResults"] == 0
    ors = " or ".join(f'userName eq "x{n}@a.example"' for n in range(22))  # 21 operators
    long = 'userName eq "' + "x" * 2000 + '"'
    search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
    for resp in (
        scim.request("GET", "/Users", filter=ors),
        scim.request("POST", "/Users/.search", {"schemas": [search], "filter": ors}),
        scim.request("POST", "/Users/.search", {"schemas": [search], "filter": long}),
    ):
        assert resp.status_code == 400 and resp.json()["scimType"] == "invalidFilter", resp.text
    twenty = " or ".join(f'userName eq "lookup{n}@a.example"' for n in range(21)[:20])
    assert len(scim.request("GET", "/Users", filter=twenty).json()["Resources"]) == 3
