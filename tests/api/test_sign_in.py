"""Sign-in without a lock-out for attackers to hand out, TOTP that works once, sessions one can
see and end, tokens a session cannot mint alone, and the NIST SP 800-63B-4 password policy.

Addresses: every :class:`TestClient` here connects from its own documentation address, as a
real socket peer would (the proxy-header half is tested against a real server process in
``tests/e2e/test_server_process.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.world import PASSWORD, World
from tongdao.auth.models import ApiToken
from tongdao.runtime import Runtime

API = "/api/v1"
ATTACKER = "203.0.113.66"
OWNER = "198.51.100.20"
EMPLOYEE = "employee@a.example"


class Clock:
    """The runtime's clock, moved by hand."""

    def __init__(self, runtime: Runtime) -> None:
        self.now = datetime.now(UTC)
        runtime.clock = lambda: self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    return Clock(runtime)


@pytest.fixture
def at(app: FastAPI) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(address: str) -> TestClient:
        client = TestClient(app, client=(address, 40000))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def login(client: TestClient, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    return client.post(f"{API}/auth/login", json={"email": email, "password": password, **extra})


def bearer(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def enable_totp(world: World, headers: dict[str, str], password: str = PASSWORD) -> pyotp.TOTP:
    setup = world.client.post(f"{API}/auth/totp", headers=headers)
    assert setup.status_code == 200, setup.text
    totp = pyotp.TOTP(setup.json()["secret"])
    body = {"code": totp.now(), "current_password": password}
    ok = world.client.post(f"{API}/auth/totp/confirm", json=body, headers=headers)
    assert ok.status_code == 204, ok.text
    return totp


def next_code(totp: pyotp.TOTP, steps: int = 1) -> str:
    return str(totp.at(time.time() + 30 * steps))


# --- throttling: the attacker waits, the owner does not ---------------------------------------
def test_attacker_is_throttled_and_owner_signs_in_from_elsewhere(
    world: World, at: Any, clock: Clock
) -> None:
    attacker, owner = at(ATTACKER), at(OWNER)
    free = world.runtime.settings.login_max_failures
    # Guessing as fast as it is let: the first failures are free, then every guess waits.
    statuses = [login(attacker, EMPLOYEE, f"guess number {i}").status_code for i in range(20)]
    assert statuses[:free] == [401] * free
    assert set(statuses[free:]) == {429}
    # Waiting out each delay, the attacker gets to 20 failed guesses in all.
    failures = free
    while failures < 20:
        resp = login(attacker, EMPLOYEE, f"patient guess {failures}")
        if resp.status_code == 429:
            clock.advance(int(resp.headers["retry-after"]))
        else:
            assert resp.status_code == 401
            failures += 1
    # The owner, from another address, signs in at once.
    assert login(owner, EMPLOYEE).status_code == 200
    # The attacker stays throttled, even with the right password (no oracle), with Retry-After.
    resp = login(attacker, EMPLOYEE)
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.json()["error"]["code"] == "throttled"


def test_delays_grow_per_failure_from_one_address(world: World, at: Any, clock: Clock) -> None:
    attacker = at(ATTACKER)
    free = world.runtime.settings.login_max_failures
    for _ in range(free):
        assert login(attacker, EMPLOYEE, "not the password").status_code == 401
    waits = []
    for _ in range(5):
        resp = login(attacker, EMPLOYEE, "not the password")
        assert resp.status_code == 429
        wait = int(resp.headers["retry-after"])
        waits.append(wait)
        clock.advance(wait - 0.5)
        assert login(attacker, EMPLOYEE, "not the password").status_code == 429  # not yet
        clock.advance(0.5)
        assert login(attacker, EMPLOYEE, "not the password").status_code == 401  # counted
    assert waits == [1, 2, 4, 8, 16]
    # The cap: after many more failures a wait never exceeds login_max_delay_seconds.
    cap = world.runtime.settings.login_max_delay_seconds
    for _ in range(12):
        resp = login(attacker, EMPLOYEE, "not the password")
        clock.advance(int(resp.headers.get("retry-after", 0)))
        login(attacker, EMPLOYEE, "not the password")
    resp = login(attacker, EMPLOYEE, "not the password")
    assert resp.status_code == 429
    assert 1 <= int(resp.headers["retry-after"]) <= cap


def test_waiting_out_the_window_does_not_bring_free_guesses_back(
    world: World, at: Any, clock: Clock
) -> None:
    attacker = at(ATTACKER)
    for _ in range(world.runtime.settings.login_max_failures):
        assert login(attacker, EMPLOYEE, "not the password").status_code == 401
    clock.advance(world.runtime.settings.login_window_seconds + 60)
    assert login(attacker, EMPLOYEE, "not the password").status_code == 401
    resp = login(attacker, EMPLOYEE, "not the password")
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2"
    # A day later the failures are forgotten.
    clock.advance(world.runtime.settings.login_memory_seconds)
    for _ in range(world.runtime.settings.login_max_failures):
        assert login(attacker, EMPLOYEE, "not the password").status_code == 401


def test_success_from_an_address_clears_its_typos(world: World, at: Any, clock: Clock) -> None:
    owner = at(OWNER)
    for _ in range(world.runtime.settings.login_max_failures - 1):
        assert login(owner, EMPLOYEE, "typo typo typo").status_code == 401
    assert login(owner, EMPLOYEE).status_code == 200
    for _ in range(world.runtime.settings.login_max_failures):
        assert login(owner, EMPLOYEE, "typo typo typo").status_code == 401


def test_one_address_spraying_many_accounts_hits_a_ceiling(
    world: World, at: Any, runtime: Runtime, clock: Clock
) -> None:
    runtime.settings.login_address_max_failures = 6
    sprayer = at(ATTACKER)
    emails = [f"{r}@operator.example" for r in ("operator_admin", "auditor", "billing_clerk")]
    for email in emails:
        for _ in range(2):
            assert login(sprayer, email, "Summer2026!").status_code == 401
    resp = login(sprayer, "compliance_officer@operator.example", "Summer2026!")
    assert resp.status_code == 429
    assert "address" in resp.json()["error"]["message"]
    # Other addresses are not affected.
    assert login(at(OWNER), "compliance_officer@operator.example").status_code == 200


def test_many_addresses_slow_an_account_but_never_lock_it(
    world: World, at: Any, runtime: Runtime, clock: Clock
) -> None:
    settings = runtime.settings
    settings.login_account_max_failures = 12
    owner_home = at(OWNER)
    assert login(owner_home, EMPLOYEE).status_code == 200  # a known address
    for n in range(12):  # a botnet: 12 addresses, one guess each
        assert login(at(f"198.18.0.{n + 1}"), EMPLOYEE, "botnet guess").status_code == 401
    fresh = at("198.18.1.1")
    resp = login(fresh, EMPLOYEE)
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) <= settings.login_account_spacing_seconds
    # The owner's usual address is not slowed; a new address waits seconds, not a lock-out.
    assert login(owner_home, EMPLOYEE).status_code == 200
    clock.advance(settings.login_account_spacing_seconds)
    assert login(fresh, EMPLOYEE).status_code == 200


def test_admins_unlock_sign_in(world: World, at: Any, clock: Clock) -> None:
    attacker = at(ATTACKER)
    for _ in range(world.runtime.settings.login_max_failures):
        login(attacker, EMPLOYEE, "guess")
    assert login(attacker, EMPLOYEE).status_code == 429
    path = f"{API}/tenants/{world.a.id}/users/{world.a.employee.user_id}/sign-in-unlock"
    # Another tenant's admin does not see the user; the employee may not unlock.
    other = f"{API}/tenants/{world.b.id}/users/{world.a.employee.user_id}/sign-in-unlock"
    assert world.client.post(other, headers=world.b.admin.headers).status_code == 404
    assert world.client.post(path, headers=world.b.admin.headers).status_code == 404
    assert world.client.post(path, headers=world.a.employee.headers).status_code == 403
    resp = world.client.post(path, headers=world.a.admin.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["cleared_failures"] == world.runtime.settings.login_max_failures
    assert login(attacker, EMPLOYEE).status_code == 200
    # The operator admin unlocks staff; audited both times.
    staff = world.operators["auditor"]
    for _ in range(world.runtime.settings.login_max_failures):
        login(attacker, "auditor@operator.example", "guess")
    assert login(attacker, "auditor@operator.example").status_code == 429
    staff_path = f"{API}/operator/staff/{staff.user_id}/sign-in-unlock"
    assert world.client.post(staff_path, headers=world.a.admin.headers).status_code == 403
    resp = world.client.post(staff_path, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    assert login(attacker, "auditor@operator.example").status_code == 200
    events = world.client.get(
        f"{API}/audit/events", params={"action": "sign_in_unlocked"}, headers=world.admin.headers
    ).json()
    assert events["count"] == 2


# --- TOTP ---------------------------------------------------------------------------------------
def test_totp_code_works_once(world: World) -> None:
    totp = enable_totp(world, world.a.admin.headers)
    code = next_code(totp)
    email = "tenant_admin@a.example"
    assert login(world.client, email, totp_code=code).status_code == 200
    replay = login(world.client, email, totp_code=code)
    assert replay.status_code == 401
    # An older code (still inside the drift window) is refused too once a later one was used.
    assert login(world.client, email, totp_code=totp.now()).status_code == 401


def test_missing_totp_code_answers_like_a_wrong_password_and_counts(
    world: World, at: Any, clock: Clock
) -> None:
    enable_totp(world, world.a.admin.headers)
    email = "tenant_admin@a.example"
    guesser = at(ATTACKER)
    right = login(guesser, email)  # right password, no code
    wrong = login(guesser, email, "a wrong password altogether")
    assert right.status_code == wrong.status_code == 401
    assert right.json() == wrong.json()
    assert right.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")
    for _ in range(world.runtime.settings.login_max_failures - 2):
        assert login(guesser, email).status_code == 401
    assert login(guesser, email).status_code == 429  # counted like failures


# --- sessions -----------------------------------------------------------------------------------
def test_sessions_are_listed_and_revoked(world: World, at: Any) -> None:
    laptop = at(OWNER)
    first = bearer(
        laptop.post(
            f"{API}/auth/login",
            json={"email": EMPLOYEE, "password": PASSWORD},
            headers={"User-Agent": "tongdao-cli/0.1"},
        )
    )
    second = bearer(login(at("198.51.100.21"), EMPLOYEE))
    third = bearer(login(at("198.51.100.22"), EMPLOYEE))
    listed = world.client.get(f"{API}/auth/sessions", headers=first).json()
    assert listed["count"] == 3
    mine = [s for s in listed["data"] if s["current"]]
    assert len(mine) == 1
    assert mine[0]["source_ip"] == OWNER
    assert mine[0]["user_agent"] == "tongdao-cli/0.1"
    assert {s["source_ip"] for s in listed["data"]} == {OWNER, "198.51.100.21", "198.51.100.22"}
    second_id = next(s["id"] for s in listed["data"] if s["source_ip"] == "198.51.100.21")
    # Another user cannot see or end them.
    assert (
        world.client.get(f"{API}/auth/sessions", headers=world.a.admin.headers).json()["count"] == 0
    )
    gone = world.client.delete(f"{API}/auth/sessions/{second_id}", headers=world.a.admin.headers)
    assert gone.status_code == 404
    # End one, then every other.
    resp = world.client.delete(f"{API}/auth/sessions/{second_id}", headers=first)
    assert resp.status_code == 204
    assert world.client.get(f"{API}/auth/me", headers=second).status_code == 401
    resp = world.client.post(f"{API}/auth/sessions/revoke-others", headers=first)
    assert resp.json() == {"revoked": 1}
    assert world.client.get(f"{API}/auth/me", headers=third).status_code == 401
    assert world.client.get(f"{API}/auth/me", headers=first).status_code == 200
    # API tokens are not sessions: the employee's token still works.
    assert world.client.get(f"{API}/auth/me", headers=world.a.employee.headers).status_code == 200


def test_password_change_revokes_other_sessions_and_tokens(world: World, at: Any) -> None:
    current = bearer(login(at(OWNER), EMPLOYEE))
    other = bearer(login(at("198.51.100.21"), EMPLOYEE))
    token = world.a.employee.headers
    resp = world.client.post(
        f"{API}/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new long passphrase"},
        headers=current,
    )
    assert resp.status_code == 204, resp.text
    assert world.client.get(f"{API}/auth/me", headers=current).status_code == 200  # kept
    assert world.client.get(f"{API}/auth/me", headers=other).status_code == 401
    assert world.client.get(f"{API}/auth/me", headers=token).status_code == 401
    events = world.client.get(
        f"{API}/audit/events", params={"action": "password_changed"}, headers=world.admin.headers
    ).json()["data"]
    assert events[0]["after"] == {"revoked_credentials": 2}


def test_wrong_current_password_is_throttled_like_a_sign_in(world: World, clock: Clock) -> None:
    headers = world.a.employee.headers
    body = {"current_password": "not it", "new_password": "a brand new long passphrase"}
    for _ in range(world.runtime.settings.login_max_failures):
        resp = world.client.post(f"{API}/auth/password", json=body, headers=headers)
        assert resp.status_code == 422
    resp = world.client.post(f"{API}/auth/password", json=body, headers=headers)
    assert resp.status_code == 429


# --- what a session may mint --------------------------------------------------------------------
def test_a_session_cannot_mint_a_long_lived_token_alone(world: World, at: Any) -> None:
    session = bearer(login(at(OWNER), EMPLOYEE))
    body: dict[str, Any] = {"name": "ci", "scopes": ["read", "write"], "expires_in_days": 365}
    resp = world.client.post(f"{API}/tokens", json=body, headers=session)
    assert resp.status_code == 422
    assert "current_password" in resp.json()["error"]["fields"]
    body["current_password"] = PASSWORD
    resp = world.client.post(f"{API}/tokens", json=body, headers=session)
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"] == {"expires_in_days": "must be at most 90"}
    body["current_password"] = "a guess"
    body["expires_in_days"] = 90
    resp = world.client.post(f"{API}/tokens", json=body, headers=session)
    assert resp.json()["error"]["fields"] == {"current_password": "is wrong"}
    body["current_password"] = PASSWORD
    resp = world.client.post(f"{API}/tokens", json=body, headers=session)
    assert resp.status_code == 201, resp.text
    expires = datetime.fromisoformat(resp.json()["expires_at"])
    assert expires <= datetime.now(UTC) + timedelta(days=90, minutes=1)


def test_minting_with_totp_on_needs_a_code(world: World) -> None:
    headers = world.a.admin.headers
    totp = enable_totp(world, headers)
    body = {"name": "ci", "current_password": PASSWORD}
    resp = world.client.post(f"{API}/tokens", json=body, headers=headers)
    assert resp.json()["error"]["fields"] == {"totp_code": "required: this account uses TOTP"}
    resp = world.client.post(
        f"{API}/tokens", json={**body, "totp_code": next_code(totp)}, headers=headers
    )
    assert resp.status_code == 201, resp.text


# --- the password policy ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("passwordpassword", "repeated"),
        ("fourteen chars", "at least 15"),
        ("iloveyou12345678", "breached"),
        ("PASSWORD1234567890", "breached"),
        ("123456789012345678", "run of keys"),
        ("employee@a.example", "your account"),
    ],
)
def test_weak_passwords_are_refused(world: World, password: str, why: str) -> None:
    resp = world.client.post(
        f"{API}/auth/password",
        json={"current_password": PASSWORD, "new_password": password},
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 422
    assert why in resp.json()["error"]["fields"]["new_password"]


def test_no_composition_rules_and_a_shorter_password_with_totp(world: World) -> None:
    headers = world.a.admin.headers
    ok = world.client.post(
        f"{API}/auth/password",
        json={"current_password": PASSWORD, "new_password": "zzzz yyyy xxxx w"},
        headers=headers,
    )
    assert ok.status_code == 204, ok.text  # lowercase letters and spaces only: fine
    short = {"current_password": "zzzz yyyy xxxx w", "new_password": "Kq7mZp2w"}
    resp = world.client.post(f"{API}/auth/password", json=short, headers=headers)
    assert "at least 15" in resp.json()["error"]["fields"]["new_password"]
    totp = enable_totp(world, headers, password=short["current_password"])
    resp = world.client.post(f"{API}/auth/password", json=short, headers=headers)
    assert resp.status_code == 204, resp.text  # 8 characters are enough with a second factor
    # Turning TOTP off with an 8-character password needs a new, longer one in the same call.
    disable = {"code": next_code(totp), "current_password": "Kq7mZp2w"}
    resp = world.client.post(f"{API}/auth/totp/disable", json=disable, headers=headers)
    assert resp.status_code == 422
    assert "new_password" in resp.json()["error"]["fields"]
    me = world.client.get(f"{API}/auth/me", headers=headers).json()
    assert me["totp_enabled"] is True
    disable = {**disable, "new_password": "long enough to stand alone"}  # the code is unspent
    resp = world.client.post(f"{API}/auth/totp/disable", json=disable, headers=headers)
    assert resp.status_code == 204, resp.text
    assert (
        login(world.client, "tenant_admin@a.example", "long enough to stand alone").status_code
        == 200
    )


def test_the_blocklist_ships_with_the_package() -> None:
    from importlib import resources

    from tongdao.auth.passwords import BLOCKLIST_FILE, blocklist

    assert resources.files("tongdao.auth").joinpath(BLOCKLIST_FILE).is_file()
    words = blocklist()
    assert len(words) > 40_000
    assert {"password", "123456", "qwerty", "iloveyou"} <= words


def test_session_rows_keep_where_they_came_from(world: World, at: Any) -> None:
    bearer(login(at(OWNER), EMPLOYEE))
    with world.runtime.db.session() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.kind == "session")).one()
        assert row.source_ip == OWNER


