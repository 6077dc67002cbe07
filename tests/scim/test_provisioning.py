"""SCIM provisioning as Entra ID and Okta do it: joiners, the PATCH shapes each sends, groups,
leavers (disabled, signed out, devices revoked so the gateways drop them), and one tenant's
token never reaching another tenant."""

from __future__ import annotations

from sqlalchemy import select

from tests.conftest import both_stores
from tests.scim.support import (
    GROUP,
    USER,
    Scim,
    activate,
    device,
    enrol,
    make_pop,
    state,
)
from tests.support.privacy import sign_in
from tests.support.world import PASSWORD, World
from tongdao.audit.models import AuditEvent

API = "/api/v1"


def okta_user(user_name: str, external_id: str = "00u1") -> dict[str, object]:
    return {
        "schemas": [USER],
        "userName": user_name,
        "externalId": external_id,
        "name": {"givenName": "Wei", "familyName": "Zhang"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Zhang Wei",
        "active": True,
    }


@both_stores
def test_entra_leaver_is_disabled_signed_out_and_loses_devices(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    dev = device(world)
    peers = [p.public_key for t in state(world, gw).tenants for p in t.peers]
    assert dev["public_key"] in peers
    session = sign_in(world.client, world.a.employee.headers)

    found = scim.find_user("employee@a.example")
    assert found["active"] is True
    assert found["emails"][0]["value"] == "employee@a.example"
    # Entra ID's shape: op capitalised, the boolean as a string.
    resp = scim.patch(
        f"/Users/{found['id']}", {"op": "Replace", "path": "active", "value": "False"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["active"] is False
    assert resp.headers["content-type"].startswith("application/scim+json")

    # Signed out everywhere, cannot sign in, the device is revoked and off the gateways.
    assert world.client.get(f"{API}/auth/me", headers=session).status_code == 401
    assert world.client.get(f"{API}/auth/me", headers=world.a.employee.headers).status_code == 401
    login = world.client.post(
        f"{API}/auth/login", json={"email": "employee@a.example", "password": PASSWORD}
    )
    assert login.status_code == 401
    dev_now = world.client.get(
        f"{API}/tenants/{world.a.id}/devices/{dev['id']}", headers=world.a.admin.headers
    ).json()
    assert dev_now["state"] == "revoked"
    peers = [p.public_key for t in state(world, gw).tenants for p in t.peers]
    assert dev["public_key"] not in peers
    with world.runtime.db.session() as s:
        event = s.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "scim_deprovisioned", AuditEvent.object_id == found["id"]
            )
        )
        assert event is not None
        assert (event.actor or "").startswith("scim:Entra ID")
        assert event.after == {"by": "scim_patch", "sessions_revoked": 2, "devices_revoked": 1}


@both_stores
def test_okta_joiner_groups_filters_and_delete(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    resp = scim.request("POST", "/Users", okta_user("wei.zhang@a.example"))
    assert resp.status_code == 201, resp.text
    wei = resp.json()
    assert resp.headers["location"].endswith(f"/scim/v2/Users/{wei['id']}")
    assert wei["userName"] == "wei.zhang@a.example" and wei["active"] is True
    again = scim.request("POST", "/Users", okta_user("wei.zhang@a.example"))
    assert again.status_code == 409 and again.json()["scimType"] == "uniqueness"
    resp = scim.request("POST", "/Users", okta_user("li.na@a.example", "00u2"))
    li = resp.json()

    by_external = scim.request("GET", "/Users", filter='externalId eq "00u2"').json()
    assert [u["id"] for u in by_external["Resources"]] == [li["id"]]
    page = scim.request("GET", "/Users", startIndex=2, count=1).json()
    assert page["totalResults"] == 4 and page["startIndex"] == 2 and page["itemsPerPage"] == 1
    bad = scim.request("GET", "/Users", filter='userName eq "unterminated')
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidFilter"

    # The user in Tongdao: same tenant, e-mail and name; no password.
    user = world.client.get(
        f"{API}/tenants/{world.a.id}/users/{wei['id']}", headers=world.a.admin.headers
    ).json()
    assert (user["email"], user["display_name"], user["state"]) == (
        "wei.zhang@a.example",
        "Zhang Wei",
        "active",
    )

    # Groups: Okta creates one, then adds and removes members.
    resp = scim.request(
        "POST", "/Groups", {"schemas": [GROUP], "displayName": "Finance", "members": []}
    )
    assert resp.status_code == 201, resp.text
    group = resp.json()
    resp = scim.patch(
        f"/Groups/{group['id']}",
        {"op": "add", "path": "members", "value": [{"value": wei["id"]}, {"value": li["id"]}]},
    )
    assert resp.status_code == 200, resp.text
    assert sorted(m["value"] for m in resp.json()["members"]) == sorted([wei["id"], li["id"]])
    resp = scim.patch(
        f"/Groups/{group['id']}", {"op": "remove", "path": f'members[value eq "{li["id"]}"]'}
    )
    assert [m["value"] for m in resp.json()["members"]] == [wei["id"]]
    tongdao_group = world.client.get(
        f"{API}/tenants/{world.a.id}/groups/{group['id']}", headers=world.a.admin.headers
    ).json()
    assert (tongdao_group["name"], tongdao_group["member_ids"]) == ("Finance", [wei["id"]])
    stranger = scim.patch(
        f"/Groups/{group['id']}",
        {"op": "add", "path": "members", "value": [{"value": str(world.b.employee.user_id)}]},
    )
    assert stranger.status_code == 400 and stranger.json()["scimType"] == "invalidValue"

    # Okta's deactivation: replace with a value object.
    resp = scim.patch(f"/Users/{li['id']}", {"op": "replace", "value": {"active": False}})
    assert resp.status_code == 200 and resp.json()["active"] is False
    # DELETE: disabled for good and gone from SCIM; the user row and its trail stay.
    assert scim.request("DELETE", f"/Users/{wei['id']}").status_code == 204
    assert scim.request("GET", f"/Users/{wei['id']}").status_code == 404
    user = world.client.get(
        f"{API}/tenants/{world.a.id}/users/{wei['id']}", headers=world.a.admin.headers
    ).json()
    assert user["state"] == "disabled"


def test_a_token_sees_only_its_tenant_and_revoked_tokens_are_refused(world: World) -> None:
    scim_a = Scim(world, world.a.id, world.a.admin.headers)
    scim_b = Scim(world, world.b.id, world.b.admin.headers)
    a_user = scim_a.find_user("employee@a.example")
    for method, body in (("GET", None), ("PUT", {"schemas": [USER], "userName": "x"})):
        resp = scim_b.request(method, f"/Users/{a_user['id']}", body)
        assert resp.status_code == 404, resp.text
        assert resp.json()["status"] == "404"
    patched = scim_b.patch(f"/Users/{a_user['id']}", {"op": "replace", "value": {"active": False}})
    assert patched.status_code == 404
    assert scim_b.request("DELETE", f"/Users/{a_user['id']}").status_code == 404
    names = {u["userName"] for u in scim_b.request("GET", "/Users").json()["Resources"]}
    assert names == {"tenant_admin@b.example", "employee@b.example"}
    assert scim_b.request("GET", "/Users/not-a-uuid").status_code == 404

    # Tokens: listed without secrets, revoked at once; users' API tokens are not SCIM tokens.
    listed = world.client.get(
        f"{API}/tenants/{world.a.id}/scim-tokens", headers=world.a.admin.headers
    ).json()
    assert [t["id"] for t in listed["data"]] == [scim_a.token_id]
    assert "secret" not in listed["data"][0] and scim_a.secret not in str(listed)
    resp = world.client.delete(
        f"{API}/tenants/{world.a.id}/scim-tokens/{scim_a.token_id}", headers=world.a.admin.headers
    )
    assert resp.status_code == 204
    refused = scim_a.request("GET", "/Users")
    assert refused.status_code == 401 and refused.json()["status"] == "401"
    admin_token = world.client.get(
        "/scim/v2/Users", headers={"Authorization": world.a.admin.headers["Authorization"]}
    )
    assert admin_token.status_code == 401
    assert world.client.get("/scim/v2/Users").status_code == 401
    # Another tenant's admin cannot list or revoke A's tokens.
    resp = world.client.delete(
        f"{API}/tenants/{world.a.id}/scim-tokens/{scim_a.token_id}", headers=world.b.admin.headers
    )
    assert resp.status_code == 404
    bad = world.client.post(
        f"{API}/tenants/{world.a.id}/scim-tokens", json={"name": ""}, headers=world.a.admin.headers
    )
    assert bad.status_code == 422 and "name" in bad.json()["error"]["fields"]


def test_bad_scim_input_answers_scim_errors(world: World) -> None:
    scim = Scim(world, world.a.id, world.a.admin.headers)
    for body, status in (
        ([], 400),
        ({"schemas": [USER]}, 400),
        ({"schemas": [USER], "userName": "nobody", "emails": [{"value": "not an e-mail"}]}, 400),
        (
            {
                "schemas": [USER],
                "userName": "x",
                "displayName": "a\nb",
                "emails": [{"value": "x@a.example"}],
            },
            400,
        ),
    ):
        resp = scim.request("POST", "/Users", body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    found = scim.find_user("employee@a.example")
    resp = scim.patch(f"/Users/{found['id']}", {"op": "explode", "path": "active"})
    assert resp.status_code == 400
    resp = scim.patch(
        f"/Users/{found['id']}", {"op": "replace", "path": "active", "value": "maybe"}
    )
    assert resp.status_code == 400
    assert scim.request("GET", "/Nothing").status_code == 404
