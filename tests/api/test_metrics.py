"""The control plane's ``GET /metrics``: scraped and read back with prometheus-client's own
parser, its values following real requests (latency by route template, report ingest, long
polls held, agents online and their applied-version lag), and who may read it.

Who may read it is also in tests/api/test_access_matrix.py (no role's token opens it)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings
from tests.support.live import serve
from tests.support.world import World
from tongdao.api.app import create_app
from tongdao.errors import ConfigurationError
from tongdao.runtime import Runtime
from tongdao.testing.keys import public_key

LOOPBACK = ("127.0.0.1", 50123)
METRICS_TOKEN = "metrics-token-for-the-test-0123456789"


def scrape(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when there is none yet."""
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def label_values(families: dict[str, Metric]) -> set[str]:
    return {v for f in families.values() for s in f.samples for v in s.labels.values()}


@pytest.fixture
def local(app: FastAPI, world: World) -> Iterator[TestClient]:
    """A client on the loopback address (the default TestClient is "testclient")."""
    with TestClient(app, client=LOOPBACK) as client:
        yield client


def metrics_of(client: TestClient | httpx.Client) -> dict[str, Metric]:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return scrape(resp.text)


def test_latency_is_by_route_template_and_follows_requests(local: TestClient, world: World) -> None:
    route = "/api/v1/tenants/{tenant_id}/devices"
    before = metrics_of(local)
    h = world.a.admin.headers
    for _ in range(3):
        assert local.get(f"/api/v1/tenants/{world.a.id}/devices", headers=h).status_code == 200
    # another tenant's: 404 (counted under the same template, as a 4xx)
    assert local.get(f"/api/v1/tenants/{world.b.id}/devices", headers=h).status_code == 404
    stray = f"/api/v1/no-such-thing/{uuid.uuid4()}"
    assert local.get(stray).status_code == 404
    after = metrics_of(local)

    count = "tongdao_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": route}
    assert value(after, count, **labels) - value(before, count, **labels) == 4
    assert value(after, "tongdao_http_request_duration_seconds_sum", **labels) > value(
        before, "tongdao_http_request_duration_seconds_sum", **labels
    )
    answers = "tongdao_http_responses_total"
    assert (
        value(after, answers, **labels, status="2xx")
        - value(before, answers, **labels, status="2xx")
        == 3
    )
    assert value(after, answers, **labels, status="4xx") == 1
    unmatched = {"method": "GET", "route": "unmatched"}
    assert value(after, count, **unmatched) - value(before, count, **unmatched) == 1
    # the raw paths (ids in them) never become label values: bounded cardinality, no leak
    values = label_values(after)
    assert not any(str(world.a.id) in v or str(world.b.id) in v or "no-such" in v for v in values)
    assert all(v.startswith("/") or v in {"unmatched"} for v in after_routes(after))


def after_routes(families: dict[str, Metric]) -> set[str]:
    return {s.labels["route"] for f in families.values() for s in f.samples if "route" in s.labels}


def enrol(local: TestClient, world: World) -> tuple[str, str, dict[str, str]]:
    """A PoP and its gateway's credential: (pop id, pop name, the gateway's headers)."""
    admin = world.admin.headers
    name = f"bj-{uuid.uuid4().hex[:6]}"
    pop = local.post(
        "/api/v1/pops",
        headers=admin,
        json={
            "name": name,
            "region": "CN-BJ",
            "country": "CN",
            "endpoint_host": "198.51.100.1",
            "port_min": 51820,
            "port_max": 51829,
        },
    )
    assert pop.status_code == 201, pop.text
    token = local.post(f"/api/v1/pops/{pop.json()['id']}/enrolments", json={}, headers=admin)
    enrolled = local.post(
        "/api/v1/gateway/enrol", json={"token": token.json()["token"], "hostname": "pop-1"}
    )
    assert enrolled.status_code == 201, enrolled.text
    return pop.json()["id"], name, {"Authorization": f"Bearer {enrolled.json()['credential']}"}


