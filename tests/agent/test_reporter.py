"""The usage reporter against scripted engine counters and an in-memory control plane with the
server's seq semantics: deltas, engine restarts, failed sends, lost answers, restarts of the
reporter from its state dir, chunking; and the Prometheus exposition."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tongdao import __version__
from tongdao.agent import reporter as reporter_mod
from tongdao.agent.engine import (
    DeviceState,
    EngineBuild,
    EngineError,
    FakeEngine,
    InterfaceNotFound,
    PeerState,
)
from tongdao.agent.gateway import GatewayAgent
from tongdao.agent.reporter import AgentMetrics, MetricsServer, Reporter, ReportError
from tongdao.agent.state import StateDir
from tongdao.gateway.desired import DesiredState, Peer, TenantInterface
from tongdao.testing.keys import public_key

TENANT = uuid.UUID("00000000-0000-4000-8000-00000000000a")
IFNAME = "wgt51820"


class ScriptedEngine(FakeEngine):
    """``get`` answers the counters the test sets (or raises what it sets)."""

    def __init__(self) -> None:
        super().__init__()
        self.counters: dict[str, dict[str, tuple[int, int, float | None]]] = {}
        self.error: Exception | None = None

    def set(
        self, key: str, rx: int, tx: int, handshake: float | None = None, ifname: str = IFNAME
    ) -> None:
        self.counters.setdefault(ifname, {})[key] = (rx, tx, handshake)

    def get(self, ifname: str) -> DeviceState:
        if self.error is not None:
            raise self.error
        if ifname not in self.counters:
            raise InterfaceNotFound(ifname)
        peers = {
            key: PeerState(key, (), "198.51.100.2:40000", hs, rx, tx, None, False)
            for key, (rx, tx, hs) in self.counters[ifname].items()
        }
        return DeviceState(ifname, True, None, 51820, None, peers)


@dataclass
class Server:
    """The control plane's report semantics: store once per seq, duplicates answer so."""

    last_seq: int = 0
    rows: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)  # every request, in order
    down: bool = False
    lose_answer: bool = False  # store, then fail as if the answer never came back
    refuse: int | None = None  # answer every request with this status
    max_step: int | None = None  # a seq further above last_seq: 409 seq_out_of_range
    drops: dict[str, str] = field(default_factory=dict)  # peer key → why the server drops it

    def __call__(self, report: dict[str, Any]) -> Mapping[str, Any]:
        self.reports.append(dict(report))
        if self.down:
            raise ReportError("connection refused")
        if self.refuse is not None:
            raise ReportError("refused", self.refuse)
        if report["seq"] <= self.last_seq:
            return {"accepted": False, "duplicate": True, "stored": 0, "last_seq": self.last_seq}
        if self.max_step is not None and report["seq"] > self.last_seq + self.max_step:
            raise ReportError(
                "seq out of range", 409, code="seq_out_of_range", last_seq=self.last_seq
            )
        keys = [p["peer_key"] for p in report["peers"]]
        assert len(keys) == len(set(keys)), "a peer twice in one report"
        reasons: dict[str, int] = {}
        for p in report["peers"]:
            why = self.drops.get(p["peer_key"])
            if why is not None:
                reasons[why] = reasons.get(why, 0) + 1
                continue
            self.rows[(report["seq"], p["peer_key"])] = p
        self.last_seq = report["seq"]
        if self.lose_answer:
            raise ReportError("read timeout")
        return {
            "accepted": True,
            "duplicate": False,
            "stored": len(keys) - sum(reasons.values()),
            "last_seq": report["seq"],
            "dropped": sum(reasons.values()),
            "dropped_reasons": reasons,
        }

    def totals(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for (_seq, key), p in self.rows.items():
            rx, tx = out.get(key, (0, 0))
            out[key] = (rx + p["rx_bytes"], tx + p["tx_bytes"])
        return out


@dataclass
class Bench:
    state: StateDir
    engine: ScriptedEngine
    server: Server
    keys: list[str]
    now: list[float]

    def reporter(self, **kw: Any) -> Reporter:
        return Reporter(self.engine, self.state, self.server, clock=lambda: self.now[0], **kw)

    def tick(self, r: Reporter, seconds: float = 30) -> bool:
        self.now[0] += seconds
        return r.tick()


def desired(keys: list[str], version: int = 1) -> DesiredState:
    peers = tuple(
        Peer(public_key=k, kind="device", ref=f"dev-{i}", allowed_ips=(f"100.64.0.{i + 2}/32",))
        for i, k in enumerate(keys)
    )
    tenant = TenantInterface(
        tenant_id=TENANT,
        ifname=IFNAME,
        listen_port=51820,
        table=51820,
        address_v4="100.64.0.1/22",
        address_v6="fd00::1/64",
        pools=("100.64.0.0/22", "fd00::/64"),
        peers=peers,
    )
    return DesiredState(version=version, pop_id=uuid.uuid4(), tenants=(tenant,))


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    keys = [public_key() for _ in range(5)]
    state = StateDir(tmp_path / "state")
    state.save_applied(desired(keys))
    return Bench(state, ScriptedEngine(), Server(), keys, [1_700_000_000.0])


def test_deltas_of_cumulative_counters(bench: Bench) -> None:
    a, b = bench.keys[:2]
    r = bench.reporter()
    bench.engine.set(a, 100, 200, 1_699_999_990.0)
    bench.engine.set(b, 0, 0)
    assert bench.tick(r)
    first = bench.server.reports[-1]
    assert first["seq"] == 1
    assert [(p["peer_key"], p["rx_bytes"], p["tx_bytes"]) for p in first["peers"]] == [
        (a, 100, 200)
    ]  # b: no bytes and no handshake, left out
    assert first["peers"][0]["peer_kind"] == "device"
    assert first["peers"][0]["peer_ref"] == "dev-0"
    assert first["peers"][0]["tenant_id"] == str(TENANT)
    assert first["peers"][0]["last_handshake"].startswith("2023-11-14T22:13:10")
    assert first["period_start"] <= first["period_end"]
    bench.engine.set(a, 150, 260, 1_699_999_990.0)
    bench.engine.set(b, 0, 0, 1_700_000_050.0)  # a handshake and no bytes yet: reported
    assert bench.tick(r)
    second = bench.server.reports[-1]
    assert second["seq"] == 2
    assert {p["peer_key"]: (p["rx_bytes"], p["tx_bytes"]) for p in second["peers"]} == {
        a: (50, 60),
        b: (0, 0),
    }
    assert second["period_start"] == first["period_end"]
    # Nothing new: nothing sent.
    assert bench.tick(r)
    assert len(bench.server.reports) == 2
    assert bench.server.totals() == {a: (150, 260), b: (0, 0)}


def test_engine_restart_counts_the_new_value(bench: Bench) -> None:
    a, b = bench.keys[:2]
    r = bench.reporter()
    bench.engine.set(a, 1000, 2000)
    bench.engine.set(b, 10, 10)
    bench.tick(r)
    bench.engine.counters.clear()  # the daemon died: no socket
    bench.tick(r)
    bench.engine.set(a, 30, 40)  # a new daemon counts from zero
    bench.tick(r)
    bench.engine.set(a, 35, 45)
    bench.engine.set(b, 4, 0)  # the peer was removed and re-added: counter went down
    bench.tick(r)
    assert bench.server.totals() == {a: (1035, 2045), b: (14, 10)}


def test_a_failed_read_keeps_the_baseline(bench: Bench) -> None:
    a = bench.keys[0]
    r = bench.reporter()
    bench.engine.set(a, 100, 100)
    bench.tick(r)
    bench.engine.error = EngineError("UAPI timed out")
    bench.tick(r)
    bench.engine.error = None
    bench.engine.set(a, 150, 170)
    bench.tick(r)
    assert bench.server.totals() == {a: (150, 170)}  # not 250: nothing counted twice
    assert r.counters.sample_errors == 1


def test_unknown_peers_and_interfaces_are_not_reported(bench: Bench) -> None:
    stranger = public_key()
    r = bench.reporter()
    bench.engine.set(stranger, 500, 500)
    bench.engine.set(bench.keys[0], 1, 1, ifname="wgt9")  # not in the applied state
    bench.engine.set(bench.keys[1], 2, 2)
    bench.tick(r)
    assert bench.server.totals() == {bench.keys[1]: (2, 2)}


def test_a_failed_send_is_retried_with_the_same_seq_and_data(bench: Bench) -> None:
    a, b = bench.keys[:2]
    r = bench.reporter()
    bench.server.down = True
    bench.engine.set(a, 100, 100)
    assert not bench.tick(r)
    pending = bench.server.reports[-1]
    bench.engine.set(a, 130, 100)
    bench.engine.set(b, 5, 5)
    assert not bench.tick(r)
    assert bench.server.reports[-1] == pending  # the same seq, the same data
    assert r.counters.send_failures == 2
    bench.server.down = False
    assert bench.tick(r)
    sent = bench.server.reports[-2:]
    assert sent[0] == pending
    # The bytes that came while it was pending go in the next seq, none lost.
    assert sent[1]["seq"] == pending["seq"] + 1
    assert {p["peer_key"]: p["rx_bytes"] for p in sent[1]["peers"]} == {a: 30, b: 5}
    assert bench.server.totals() == {a: (130, 100), b: (5, 5)}


def test_a_lost_answer_is_a_duplicate_not_a_double_count(bench: Bench) -> None:
    a = bench.keys[0]
    r = bench.reporter()
    bench.server.lose_answer = True
    bench.engine.set(a, 100, 100)
    assert not bench.tick(r)
    bench.server.lose_answer = False
    bench.engine.set(a, 120, 100)
    assert bench.tick(r)
    assert [rep["seq"] for rep in bench.server.reports] == [1, 1, 2]
    assert r.counters.reports_duplicate == 1
    assert bench.server.totals() == {a: (120, 100)}


@pytest.mark.parametrize("lost", [False, True])
def test_a_restarted_reporter_resumes_from_the_state_dir(bench: Bench, lost: bool) -> None:
    """Killed with a report pending (sent and stored but unanswered, or never delivered):
    a new reporter sends the same seq again and counts every byte once."""
    a, b = bench.keys[:2]
    first = bench.reporter()
    bench.engine.set(a, 100, 100)
    bench.engine.set(b, 7, 7)
    if lost:
        bench.server.lose_answer = True
    else:
        bench.server.down = True
    assert not bench.tick(first)
    seq = bench.server.reports[-1]["seq"]
    del first  # the process dies here
    bench.server.down = bench.server.lose_answer = False
    bench.engine.set(a, 160, 100)
    second = bench.reporter()
    assert second.pending and second.pending[0]["seq"] == seq
    assert bench.tick(second)
    assert [rep["seq"] for rep in bench.server.reports[-2:]] == [seq, seq + 1]
    assert bench.server.totals() == {a: (160, 100), b: (7, 7)}
    # And again, idle: nothing more.
    third = bench.reporter()
    assert bench.tick(third)
    assert bench.server.totals() == {a: (160, 100), b: (7, 7)}
    assert third.next_seq == seq + 2


def test_checkpoint_keeps_the_last_interval_for_the_next_start(bench: Bench) -> None:
    a = bench.keys[0]
    r = bench.reporter()
    bench.engine.set(a, 10, 10)
    bench.tick(r)
    bench.engine.set(a, 25, 10)
    r.checkpoint()  # on stop: sampled and cut, not sent
    assert len(bench.server.reports) == 1
    again = bench.reporter()
    assert again.send()
    assert bench.server.totals() == {a: (25, 10)}


def test_corrupt_state_starts_afresh(bench: Bench) -> None:
    (bench.state.root / "usage.json").write_text("{not json")
    r = bench.reporter()
    assert r.pending == [] and r.next_seq == 1


def test_big_reports_are_chunked_with_consecutive_seqs(bench: Bench) -> None:
    r = bench.reporter(max_peers=2)
    for i, key in enumerate(bench.keys):
        bench.engine.set(key, i + 1, 1)
    assert bench.tick(r)
    assert [(rep["seq"], len(rep["peers"])) for rep in bench.server.reports] == [
        (1, 2),
        (2, 2),
        (3, 1),
    ]
    assert sum(rx for rx, _ in bench.server.totals().values()) == 15


def test_too_large_splits_refused_drops_and_stale_seqs_renumber(bench: Bench) -> None:
    a, b, c = bench.keys[:3]
    r = bench.reporter()
    calls: list[int] = []

    def sender(report: dict[str, Any]) -> Mapping[str, Any]:
        calls.append(len(report["peers"]))
        if len(report["peers"]) > 1:
            raise ReportError("too large", 413)
        return bench.server(report)

    r.sender = sender
    for key in (a, b, c):
        bench.engine.set(key, 1, 1)
    assert bench.tick(r)
    assert calls == [3, 1, 2, 1, 1]
    assert [rep["seq"] for rep in bench.server.reports] == [1, 2, 3]
    assert len(bench.server.totals()) == 3
    # 422: dropped (it can never be stored), the next report goes on.
    r.sender = bench.server
    bench.server.refuse = 422
    bench.engine.set(a, 2, 1)
    assert bench.tick(r)
    assert r.counters.reports_rejected == 1
    bench.server.refuse = None
    # The server is ahead (an old state dir): chunks never sent before are renumbered above
    # its last seq when it answers "duplicate", and none is lost.
    bench.server.last_seq = 100
    r.max_peers = 1
    for key in (a, b):
        bench.engine.set(key, 5, 5)
    assert bench.tick(r)
    assert [rep["seq"] for rep in bench.server.reports[-3:]] == [5, 101, 102]
    assert r.next_seq == 103
    assert {k for s, k in bench.server.rows if s > 100} == {a, b}
    assert sum(rx for rx, _ in bench.server.totals().values()) == 3 + 3 + 4


def test_a_seq_far_ahead_of_the_server_is_renumbered_not_lost(bench: Bench) -> None:
    """The server bounds how far a seq may jump (409 seq_out_of_range with its last_seq):
    the pending chunks are renumbered from there and sent, nothing is dropped."""
    a, b = bench.keys[:2]
    r = bench.reporter(max_peers=1)
    bench.engine.set(a, 10, 10)
    assert bench.tick(r)
    r.data["next_seq"] = 2**63 - 1 - 5  # a corrupted (or re-enrolled) state dir
    bench.server.max_step = 1000
    for key in (a, b):
        bench.engine.set(key, 20, 20)
    assert bench.tick(r)
    assert [rep["seq"] for rep in bench.server.reports[-3:]] == [2**63 - 6, 2, 3]
    assert r.next_seq == 4
    assert sum(rx for rx, _ in bench.server.totals().values()) == 10 + 10 + 20
    # A server that keeps refusing is not looped on: the chunk waits for the next tick.
    bench.server.max_step = -1
    bench.engine.set(a, 21, 21)
    assert not bench.tick(r)
    assert len(r.pending) == 1


def test_rows_the_server_drops_are_counted_per_reason(bench: Bench) -> None:
    a, b, c = bench.keys[:3]
    r = bench.reporter()
    bench.server.drops = {a: "unknown_peer", b: "unknown_peer", c: "over_rate"}
    for key in (a, b, c, bench.keys[3]):
        bench.engine.set(key, 1, 1)
    assert bench.tick(r)
    assert r.counters.reports_sent == 1 and not r.pending  # the report is not resent
    assert r.counters.rows_dropped == {"unknown_peer": 2, "over_rate": 1}
    families = scrape(AgentMetrics(bench.state, r).render())
    assert families["tongdao_agent_report_rows_dropped"].type == "counter"
    assert samples(families, "tongdao_agent_report_rows_dropped_total") == {
        (("reason", "over_rate"),): 1,
        (("reason", "unknown_peer"),): 2,
    }


def test_send_report_reads_the_servers_error_code_and_last_seq() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            409,
            json={
                "error": {"code": "seq_out_of_range", "message": "too far", "fields": {}},
                "last_seq": 41,
            },
        )

    control = SimpleNamespace(
        http=httpx.Client(transport=httpx.MockTransport(handler), base_url="http://cp")
    )
    with pytest.raises(ReportError) as info:
        reporter_mod.send_report(control, {"seq": 1})  # type: ignore[arg-type]
    assert (info.value.status, info.value.code, info.value.last_seq) == (
        409,
        "seq_out_of_range",
        41,
    )
    assert not info.value.permanent


