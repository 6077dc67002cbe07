"""Usage reports and Prometheus metrics of a gateway agent.

:class:`Reporter` turns the engine's cumulative per-peer counters into per-report deltas and
sends them to ``POST /api/v1/gateway/reports``; :class:`AgentMetrics` and
:class:`MetricsServer` expose the agent's state to Prometheus on a loopback port
(prometheus-client, a registry per agent); :func:`start` runs both next to a
:class:`~tongdao.agent.gateway.GatewayAgent`.

Every ``interval`` seconds the reporter does one :meth:`Reporter.tick`:

1. **sample**: ``engine.get()`` of every tenant interface of the last applied desired state.
   Per peer, the delta is the counter minus the last one seen (the *baseline*); a counter that
   went *down* means the engine (or the peer) was recreated and started from zero, so the new
   value is the whole delta. A peer first seen (or seen again after it disappeared) counts in
   full. Deltas add up in *accrued*; peers with no bytes and no new handshake are left out.
   An interface whose daemon is gone (``InterfaceNotFound``) forgets its baseline (a new
   daemon starts from zero); any other engine error keeps it, so nothing is counted twice.
   Peers the desired state does not name (no kind / ref to report) only move the baseline.
2. **cut**: when no report is pending, the accrued deltas become the pending report, split in
   chunks of at most ``max_peers`` peers, each with its own ``seq`` (a peer key appears once
   per chunk; the server's unique key is ``(gateway, seq, peer_key)``).
3. **send**: the pending chunks, in order, until the control plane answers for each. A chunk
   is dropped only once it was stored (``accepted``) or had been stored (``duplicate``: a
   retry after a lost answer), or when the server refuses it for good (400/422; a 413 splits
   it in two first). Anything else (network, 5xx, 401, 404 of an older server) keeps it, and
   the next tick sends the very same chunk with the very same seq again. A 409
   ``seq_out_of_range`` (our seq is more than the server's bound above its last one) renumbers
   the pending chunks from the server's ``last_seq`` and sends them. Rows the server stored
   the report without (``dropped_reasons``) are counted in
   ``tongdao_agent_report_rows_dropped_total{reason}``.

Steps 1 and 2 change the state file (``usage.json`` in the state dir) in one atomic write,
step 3 after every answer: the baseline, the accrued deltas and the pending chunks always
agree with each other, so a reporter killed at any point and started again from the state
dir neither loses nor double counts a byte (a chunk whose answer was lost is a duplicate).
Because chunk ``k + 1`` is sent only once chunk ``k`` is answered, chunks after the one being
sent were never seen by the server; and the state file notes a chunk's first attempt before
it leaves, so a ``duplicate`` answer to a chunk never sent before means the numbering is
behind the server's (a state dir restored from an old backup): such chunks are renumbered
above the server's ``last_seq`` and sent, not dropped.

Limits: bytes moved between the last sample and an engine restart are lost (sample often
enough), and a restarted counter that already passed its old value in one interval is taken
as a plain increase.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import httpx
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tongdao import __version__
from tongdao.agent.engine import (
    ENGINE_MIN_VERSION,
    DeviceState,
    Engine,
    EngineBuild,
    EngineError,
    InterfaceNotFound,
)
from tongdao.agent.state import StateDir
from tongdao.errors import TongdaoError

if TYPE_CHECKING:
    from tongdao.agent.gateway import ControlPlane, GatewayAgent

log = logging.getLogger("tongdao.agent.reporter")

STATE_FILE = "usage.json"
STATE_FORMAT = 1
REPORT_PATH = "/api/v1/gateway/reports"
DEFAULT_INTERVAL = 30.0
DEFAULT_MAX_PEERS = 2000  # ~0.5 MB of JSON: under the server's default 1 MiB body limit

Report = dict[str, Any]


class ReportError(TongdaoError):
    """The control plane did not take a report; ``permanent`` when resending cannot help.
    ``code`` is the server's error code; ``last_seq`` what it said its last stored seq is
    (with 409 ``seq_out_of_range``)."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        *,
        code: str | None = None,
        last_seq: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.last_seq = last_seq

    @property
    def permanent(self) -> bool:
        return self.status in (400, 413, 422)


