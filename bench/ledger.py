"""The "ledger" benchmark (issue 13, speed): usage report ingestion over HTTP, and a month's
usage query for a big tenant.

For each backend (SQLite, then PostgreSQL on a throwaway cluster):

1. **ingestion**: one tenant with ``devices`` devices (bulk-loaded as in :mod:`bench.store`),
   ``gateways`` PoPs each with an enrolled gateway (through the gateway service) that was sent
   the first ``peers`` devices as peers; the app under uvicorn in a child process; one client
   thread per gateway posts reports of ``peers`` rows (30 s periods, seq after seq, some
   cross-border bytes) for ``seconds`` or ``reports`` reports each. Figure: rows stored per
   second (``samples_per_s``), over the wall time of all clients; every answer is checked
   (all rows stored, none dropped). Budget: ≥ 20,000/s on PostgreSQL.
2. **query** (PostgreSQL only unless ``--query-sqlite``): a month (30 days) of hourly ledger
   rows for every device of the tenant (``devices`` × 720 rows in ``usage_hourly`` and the
   per-tenant sums in ``usage_tenant_hourly``, written with SQL as the ingestion would have),
   ``VACUUM ANALYZE``, then ``GET /tenants/{id}/usage/series`` for the month by day (the
   console's chart) and by hour, a device's month, and in-process the billing run's figure
   (:func:`tongdao.gateway.ledger.tenant_bytes`) and, for comparison, the same month summed
   from the per-peer hourly rows (what a ledger without the per-tenant table would read).
   Budget: p95 ≤ 100 ms for the tenant's month.

Each phase records the CPU split (:class:`bench.machine.CpuWatch`): other work's share of the
machine says how far to trust the figures on a shared host.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text

from bench.machine import CpuWatch
from bench.runs import run_backends
from bench.server import ServerProcess, bench_settings
from bench.stats import Metric
from bench.store import KeySource, bulk_load, create_tenants, device_rows, store_url, timed

BACKENDS = ("sqlite", "postgresql")
INGEST_BUDGET_PER_S = 20_000.0  # PostgreSQL
QUERY_BUDGET_P95_MS = 100.0


@dataclass(frozen=True)
class LedgerConfig:
    devices: int = 10_000
    peers: int = 2_000  # rows per report
    gateways: int = 2  # concurrent reporting gateways (one client thread each)
    reports: int = 40  # per gateway, at most
    seconds: float = 60.0  # ingestion phase, at most
    hours: int = 720  # the month of hourly rows for the query phase
    samples: int = 50
    warmup: int = 5
    query_sqlite: bool = False
    seed: int = 13


FULL = LedgerConfig()
QUICK = LedgerConfig(
    devices=1_000, peers=500, gateways=2, reports=5, seconds=20, hours=72, samples=10, warmup=2
)


@dataclass
class LedgerResult:
    backend: str
    version: str | None = None
    load: dict[str, Any] = field(default_factory=dict)
    ingestion: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    inprocess_ms: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "load": self.load,
            "ingestion": self.ingestion,
            "metrics": {name: m.to_json() for name, m in self.metrics.items()},
            "inprocess_ms": self.inprocess_ms,
            "cpu": self.cpu,
            "error": self.error,
        }


@dataclass
class Setup:
    tenant_id: uuid.UUID
    headers: dict[str, str]
    gateways: list[tuple[uuid.UUID, uuid.UUID, str]]  # gateway, pop, credential
    devices: list[tuple[uuid.UUID, str]]  # id, public key


def populate(url: str, data_dir: Path, cfg: LedgerConfig, result: LedgerResult) -> Setup:
    from tongdao.audit.recorder import SYSTEM, set_actor
    from tongdao.gateway.models import Gateway, GatewayPeer
    from tongdao.gateway.service import create_enrolment, enrol
    from tongdao.network.models import Device, Pop
    from tongdao.runtime import Ctx, Runtime
    from tongdao.store import migrate

    began = time.perf_counter()
    migrate.upgrade(url)
    runtime = Runtime.from_settings(bench_settings(url, data_dir))
    try:
        (tenant,), _stats = create_tenants(runtime, 1, pool_prefixlen=17)
        keys = KeySource(random.Random(cfg.seed))
        bulk_load(runtime.db.engine, device_rows([tenant], cfg.devices, keys))
        with runtime.db.session(write=False) as session:
            devices = [
                (d, k)
                for d, k in session.execute(
                    select(Device.id, Device.public_key)
                    .where(Device.tenant_id == tenant.id)
                    .order_by(Device.host_index)
                )
            ]
        gateways = []
        for g in range(cfg.gateways):
            with runtime.db.session() as session:
                set_actor(session, SYSTEM)
                ctx = Ctx(session=session, runtime=runtime)
                pop = Pop(
                    name=f"bench-pop-{g}", region="CN-BJ", country="CN",
                    endpoint_host=f"198.51.100.{10 + g}", port_min=51820, port_max=51829,
                )  # fmt: skip
                session.add(pop)
                session.flush()
                _enrolment, token = create_enrolment(ctx, pop, timedelta(hours=1))
                gateway, credential = enrol(ctx, token, f"bench-{g}", "bench")
                gateway.created_at = datetime.now(UTC) - timedelta(days=40)
                session.flush()
                session.execute(
                    insert(GatewayPeer),
                    [
                        {
                            "gateway_id": gateway.id,
                            "tenant_id": tenant.id,
                            "peer_key": key,
                            "peer_kind": "device",
                            "peer_ref": str(device_id),
                        }
                        for device_id, key in devices[: cfg.peers]
                    ],
                )
                gateways.append((gateway.id, pop.id, credential))
                session.commit()
        with runtime.db.session(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Gateway)) == cfg.gateways
        result.load["populate_s"] = round(time.perf_counter() - began, 2)
        return Setup(tenant.id, tenant.headers, gateways, devices)
    finally:
        runtime.db.dispose()


def report_body(seq: int, end: datetime, tenant_id: uuid.UUID, peers: list[Any]) -> Any:
    rows = []
    for i, (device_id, key) in enumerate(peers):
        rx, tx = 1_000_000 + i, 2_000_000 + seq
        rows.append(
            {
                "tenant_id": str(tenant_id),
                "peer_key": key,
                "peer_kind": "device",
                "peer_ref": str(device_id),
                "rx_bytes": rx,
                "tx_bytes": tx,
                "cross_border_rx_bytes": rx // 10 if i % 5 == 0 else 0,
                "cross_border_tx_bytes": tx // 10 if i % 5 == 0 else 0,
                "last_handshake": (end - timedelta(seconds=5)).isoformat(),
                "endpoint": f"203.0.113.{1 + i % 200}:{40000 + i % 20000}",
            }
        )
    return {
        "seq": seq,
        "period_start": (end - timedelta(seconds=30)).isoformat(),
        "period_end": end.isoformat(),
        "peers": rows,
    }


def ingest(base_url: str, setup: Setup, cfg: LedgerConfig, result: LedgerResult) -> None:
    peers = setup.devices[: cfg.peers]
    # Periods back from now, 30 s each: all reports fit before the server's clock.
    first_end = datetime.now(UTC) - timedelta(seconds=30 * (cfg.reports + 2))
    bodies = [
        report_body(seq, first_end + timedelta(seconds=30 * seq), setup.tenant_id, peers)
        for seq in range(1, cfg.reports + 1)
    ]
    stored = [0] * len(setup.gateways)
    errors: list[str] = []
    latencies: list[float] = []
    deadline = time.monotonic() + cfg.seconds
    lock = threading.Lock()

    def client(index: int, credential: str) -> None:
        headers = {"Authorization": f"Bearer {credential}"}
        try:
            with httpx.Client(base_url=base_url, timeout=120) as http:
                for body in bodies:
                    if time.monotonic() > deadline:
                        return
                    response, latency, _svc = timed(
                        http, "POST", "/api/v1/gateway/reports", json=body, headers=headers
                    )
                    answer = response.json()
                    if response.status_code != 200 or answer.get("stored") != len(peers):
                        raise RuntimeError(f"report {body['seq']}: {response.text[:300]}")
                    with lock:
                        stored[index] += answer["stored"]
                        latencies.append(latency)
        except Exception as exc:
            errors.append(f"gateway {index}: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=client, args=(i, cred), daemon=True)
        for i, (_g, _p, cred) in enumerate(setup.gateways)
    ]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(cfg.seconds + 180)
    wall = time.perf_counter() - began
    if errors:
        raise RuntimeError("; ".join(errors))
    total = sum(stored)
    metric = Metric("report", f"POST a report of {len(peers)} peers")
    for latency in latencies:
        metric.add(latency, None)
    result.metrics["report"] = metric
    per_s = total / wall if wall else 0.0
    result.ingestion = {
        "reports": len(latencies),
        "rows_stored": total,
        "wall_s": round(wall, 2),
        "samples_per_s": round(per_s, 1),
        "concurrent_gateways": len(setup.gateways),
        "budget_per_s": INGEST_BUDGET_PER_S if result.backend == "postgresql" else None,
        "pass": per_s >= INGEST_BUDGET_PER_S if result.backend == "postgresql" else None,
    }


def fill_month(url: str, setup: Setup, cfg: LedgerConfig, result: LedgerResult) -> datetime:
    """A month of hourly rows for every device (what ingestion would have written), and the
    per-tenant sums; returns the first hour."""
    from sqlalchemy import create_engine

    from tongdao.billing import money
    from tongdao.store import partitions

    engine = create_engine(url)
    today = money.shanghai_today(datetime.now(UTC))
    month = money.previous_month(today.replace(day=1))
    start, _ = money.month_bounds_utc(month)
    gateway_id, pop_id, _cred = setup.gateways[0]
    began = time.perf_counter()
    pg = engine.dialect.name == "postgresql"
    if pg:
        with engine.begin() as conn:
            partitions.ensure_months(conn, [month])
            conn.execute(text("DELETE FROM usage_hourly"))
            conn.execute(text("DELETE FROM usage_tenant_hourly"))
            # Every device, every hour: one statement (100 owners, bytes varying by device).
            conn.execute(
                text(
                    "INSERT INTO usage_hourly (tenant_id, peer_ref, hour, peer_kind, gateway_id, "
                    "pop_id, owner_id, rx_bytes, tx_bytes, cross_border_rx_bytes, "
                    "cross_border_tx_bytes) "
                    "SELECT d.tenant_id, d.id::text, h, 'device', :g, :p, "
                    "md5((d.host_index % 100)::text)::uuid, 1000 + d.host_index, "
                    "2000 + d.host_index, 100, 0 FROM devices d CROSS JOIN generate_series("
                    "CAST(:start AS timestamptz), CAST(:last AS timestamptz), interval '1 hour') h "
                    "WHERE d.tenant_id = :t"
                ),
                {
                    "g": gateway_id, "p": pop_id, "t": setup.tenant_id, "start": start,
                    "last": start + timedelta(hours=cfg.hours - 1),
                },
            )  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO usage_tenant_hourly (tenant_id, hour, gateway_id, peer_kind, "
                    "pop_id, rx_bytes, tx_bytes, cross_border_rx_bytes, cross_border_tx_bytes) "
                    "SELECT tenant_id, hour, gateway_id, peer_kind, pop_id, sum(rx_bytes), "
                    "sum(tx_bytes), sum(cross_border_rx_bytes), sum(cross_border_tx_bytes) "
                    "FROM usage_hourly GROUP BY tenant_id, hour, gateway_id, peer_kind, pop_id"
                )
            )
    with engine.begin() as conn:
        if pg:
            conn.execute(text("SELECT 1"))
            owners: list[uuid.UUID] = []
        else:
            owners = [uuid.uuid4() for _ in range(100)]
        step = 1000
        ids = [] if pg else [d for d, _k in setup.devices]
        for h in range(0, cfg.hours if not pg else 0):
            hour = start + timedelta(hours=h)
            for i in range(0, len(ids), step):
                conn.execute(
                    text(
                        "INSERT INTO usage_hourly (tenant_id, peer_ref, hour, peer_kind, "
                        "gateway_id, pop_id, owner_id, rx_bytes, tx_bytes, "
                        "cross_border_rx_bytes, cross_border_tx_bytes) VALUES "
                        "(:t, :r, :h, 'device', :g, :p, :o, :rx, :tx, :xrx, :xtx)"
                    ),
                    [
                        {
                            "t": setup.tenant_id if pg else setup.tenant_id.hex,
                            "r": str(d),
                            "h": hour if pg else hour.replace(tzinfo=None),
                            "g": gateway_id if pg else gateway_id.hex,
                            "p": pop_id if pg else pop_id.hex,
                            "o": (owners[n % 100] if pg else owners[n % 100].hex),
                            "rx": 1000 + n,
                            "tx": 2000 + n,
                            "xrx": 100,
                            "xtx": 0,
                        }
                        for n, d in enumerate(ids[i : i + step], start=i)
                    ],
                )
            n = len(ids)
            conn.execute(
                text(
                    "INSERT INTO usage_tenant_hourly (tenant_id, hour, gateway_id, peer_kind, "
                    "pop_id, rx_bytes, tx_bytes, cross_border_rx_bytes, cross_border_tx_bytes) "
                    "VALUES (:t, :h, :g, 'device', :p, :rx, :tx, :xrx, 0)"
                ),
                {
                    "t": setup.tenant_id if pg else setup.tenant_id.hex,
                    "h": hour if pg else hour.replace(tzinfo=None),
                    "g": gateway_id if pg else gateway_id.hex,
                    "p": pop_id if pg else pop_id.hex,
                    "rx": 1000 * n + n * (n - 1) // 2,
                    "tx": 2000 * n + n * (n - 1) // 2,
                    "xrx": 100 * n,
                },
            )
    result.load["month_rows"] = cfg.hours * len(setup.devices)
    result.load["fill_month_s"] = round(time.perf_counter() - began, 2)
    began = time.perf_counter()
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            size = conn.scalar(
                text("select pg_total_relation_size(CAST(:t AS regclass))"),
                {"t": f"usage_hourly_p{month:%Y%m}"},
            )
            result.load["hourly_partition_mib"] = round(int(size or 0) / 2**20, 1)
    result.load["analyze_s"] = round(time.perf_counter() - began, 2)
    engine.dispose()
    return start


def query(
    base_url: str, url: str, setup: Setup, start: datetime, cfg: LedgerConfig, result: LedgerResult
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from tongdao.gateway.ledger import tenant_bytes
    from tongdao.gateway.models import UsageHourly
    from tongdao.gateway.periods import exact_sum

    since = (start + timedelta(hours=8)).date()
    until = since + timedelta(days=cfg.hours // 24 - 1)
    path = f"/api/v1/tenants/{setup.tenant_id}/usage/series"
    device = setup.devices[0][0]
    cases = {
        "tenant_month_by_day": (path, {"granularity": "day"}, QUERY_BUDGET_P95_MS),
        "tenant_month_by_hour": (path, {"granularity": "hour"}, None),
        "device_month_by_day": (
            f"/api/v1/tenants/{setup.tenant_id}/devices/{device}/usage/series",
            {"granularity": "day"},
            QUERY_BUDGET_P95_MS,
        ),
    }
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for name, (p, params, budget) in cases.items():
            metric = result.metrics[name] = Metric(name, f"GET {p} {params}", budget)
            for i in range(cfg.warmup + cfg.samples):
                response, latency, svc = timed(
                    http,
                    "GET",
                    p,
                    params={**params, "since": str(since), "until": str(until)},
                    headers=setup.headers,
                )
                if response.status_code != 200 or not response.json()["points"]:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
                if i >= cfg.warmup:
                    metric.add(latency, svc)
    engine = create_engine(url)
    end = start + timedelta(hours=cfg.hours)
    timings: dict[str, list[float]] = {"billing_tenant_bytes": [], "sum_over_peer_hours": []}
    with Session(engine) as session:
        for _ in range(max(3, cfg.samples // 10)):
            began = time.perf_counter()
            tenant_bytes(session, setup.tenant_id, start, end)
            timings["billing_tenant_bytes"].append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            session.execute(
                select(*exact_sum(UsageHourly.rx_bytes)).where(
                    UsageHourly.tenant_id == setup.tenant_id,
                    UsageHourly.hour >= start,
                    UsageHourly.hour < end,
                )
            ).one()
            timings["sum_over_peer_hours"].append((time.perf_counter() - began) * 1000)
        if engine.dialect.name == "postgresql":
            plan = session.execute(
                text(
                    "EXPLAIN (ANALYZE, BUFFERS) SELECT hour, sum(rx_bytes) FROM usage_hourly "
                    "WHERE tenant_id = :t AND peer_kind = 'device' AND peer_ref = :r "
                    "AND hour >= :a AND hour < :b GROUP BY hour ORDER BY hour"
                ),
                {"t": setup.tenant_id, "r": str(device), "a": start, "b": end},
            ).scalars()
            result.load["device_month_plan"] = list(plan)
    engine.dispose()
    result.inprocess_ms = {
        name: {"median": round(sorted(v)[len(v) // 2], 2), "max": round(max(v), 2), "n": len(v)}
        for name, v in timings.items()
    }


def run_backend(backend: str, cfg: LedgerConfig, workdir: Path) -> LedgerResult:
    result = LedgerResult(backend)
    try:
        with store_url(backend, workdir) as url:
            setup = populate(url, workdir, cfg, result)
            with ServerProcess(url, workdir / "server") as server:
                watch = CpuWatch(server.pid)
                ingest(server.base_url, setup, cfg, result)
                result.cpu["ingestion"] = watch.result()
                if backend == "postgresql" or cfg.query_sqlite:
                    start = fill_month(url, setup, cfg, result)
                    watch = CpuWatch(server.pid)
                    query(server.base_url, url, setup, start, cfg, result)
                    result.cpu["query"] = watch.result()
            if backend == "postgresql":
                from sqlalchemy import create_engine

                engine = create_engine(url)
                with engine.connect() as conn:
                    result.version = str(conn.exec_driver_sql("show server_version").scalar())
                engine.dispose()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return result


def run(cfg: LedgerConfig, backends: list[str], *, mode: str) -> dict[str, Any]:
    runs = run_backends(
        "ledger",
        mode,
        backends,
        announce=lambda backend: (
            f"[ledger] {backend}: {cfg.devices} devices, reports of "
            f"{cfg.peers} peers from {cfg.gateways} gateways ..."
        ),
        tmp_prefix="tongdao-bench-ledger",
        run_backend=lambda backend, tmp: run_backend(backend, cfg, tmp),
    )
    results = runs.results
    return {
        **runs.head,
        "config": asdict(cfg),
        "machine": runs.machine,
        "backends": {name: r.to_json() for name, r in results.items()},
        "contended": any(
            c.get("contended", False) for r in results.values() for c in r.cpu.values()
        ),
        "errors": {name: r.error for name, r in results.items() if r.error},
    }


def summary(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"ledger benchmark ({report['mode']}): {cfg['devices']} devices, reports of "
        f"{cfg['peers']} peers from {cfg['gateways']} gateways, {report['duration_s']} s"
    ]
    for backend, data in report["backends"].items():
        if data["error"]:
            lines.append(f"{backend}: ERROR {data['error']}")
        ing = data["ingestion"]
        if ing:
            verdict = "" if ing["pass"] is None else (" PASS" if ing["pass"] else " FAIL")
            lines.append(
                f"{backend}: ingestion {ing['samples_per_s']:.0f} samples/s "
                f"({ing['reports']} reports, {ing['wall_s']} s){verdict}"
            )
        for name, metric in data["metrics"].items():
            lat = metric["latency"]
            if not lat.get("samples"):
                continue
            budget = metric.get("budget")
            verdict = (
                f" (budget p95 {budget['p95_ms']:g} ms: {'PASS' if budget['pass'] else 'FAIL'})"
                if budget
                else ""
            )
            lines.append(
                f"{backend}: {name} p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms{verdict}"
            )
        for name, t in data["inprocess_ms"].items():
            lines.append(f"{backend}: in-process {name}: median {t['median']} ms")
        for phase, cpu in data["cpu"].items():
            lines.append(
                f"{backend}: during {phase}: machine {cpu['machine_busy_pct']}% busy, "
                f"other work {cpu['other_work_pct']}%"
                + ("  ** CONTENDED **" if cpu["contended"] else "")
            )
    return "\n".join(lines)
