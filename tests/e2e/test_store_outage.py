"""PostgreSQL stopped under a running server (issue 10): while it is down every request that
needs the store answers JSON 503 with Retry-After and the log says so once per kind, with no
traceback; once it is back, the same requests succeed.

A real uvicorn on loopback (with its lifespan, so the replica's LISTEN thread runs too) over a
PostgreSQL cluster of the test's own, which it stops and starts again (the session's shared
cluster is left alone).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings, need
from tests.support.live import serve
from tests.support.world import World
from tongdao.api.app import create_app
from tongdao.runtime import Runtime
from tongdao.store import migrate
from tongdao.testing.keys import public_key
from tongdao.testing.postgres import PostgresCluster, find_bindir

API = "/api/v1"


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    if find_bindir() is None:
        need("PostgreSQL")
    cluster = PostgresCluster(port=55000 + os.getpid() % 1000)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def outage_runtime(own_cluster: PostgresCluster, tmp_path: Path) -> Iterator[Runtime]:
    url = own_cluster.create_database("outage")
    migrate.upgrade(url)
    runtime = Runtime.from_settings(make_settings(tmp_path, url))
    try:
        yield runtime
    finally:
        runtime.db.dispose()


def _requests(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx arguments): reads, a write, and a sign-in, as different callers."""
    a = world.a
    return [
        ("GET", f"{API}/tenants", {"headers": world.admin.headers}),
        ("GET", f"{API}/tenants/{a.id}/devices", {"headers": a.admin.headers}),
        ("GET", f"{API}/audit/events", {"headers": world.operators["auditor"].headers}),
        (
            "POST",
            f"{API}/tenants/{a.id}/devices",
            {"headers": a.employee.headers, "json": {"name": "laptop", "public_key": ""}},
        ),
        ("POST", f"{API}/auth/login", {"json": {"email": "nobody@a.example", "password": "x"}}),
    ]


def _send(http: httpx.Client, request: tuple[str, str, dict[str, Any]]) -> httpx.Response:
    method, path, kwargs = request
    if kwargs.get("json", {}).get("public_key") == "":
        kwargs = {**kwargs, "json": {**kwargs["json"], "public_key": public_key()}}
    return http.request(method, path, **kwargs)


def test_a_stopped_postgresql_answers_503_then_recovers(
    own_cluster: PostgresCluster, outage_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(outage_runtime)
    world = World.build(outage_runtime, TestClient(app))
    requests = _requests(world)
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)  # uvicorn's loggers do not reach the root logger
    try:
        with serve(app, lifespan="on") as base, httpx.Client(base_url=base, timeout=20) as http:
            for request in requests:
                assert _send(http, request).status_code in (200, 201, 401), request

            own_cluster.halt()
            caplog.clear()
            caplog.set_level(logging.INFO)
            started = time.monotonic()
            answers = [_send(http, requests[i % len(requests)]) for i in range(50)]
            assert http.get("/readyz").status_code == 503
            assert http.get("/healthz").status_code == 200
            time.sleep(1.5)  # the LISTEN thread retries every second meanwhile
            down = time.monotonic() - started
            for resp in answers:
                assert resp.status_code == 503, (resp.request.url, resp.text)
                assert resp.headers["content-type"] == "application/json"
                assert resp.headers["retry-after"] == "5"
                assert resp.json()["error"]["code"] == "store_unavailable"
            records = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert not [r for r in records if r.exc_info], "tracebacks were logged"
            store = [r for r in records if r.name == "tongdao.store"]
            kinds = {r.getMessage().split(":")[0] for r in store}
            # One line per kind of failure (a lost connection, a refused one, LISTEN), not one
            # per request or retry.
            assert len(store) == len(kinds) <= 4, [r.getMessage() for r in store]
            assert len(records) <= len(store) + 3, [r.getMessage() for r in records]
            print(f"\n{len(answers)} requests in {down:.1f} s while down; log lines: {kinds}")

            own_cluster.resume()
            deadline = time.monotonic() + 30
            while _send(http, requests[0]).status_code != 200:
                assert time.monotonic() < deadline, "the server did not recover"
                time.sleep(0.2)
            for request in requests:
                assert _send(http, request).status_code in (200, 201, 401), request
            assert http.get("/readyz").status_code == 200
    finally:
        uvicorn_log.removeHandler(caplog.handler)
