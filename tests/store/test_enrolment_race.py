"""One-time enrolment tokens stay one-time under concurrent redemption, on SQLite and
PostgreSQL, and a PoP ends up with one live gateway credential however many enrolments race.

Each redemption is its own HTTP request to a real uvicorn on loopback (so its own thread and
store session), released together by a barrier.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.api.test_gateway import make_pop
from tests.conftest import both_stores
from tests.support.live import serve
from tests.support.world import World
from tongdao.gateway.models import Gateway
from tongdao.runtime import Runtime

CLIENTS = 20
ROUNDS = 3
TIMEOUT = 60.0


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


def _together(work: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """Run ``work(n)`` for n < CLIENTS in as many threads, released at once."""
    start = threading.Barrier(CLIENTS)
    answers: list[httpx.Response | None] = [None] * CLIENTS
    errors: list[BaseException] = []

    def runner(n: int) -> None:
        try:
            start.wait(timeout=30)
            answers[n] = work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "enrolment threads hung"
    assert errors == []
    return [a for a in answers if a is not None]


def _token(world: World, pop: str) -> str:
    resp = world.client.post(
        f"/api/v1/pops/{pop}/enrolments", json={"ttl_hours": 1}, headers=world.admin.headers
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


def _redeem(url: str, token: str, n: int) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/gateway/enrol",
        json={"token": token, "hostname": f"host{n}"},
        timeout=TIMEOUT,
    )


def _works(url: str, credential: str) -> bool:
    resp = httpx.get(
        f"{url}/api/v1/gateway/desired-state",
        params={"wait": 0},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=TIMEOUT,
    )
    assert resp.status_code in (200, 401, 403), resp.text
    return resp.status_code == 200


def _live(runtime: Runtime, pop: str) -> list[Gateway]:
    with runtime.db.session(write=False) as session:
        return list(
            session.scalars(
                select(Gateway).where(
                    Gateway.pop_id == uuid.UUID(pop),
                    Gateway.revoked_at.is_(None),
                )
            )
        )


@both_stores
def test_concurrent_redemptions_of_one_token_issue_one_credential(
    world: World, runtime: Runtime, server_url: str
) -> None:
    pop = make_pop(world, "bj")
    issued: list[str] = []
    for _ in range(ROUNDS):
        token = _token(world, pop)
        answers = _together(lambda n, token=token: _redeem(server_url, token, n))
        codes = sorted(a.status_code for a in answers)
        assert codes == [201] + [401] * (CLIENTS - 1), codes
        issued += [a.json()["credential"] for a in answers if a.status_code == 201]
    # One credential per token was issued; only the last one works (each enrolment of the
    # PoP replaces the one before), and the store holds exactly that one live credential.
    assert len(issued) == ROUNDS
    assert [_works(server_url, c) for c in issued] == [False] * (ROUNDS - 1) + [True]
    assert len(_live(runtime, pop)) == 1


@both_stores
def test_concurrent_enrolments_of_one_pop_leave_one_live_credential(
    world: World, runtime: Runtime, server_url: str
) -> None:
    pop = make_pop(world, "bj")
    tokens = [_token(world, pop) for _ in range(CLIENTS)]
    answers = _together(lambda n: _redeem(server_url, tokens[n], n))
    assert [a.status_code for a in answers] == [201] * CLIENTS
    working = [a for a in answers if _works(server_url, a.json()["credential"])]
    assert len(working) == 1
    live = _live(runtime, pop)
    assert [str(g.id) for g in live] == [working[0].json()["gateway_id"]]
