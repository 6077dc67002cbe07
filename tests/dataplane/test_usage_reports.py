"""Real traffic through a PoP shows up as usage: an unmodified WireGuard client pings through
a real agent (wireguard-go in a namespace), the reporter sends deltas, the API sums them, and
the agent's /metrics shows the engine's counters."""

from __future__ import annotations

import socket
from typing import Any

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.dataplane.test_gateway_agent import Lab, lab, wait_until
from tongdao.agent import reporter
from tongdao.testing import netns

__all__ = ["lab"]  # the fixture, shared with the agent's data-plane test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The one sample ``name`` whose labels include ``labels`` (fails when there is none)."""
    found = [
        sample.value
        for family in families.values()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_traffic_becomes_usage_and_metrics(lab: Lab) -> None:
    ns1, dev1 = lab.device("198.51.100.2", "198.51.100.1", "laptop-1")
    port = _free_port()
    telemetry = reporter.start(lab.agent, interval=0.5, metrics_port=port)
    lab.thread.start()
    try:
        conf = f"/tenants/{lab.world.a.id}/devices/{dev1['id']}/wireguard.conf"
        wait_until(
            lambda: lab.api("GET", conf, lab.world.a.employee.headers).status_code == 200,
            30,
            "the gateway to publish its key",
        )
        wait_until(lambda: dev1["public_key"] in lab.wg_peers(), 30, "the device on the PoP")
        lab.connect(ns1, dev1, "198.51.100.1")
        assert netns.ping(ns1, lab.gateway_address())

        def usage() -> dict[str, Any]:
            resp = lab.api("GET", f"/tenants/{lab.world.a.id}/usage", lab.world.a.employee.headers)
            assert resp.status_code == 200, resp.text
            data: dict[str, Any] = resp.json()
            return data

        wait_until(lambda: usage()["rx_bytes"] > 0, 30, "usage of the device to be reported")
        rows = usage()["rows"]
        assert [r["key"] for r in rows] == [dev1["id"]]
        assert rows[0]["tx_bytes"] > 0
        assert rows[0]["last_handshake"] is not None

        agent = scrape(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        assert value(agent, "tongdao_agent_applied_version") >= 1
        assert value(agent, "tongdao_peer_rx_bytes_total", peer=dev1["public_key"]) > 0
        assert value(agent, "tongdao_agent_apply_errors_total") == 0
        assert value(agent, "tongdao_agent_reports_sent_total") >= 1
        # Every row the real agent sent was a peer of its state: the server dropped none.
        assert agent["tongdao_agent_report_rows_dropped"].samples == []
        assert value(agent, "tongdao_agent_engine_info", outdated="false") == 1

        # The control plane's own /metrics (the lab's server is on loopback: open to it).
        def server() -> dict[str, Metric]:
            resp = httpx.get(f"{lab.url}/metrics", timeout=5)
            assert resp.status_code == 200, resp.text
            return scrape(resp.text)

        wait_until(
            lambda: value(server(), "tongdao_gateway_applied_version_lag", pop="bj-1") == 0,
            20,
            "the gateway to be online and caught up",
        )
        cp = server()
        assert value(cp, "tongdao_agents_online", role="gateway") == 1
        assert value(cp, "tongdao_gateway_reports_total", outcome="accepted") >= 1
        assert value(cp, "tongdao_gateway_report_rows_total") >= 1
        assert cp["tongdao_gateway_report_rows_dropped"].samples == []
        polls = value(
            cp,
            "tongdao_http_request_duration_seconds_count",
            route="/api/v1/gateway/desired-state",
        )
        assert polls >= 1
        wait_until(
            lambda: value(server(), "tongdao_gateway_long_poll_waiters") == 1,
            10,
            "the agent's next long poll to be held",
        )
    finally:
        lab.agent.stop()
        lab.thread.join(20)
        telemetry.stop()