def test_report_ingest_is_counted_with_dropped_rows(
    local: TestClient, world: World, runtime: Runtime
) -> None:
    _pop, _name, gateway = enrol(local, world)
    now = runtime.clock()
    period = {
        "period_start": (now - timedelta(seconds=30)).isoformat(),
        "period_end": now.isoformat(),
    }
    unknown = {
        "tenant_id": str(world.a.id),
        "peer_key": public_key(),
        "peer_kind": "device",
        "peer_ref": str(uuid.uuid4()),
        "rx_bytes": 10,
        "tx_bytes": 20,
    }
    before = metrics_of(local)
    report: dict[str, Any] = {"seq": 1, **period, "peers": [unknown, {"peer_key": "bad"}]}
    resp = local.post("/api/v1/gateway/reports", json=report, headers=gateway)
    assert resp.status_code == 200, resp.text
    assert resp.json()["dropped_reasons"] == {"invalid": 1, "unknown_peer": 1}
    assert local.post("/api/v1/gateway/reports", json=report, headers=gateway).json()["duplicate"]
    far = {**report, "seq": 10_000_000}
    assert local.post("/api/v1/gateway/reports", json=far, headers=gateway).status_code == 409
    after = metrics_of(local)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tongdao_gateway_reports_total", outcome="accepted") == 1
    assert delta("tongdao_gateway_reports_total", outcome="duplicate") == 1
    assert delta("tongdao_gateway_reports_total", outcome="refused") == 1
    assert delta("tongdao_gateway_report_rows_total") == 0  # both rows were dropped
    assert delta("tongdao_gateway_report_rows_dropped_total", reason="unknown_peer") == 1
    assert delta("tongdao_gateway_report_rows_dropped_total", reason="invalid") == 1


def test_long_polls_agents_online_and_their_lag(app: FastAPI, world: World) -> None:
    """A real server (a long poll must be held while the test scrapes)."""
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        with TestClient(app, client=LOOPBACK) as local:
            _pop, name, gateway = enrol(local, world)
        first = http.get("/api/v1/gateway/desired-state?wait=0", headers=gateway).json()
        version = int(first["version"])
        assert version >= 1
        scraped = metrics_of(http)
        assert value(scraped, "tongdao_config_version") == version
        assert value(scraped, "tongdao_agents_online", role="gateway") == 1
        assert value(scraped, "tongdao_agents_online", role="connector") == 0
        # nothing acked yet: the whole version behind
        assert value(scraped, "tongdao_gateway_applied_version_lag", pop=name) == version
        assert value(scraped, "tongdao_gateway_long_poll_waiters") == 0

        done = threading.Event()

        def poll() -> None:
            try:
                http.get(f"/api/v1/gateway/desired-state?after={version}&wait=3", headers=gateway)
            finally:
                done.set()

        thread = threading.Thread(target=poll)
        thread.start()
        try:
            deadline = time.monotonic() + 2
            while value(metrics_of(http), "tongdao_gateway_long_poll_waiters") != 1:
                assert time.monotonic() < deadline, "the long poll was never counted"
                time.sleep(0.05)
            ack = http.post("/api/v1/gateway/ack", json={"version": version}, headers=gateway)
            assert ack.status_code == 204, ack.text
            scraped = metrics_of(http)
            assert value(scraped, "tongdao_gateway_applied_version_lag", pop=name) == 0
        finally:
            assert done.wait(10)
            thread.join(5)
        assert value(metrics_of(http), "tongdao_gateway_long_poll_waiters") == 0


def test_nothing_names_a_tenant_or_a_person(local: TestClient, world: World) -> None:
    for path in (f"/api/v1/tenants/{world.a.id}", f"/api/v1/tenants/{world.a.id}/users"):
        local.get(path, headers=world.admin.headers)
    text = local.get("/metrics").text
    for secret in (
        world.a.data["name_en"],
        world.a.data["name_zh"],
        world.a.data["uscc"],
        str(world.a.id),
        "tenant_admin@a.example",
        world.admin.token,
    ):
        assert secret not in text


# --- who may read it -------------------------------------------------------------------------
def test_loopback_only_without_a_token(app: FastAPI, world: World) -> None:
    with TestClient(app, client=LOOPBACK) as local:
        assert local.get("/metrics").status_code == 200
        # through a proxy on this host (it sets X-Forwarded-For) the client is not local
        proxied = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 404
    with TestClient(app, client=("203.0.113.9", 40000)) as remote:
        assert remote.get("/metrics").status_code == 404
        # a user's API token opens nothing here, the operator admin's included
        assert remote.get("/metrics", headers=world.admin.headers).status_code == 404


def test_a_metrics_token_is_required_when_set(tmp_path: Path, store_url: str) -> None:
    runtime = Runtime.from_settings(make_settings(tmp_path, store_url, metrics_token=METRICS_TOKEN))
    try:
        with TestClient(create_app(runtime), client=("203.0.113.9", 40000)) as remote:
            ok = remote.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert ok.status_code == 200
            assert "tongdao_http_request_duration_seconds" in scrape(ok.text)
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
                refused = remote.get("/metrics", headers=headers)
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "not_authenticated"
        with TestClient(create_app(runtime), client=LOOPBACK) as local:
            assert local.get("/metrics").status_code == 401  # loopback is no exception then
    finally:
        runtime.db.dispose()


def test_a_short_metrics_token_is_refused(tmp_path: Path, store_url: str) -> None:
    with pytest.raises(ConfigurationError, match="metrics_token"):
        make_settings(tmp_path, store_url, metrics_token="short")
