"""The "store" benchmark: device list and device creation over HTTP on a populated store.

For each backend (SQLite, then PostgreSQL on a throwaway cluster) it

1. migrates an empty store and creates the tenants through the tenant service (so IPv4 and
   IPv6 pools are allocated as in production), each active, with one tenant admin holding an
   API token;
2. bulk-loads the devices with SQLAlchemy core: names, distinct X25519 public keys and the
   tenant's addresses at offsets 1..N of its IPv4 pool and of its IPv6 /48's first /64 (what
   IPAM would have handed out), plus the audit event the API would have written for each;
3. serves the app with uvicorn in a child process on 127.0.0.1 and measures, with one
   keep-alive ``httpx.Client``, a page of 50 devices of a random tenant (and the page after
   it, through ``next_cursor``) and the creation of a device in a random tenant.

Latency is client-side (request sent to body read); the service time is what the app took
inside the server (``x-bench-service-us``, see :mod:`bench.server`).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import random
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import Engine, func, insert, select, text

from bench.machine import CpuWatch
from bench.runs import run_backends
from bench.server import SERVICE_HEADER, ServerProcess, bench_settings
from bench.stats import Metric

BUDGETS_P95_MS = {"list": 50.0, "create": 30.0}
PAGE_SIZE = 50
INSERT_CHUNK = 5000
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StoreConfig:
    tenants: int
    devices_per_tenant: int
    warmup: int
    samples: int
    seed: int = 20240601
    # Sampling stops (and the result is marked truncated) past this many seconds per phase.
    phase_seconds: float = 300.0


FULL = StoreConfig(tenants=1000, devices_per_tenant=100, warmup=20, samples=300)
# Quick keeps 100 devices per tenant so that page 2 of a list exists; 5,000 devices in all.
QUICK = StoreConfig(tenants=50, devices_per_tenant=100, warmup=10, samples=60, phase_seconds=60)


@dataclass(frozen=True)
class BenchTenant:
    id: uuid.UUID
    user_id: uuid.UUID
    token: str
    ipv4_pool: str
    ipv6_pool: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class BackendResult:
    backend: str
    version: str | None = None
    load: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "load": self.load,
            "metrics": {name: m.to_json() for name, m in self.metrics.items()},
            "measurement_cpu": self.cpu,
            "truncated": self.truncated,
            "error": self.error,
        }


# --- data ----------------------------------------------------------------------------------
def uscc_for(index: int) -> str:
    """A valid, distinct USCC (enterprise, Beijing) with a correct check character."""
    from tongdao.compliance.uscc import uscc_check_char

    first17 = "91" + "110000" + f"{700_000_000 + index:09d}"
    return first17 + uscc_check_char(first17)


class KeySource:
    """Distinct WireGuard public keys (real X25519 pairs) from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def next(self) -> str:
        while True:
            private = X25519PrivateKey.from_private_bytes(self.rng.randbytes(32))
            key = base64.b64encode(private.public_key().public_bytes_raw()).decode()
            if key not in self.seen:
                self.seen.add(key)
                return key


def create_tenants(
    runtime: Any, count: int, pool_prefixlen: int = 22
) -> tuple[list[BenchTenant], dict[str, Any]]:
    """Tenants through the tenant service (pools allocated by IPAM), each with a user."""
    from tongdao.audit.recorder import SYSTEM, set_actor
    from tongdao.auth.principal import ALL_SCOPES
    from tongdao.auth.service import issue_token
    from tongdao.runtime import Ctx
    from tongdao.tenancy.models import TenantState, User
    from tongdao.tenancy.schemas import TenantCreate
    from tongdao.tenancy.service import TenantResource
    from tongdao.testing.identity import seed_verified

    resource = TenantResource()
    tenants: list[BenchTenant] = []
    batch = 100
    batch_ms: list[float] = []
    for start in range(0, count, batch):
        began = time.perf_counter()
        with runtime.db.session() as session:
            set_actor(session, SYSTEM)
            ctx = Ctx(session=session, runtime=runtime)
            for i in range(start, min(start + batch, count)):
                data = TenantCreate(
                    name_en=f"Bench Tenant {i:04d}",
                    name_zh=f"基准租户{i:04d}",
                    uscc=uscc_for(i),
                    ipv4_pool_prefixlen=pool_prefixlen,
                )
                tenant = resource.create(ctx, None, data)
                tenant.state = TenantState.ACTIVE
                user = User(
                    tenant_id=tenant.id,
                    email=f"admin{i:04d}@tenant{i:04d}.bench.example",
                    display_name=f"Admin {i:04d}",
                    roles=["tenant_admin"],
                    password_hash=None,
                )
                seed_verified(user, runtime.cipher, runtime.clock(), n=i)  # identity.real_name
                session.add(user)
                session.flush()
                _token, secret = issue_token(
                    ctx,
                    user,
                    kind="api",
                    name="bench",
                    scopes=ALL_SCOPES,
                    ttl=timedelta(days=1),
                )
                tenants.append(
                    BenchTenant(tenant.id, user.id, secret, tenant.ipv4_pool, tenant.ipv6_pool)
                )
            session.commit()
        batch_ms.append((time.perf_counter() - began) * 1000 / min(batch, count - start))
    stats = {
        "tenant_create_ms_per_tenant_first_batch": round(batch_ms[0], 3),
        "tenant_create_ms_per_tenant_last_batch": round(batch_ms[-1], 3),
    }
    return tenants, stats