def test_interval_and_chunk_size_are_checked(bench: Bench) -> None:
    with pytest.raises(ValueError, match="interval"):
        bench.reporter(interval=0)
    with pytest.raises(ValueError, match="max_peers"):
        bench.reporter(max_peers=0)


def scrape(text: str) -> dict[str, Metric]:
    """The exposition read back by prometheus-client's own parser, by family name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict[str, Metric], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Sample ``name``'s values by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in families.values()
        for sample in family.samples
        if sample.name == name
    }


def test_metrics_exposition(bench: Bench) -> None:
    a = bench.keys[0]
    r = bench.reporter()
    bench.engine.set(a, 100, 200, 1_700_000_000.5)
    bench.tick(r)
    metrics = AgentMetrics(bench.state, r)
    metrics.engine = EngineBuild("wireguard-go", "/usr/bin/wireguard-go", "0.0.20220316", "dpkg")
    metrics.applied(True)
    metrics.applied(False)
    server = MetricsServer(metrics.registry, 0).start()
    try:
        resp = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = scrape(resp.text)
        # the values follow what happens: one more apply, seen by the next scrape
        metrics.applied(True)
        again = scrape(httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text)
    finally:
        server.stop()
    assert server.httpd is not None and server.httpd.server_address[0] == "127.0.0.1"
    assert samples(families, "tongdao_agent_applied_version") == {(): 1}
    assert samples(families, "tongdao_agent_apply_errors_total") == {(): 1}
    assert samples(families, "tongdao_agent_applies_total") == {(): 2}
    assert samples(again, "tongdao_agent_applies_total") == {(): 3}
    assert samples(families, "tongdao_agent_reports_sent_total") == {(): 1}
    assert samples(families, "tongdao_agent_reports_pending") == {(): 0}
    assert samples(families, "tongdao_agent_info") == {(("version", __version__),): 1}
    assert samples(families, "tongdao_agent_engine_info") == {
        (("engine", "wireguard-go"), ("outdated", "true"), ("version", "0.0.20220316")): 1
    }
    assert families["tongdao_peer_rx_bytes"].type == "counter"
    labels = tuple(
        sorted(
            {
                "tenant": str(TENANT),
                "ifname": IFNAME,
                "peer": a,
                "kind": "device",
                "ref": "dev-0",
            }.items()
        )
    )
    assert samples(families, "tongdao_peer_rx_bytes_total") == {labels: 100}
    assert samples(families, "tongdao_peer_tx_bytes_total") == {labels: 200}
    assert samples(families, "tongdao_peer_last_handshake_seconds") == {labels: 1700000000.5}


def test_each_agent_has_a_registry_of_its_own(bench: Bench, tmp_path: Path) -> None:
    """Two agents in one process (as in tests): their metrics neither clash nor mix."""
    first = AgentMetrics(bench.state)
    second = AgentMetrics(StateDir(tmp_path / "other"))
    first.applied(True)
    assert samples(scrape(first.render()), "tongdao_agent_applies_total") == {(): 1}
    assert samples(scrape(second.render()), "tongdao_agent_applies_total") == {(): 0}


def test_label_values_are_escaped(bench: Bench) -> None:
    r = bench.reporter()
    r.counters.rows_dropped = {'q"\\\n': 1}
    families = scrape(AgentMetrics(bench.state, r).render())
    assert samples(families, "tongdao_agent_report_rows_dropped_total") == {
        (("reason", 'q"\\\n'),): 1
    }


def test_start_runs_next_to_an_agent(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    agent = GatewayAgent("http://127.0.0.1:9", tmp_path / "state", engine=engine)
    applied: list[DesiredState] = []

    def apply(state: DesiredState) -> None:  # stands in for the host-changing applier
        applied.append(state)
        if state.version < 0:
            raise EngineError("boom")

    setattr(agent.applier, "apply", apply)  # noqa: B010
    telemetry = reporter_mod.start(agent, interval=0.05, metrics_port=0)
    try:
        assert telemetry.server is None  # port 0: no metrics server
        assert telemetry.thread.is_alive()
        agent.applier.apply(desired([]))
        with pytest.raises(EngineError):
            agent.applier.apply(desired([], version=-1))
        assert len(applied) == 2
        assert (telemetry.metrics.applies, telemetry.metrics.apply_errors) == (2, 1)
        # Not enrolled yet: ticks run and fail softly; the thread lives on.
        threading.Event().wait(0.2)
        assert telemetry.thread.is_alive()
    finally:
        telemetry.stop()
    assert not telemetry.thread.is_alive()
