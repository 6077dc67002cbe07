"""Real traffic through a PoP shows up as usage: an unmodified WireGuard client pings through
a real agent (wireguard-go in a namespace), the reporter sends deltas, the API sums them, and
the agent's /metrics shows the engine's counters."""

from __future__ import annotations

import re
import socket
from typing import Any

import httpx

from tests.dataplane.test_gateway_agent import Lab, lab, wait_until
from tongdao.agent import reporter
from tongdao.testing import netns

__all__ = ["lab"]  # the fixture, shared with the agent's data-plane test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert re.search(r"^tongdao_agent_applied_version [1-9]\d*$", text, re.M), text
        match = re.search(
            r'^tongdao_peer_rx_bytes\{[^}]*peer="'
            + re.escape(dev1["public_key"])
            + r'"[^}]*\} (\d+)$',
            text,
            re.M,
        )
        assert match and int(match.group(1)) > 0, text
        assert "tongdao_agent_apply_errors_total 0" in text
        # Every row the real agent sent was a peer of its state: the server dropped none.
        assert "# TYPE tongdao_agent_report_rows_dropped_total counter" in text
        assert "tongdao_agent_report_rows_dropped_total{" not in text, text
    finally:
        lab.agent.stop()
        lab.thread.join(20)
        telemetry.stop()
