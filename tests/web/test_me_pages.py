"""The "me" pages: account (password, sessions, TOTP), my devices, my privacy (TestClient).

Every success is checked through the API (or the store); every refusal is shown next to its
field with a 422/409 and stores nothing; another person's or another tenant's device is 404.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from tests.api.test_gateway import activate, enrol, make_pop, state
from tests.support.console import ConsoleClient, as_person
from tests.support.privacy import publish_notice
from tests.support.world import PASSWORD, Actor, World
from tongdao.audit.models import AuditEvent
from tongdao.testing.keys import keypair, public_key

API = "/api/v1"
NEW_PASSWORD = "a long and quiet river at dawn"


def field_error(html: str, field_id: str) -> str:
    """The text of the error paragraph next to a field (``f-<id>-error``)."""
    found = re.search(rf'id="f-{re.escape(field_id)}-error">([^<]*)<', html)
    assert found, f"no error element for {field_id}"
    return found.group(1)


def login(world: World, email: str, password: str) -> Any:
    return world.client.post(f"{API}/auth/login", json={"email": email, "password": password})


def me(world: World, actor: Actor) -> dict[str, Any]:
    resp = world.client.get(f"{API}/auth/me", headers=actor.headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def devices_of(world: World, actor: Actor, tenant: uuid.UUID | None = None) -> list[dict[str, Any]]:
    tid = tenant or world.a.id
    resp = world.client.get(f"{API}/tenants/{tid}/devices", headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    return [d for d in resp.json()["data"] if d["user_id"] == str(actor.user_id)]


def api_device(world: World, actor: Actor, tenant: uuid.UUID) -> dict[str, Any]:
    resp = world.client.post(
        f"{API}/tenants/{tenant}/devices",
        json={"name": "api laptop", "public_key": public_key()},
        headers=actor.headers,
    )
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


def serve_tenant_a(world: World) -> str:
    """An active PoP whose gateway published tenant A's interface key; that key. (A PoP
    serves a tenant with devices: the tenant admin's own device makes it one.)"""
    pop = make_pop(world, "bj")
    gw = enrol(world, pop)
    activate(world, world.a.id)
    api_device(world, world.a.admin, world.a.id)
    state(world, gw)
    key = public_key()
    resp = world.client.put(
        f"{API}/gateway/interfaces/{world.a.id}", json={"public_key": key}, headers=gw
    )
    assert resp.status_code == 204, resp.text
    return key


# === account =================================================================================
@pytest.mark.parametrize("role", ["operator_admin", "auditor", "tenant_admin", "employee"])
def test_the_account_page_shows_the_person_and_their_sessions(world: World, role: str) -> None:
    actor = world.actor(role)
    page = as_person(world, actor).get("/console/account")
    assert page.status_code == 200
    assert me(world, actor)["email"] in page.text
    assert "This session" in page.text
    assert 'action="/console/account/password"' in page.text
    assert 'action="/console/account/totp"' in page.text


