"""The key step of signing in under concurrency, on SQLite and PostgreSQL: one challenge
signs in once however many requests race with its answer, and racing answers with rising
counters leave the highest counter stored (a lost update would let a clone's lower counter
pass later)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import both_stores
from tests.store.test_sign_in_races import THREADS, _parallel
from tests.support.authenticator import SoftAuthenticator
from tests.support.world import PASSWORD, World
from tongdao.auth import second_factor
from tongdao.auth.webauthn_models import WebAuthnCredential
from tongdao.errors import AuthenticationError, Throttled
from tongdao.runtime import Ctx, Runtime

API = "/api/v1"
EMAIL = "auditor@operator.example"


def _with_key(runtime: Runtime, client: TestClient) -> SoftAuthenticator:
    login = client.post(f"{API}/auth/login", json={"email": EMAIL, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    key = SoftAuthenticator(origin=runtime.settings.webauthn_rp[1])
    options = client.post(f"{API}/auth/webauthn/registration-options", headers=headers).json()
    body = {"name": "K", "credential": key.create(options), "current_password": PASSWORD}
    assert client.post(f"{API}/auth/webauthn/credentials", json=body, headers=headers).is_success
    return key


def _pending(client: TestClient) -> dict[str, Any]:
    resp = client.post(f"{API}/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "webauthn_required"
    data: dict[str, Any] = resp.json()
    return data


def _finish(runtime: Runtime, pending: str, answer: dict[str, Any], n: int = 0) -> str:
    # Each from its own address: the throttle's per-address lock does not serialize them.
    source_ip = f"198.51.100.{n + 1}"
    with runtime.db.session() as session:
        ctx = Ctx(session=session, runtime=runtime, source_ip=source_ip)
        try:
            second_factor.finish_sign_in(ctx, pending, answer, source_ip)
        except AuthenticationError:
            return "refused"
        except Throttled:
            return "throttled"
        session.commit()
        return "signed in"


@both_stores
def test_one_challenge_signs_in_once(runtime: Runtime, world: World) -> None:
    runtime.settings.login_max_failures = 100
    key = _with_key(runtime, world.client)
    pending = _pending(world.client)
    # A counter that stays 0 (as many passkeys keep it): only the challenge stops a replay.
    answer = key.get(pending["options"], counter=0)
    outcomes = _parallel(lambda n: _finish(runtime, pending["pending"], answer, n))
    assert sorted(outcomes) == ["refused"] * (THREADS - 1) + ["signed in"], outcomes


@both_stores
def test_racing_counters_leave_the_highest(runtime: Runtime, world: World) -> None:
    runtime.settings.login_max_failures = 100
    key = _with_key(runtime, world.client)
    answers = []
    for n in range(1, THREADS + 1):
        pending = _pending(world.client)
        answers.append((pending["pending"], key.get(pending["options"], counter=n)))
    outcomes = _parallel(lambda n: _finish(runtime, *answers[n], n))
    assert "signed in" in outcomes and not [o for o in outcomes if o.startswith("raised")]
    with runtime.db.session() as session:
        stored = session.scalars(select(WebAuthnCredential.sign_count)).one()
    assert stored == THREADS, outcomes
