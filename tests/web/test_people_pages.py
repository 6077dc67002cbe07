"""The tenant admin's people pages: users (invite, roles, groups, state, identity and its
verification, password reset, sign-in unlock), groups and devices, through the console's forms.

Each form's success is checked through the API (what the store now says), each refusal next
to its field with nothing stored, and another tenant's objects answer 404.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from tests.api.test_gateway import state
from tests.api.test_mail_reset import NEW_PASSWORD, login, use_relay
from tests.api.test_usage import REPORTS, peer, report, serving_gateway
from tests.support.console import ConsoleClient, as_person
from tests.support.privacy import identity_body, resident_id
from tests.support.smtp import SmtpServer
from tests.support.world import TenantFixture, World
from tongdao.audit.models import AuditEvent
from tongdao.auth.permissions import Role
from tongdao.runtime import Runtime
from tongdao.tenancy.models import User
from tongdao.testing.keys import public_key

API = "/api/v1"


# --- for the console access matrix (tests/web/test_console_access.py PAGES) -------------------
PEOPLE_READERS = frozenset(
    {Role.TENANT_ADMIN, Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR}
)


def people_group(world: World, tenant: TenantFixture) -> str:
    key = "people_group"
    if key not in tenant.data:
        resp = world.client.post(
            f"/api/v1/tenants/{tenant.id}/groups",
            json={"name": f"people {tenant.id.hex[:6]}"},
            headers=tenant.admin.headers,
        )
        assert resp.status_code == 201, resp.text
        tenant.data[key] = resp.json()["id"]
    return str(tenant.data[key])


def people_device(world: World, tenant: TenantFixture) -> str:
    key = "people_device"
    if key not in tenant.data:
        resp = world.client.post(
            f"/api/v1/tenants/{tenant.id}/devices",
            json={"name": "access laptop", "public_key": public_key()},
            headers=tenant.employee.headers,
        )
        assert resp.status_code == 201, resp.text
        tenant.data[key] = resp.json()["id"]
    return str(tenant.data[key])


def admin(world: World) -> ConsoleClient:
    return as_person(world, world.a.admin)


def api_user(world: World, user_id: Any, tenant: Any = None) -> dict[str, Any]:
    resp = world.client.get(
        f"{API}/tenants/{tenant or world.a.id}/users/{user_id}", headers=world.admin.headers
    )
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def invite(console: ConsoleClient, email: str, **extra: Any) -> uuid.UUID:
    resp = console.post(
        "/console/users",
        {
            "email": email,
            "display_name": extra.pop("display_name", "Wang Fang"),
            "roles": extra.pop("roles", "employee"),
            **extra,
        },
    )
    assert resp.status_code == 303, resp.text
    location = resp.headers["location"]
    found = re.fullmatch(r"/console/users/([0-9a-f-]{36})\?done=invited", location)
    assert found, location
    return uuid.UUID(found.group(1))


def field_error(html: str, name: str) -> str:
    found = re.search(
        rf'<p class="field-error" id="f-{re.escape(name)}-error"[^>]*>([^<]*)</p>', html
    )
    assert found, f"no error paragraph for {name}"
    return found.group(1)


def count(runtime: Runtime, model: Any, *where: Any) -> int:
    with runtime.db.session(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# --- users -------------------------------------------------------------------------------------
def test_the_users_list_filters_and_paginates(world: World) -> None:
    console = admin(world)
    for n in range(27):
        invite(console, f"person{n:02d}@a.example", display_name=f"Person {n:02d}")
    page = console.get("/console/users")
    assert page.status_code == 200
    assert "29 users" in page.text  # 27 invited, the admin and the employee
    assert "Next page" in page.text
    cursor = re.search(r'href="\?cursor=([^"]+)"', page.text)
    assert cursor
    second = console.get(f"/console/users?cursor={cursor.group(1)}")
    assert second.status_code == 200 and "Next page" not in second.text
    found = console.get("/console/users", params={"q": "person07"})
    assert "Person 07" in found.text and "Person 08" not in found.text
    admins = console.get("/console/users", params={"role": "tenant_admin"})
    assert "tenant_admin@a.example" in admins.text and "Person 01" not in admins.text
    waiting = console.get("/console/users", params={"verified": "no"})
    assert "Person 26" in waiting.text and "tenant_admin@a.example" not in waiting.text
    empty = console.get("/console/users", params={"q": "nobody-like-this"})
    assert "No user matches these filters" in empty.text
    # Tenant B's people never show.
    assert "b.example" not in page.text + second.text
    # In 简体中文 too.
    console.post("/console/language", {"language": "zh_CN", "next": "/console/users"})
    zh = console.get("/console/users")
    assert '<html lang="zh-CN">' in zh.text and "<h1>用户</h1>" in zh.text


def test_an_invitation_through_the_page_mails_a_one_time_link_that_sets_a_password(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    use_relay(world, smtp.port)
    console = admin(world)
    form = console.get("/console/users/new")
    assert form.status_code == 200 and 'name="email"' in form.text
    user_id = invite(console, "zhang.wei@a.example", display_name="张伟", roles="employee")
    got = smtp.wait_for("zhang.wei@a.example")
    assert "Hello 张伟" in got.text and "created for you" in got.text
    # The invitee opens the link's page and chooses a password; then signs in with it.
    anonymous = world.client
    page = anonymous.get("/console/password/reset", params={"token": got.token})
    assert page.status_code == 200 and "Welcome" in page.text
    done = anonymous.post(
        "/console/password/reset",
        data={"token": got.token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    )
    assert done.status_code == 200, done.text
    assert login(anonymous, "zhang.wei@a.example", NEW_PASSWORD).status_code == 200
    # The link works once.
    again = anonymous.get("/console/password/reset", params={"token": got.token})
    assert again.status_code == 410
    assert api_user(world, user_id)["roles"] == ["employee"]
    shown = console.get(f"/console/users/{user_id}?done=invited")
    assert "The invitation is on its way" in shown.text


def test_a_refused_invitation_shows_the_reason_next_to_the_field_and_stores_nothing(
    world: World, runtime: Runtime
) -> None:
    console = admin(world)
    before = count(runtime, User)
    bad = console.post(
        "/console/users", {"email": "not-an-address", "display_name": "X", "roles": "employee"}
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "email")
    assert 'value="not-an-address"' in bad.text  # what was typed stays
    taken = console.post(
        "/console/users",
        {"email": "employee@a.example", "display_name": "Again", "roles": "employee"},
    )
    assert taken.status_code == 409
    assert field_error(taken.text, "email") == "already in use"
    no_role = console.post("/console/users", {"email": "new@a.example", "display_name": "N"})
    assert no_role.status_code == 422 and field_error(no_role.text, "roles")
    assert invite(console, "new@a.example")
    with_nothing = console.post("/console/users", {"email": "", "display_name": ""})
    assert with_nothing.status_code == 422
    assert field_error(with_nothing.text, "display_name")
    # In 简体中文, the schema's refusal is translated next to its field.
    console.post("/console/language", {"language": "zh_CN", "next": "/console/users"})
    zh = console.post("/console/users", {"email": "nope", "display_name": "", "roles": "employee"})
    assert zh.status_code == 422
    assert field_error(zh.text, "email").startswith("不是有效的邮箱地址")
    assert field_error(zh.text, "display_name") == "至少需要 1 个字符"
    assert count(runtime, User) == before + 1  # only the one valid invitation
    assert count(runtime, AuditEvent, AuditEvent.action == "invitation_sent") == 1


def test_roles_groups_and_state_change_through_the_users_page(world: World) -> None:
    console = admin(world)
    user_id = invite(console, "li.na@a.example", display_name="Li Na")
    group = console.post("/console/groups", {"name": "Finance", "description": "财务"})
    assert group.status_code == 303
    group_id = group.headers["location"].split("/")[-1].split("?")[0]
    resp = console.post(f"/console/users/{user_id}/groups", {"group_ids": group_id})
    assert resp.status_code == 303 and resp.headers["location"].endswith("?done=groups")
    assert api_user(world, user_id)["group_ids"] == [group_id]
    resp = console.post(f"/console/users/{user_id}/groups", {})
    assert api_user(world, user_id)["group_ids"] == []
    # No role at all is refused next to the roles field.
    none = console.post(f"/console/users/{user_id}/roles", {})
    assert none.status_code == 422 and field_error(none.text, "roles")
    assert api_user(world, user_id)["roles"] == ["employee"]
    both = console.post(f"/console/users/{user_id}/roles", {"roles": ["employee", "tenant_admin"]})
    assert both.status_code == 303
    assert api_user(world, user_id)["roles"] == ["employee", "tenant_admin"]
    off = console.post(f"/console/users/{user_id}/state", {"state": "disabled"})
    assert off.status_code == 303 and off.headers["location"].endswith("?done=disabled")
    assert api_user(world, user_id)["state"] == "disabled"
    page = console.get(off.headers["location"])
    assert "The account is disabled" in page.text and "Enable the account" in page.text
    on = console.post(f"/console/users/{user_id}/state", {"state": "active"})
    assert on.status_code == 303 and api_user(world, user_id)["state"] == "active"


def test_verifying_an_employees_identity_through_the_page(world: World, runtime: Runtime) -> None:
    console = admin(world)
    user_id = invite(console, "chen.jie@a.example", display_name="Chen Jie")
    # Verifying before the identity is recorded: refused, the missing fields named.
    early = console.post(f"/console/users/{user_id}/verification", {"action": "verify"})
    assert early.status_code == 409
    assert field_error(early.text, "legal_name") == "record it before the identity is verified"
    assert api_user(world, user_id)["identity_verified_at"] is None
    # A bad ID number is refused next to its field; nothing stored.
    bad = console.post(
        f"/console/users/{user_id}/identity",
        {"legal_name": "陈杰", "id_type": "prc_resident_id", "id_number": "110105197001011234"},
    )
    assert bad.status_code == 422 and field_error(bad.text, "id_number")
    assert 'value="陈杰"' in bad.text
    assert api_user(world, user_id)["legal_name"] is None
    number = resident_id(4242)
    saved = console.post(
        f"/console/users/{user_id}/identity",
        {
            "legal_name": "陈杰",
            "id_type": "prc_resident_id",
            "id_number": number,
            "mobile": "+8613800138000",
        },
    )
    assert saved.status_code == 303, saved.text
    stored = api_user(world, user_id)
    assert stored["legal_name"] == "陈杰"
    assert stored["id_number_masked"] == "*" * 14 + number[-4:]
    page = console.get(f"/console/users/{user_id}")
    assert number not in page.text and number[-4:] in page.text  # sealed, shown masked
    # The employee gets a device while unverified: it waits as pending.
    device = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "phone", "public_key": public_key(), "user_id": str(user_id)},
        headers=world.a.admin.headers,
    )
    assert device.status_code == 201 and device.json()["state"] == "pending"
    verified = console.post(f"/console/users/{user_id}/verification", {"action": "verify"})
    assert verified.status_code == 303 and verified.headers["location"].endswith("?done=verified")
    after = api_user(world, user_id)
    assert after["identity_verified_at"] is not None
    dev = world.client.get(
        f"{API}/tenants/{world.a.id}/devices/{device.json()['id']}", headers=world.admin.headers
    ).json()
    assert dev["state"] == "active"
    with runtime.db.session(write=False) as session:
        event = session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "verify_identity", AuditEvent.object_id == str(user_id)
            )
        )
        assert event is not None and event.actor_id == world.a.admin.user_id
    # Withdrawn: the devices wait again.
    withdrawn = console.post(f"/console/users/{user_id}/verification", {"action": "withdraw"})
    assert withdrawn.status_code == 303
    assert api_user(world, user_id)["identity_verified_at"] is None


def test_the_service_refuses_a_self_verification_and_an_admins_and_the_page_says_why(
    world: World,
) -> None:
    console = admin(world)
    own = world.a.admin.user_id
    # The tenant admin is verified already (by the compliance officer); withdraw the
    # verification as the officer so that a self-verification is what is tried.
    officer = world.operators["compliance_officer"].headers
    resp = world.client.delete(
        f"{API}/tenants/{world.a.id}/users/{own}/identity-verification", headers=officer
    )
    assert resp.status_code == 200, resp.text
    selfie = console.post(f"/console/users/{own}/verification", {"action": "verify"})
    assert selfie.status_code == 403
    assert "nobody verifies their own identity" in field_error(selfie.text, "verification")
    assert api_user(world, own)["identity_verified_at"] is None
    # Re-verified by the officer, the admin tries another admin: refused (the officer's job).
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/users/{own}/identity-verification", headers=officer
    )
    assert resp.status_code == 200, resp.text
    other = invite(console, "second.admin@a.example", roles=["tenant_admin"])
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/users/{other}",
        json=identity_body(),
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    refused = console.post(f"/console/users/{other}/verification", {"action": "verify"})
    assert refused.status_code == 409
    message = field_error(refused.text, "verification")
    assert "compliance officer" in message and "identity.real_name" in message
    assert api_user(world, other)["identity_verified_at"] is None
    # In 简体中文 the refusal is translated.
    console.post("/console/language", {"language": "zh_CN", "next": "/console/users"})
    zh = console.post(f"/console/users/{other}/verification", {"action": "verify"})
    assert zh.status_code == 409 and "合规" in field_error(zh.text, "verification")


def test_password_reset_and_sign_in_unlock_through_the_page(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    use_relay(world, smtp.port)
    console = admin(world)
    employee = world.a.employee.user_id
    # The employee has an open session; the admin's reset ends it and mails a link.
    assert (
        login(world.client, "employee@a.example", "correct horse battery staple").status_code == 200
    )
    for _ in range(3):
        login(world.client, "employee@a.example", "a wrong password, surely")
    resp = console.post(f"/console/users/{employee}/password-reset")
    assert resp.status_code == 303 and resp.headers["location"].endswith("?done=reset")
    got = smtp.wait_for("employee@a.example")
    assert "reset the password" in got.text
    assert (
        login(world.client, "employee@a.example", "correct horse battery staple").status_code == 401
    )
    unlock = console.post(f"/console/users/{employee}/sign-in-unlock")
    assert unlock.status_code == 303 and unlock.headers["location"].endswith("?done=unlocked")
    assert count(runtime, AuditEvent, AuditEvent.action == "sign_in_unlocked") == 1
    # A disabled account is not reset: said next to the button, nothing mailed.
    console.post(f"/console/users/{employee}/state", {"state": "disabled"})
    refused = console.post(f"/console/users/{employee}/password-reset")
    assert refused.status_code == 409
    assert field_error(refused.text, "password")
    assert count(runtime, AuditEvent, AuditEvent.action == "password_reset") == 1
    assert len(smtp.received) == 1


# --- groups ------------------------------------------------------------------------------------
def test_groups_are_created_and_their_members_added_and_removed(world: World) -> None:
    console = admin(world)
    empty = console.get("/console/groups")
    assert empty.status_code == 200 and "No groups yet" in empty.text
    created = console.post("/console/groups", {"name": "研发部", "description": "R&D"})
    assert created.status_code == 303
    group_id = created.headers["location"].split("/")[-1].split("?")[0]
    again = console.post("/console/groups", {"name": "研发部"})
    assert again.status_code == 409 and field_error(again.text, "name") == "already in use"
    blank = console.post("/console/groups", {"name": ""})
    assert blank.status_code == 422 and field_error(blank.text, "name")
    employee = str(world.a.employee.user_id)
    added = console.post(f"/console/groups/{group_id}/members", {"add": employee})
    assert added.status_code == 303
    group = world.client.get(
        f"{API}/tenants/{world.a.id}/groups/{group_id}", headers=world.admin.headers
    ).json()
    assert group["member_ids"] == [employee]
    page = console.get(f"/console/groups/{group_id}")
    assert "employee@a.example" in page.text and "Remove" in page.text
    # Tenant B's user cannot be added: refused next to the field, nothing changed.
    foreign = console.post(
        f"/console/groups/{group_id}/members", {"add": str(world.b.employee.user_id)}
    )
    assert foreign.status_code == 422 and field_error(foreign.text, "add")
    removed = console.post(f"/console/groups/{group_id}/members", {"remove": employee})
    assert removed.status_code == 303
    group = world.client.get(
        f"{API}/tenants/{world.a.id}/groups/{group_id}", headers=world.admin.headers
    ).json()
    assert group["member_ids"] == []
    listing = console.get("/console/groups")
    assert "研发部" in listing.text


# --- devices -----------------------------------------------------------------------------------
def test_devices_show_presence_and_bytes_and_a_revocation_reaches_the_api(
    world: World, runtime: Runtime
) -> None:
    _pop, gw = serving_gateway(world)  # registers one device of the employee
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "工作笔记本", "public_key": public_key()},
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 201, resp.text
    dev = resp.json()
    state(world, gw)  # the gateway was sent its peer
    handshake = datetime.now(UTC) - timedelta(seconds=70)
    body = report(
        1,
        [
            peer(
                world.a.id,
                dev["id"],
                3 * 1024 * 1024,
                1024,
                key=dev["public_key"],
                handshake=handshake,
            )
        ],
    )
    sent = world.client.post(REPORTS, json=body, headers=gw)
    assert sent.status_code == 200 and sent.json()["stored"] == 1, sent.text
    console = admin(world)
    listing = console.get("/console/devices")
    assert listing.status_code == 200
    row = re.search(
        rf'<tr>\s*<td><a href="/console/devices/{dev["id"]}">.*?</tr>', listing.text, re.S
    )
    assert row, listing.text
    assert "online" in row.group(0) and "3 MiB" in row.group(0)
    assert "(Asia/Shanghai)" in row.group(0)
    assert "employee" in row.group(0)  # the owner
    detail = console.get(f"/console/devices/{dev['id']}")
    assert detail.status_code == 200 and "198.51.100.2:51820" in detail.text
    # Filter by state and by owner's name.
    assert dev["id"] not in console.get("/console/devices", params={"state": "revoked"}).text
    assert dev["id"] in console.get("/console/devices", params={"q": "笔记本"}).text
    revoked = console.post(f"/console/devices/{dev['id']}/revoke")
    assert revoked.status_code == 303 and revoked.headers["location"].endswith("?done=revoked")
    api = world.client.get(
        f"{API}/tenants/{world.a.id}/devices/{dev['id']}", headers=world.a.admin.headers
    ).json()
    assert api["state"] == "revoked"
    page = console.get(revoked.headers["location"])
    assert "The device is revoked" in page.text and "Revoke this device" not in page.text
    assert dev["public_key"] not in {
        p.public_key for t in state(world, gw).tenants for p in t.peers
    }


def test_an_empty_devices_list_says_what_to_do(world: World) -> None:
    page = admin(world).get("/console/devices")
    assert page.status_code == 200 and "No devices yet" in page.text


# --- sight ---------------------------------------------------------------------------------------
def test_another_tenants_user_group_and_device_are_404(world: World) -> None:
    console = admin(world)
    b_user = world.b.employee.user_id
    group = world.client.post(
        f"{API}/tenants/{world.b.id}/groups", json={"name": "B team"}, headers=world.b.admin.headers
    ).json()
    device = world.client.post(
        f"{API}/tenants/{world.b.id}/devices",
        json={"name": "b laptop", "public_key": public_key()},
        headers=world.b.employee.headers,
    ).json()
    for path in (
        f"/console/users/{b_user}",
        f"/console/groups/{group['id']}",
        f"/console/devices/{device['id']}",
        f"/console/users/{uuid.uuid4()}",
        "/console/users/not-a-uuid",
    ):
        answer = console.get(path)
        assert answer.status_code == 404, path
        assert "Tenant B" not in answer.text and "B team" not in answer.text
    for path, data in (
        (f"/console/users/{b_user}/state", {"state": "disabled"}),
        (f"/console/users/{b_user}/verification", {"action": "withdraw"}),
        (f"/console/users/{b_user}/password-reset", {}),
        (f"/console/groups/{group['id']}/members", {"add": str(b_user)}),
        (f"/console/devices/{device['id']}/revoke", {}),
    ):
        assert console.post(path, data).status_code == 404, path
    assert api_user(world, b_user, world.b.id)["state"] == "active"
    still = world.client.get(
        f"{API}/tenants/{world.b.id}/devices/{device['id']}", headers=world.admin.headers
    ).json()
    assert still["state"] != "revoked"


def test_operator_staff_read_every_tenants_users_and_cannot_change_them(world: World) -> None:
    auditor = as_person(world, world.operators["auditor"])
    page = auditor.get("/console/users")
    assert page.status_code == 200
    assert "Tenant A" in page.text and "Tenant B" in page.text
    assert "Invite a user" not in page.text
    only_b = auditor.get("/console/users", params={"tenant": str(world.b.id)})
    assert "employee@b.example" in only_b.text and "employee@a.example" not in only_b.text
    detail = auditor.get(f"/console/users/{world.a.employee.user_id}")
    assert detail.status_code == 200 and "Disable the account" not in detail.text
    refused = auditor.post(
        f"/console/users/{world.a.employee.user_id}/state", {"state": "disabled"}
    )
    assert refused.status_code == 403
    assert api_user(world, world.a.employee.user_id)["state"] == "active"
    assert (
        as_person(world, world.operators["billing_clerk"]).get("/console/users").status_code == 403
    )
    employee = as_person(world, world.a.employee)
    assert employee.get("/console/users").status_code == 403
    assert employee.get("/console/devices").status_code == 403
    assert employee.get(f"/console/users/{world.a.admin.user_id}").status_code == 404


def test_the_compliance_officer_verifies_a_tenant_admin_on_the_same_page(world: World) -> None:
    console = admin(world)
    other = invite(console, "deputy.admin@a.example", roles=["tenant_admin"])
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/users/{other}",
        json=identity_body(),
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    officer = as_person(world, world.operators["compliance_officer"])
    page = officer.get(f"/console/users/{other}")
    assert page.status_code == 200 and "I checked the documents: verify" in page.text
    assert "Disable the account" not in page.text  # the officer reads users, changes none
    done = officer.post(f"/console/users/{other}/verification", {"action": "verify"})
    assert done.status_code == 303, done.text
    stored = api_user(world, other)
    assert stored["identity_verified_at"] is not None
    # The operator admin changes users but verifies no identity (rule identity.real_name).
    operator = as_person(world, world.admin)
    assert "I checked the documents" not in operator.get(f"/console/users/{other}").text
    refused = operator.post(f"/console/users/{other}/verification", {"action": "withdraw"})
    assert refused.status_code == 403
    assert api_user(world, other)["identity_verified_at"] is not None
    off = operator.post(f"/console/users/{other}/state", {"state": "disabled"})
    assert off.status_code == 303 and api_user(world, other)["state"] == "disabled"


def test_an_identity_refusal_shows_next_to_its_fields_only_in_the_readers_language(
    world: World,
) -> None:
    """Found trying the console in 简体中文: a refused mobile and ID number showed next to their
    fields in Chinese and again under the form as the API's English summary
    ("mobile: must be a phone number ...")."""
    console = admin(world)
    user_id = invite(console, "zhou.min@a.example", display_name="Zhou Min")
    console.http.cookies.set("tongdao_lang", "zh_CN")
    bad = console.post(
        f"/console/users/{user_id}/identity",
        {"legal_name": "周敏", "id_type": "prc_resident_id", "mobile": "12345"},
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "mobile") and "must be" not in field_error(bad.text, "mobile")
    assert field_error(bad.text, "identity") == ""
    assert "must be a phone number" not in bad.text