def send_report(control: ControlPlane, report: Report) -> dict[str, Any]:
    """POST one report chunk; the server's answer (``accepted``, ``duplicate``, ``last_seq``)."""
    try:
        resp = control.http.post(REPORT_PATH, json=report)
    except httpx.HTTPError as exc:
        raise ReportError(f"POST {REPORT_PATH}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code >= 300:
        code: str | None = None
        last_seq: int | None = None
        try:
            body = resp.json()
            message = str(body["error"]["message"])
            code = str(body["error"].get("code") or "") or None
            if isinstance(body.get("last_seq"), int):
                last_seq = int(body["last_seq"])
        except (ValueError, KeyError, TypeError, AttributeError):
            message = resp.text[:200]
        raise ReportError(
            f"POST {REPORT_PATH}: {resp.status_code} {message}",
            resp.status_code,
            code=code,
            last_seq=last_seq,
        )
    try:
        answer: dict[str, Any] = resp.json()
    except ValueError as exc:
        raise ReportError(f"POST {REPORT_PATH}: an answer that is not JSON") from exc
    return answer


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


@dataclass
class PeerSample:
    """One peer as last sampled, for the metrics."""

    tenant: str
    ifname: str
    peer: str
    kind: str
    ref: str
    rx_bytes: int
    tx_bytes: int
    last_handshake: float | None


@dataclass
class Counters:
    """What the metrics show about the reporter."""

    reports_sent: int = 0
    reports_duplicate: int = 0
    reports_rejected: int = 0
    send_failures: int = 0
    sample_errors: int = 0
    last_seq: int = 0
    last_success: float | None = None
    peers: list[PeerSample] = field(default_factory=list)
    rows_dropped: dict[str, int] = field(default_factory=dict)  # by the server, per reason


class Reporter:
    """Computes usage deltas from the engine's counters and sends them, exactly once."""

    def __init__(
        self,
        engine: Engine,
        state: StateDir,
        sender: Callable[[Report], Mapping[str, Any]] | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_peers: int = DEFAULT_MAX_PEERS,
        clock: Callable[[], float] = time.time,
        cross_border: Callable[[], Mapping[tuple[str, str], tuple[int, int]]] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the report interval must be positive")
        if max_peers < 1:
            raise ValueError("max_peers must be at least 1")
        self.engine = engine
        self.state = state
        self.sender = sender
        self.interval = interval
        self.max_peers = max_peers
        self.clock = clock
        self.cross_border = cross_border  # cumulative (rx, tx) per (interface, peer key)
        self.counters = Counters()
        self.lock = threading.Lock()  # one tick at a time; metrics read under it
        self.data = self._load()

    # --- state ---------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            data = self.state.read_json(STATE_FILE)
        except ValueError:
            log.error("%s is not JSON; starting usage accounting afresh", STATE_FILE)
            data = None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            data = {
                "format": STATE_FORMAT,
                "next_seq": 1,
                "sampled_at": None,
                "baseline": {},
                "accrued": {},
                "accrued_since": None,
                "pending": [],
                "attempted": None,
            }
        return data

    def _save(self) -> None:
        self.state.write_json(STATE_FILE, self.data)

    @property
    def pending(self) -> list[Report]:
        pending: list[Report] = self.data["pending"]
        return pending

    @property
    def next_seq(self) -> int:
        return int(self.data["next_seq"])

    # --- the three steps -----------------------------------------------------------------
    def sample(self) -> None:
        """Add the deltas since the last sample to ``accrued`` (not saved: see :meth:`tick`)."""
        applied = self.state.applied()
        tenants = applied.tenants if applied is not None else ()
        now = self.clock()
        old: dict[str, dict[str, list[Any]]] = self.data["baseline"]
        accrued: dict[str, dict[str, Any]] = self.data["accrued"]
        baseline: dict[str, dict[str, list[Any]]] = {}
        samples: list[PeerSample] = []
        # Cross-border counters (xborder): read once, before the engine's, each the same way.
        old_xb: dict[str, list[int]] = self.data.setdefault("xb_baseline", {})
        xb_now: Mapping[tuple[str, str], tuple[int, int]] | None = {}
        if self.cross_border is not None:
            try:
                xb_now = self.cross_border()
            except (TongdaoError, OSError) as exc:
                log.warning("cross-border counters not read: %s", exc)
                self.counters.sample_errors += 1
                xb_now = None  # keep the baseline: no double count
        # The baselines carry over while their counter is still in the table: a peer or an
        # interface the engine did not answer for this tick is counted from them next time
        # (the counters outlive the engine's), not from zero again.
        xb_base: dict[str, list[int]] = (
            dict(old_xb)
            if xb_now is None
            else {k: v for k, v in old_xb.items() if tuple(k.split("|", 1)) in xb_now}
        )
        for tenant in tenants:
            try:
                device: DeviceState = self.engine.get(tenant.ifname)
            except InterfaceNotFound:
                continue  # its daemon is gone: a new one counts from zero
            except (EngineError, OSError) as exc:
                log.warning("usage of %s not read: %s", tenant.ifname, exc)
                self.counters.sample_errors += 1
                if tenant.ifname in old:
                    baseline[tenant.ifname] = old[tenant.ifname]  # keep: no double count
                continue
            known = {p.public_key: p for p in tenant.peers}
            before = old.get(tenant.ifname, {})
            after: dict[str, list[Any]] = {}
            for key, peer in device.peers.items():
                after[key] = [peer.rx_bytes, peer.tx_bytes, peer.last_handshake]
                prev = before.get(key)
                if prev is None or peer.rx_bytes < prev[0] or peer.tx_bytes < prev[1]:
                    d_rx, d_tx = peer.rx_bytes, peer.tx_bytes  # new, or restarted from zero
                else:
                    d_rx, d_tx = peer.rx_bytes - prev[0], peer.tx_bytes - prev[1]
                handshake = peer.last_handshake
                new_handshake = handshake is not None and (
                    prev is None or prev[2] is None or handshake > prev[2]
                )
                desired = known.get(key)
                if desired is None:
                    continue
                samples.append(
                    PeerSample(
                        str(tenant.tenant_id),
                        tenant.ifname,
                        key,
                        desired.kind,
                        desired.ref,
                        peer.rx_bytes,
                        peer.tx_bytes,
                        handshake,
                    )
                )
                xb_rx = xb_tx = 0
                xb_key = f"{tenant.ifname}|{key}"
                current = None if xb_now is None else xb_now.get((tenant.ifname, key))
                if current is not None:
                    was = old_xb.get(xb_key)
                    if was is None or current[0] < was[0] or current[1] < was[1]:
                        xb_rx, xb_tx = current  # new, or started again from zero
                    else:
                        xb_rx, xb_tx = current[0] - was[0], current[1] - was[1]
                    xb_base[xb_key] = [current[0], current[1]]
                if d_rx == 0 and d_tx == 0 and xb_rx == 0 and xb_tx == 0 and not new_handshake:
                    continue
                if not accrued:
                    self.data["accrued_since"] = self.data["sampled_at"] or now
                entry = accrued.setdefault(
                    f"{tenant.tenant_id}|{key}",
                    {
                        "tenant_id": str(tenant.tenant_id),
                        "peer_key": key,
                        "peer_kind": desired.kind,
                        "peer_ref": desired.ref,
                        "rx_bytes": 0,
                        "tx_bytes": 0,
                        "last_handshake": None,
                        "endpoint": None,
                        "cross_border_rx_bytes": 0,
                        "cross_border_tx_bytes": 0,
                    },
                )
                entry["rx_bytes"] += d_rx
                entry["tx_bytes"] += d_tx
                entry["cross_border_rx_bytes"] = entry.get("cross_border_rx_bytes", 0) + xb_rx
                entry["cross_border_tx_bytes"] = entry.get("cross_border_tx_bytes", 0) + xb_tx
                if handshake is not None:
                    entry["last_handshake"] = _iso(handshake)
                if peer.endpoint:
                    entry["endpoint"] = peer.endpoint[:64]
            baseline[tenant.ifname] = after
        self.data["baseline"] = baseline
        self.data["xb_baseline"] = xb_base
        self.data["sampled_at"] = now
        self.counters.peers = samples

    def cut(self) -> None:
        """Turn the accrued deltas into the pending report, when none is pending."""
        accrued: dict[str, dict[str, Any]] = self.data["accrued"]
        if self.pending or not accrued:
            return
        now = self.clock()
        start = self.data["accrued_since"] or now
        for entry in accrued.values():
            # Inner packets are smaller than their WireGuard bytes; the two counters are read
            # a moment apart, so a report never claims more cross-border than in total.
            for xb, total in (
                ("cross_border_rx_bytes", "rx_bytes"),
                ("cross_border_tx_bytes", "tx_bytes"),
            ):
                entry[xb] = min(int(entry.get(xb, 0)), int(entry[total]))
        for chunk in self._chunks(accrued[k] for k in sorted(accrued)):
            self.pending.append(
                {
                    "seq": self.next_seq,
                    "period_start": _iso(min(start, now)),
                    "period_end": _iso(now),
                    "peers": chunk,
                }
            )
            self.data["next_seq"] = self.next_seq + 1
        self.data["accrued"] = {}
        self.data["accrued_since"] = None

    def _chunks(self, peers: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        chunks: list[list[dict[str, Any]]] = []
        keys: list[set[str]] = []
        for peer in peers:
            for chunk, seen in zip(chunks, keys, strict=True):
                if len(chunk) < self.max_peers and peer["peer_key"] not in seen:
                    chunk.append(peer)
                    seen.add(peer["peer_key"])
                    break
            else:
                chunks.append([peer])
                keys.append({peer["peer_key"]})
        return chunks

    def send(self) -> bool:
        """Send the pending chunks in order; True when none is left."""
        if self.sender is None:
            return not self.pending
        renumbered = False
        while self.pending:
            report = self.pending[0]
            retry = self.data.get("attempted") == report["seq"]
            if not retry:
                self.data["attempted"] = report["seq"]
                self._save()  # before it leaves: a later duplicate answer means "stored"
            try:
                answer = self.sender(report)
            except ReportError as exc:
                if (
                    exc.status == 409
                    and exc.code == "seq_out_of_range"
                    and exc.last_seq is not None
                    and not renumbered
                ):
                    # Our numbering is far ahead of the server's (a state dir kept across a
                    # re-enrolment, a corrupted seq): nothing pending was stored, renumber.
                    log.warning(
                        "usage report %d: server is at seq %d; renumbering",
                        report["seq"],
                        exc.last_seq,
                    )
                    renumbered = True
                    self._renumber(exc.last_seq + 1)
                    self.data["attempted"] = None
                    self._save()
                    continue
                if not exc.permanent:
                    self.counters.send_failures += 1
                    log.warning("usage report %d not sent: %s", report["seq"], exc)
                    return False
                if exc.status == 413 and len(report["peers"]) > 1:
                    self._split_first()
                    continue
                log.error("usage report %d refused, dropped: %s", report["seq"], exc)
                self.counters.reports_rejected += 1
                self.pending.pop(0)
                self._save()
                continue
            except (httpx.HTTPError, OSError, TongdaoError) as exc:
                self.counters.send_failures += 1
                log.warning("usage report %d not sent: %s", report["seq"], exc)
                return False
            last = int(answer.get("last_seq") or report["seq"])
            if answer.get("duplicate") and not retry and last >= report["seq"]:
                # Never sent before, yet the server has this seq: our numbering is behind
                # the server's (a state dir restored from an old backup). Renumber, resend.
                log.warning(
                    "usage report %d: server is at seq %d; renumbering", report["seq"], last
                )
                self._renumber(last + 1)
                self._save()
                continue
            self.pending.pop(0)
            if answer.get("duplicate"):
                self.counters.reports_duplicate += 1
            else:
                self.counters.reports_sent += 1
                self._count_dropped(report["seq"], answer.get("dropped_reasons"))
            self.counters.last_seq = max(self.counters.last_seq, last)
            self.counters.last_success = self.clock()
            if self.pending and self.pending[0]["seq"] <= last:
                self._renumber(last + 1)  # never sent (in order): safe to renumber
            self.data["next_seq"] = max(self.next_seq, last + 1)
            self._save()
        return True

    def _count_dropped(self, seq: int, reasons: Any) -> None:
        """Rows the server did not count (not a peer it sent us, over the PoP's rate, ...)."""
        if not isinstance(reasons, dict) or not reasons:
            return
        for reason, count in reasons.items():
            if isinstance(count, int) and count > 0:
                dropped = self.counters.rows_dropped
                dropped[str(reason)] = dropped.get(str(reason), 0) + count
        log.warning("usage report %d: the server dropped rows %s", seq, reasons)

    def _renumber(self, first: int) -> None:
        for offset, chunk in enumerate(self.pending):
            chunk["seq"] = first + offset
        self.data["next_seq"] = first + len(self.pending)

    def _split_first(self) -> None:
        report = self.pending[0]
        half = len(report["peers"]) // 2
        a = {**report, "peers": report["peers"][:half]}
        b = {**report, "peers": report["peers"][half:]}
        self.pending[0:1] = [a, b]
        self._renumber(report["seq"])  # the refused chunk and all after it were never stored
        self.data["attempted"] = None
        log.warning("usage report %d too large: split in two", report["seq"])
        self._save()

    def tick(self) -> bool:
        """Sample, cut, save, send; True when nothing is left pending."""
        with self.lock:
            self.sample()
            while True:  # twice at most: what accrued while a report was pending goes too
                self.cut()
                self._save()
                if not self.send():
                    return False
                if not self.data["accrued"]:
                    return True

    def checkpoint(self) -> None:
        """Sample and cut without sending (on the way out: the next start sends it)."""
        with self.lock:
            self.sample()
            self.cut()
            self._save()

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # a reporter bug must not take the data plane's agent down
                log.exception("usage report tick failed")


# --- Prometheus metrics (prometheus-client) -------------------------------------------------------
@dataclass(eq=False)
class AgentMetrics(Collector):
    """What the agent's /metrics shows: its build and engine, apply outcomes (counted here)
    and the reporter's counters, read when scraped. Each agent has a registry of its own
    (``self.registry``), not prometheus-client's global one: tests run several agents in one
    process."""

    state: StateDir
    reporter: Reporter | None = None
    applies: int = 0
    apply_errors: int = 0
    engine: EngineBuild | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    registry: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def applied(self, ok: bool) -> None:
        with self.lock:
            self.applies += 1
            if not ok:
                self.apply_errors += 1

    def render(self) -> str:
        """The exposition, as a scrape gets it (Prometheus text format 0.0.4)."""
        return generate_latest(self.registry).decode()

    def collect(self) -> Iterable[Metric]:
        yield InfoMetricFamily("tongdao_agent", "the agent's version", {"version": __version__})
        if self.engine is not None:
            yield InfoMetricFamily(
                "tongdao_agent_engine",
                "the data plane's engine and build; outdated=true: older than "
                f"{ENGINE_MIN_VERSION} (no offloads), unknown: cannot tell",
                {
                    "engine": self.engine.engine,
                    "version": self.engine.version or "",
                    "outdated": {True: "true", False: "false", None: "unknown"}[
                        self.engine.outdated
                    ],
                },
            )
        applied = None
        with contextlib.suppress(OSError, ValueError):
            applied = self.state.applied()
        yield GaugeMetricFamily(
            "tongdao_agent_applied_version",
            "version of the desired state last applied",
            value=applied.version if applied else 0,
        )
        yield GaugeMetricFamily(
            "tongdao_agent_tenant_interfaces",
            "tenant interfaces in the applied state",
            value=len(applied.tenants) if applied else 0,
        )
        with self.lock:
            applies, errors = self.applies, self.apply_errors
        yield CounterMetricFamily("tongdao_agent_applies", "applies attempted", value=applies)
        yield CounterMetricFamily("tongdao_agent_apply_errors", "applies that failed", value=errors)
        if self.reporter is not None:
            yield from self._reporter(self.reporter)

    @staticmethod
    def _reporter(reporter: Reporter) -> Iterator[Metric]:
        with reporter.lock:
            c = reporter.counters
            pending = len(reporter.pending)
            peers = list(c.peers)
            counters = (c.reports_sent, c.reports_duplicate, c.reports_rejected, c.send_failures)
            sample_errors, last_seq, last_success = c.sample_errors, c.last_seq, c.last_success
            rows_dropped = sorted(c.rows_dropped.items())
        sent, duplicate, rejected, failures = counters
        yield CounterMetricFamily("tongdao_agent_reports_sent", "usage reports stored", value=sent)
        yield CounterMetricFamily(
            "tongdao_agent_reports_duplicate",
            "usage reports the server had already stored (a lost answer)",
            value=duplicate,
        )
        yield CounterMetricFamily(
            "tongdao_agent_reports_rejected",
            "usage reports refused for good and dropped",
            value=rejected,
        )
        yield CounterMetricFamily(
            "tongdao_agent_report_failures",
            "usage report sends that failed and will be retried",
            value=failures,
        )
        dropped = CounterMetricFamily(
            "tongdao_agent_report_rows_dropped",
            "usage rows the server stored the report without, per reason (unknown_peer, "
            "duplicate_peer, over_rate, invalid)",
            labels=["reason"],
        )
        for reason, count in rows_dropped:
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            "tongdao_agent_usage_sample_errors",
            "interfaces whose counters could not be read",
            value=sample_errors,
        )
        yield GaugeMetricFamily(
            "tongdao_agent_reports_pending", "usage report chunks not yet stored", value=pending
        )
        yield GaugeMetricFamily(
            "tongdao_agent_report_seq", "last seq the server stored", value=last_seq
        )
        last = GaugeMetricFamily(
            "tongdao_agent_last_report_timestamp_seconds",
            "when a usage report was last answered",
        )
        if last_success is not None:
            last.add_metric([], last_success)
        yield last

        names = ["tenant", "ifname", "peer", "kind", "ref"]
        rx = CounterMetricFamily(
            "tongdao_peer_rx_bytes",
            "bytes received from the peer (engine counter; resets with the engine)",
            labels=names,
        )
        tx = CounterMetricFamily(
            "tongdao_peer_tx_bytes",
            "bytes sent to the peer (engine counter; resets with the engine)",
            labels=names,
        )
        handshake = GaugeMetricFamily(
            "tongdao_peer_last_handshake_seconds",
            "epoch seconds of the peer's last handshake",
            labels=names,
        )
        for p in peers:
            values = [p.tenant, p.ifname, p.peer, p.kind, p.ref]
            rx.add_metric(values, p.rx_bytes)
            tx.add_metric(values, p.tx_bytes)
            if p.last_handshake is not None:
                handshake.add_metric(values, p.last_handshake)
        yield from (rx, tx, handshake)


class MetricsServer:
    """prometheus-client's HTTP server for one registry on ``host:port`` (loopback by
    default; port 0 picks a free one), in a daemon thread."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self.httpd: WSGIServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.httpd is not None, "not started"
        return int(self.httpd.server_address[1])

    def start(self) -> MetricsServer:
        self.httpd, self.thread = start_http_server(
            self.requested_port, addr=self.host, registry=self.registry
        )
        return self

    def stop(self) -> None:
        if self.httpd is None or self.thread is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --- running next to the agent -------------------------------------------------------------------
class Telemetry:
    """The reporter thread and the metrics server of one agent; :meth:`stop` ends both."""

    def __init__(
        self, reporter: Reporter, metrics: AgentMetrics, server: MetricsServer | None
    ) -> None:
        self.reporter = reporter
        self.metrics = metrics
        self.server = server
        self.stop_event = threading.Event()
        self.control: ControlPlane | None = None
        self.thread = threading.Thread(
            target=reporter.run, args=(self.stop_event,), name="tongdao-usage", daemon=True
        )

    def stop(self) -> None:
        """End the reporter's loop, then save the last interval and close its client. A
        send in progress is let finish (its requests time out on their own); if the loop is
        still in one after the wait, its client is left open rather than closed under it."""
        self.stop_event.set()
        self.thread.join(timeout=30)
        if self.thread.is_alive():
            log.warning("usage reporter still sending after 30 s; not waiting for it")
        else:
            try:
                self.reporter.checkpoint()  # the last interval's bytes wait on disk
            except Exception:
                log.exception("usage checkpoint on stop failed")
        if self.server is not None:
            self.server.stop()
        if self.control is not None and not self.thread.is_alive():
            self.control.close()


def _count_applies(agent: GatewayAgent, metrics: AgentMetrics) -> None:
    """Count the agent's applies and their failures without changing its code: wrap the
    applier's ``apply`` on this instance (it raises on failure, as before)."""
    original = agent.applier.apply

    def apply(desired: Any, **options: Any) -> None:
        try:
            original(desired, **options)
        except BaseException:
            metrics.applied(False)
            raise
        metrics.applied(True)

    setattr(agent.applier, "apply", apply)  # noqa: B010 (instance attribute on purpose)


def start(
    agent: GatewayAgent,
    *,
    interval: float = DEFAULT_INTERVAL,
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
    max_peers: int = DEFAULT_MAX_PEERS,
) -> Telemetry:
    """Start usage reports (every ``interval`` s) and, unless ``metrics_port`` is 0, the
    metrics server, for ``agent``. The reporter has an HTTP client of its own, made from the
    agent's saved credential once it exists. Call :meth:`Telemetry.stop` after
    ``agent.run()`` returns."""
    from tongdao.agent.gateway import ControlPlane

    telemetry: Telemetry

    def sender(report: Report) -> Mapping[str, Any]:
        if telemetry.control is None:
            saved = agent.state.credential()
            if saved is None:
                raise ReportError("not enrolled yet")
            telemetry.control = ControlPlane(agent.server, saved["credential"])
        return send_report(telemetry.control, report)

    from tongdao.agent.xborder import read_counters

    reporter = Reporter(
        agent.applier.engine,
        agent.state,
        sender,
        interval=interval,
        max_peers=max_peers,
        cross_border=lambda: read_counters(agent.netns),
    )
    metrics = AgentMetrics(agent.state, reporter)
    _count_applies(agent, metrics)
    metrics.engine = agent.engine_build or agent.check_engine()
    server = MetricsServer(metrics.registry, metrics_port, metrics_host) if metrics_port else None
    telemetry = Telemetry(reporter, metrics, server)
    if server is not None:
        server.start()
        log.info("metrics on http://%s:%d/metrics", metrics_host, server.port)
    telemetry.thread.start()
    return telemetry