def device_rows(
    tenants: list[BenchTenant], per_tenant: int, keys: KeySource
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(device row, its audit event row) for every bulk-loaded device."""
    from tongdao.clock import utcnow
    from tongdao.ids import new_id
    from tongdao.ipam.allocator import v6_host_subnet

    for t in tenants:
        base4 = ipaddress.IPv4Network(t.ipv4_pool).network_address
        base6 = v6_host_subnet(ipaddress.IPv6Network(t.ipv6_pool)).network_address
        for offset in range(1, per_tenant + 1):
            now = utcnow()
            device = {
                "id": new_id(),
                "created_at": now,
                "updated_at": now,
                "tenant_id": t.id,
                "user_id": t.user_id,
                "name": f"laptop-{offset:04d}",
                "public_key": keys.next(),
                "host_index": offset,
                "ipv4": str(base4 + offset),
                "ipv6": str(base6 + offset),
                "pop_id": None,
                "state": "active",
            }
            after = {
                k: (v.isoformat() if isinstance(v, datetime) else None if v is None else str(v))
                for k, v in device.items()
            }
            audit = {
                "occurred_at": now,
                "actor_id": None,
                "actor": "system",
                "action": "create",
                "object_type": "device",
                "object_id": str(device["id"]),
                "tenant_id": t.id,
                "before": None,
                "after": after,
                "source_ip": None,
            }
            yield device, audit


def bulk_load(engine: Engine, rows: Iterator[tuple[dict[str, Any], dict[str, Any]]]) -> int:
    from tongdao.audit.models import AuditEvent
    from tongdao.network.models import Device

    loaded = 0
    devices: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert(Device), devices)
            conn.execute(insert(AuditEvent), events)
        devices.clear()
        events.clear()

    for device, audit in rows:
        devices.append(device)
        events.append(audit)
        loaded += 1
        if len(devices) >= INSERT_CHUNK:
            flush()
    if devices:
        flush()
    return loaded


def populate(
    url: str, data_dir: Path, cfg: StoreConfig, keys: KeySource, result: BackendResult
) -> list[BenchTenant]:
    from tongdao.network.models import Device
    from tongdao.runtime import Runtime
    from tongdao.store import migrate

    began = time.perf_counter()
    migrate.upgrade(url)
    result.load["migrate_s"] = round(time.perf_counter() - began, 2)
    runtime = Runtime.from_settings(bench_settings(url, data_dir))
    try:
        began = time.perf_counter()
        tenants, tenant_stats = create_tenants(runtime, cfg.tenants)
        result.load["tenants_s"] = round(time.perf_counter() - began, 2)
        result.load.update(tenant_stats)

        began = time.perf_counter()
        loaded = bulk_load(runtime.db.engine, device_rows(tenants, cfg.devices_per_tenant, keys))
        result.load["devices_s"] = round(time.perf_counter() - began, 2)

        engine = runtime.db.engine
        began = time.perf_counter()
        if runtime.db.is_sqlite:
            # No ANALYZE: the application never runs one, so neither does the benchmark.
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                result.version = str(conn.exec_driver_sql("select sqlite_version()").scalar())
            result.load["analyzed"] = False
        else:
            # What autovacuum would soon do on its own; done now so that plans are stable.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
                result.version = str(conn.exec_driver_sql("show server_version").scalar())
            result.load["analyzed"] = True
        result.load["finish_s"] = round(time.perf_counter() - began, 2)

        with engine.connect() as conn:
            count = conn.scalar(select(func.count()).select_from(Device.__table__))
            if runtime.db.is_sqlite:
                size = Path(str(runtime.db.url.database)).stat().st_size
            else:
                size = conn.scalar(text("select pg_database_size(current_database())"))
        if count != loaded or count != cfg.tenants * cfg.devices_per_tenant:
            raise RuntimeError(f"loaded {loaded} devices but the store holds {count}")
        result.load.update(tenants=len(tenants), devices=count, store_mib=round(size / 2**20, 1))
        return tenants
    finally:
        runtime.db.dispose()


# --- measurement ---------------------------------------------------------------------------
def timed(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, float, float | None]:
    """(response, client latency in ms, server service time in ms or None)."""
    started = time.perf_counter_ns()
    response = client.request(method, url, **kwargs)
    latency_ms = (time.perf_counter_ns() - started) / 1e6
    header = response.headers.get(SERVICE_HEADER)
    return response, latency_ms, (int(header) / 1000 if header else None)


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def measure_baseline(
    client: httpx.Client, tenant: BenchTenant, cfg: StoreConfig, result: BackendResult
) -> None:
    """GET /healthz (no store, no auth): what the HTTP round trip alone costs."""
    healthz = result.metrics["healthz"] = Metric("healthz", "GET /healthz: the HTTP floor")
    deadline = time.monotonic() + cfg.phase_seconds
    for i in range(cfg.warmup + cfg.samples):
        if time.monotonic() > deadline:
            result.truncated = True
            break
        response, latency, service = timed(client, "GET", "/healthz", headers=tenant.headers)
        expect(response, 200, "healthz")
        if i >= cfg.warmup:
            healthz.add(latency, service)


def measure_lists(
    client: httpx.Client,
    tenants: list[BenchTenant],
    cfg: StoreConfig,
    rng: random.Random,
    result: BackendResult,
) -> None:
    page1 = result.metrics["list_page1"] = Metric(
        "list_page1",
        f"GET first page ({PAGE_SIZE}) of a random tenant's devices",
        BUDGETS_P95_MS["list"],
    )
    page2 = result.metrics["list_page2"] = Metric(
        "list_page2",
        f"GET the next page ({PAGE_SIZE}) through next_cursor",
        BUDGETS_P95_MS["list"],
    )
    expected_first = min(PAGE_SIZE, cfg.devices_per_tenant)
    deadline = time.monotonic() + cfg.phase_seconds
    for i in range(cfg.warmup + cfg.samples):
        if time.monotonic() > deadline:
            result.truncated = True
            break
        t = rng.choice(tenants)
        path = f"/api/v1/tenants/{t.id}/devices"
        response, latency, service = timed(
            client, "GET", path, params={"limit": PAGE_SIZE}, headers=t.headers
        )
        body = expect(response, 200, "list page 1")
        if len(body["data"]) != expected_first or body["count"] < cfg.devices_per_tenant:
            raise RuntimeError(f"list page 1: {len(body['data'])} of {body['count']} devices")
        if i >= cfg.warmup:
            page1.add(latency, service)
        cursor = body.get("next_cursor")
        if cursor is None:
            continue
        response, latency, service = timed(
            client, "GET", path, params={"limit": PAGE_SIZE, "cursor": cursor}, headers=t.headers
        )
        body2 = expect(response, 200, "list page 2")
        if not body2["data"] or body2["data"][0]["id"] <= body["data"][-1]["id"]:
            raise RuntimeError("list page 2 does not follow page 1")
        if i >= cfg.warmup:
            page2.add(latency, service)


def measure_creates(
    client: httpx.Client,
    tenants: list[BenchTenant],
    cfg: StoreConfig,
    rng: random.Random,
    keys: KeySource,
    result: BackendResult,
) -> None:
    create = result.metrics["create"] = Metric(
        "create", "POST a device to a random tenant", BUDGETS_P95_MS["create"]
    )
    deadline = time.monotonic() + cfg.phase_seconds
    for i in range(cfg.warmup + cfg.samples):
        if time.monotonic() > deadline:
            result.truncated = True
            break
        t = rng.choice(tenants)
        payload = {"name": f"bench-{i:05d}", "public_key": keys.next(), "user_id": str(t.user_id)}
        response, latency, service = timed(
            client, "POST", f"/api/v1/tenants/{t.id}/devices", json=payload, headers=t.headers
        )
        body = expect(response, 201, "create device")
        offset4 = int(ipaddress.IPv4Address(body["ipv4"])) - int(
            ipaddress.IPv4Network(t.ipv4_pool).network_address
        )
        if offset4 <= cfg.devices_per_tenant:
            raise RuntimeError(f"IPAM handed out {body['ipv4']}, already held by a loaded device")
        if i >= cfg.warmup:
            create.add(latency, service)


# --- driver --------------------------------------------------------------------------------
@contextmanager
def store_url(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'tongdao.sqlite3'}"
        return
    from tongdao.testing.postgres import PostgresCluster

    # Unix socket only (listen_addresses is empty); the port only names the socket.
    with PostgresCluster(port=55000 + os.getpid() % 1000) as cluster:
        yield cluster.create_database("tongdao_bench")


def run_backend(backend: str, cfg: StoreConfig, workdir: Path) -> BackendResult:
    result = BackendResult(backend)
    rng = random.Random(f"{cfg.seed}:{backend}")
    keys = KeySource(random.Random(f"{cfg.seed}:{backend}:keys"))
    began = time.perf_counter()
    try:
        with store_url(backend, workdir) as url:
            tenants = populate(url, workdir, cfg, keys, result)
            result.load["total_s"] = round(time.perf_counter() - began, 2)
            with (
                ServerProcess(url, workdir / "server") as server,
                httpx.Client(base_url=server.base_url, timeout=30) as client,
            ):
                watch = CpuWatch(server.pid)
                measure_baseline(client, tenants[0], cfg, result)
                measure_lists(client, tenants, cfg, rng, result)
                measure_creates(client, tenants, cfg, rng, keys, result)
                result.cpu = watch.result()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return result


def run(cfg: StoreConfig, backends: list[str], *, mode: str) -> dict[str, Any]:
    runs = run_backends(
        "store",
        mode,
        backends,
        announce=lambda backend: (
            f"[store] {backend}: loading {cfg.tenants * cfg.devices_per_tenant} devices ..."
        ),
        tmp_prefix="tongdao-bench",
        run_backend=lambda backend, tmp: run_backend(backend, cfg, tmp),
    )
    results = runs.results
    budgets_pass = all(
        m.to_json().get("budget", {}).get("pass", True)
        for r in results.values()
        for m in r.metrics.values()
    )
    return {
        **runs.head,
        "config": {**asdict(cfg), "page_size": PAGE_SIZE, "transport": "uvicorn+h11, loopback"},
        "budgets_p95_ms": BUDGETS_P95_MS,
        "machine": runs.machine,
        "backends": {name: r.to_json() for name, r in results.items()},
        "all_budgets_pass": budgets_pass,
        # Other work took a share of the CPU while sampling: latencies are pessimistic.
        "contended": any(r.cpu.get("contended", False) for r in results.values()),
        "errors": {name: r.error for name, r in results.items() if r.error},
    }


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"store benchmark ({report['mode']}): {report['config']['tenants']} tenants x "
        f"{report['config']['devices_per_tenant']} devices, "
        f"{report['config']['samples']} samples after {report['config']['warmup']} warm-up, "
        f"nproc={report['machine']['nproc']}, {report['duration_s']} s",
        f"{'backend':<18}{'metric':<12}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}"
        f"{'svc p50':>9}{'svc p95':>9}  budget p95",
    ]
    for backend, data in report["backends"].items():
        label = f"{backend} {data['version'] or ''}".strip()
        if data["error"]:
            lines.append(f"{label:<18}ERROR {data['error']}")
        for name, metric in data["metrics"].items():
            lat, svc = metric["latency"], metric["service"]
            if not lat["samples"]:
                continue
            budget = metric.get("budget")
            verdict = (
                f"{budget['p95_ms']:g} ms {'PASS' if budget['pass'] else 'FAIL'}" if budget else ""
            )
            lines.append(
                f"{label[:17]:<18}{name:<12}{lat['samples']:>5}{lat['p50_ms']:>9.2f}"
                f"{lat['p95_ms']:>9.2f}{lat['p99_ms']:>9.2f}{lat['mean_ms']:>9.2f}"
                f"{svc.get('p50_ms', float('nan')):>9.2f}{svc.get('p95_ms', float('nan')):>9.2f}"
                f"  {verdict}"
            )
        if data["truncated"]:
            lines.append(f"{label:<18}(sampling stopped at the time limit)")
        cpu = data.get("measurement_cpu") or {}
        if cpu:
            lines.append(
                f"{'':<18}during sampling: machine {cpu['machine_busy_pct']}% busy, other work "
                f"{cpu['other_work_pct']}% of it"
                + ("  ** CONTENDED: numbers are pessimistic **" if cpu["contended"] else "")
            )
        load = data["load"]
        if load:
            lines.append(
                f"{'':<18}load: tenants {load.get('tenants_s', '?')} s, devices "
                f"{load.get('devices_s', '?')} s, store {load.get('store_mib', '?')} MiB"
            )
    lines.append("latencies in ms; svc = time inside the app (server side)")
    return "\n".join(lines)