def test_a_password_change_needs_the_current_password_and_the_policy(world: World) -> None:
    person = world.a.employee
    email = me(world, person)["email"]
    client = as_person(world, person)
    other = login(world, email, PASSWORD).json()["token"]  # another session (the CLI, say)

    wrong = client.post(
        "/console/account/password",
        {
            "current_password": "not my password",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "pw-current_password") == "is wrong"
    differ = client.post(
        "/console/account/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": "x"},
    )
    assert differ.status_code == 422
    assert field_error(differ.text, "pw-confirm_password") == "the two passwords differ"
    weak = client.post(
        "/console/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "password1234567",
            "confirm_password": "password1234567",
        },
    )
    assert weak.status_code == 422
    assert "breached" in field_error(weak.text, "pw-new_password")
    assert login(world, email, PASSWORD).status_code == 200  # nothing changed

    done = client.post(
        "/console/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/account?done=password"
    assert login(world, email, PASSWORD).status_code == 401
    assert login(world, email, NEW_PASSWORD).status_code == 200
    # The other session is signed out; this one is kept and says so.
    assert world.client.get(f"{API}/auth/me", headers=bearer(other)).status_code == 401
    page = client.get(done.headers["location"])
    assert page.status_code == 200
    assert "Your password is changed" in page.text


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_sessions_are_listed_and_signed_out_one_by_one_or_all_others(world: World) -> None:
    person = world.a.employee
    email = me(world, person)["email"]
    client = as_person(world, person)
    first = login(world, email, PASSWORD).json()["token"]
    second = login(world, email, PASSWORD).json()["token"]
    sessions = world.client.get(f"{API}/auth/sessions", headers=bearer(first)).json()["data"]
    assert len(sessions) == 3
    page = client.get("/console/account").text
    for item in sessions:
        assert str(item["id"]) in page or item["current"] is False
    target = next(
        s["id"]
        for s in world.client.get(f"{API}/auth/sessions", headers=bearer(second)).json()["data"]
        if s["current"]
    )
    assert f"/console/account/sessions/{target}/revoke" in page
    resp = client.post(f"/console/account/sessions/{target}/revoke")
    assert resp.status_code == 303
    assert world.client.get(f"{API}/auth/me", headers=bearer(second)).status_code == 401
    assert world.client.get(f"{API}/auth/me", headers=bearer(first)).status_code == 200
    # Someone else's session id (tenant B's employee's): 404, nothing revoked.
    theirs = login(world, me(world, world.b.employee)["email"], PASSWORD).json()["token"]
    their_id = world.client.get(f"{API}/auth/sessions", headers=bearer(theirs)).json()["data"][0]
    resp = client.post(f"/console/account/sessions/{their_id['id']}/revoke")
    assert resp.status_code == 404
    assert world.client.get(f"{API}/auth/me", headers=bearer(theirs)).status_code == 200

    resp = client.post("/console/account/sessions/revoke-others")
    assert resp.status_code == 303
    assert world.client.get(f"{API}/auth/me", headers=bearer(first)).status_code == 401
    assert client.get("/console/account").status_code == 200  # this one still works


def test_an_authenticator_app_is_set_up_with_a_code_and_the_password_then_turned_off(
    world: World,
) -> None:
    person = world.a.employee
    client = as_person(world, person)
    begun = client.post("/console/account/totp")
    assert begun.status_code == 200
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', begun.text)
    assert secret, "the key is shown as text"
    uri = re.search(r'data-otpauth="([^"]+)"', begun.text)
    assert uri and uri.group(1).startswith("otpauth://totp/")
    assert "secret=" + secret.group(1) in uri.group(1)
    totp = pyotp.TOTP(secret.group(1))

    wrong_code = client.post(
        "/console/account/totp/confirm", {"code": "000000", "current_password": PASSWORD}
    )
    if totp.now() != "000000":
        assert wrong_code.status_code == 422
        assert field_error(wrong_code.text, "on-code") == "TOTP code is wrong"
    wrong_password = client.post(
        "/console/account/totp/confirm", {"code": totp.now(), "current_password": "nope"}
    )
    assert wrong_password.status_code == 422
    assert field_error(wrong_password.text, "on-current_password") == "is wrong"
    assert me(world, person)["totp_enabled"] is False
    # The set-up is still waiting: the page keeps the confirm form.
    assert "A set-up is waiting" in client.get("/console/account").text

    on = client.post(
        "/console/account/totp/confirm", {"code": totp.now(), "current_password": PASSWORD}
    )
    assert on.status_code == 303, on.text
    assert me(world, person)["totp_enabled"] is True
    # Off: the code already used is refused (once only), then a fresh one works.
    import time

    again = client.post(
        "/console/account/totp/disable", {"code": totp.now(), "current_password": PASSWORD}
    )
    assert again.status_code == 422
    assert field_error(again.text, "off-code") == "is wrong or already used"
    assert me(world, person)["totp_enabled"] is True
    later = totp.at(time.time() + 30)
    off = client.post(
        "/console/account/totp/disable", {"code": later, "current_password": PASSWORD}
    )
    assert off.status_code == 303, off.text
    assert me(world, person)["totp_enabled"] is False


# === my devices ==============================================================================
def test_registering_a_device_sends_only_its_public_key(world: World) -> None:
    person = world.a.employee
    client = as_person(world, person)
    page = client.get("/console/my/devices")
    assert page.status_code == 200
    assert "You have no devices yet" in page.text
    form = client.get("/console/my/devices/new")
    assert form.status_code == 200
    assert 'src="/console/static/js/me-devices.js"' in form.text

    _private, key = keypair()
    resp = client.post("/console/my/devices/new", {"name": "Work laptop", "public_key": key})
    assert resp.status_code == 303
    stored = devices_of(world, person)
    assert [(d["name"], d["public_key"], d["state"]) for d in stored] == [
        ("Work laptop", key, "active")
    ]
    assert resp.headers["location"] == f"/console/my/devices/{stored[0]['id']}?done=registered"
    detail = client.get(resp.headers["location"])
    assert detail.status_code == 200
    assert key in detail.text and "The device is registered." in detail.text
    listed = client.get("/console/my/devices").text
    assert "Work laptop" in listed and "1 device" in listed

    # The page's script asks for JSON: the id and where the configuration is.
    _private, key2 = keypair()
    answer = client.post(
        "/console/my/devices/new",
        {"name": "Phone", "public_key": key2},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 201
    data = answer.json()
    assert data["config"] == f"/console/my/devices/{data['id']}/wireguard.conf"
    assert data["file_name"] == "tongdao-Phone.conf"
    assert {d["public_key"] for d in devices_of(world, person)} == {key, key2}


def test_a_refused_device_is_shown_next_to_its_field_and_not_stored(world: World) -> None:
    person = world.a.employee
    client = as_person(world, person)
    bad = client.post("/console/my/devices/new", {"name": "Laptop", "public_key": "not a key"})
    assert bad.status_code == 422
    assert field_error(bad.text, "public_key")
    assert 'value="Laptop"' in bad.text  # what was entered is kept
    empty = client.post("/console/my/devices/new", {"name": "", "public_key": public_key()})
    assert empty.status_code == 422
    assert field_error(empty.text, "name")
    taken = world.a.data.setdefault("taken", api_device(world, world.a.admin, world.a.id))
    dup = client.post(
        "/console/my/devices/new",
        {"name": "Laptop", "public_key": taken["public_key"]},
        headers={"Accept": "application/json"},
    )
    assert dup.status_code == 409
    assert "public_key" in dup.json()["errors"]
    assert devices_of(world, person) == []


def test_the_config_is_the_servers_part_without_a_private_key(world: World) -> None:
    person = world.a.employee
    client = as_person(world, person)
    _private, key = keypair()
    client.post("/console/my/devices/new", {"name": "Laptop", "public_key": key})
    device = devices_of(world, person)[0]
    url = f"/console/my/devices/{device['id']}/wireguard.conf"
    not_yet = client.get(url)
    assert not_yet.status_code == 409  # no PoP serves the tenant yet: the reason, as text
    assert "published a WireGuard key" in not_yet.text
    pop_key = serve_tenant_a(world)
    conf = client.get(url)
    assert conf.status_code == 200, conf.text
    assert conf.headers["content-type"].startswith("text/plain")
    assert 'filename="tongdao-Laptop.conf"' in conf.headers["content-disposition"]
    api = world.client.get(
        f"{API}/tenants/{world.a.id}/devices/{device['id']}/wireguard.conf",
        headers=person.headers,
    )
    assert conf.text == api.text  # the same service as the API
    assert f"PublicKey = {pop_key}" in conf.text
    assert "# PrivateKey = " in conf.text
    assert re.search(r"^PrivateKey", conf.text, re.M) is None
    page = client.get(f"/console/my/devices/{device['id']}").text
    assert url in page


# --- s18-notice: a company's first device waits for the gateway ----------------------------
def test_a_first_devices_config_is_marked_as_a_wait_until_the_gateway_publishes(
    world: World,
) -> None:
    from tongdao.web.pages import me as me_pages

    pop = make_pop(world, "bj")
    gateway = enrol(world, pop)
    activate(world, world.a.id)
    person = world.a.employee
    client = as_person(world, person)
    form = client.get("/console/my/devices/new").text
    assert f'data-poll-seconds="{me_pages.CONFIG_POLL_SECONDS}"' in form
    assert f'data-wait-seconds="{me_pages.CONFIG_WAIT_SECONDS}"' in form
    assert 'id="config-waiting" hidden' in form and 'id="config-timeout" hidden' in form
    made = client.http.post(
        "/console/my/devices/new",
        data={"csrf_token": client.csrf, "name": "First", "public_key": public_key()},
        headers={"Accept": "application/json"},
    )
    assert made.status_code == 201, made.text
    url = made.json()["config"]
    waiting = client.get(url)
    assert waiting.status_code == 409
    assert waiting.headers["x-tongdao-config"] == "waiting"
    assert waiting.headers["retry-after"] == str(me_pages.CONFIG_POLL_SECONDS)
    page = client.get(made.json()["page"]).text
    assert "still setting up your company&#39;s tunnel" in page
    # The gateway's next poll sets the tenant up; it publishes the interface's key.
    tenants = [t for t in state(world, gateway).tenants if t.tenant_id == world.a.id]
    assert tenants and tenants[0].public_key is None
    key = public_key()
    put = world.client.put(
        f"{API}/gateway/interfaces/{world.a.id}", json={"public_key": key}, headers=gateway
    )
    assert put.status_code == 204, put.text
    ready = client.get(url)
    assert ready.status_code == 200 and f"PublicKey = {key}" in ready.text
    assert "x-tongdao-config" not in ready.headers
    assert "still setting up" not in client.get(made.json()["page"]).text
    # A refusal is not a wait: a revoked device's configuration is not marked as one.
    revoke = client.post(f"{made.json()['page']}/revoke")
    assert revoke.status_code == 303
    refused = client.get(url)
    assert refused.status_code == 409 and "x-tongdao-config" not in refused.headers


# --- end of s18-notice ---------------------------------------------------------------------


def test_a_device_is_online_after_a_recent_handshake(world: World) -> None:
    from tests.api.test_usage_bounds import dev_row, post, report, serving

    _pop, gw, dev = serving(world)  # the employee's device, sent to the PoP's gateway
    client = as_person(world, world.a.employee)
    page = client.get(f"/console/my/devices/{dev['id']}").text
    assert 'state-offline">offline' in page and "no handshake yet" in page
    handshake = datetime.now(UTC) - timedelta(seconds=20)
    post(world, gw, report(1, [dev_row(world, dev, last_handshake=handshake.isoformat())]))
    for path in (f"/console/my/devices/{dev['id']}", "/console/my/devices"):
        page = client.get(path).text
        assert 'state-active">online' in page, path
        assert "last handshake 2" in page  # the time, in Asia/Shanghai
        assert "2.9 KiB" in page  # 1,000 B received + 2,000 B sent this month


def test_revoking_an_own_device(world: World) -> None:
    person = world.a.employee
    client = as_person(world, person)
    client.post("/console/my/devices/new", {"name": "Old phone", "public_key": public_key()})
    device = devices_of(world, person)[0]
    resp = client.post(f"/console/my/devices/{device['id']}/revoke")
    assert resp.status_code == 303
    assert resp.headers["location"].endswith("?done=revoked")
    assert devices_of(world, person)[0]["state"] == "revoked"
    page = client.get(resp.headers["location"]).text
    assert "The device is revoked" in page
    assert "/revoke" not in page  # nothing more to revoke
    filtered = client.get("/console/my/devices?state=active").text
    assert "No device of yours is in this state." in filtered


def test_another_persons_or_tenants_device_is_404(world: World) -> None:
    employee, admin = world.a.employee, world.a.admin
    theirs = api_device(world, admin, world.a.id)  # a colleague's (the tenant admin's)
    mine = api_device(world, employee, world.a.id)
    foreign = api_device(world, world.b.employee, world.b.id)
    emp, adm = as_person(world, employee), as_person(world, admin)
    for client, device in ((emp, theirs), (adm, mine), (emp, foreign), (adm, foreign)):
        for suffix in ("", "/wireguard.conf"):
            resp = client.get(f"/console/my/devices/{device['id']}{suffix}")
            assert resp.status_code == 404, (device["name"], suffix, resp.status_code)
        resp = client.post(f"/console/my/devices/{device['id']}/revoke")
        assert resp.status_code == 404
    assert emp.get("/console/my/devices/not-a-uuid").status_code == 404
    states = {d["id"]: d["state"] for d in devices_of(world, admin) + devices_of(world, employee)}
    assert set(states.values()) == {"active"}
    # The tenant admin's own devices are theirs to see here, the employee's are not listed.
    listed = adm.get("/console/my/devices").text
    assert theirs["id"] in listed and mine["id"] not in listed


def test_operator_staff_have_no_devices_page(world: World) -> None:
    client = as_person(world, world.admin)
    assert client.get("/console/my/devices").status_code == 403
    assert client.get("/console/my/privacy").status_code == 403
    home = client.get("/console/home").text
    assert "/console/my/devices" not in home


# === my privacy ==============================================================================
def consents(world: World, actor: Actor) -> list[dict[str, Any]]:
    resp = world.client.get(
        f"{API}/tenants/{world.a.id}/users/{actor.user_id}/consents",
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


def test_consents_are_given_as_self_and_transfer_abroad_withdrawn(world: World) -> None:
    person = world.a.employee
    client = as_person(world, person)
    empty = client.get("/console/my/privacy")
    assert empty.status_code == 200
    assert "has not published a privacy notice yet" in empty.text
    notice = publish_notice(world.client, world.admin.headers)
    page = client.get("/console/my/privacy").text
    assert notice["title"] in page
    # Transfer abroad before the notice is accepted: refused, the reason shown, nothing stored.
    early = client.post(
        "/console/my/privacy/consents",
        {"kind": "transfer_abroad", "notice_version": notice["version"]},
    )
    assert early.status_code == 409
    assert "accept notice" in field_error(early.text, "kind")
    stale = client.post(
        "/console/my/privacy/consents", {"kind": "notice", "notice_version": "1999-01"}
    )
    assert stale.status_code == 422
    assert consents(world, person) == []

    for kind in ("notice", "transfer_abroad"):
        resp = client.post(
            "/console/my/privacy/consents", {"kind": kind, "notice_version": notice["version"]}
        )
        assert resp.status_code == 303, resp.text
        assert resp.headers["location"] == f"/console/my/privacy?done={kind}"
    given = {c["kind"]: c for c in consents(world, person)}
    assert set(given) == {"notice", "transfer_abroad"}
    for consent in given.values():
        assert consent["method"] == "self"
        assert consent["given_via"] == "session"
        assert consent["current"] is True
    page = client.get("/console/my/privacy").text
    assert "You consent to the transfer abroad." in page

    resp = client.post("/console/my/privacy/consents/transfer-abroad/withdraw")
    assert resp.status_code == 303
    after = {c["kind"]: c for c in consents(world, person)}
    assert after["transfer_abroad"]["revoked_at"] is not None
    assert after["notice"]["current"] is True
    assert (
        "Your consent to transfer abroad is withdrawn." in client.get(resp.headers["location"]).text
    )


def test_the_personal_data_export_is_the_apis_and_is_audited(world: World) -> None:
    person = world.a.employee
    client = as_person(world, person)
    api_device(world, person, world.a.id)
    resp = client.get("/console/my/privacy/export")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert "attachment" in resp.headers["content-disposition"]
    data = json.loads(resp.content)
    assert data["user_id"] == str(person.user_id)
    assert data["account"]["email"] == me(world, person)["email"]
    assert len(data["devices"]) == 1
    assert data["identity"]["id_number"]  # decrypted for the person themselves
    with world.runtime.db.session() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "export_personal_data",
                AuditEvent.object_id == str(person.user_id),
            )
        ).all()
    assert len(events) == 1


def test_a_tenant_admin_has_their_own_privacy_page(world: World) -> None:
    client: ConsoleClient = as_person(world, world.a.admin)
    page = client.get("/console/my/privacy")
    assert page.status_code == 200
    data = json.loads(client.get("/console/my/privacy/export").content)
    assert data["user_id"] == str(world.a.admin.user_id)


def test_the_pages_speak_chinese(world: World) -> None:
    client = as_person(world, world.a.employee)
    client.post("/console/language", {"language": "zh_CN", "next": "/console/my/devices"})
    for path in ("/console/account", "/console/my/devices", "/console/my/devices/new"):
        page = client.get(path)
        assert page.status_code == 200
        assert '<html lang="zh-CN">' in page.text
    assert "我的设备" in client.get("/console/my/devices").text
    assert "您的账户" in client.get("/console/account").text
    assert "我的隐私" in client.get("/console/my/privacy").text


@pytest.mark.parametrize(
    ("agent", "shown"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/156.0.0.0 Safari/537.36",
            "Chrome, Linux",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
            "Safari, iOS",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0",
            "Firefox, Windows",
        ),
        ("python-httpx/0.28.1", "httpx"),
        (None, "—"),
    ],
)
def test_a_sessions_program_is_named_briefly(agent: str | None, shown: str) -> None:
    from tongdao.web.pages.me import program

    assert program(agent) == shown


@pytest.mark.parametrize(("language", "stop"), [("en", "."), ("zh_CN", "。")])
def test_the_config_not_ready_message_ends_its_sentence(
    world: World, language: str, stop: str
) -> None:
    """Found trying the console: the page joins this message and 'Keep the private key ...'
    with a space, and without a full stop they ran together ('...配置即可使用 请保存私钥')."""
    client = as_person(world, world.a.employee)
    client.http.cookies.set("tongdao_lang", language)
    form = client.get("/console/my/devices/new")
    found = re.search(r'data-config-failed="([^"]*)"', form.text)
    assert found, form.text
    assert found.group(1).endswith(f"%(reason)s{stop}")
