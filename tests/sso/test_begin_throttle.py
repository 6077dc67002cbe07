"""Beginning a single sign-on is throttled per address as sign-in is (tongdao.sso.throttle):
the API's ``POST /auth/sso/begin`` and the console's SSO form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import both_stores
from tests.sso.support import API, connect
from tests.support.console import csrf_of
from tests.support.oidc_provider import OidcProvider
from tests.support.world import World
from tongdao.runtime import Runtime
from tongdao.sso.models import SsoLogin

ATTACKER = "203.0.113.66"
OTHER = "198.51.100.20"
LIMIT = 3


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


def begin(client: TestClient, email: str = "employee@a.example") -> Any:
    return client.post(
        f"{API}/auth/sso/begin",
        json={
            "email": email,
            "redirect_uri": "http://127.0.0.1:49152/callback",
            "binding_challenge": "0" * 64,
        },
    )


class Clock:
    def __init__(self, runtime: Runtime) -> None:
        self.now = datetime.now(UTC)
        runtime.clock = lambda: self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@both_stores
def test_sso_begin_is_throttled_per_address(
    world: World, oidc_provider: OidcProvider, at: Any, runtime: Runtime
) -> None:
    runtime.settings.login_address_max_failures = LIMIT
    clock = Clock(runtime)
    connect(world, oidc_provider)
    attacker = at(ATTACKER)
    for _ in range(LIMIT):
        assert begin(attacker).status_code == 200
    resp = begin(attacker)
    assert resp.status_code == 429, resp.text
    assert resp.json()["error"]["code"] == "throttled"
    wait = int(resp.headers["retry-after"])
    assert 0 < wait <= runtime.settings.login_window_seconds
    # Before the domain is looked up: a throttled caller does not learn which have SSO.
    assert begin(attacker, "someone@nowhere.example").status_code == 429
    # The console's form from that address: the same, as a form error.
    page = attacker.get("/console/sign-in/sso")
    form = attacker.post(
        "/console/sign-in/sso",
        data={"email": "employee@a.example", "csrf_token": csrf_of(page.text)},
    )
    assert form.status_code == 429 and "too many sign-ins from this address" in form.text
    assert form.headers["retry-after"]
    assert (
        attacker.get("/console/sign-in/sso", params={"tenant": str(world.a.id)}).status_code == 429
    )
    # Another address is not affected.
    assert begin(at(OTHER)).status_code == 200
    # Finished sign-ons stop counting (as a success is no failure) ...
    with runtime.db.session() as session:
        session.execute(update(SsoLogin).values(used_at=clock.now))
        session.commit()
    assert begin(attacker).status_code == 200
    # ... and the unfinished ones leave the window.
    for _ in range(LIMIT - 1):
        assert begin(attacker).status_code == 200
    assert begin(attacker).status_code == 429
    clock.advance(runtime.settings.login_window_seconds + 1)
    assert begin(attacker).status_code == 200


@both_stores
def test_an_address_throttled_for_sign_in_is_throttled_for_sso(
    world: World, oidc_provider: OidcProvider, at: Any, runtime: Runtime
) -> None:
    runtime.settings.login_address_max_failures = LIMIT
    connect(world, oidc_provider)
    attacker = at(ATTACKER)
    for n in range(LIMIT):
        resp = attacker.post(
            f"{API}/auth/login",
            json={"email": f"nobody{n}@a.example", "password": "Summer2026!"},
        )
        assert resp.status_code == 401, resp.text
    assert begin(attacker).status_code == 429
    assert begin(at(OTHER)).status_code == 200