@pytest.mark.parametrize("code", ["１２３４５６", "12345é", " 123456 "])
def test_odd_totp_codes_are_just_wrong(world: World, code: str) -> None:
    headers = world.a.admin.headers
    enable_totp(world, headers)
    resp = login(world.client, "tenant_admin@a.example", totp_code=code)
    assert resp.status_code == 401, resp.text
    setup = world.client.post(
        f"{API}/auth/totp/disable",
        json={"code": code, "current_password": PASSWORD},
        headers=headers,
    )
    assert setup.status_code == 422, setup.text


def test_a_right_password_of_a_disabled_account_is_not_confirmed(world: World) -> None:
    """A disabled account's right password answers like a wrong one (the audit log keeps the
    real reason), so a guess is never confirmed."""
    employee = world.a.employee
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/users/{employee.user_id}",
        json={"state": "disabled"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    right = login(world.client, "employee@a.example")
    wrong = login(world.client, "employee@a.example", password="not the password at all")
    assert right.status_code == wrong.status_code == 401
    assert right.json() == wrong.json()


def test_an_ipv6_attacker_counts_as_one_address_per_64(world: World, at: Any) -> None:
    """Each address of one /64 is the same subscriber: a fresh address in it brings no fresh
    free guesses (it did: the throttle compared whole addresses)."""
    free = world.runtime.settings.login_max_failures
    statuses = [
        login(at(f"fd00:66:0:1::{i + 1:x}"), EMPLOYEE, f"guess number {i}").status_code
        for i in range(free + 3)
    ]
    assert statuses[:free] == [401] * free
    assert set(statuses[free:]) == {429}
    # The owner in another /64 signs in at once.
    assert login(at("fd00:66:0:2::20"), EMPLOYEE).status_code == 200
