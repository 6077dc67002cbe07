"""The "load" benchmark: concurrent clients creating and listing devices against one server.

For each backend (SQLite, then PostgreSQL on a throwaway cluster) it

1. migrates an empty store and creates one active tenant through the tenant service (a /16
   IPv4 pool, so that a minute of creations cannot fill it) with a tenant admin holding an
   API token and one employee per client, each with a recorded and verified identity;
2. serves the app with uvicorn in a child process on 127.0.0.1 (:mod:`bench.server`);
3. runs ``clients`` threads, each with its own keep-alive ``httpx.Client``, for ``seconds``:
   every loop creates a device (a fresh X25519 public key, owned by the client's employee)
   and lists the first page of the tenant's devices. Each loop is bounded in time (the
   deadline) and in count (``max_requests_per_client``), every request by a timeout;
4. checks afterwards, in the store, that nothing was lost: the tenant holds exactly the
   devices whose creation was answered 201, with the ids and addresses the API answered, and
   every IPv4 and IPv6 address and host index is distinct.

Latency is client-side (request sent to body read), per operation and overall; errors are
counted by kind (HTTP status or transport error), never retried.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench import store
from bench.machine import CpuWatch
from bench.runs import run_backends
from bench.server import SERVICE_HEADER, ServerProcess, bench_settings
from bench.stats import summarize
from bench.store import store_url, uscc_for
from tongdao.testing.keys import public_key

BACKENDS = store.BACKENDS
PAGE_SIZE = 50
# Issue 10's target for 20 clients on the embedded default (SQLite), on a 2-core machine.
BUDGET_P99_MS = 250.0


@dataclass(frozen=True)
class LoadConfig:
    clients: int
    seconds: float
    # A bound on each client's loop besides the deadline (a create and a list per loop).
    max_requests_per_client: int = 100_000
    request_timeout_s: float = 30.0
    ipv4_pool_prefixlen: int = 16


FULL = LoadConfig(clients=20, seconds=60.0)
QUICK = LoadConfig(clients=20, seconds=10.0)


@dataclass(frozen=True)
class LoadTenant:
    id: uuid.UUID
    token: str
    user_ids: list[uuid.UUID]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class ClientLog:
    """What one client thread saw (only that thread appends, so no lock is needed)."""

    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "list": []})
    service_ms: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "list": []})
    errors: Counter[str] = field(default_factory=Counter)
    created: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ipv4, ipv6)
    truncated: bool = False


@dataclass
class BackendResult:
    backend: str
    request_threads: int
    version: str | None = None
    setup: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "version": self.version,
            "request_threads": self.request_threads,
            "setup": self.setup,
            **self.run,
            "nothing_lost": self.check,
            "measurement_cpu": self.cpu,
            "error": self.error,
        }


# --- data ----------------------------------------------------------------------------------
def create_tenant(runtime: Any, cfg: LoadConfig) -> LoadTenant:
    """One active tenant, its admin with an API token, and one verified employee per client."""
    from tongdao.audit.recorder import SYSTEM, set_actor
    from tongdao.auth.principal import ALL_SCOPES
    from tongdao.auth.service import issue_token
    from tongdao.runtime import Ctx
    from tongdao.tenancy.models import TenantState, User
    from tongdao.tenancy.schemas import TenantCreate
    from tongdao.tenancy.service import TenantResource
    from tongdao.testing.identity import seed_verified

    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        ctx = Ctx(session=session, runtime=runtime)
        data = TenantCreate(
            name_en="Load Tenant",
            name_zh="负载租户",
            uscc=uscc_for(0),
            ipv4_pool_prefixlen=cfg.ipv4_pool_prefixlen,
        )
        tenant = TenantResource().create(ctx, None, data)
        tenant.state = TenantState.ACTIVE
        people: list[User] = []
        for n in range(cfg.clients + 1):
            admin = n == 0
            user = User(
                tenant_id=tenant.id,
                email="admin@load.bench.example" if admin else f"staff{n:03d}@load.bench.example",
                display_name="Admin" if admin else f"Staff {n:03d}",
                roles=["tenant_admin" if admin else "employee"],
                password_hash=None,
            )
            seed_verified(user, runtime.cipher, runtime.clock(), n=n)
            session.add(user)
            people.append(user)
        session.flush()
        _token, secret = issue_token(
            ctx, people[0], kind="api", name="load", scopes=ALL_SCOPES, ttl=timedelta(days=1)
        )
        out = LoadTenant(tenant.id, secret, [u.id for u in people[1:]])
        session.commit()
    return out


# --- the clients ---------------------------------------------------------------------------
def client_loop(
    index: int,
    base_url: str,
    tenant: LoadTenant,
    cfg: LoadConfig,
    start: threading.Barrier,
    deadline_box: list[float],
    log: ClientLog,
) -> None:
    path = f"/api/v1/tenants/{tenant.id}/devices"
    owner = str(tenant.user_ids[index % len(tenant.user_ids)])
    with httpx.Client(
        base_url=base_url, timeout=cfg.request_timeout_s, headers=tenant.headers
    ) as client:
        start.wait(timeout=60)
        deadline = deadline_box[0]
        sent = 0
        while True:
            if time.monotonic() >= deadline:
                break
            if sent >= cfg.max_requests_per_client:
                log.truncated = True
                break
            key = public_key()  # a fresh X25519 pair's public half, made before the clock
            payload = {"name": f"load-{index:02d}-{sent:06d}", "public_key": key, "user_id": owner}
            body = _request(client, log, "create", "POST", path, 201, json=payload)
            if body is not None:
                log.created[body["id"]] = (body["ipv4"], body["ipv6"])
            _request(client, log, "list", "GET", path, 200, params={"limit": PAGE_SIZE})
            sent += 2


def _request(
    client: httpx.Client,
    log: ClientLog,
    op: str,
    method: str,
    path: str,
    status: int,
    **kwargs: Any,
) -> dict[str, Any] | None:
    started = time.perf_counter_ns()
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        log.errors[f"{op}: {type(exc).__name__}"] += 1
        return None
    log.latency_ms[op].append((time.perf_counter_ns() - started) / 1e6)
    header = response.headers.get(SERVICE_HEADER)
    if header:
        log.service_ms[op].append(int(header) / 1000)
    if response.status_code != status:
        log.errors[f"{op}: HTTP {response.status_code}"] += 1
        return None
    body: dict[str, Any] = response.json()
    return body


def run_clients(base_url: str, tenant: LoadTenant, cfg: LoadConfig) -> list[ClientLog]:
    logs = [ClientLog() for _ in range(cfg.clients)]
    deadline_box = [0.0]

    def open_gate() -> None:  # the barrier's action: runs once, when every client is ready
        deadline_box[0] = time.monotonic() + cfg.seconds

    gate = threading.Barrier(cfg.clients, action=open_gate)
    threads = [
        threading.Thread(
            target=client_loop,
            args=(i, base_url, tenant, cfg, gate, deadline_box, logs[i]),
            name=f"load-client-{i}",
            daemon=True,
        )
        for i in range(cfg.clients)
    ]
    for t in threads:
        t.start()
    # Each client stops at the deadline; its last request is bounded by the timeout.
    limit = time.monotonic() + 60 + cfg.seconds + 2 * cfg.request_timeout_s
    for t in threads:
        t.join(max(0.0, limit - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a load client did not finish in time")
    return logs


# --- checks and figures --------------------------------------------------------------------
def check_nothing_lost(runtime: Any, tenant: LoadTenant, logs: list[ClientLog]) -> dict[str, Any]:
    """The store holds exactly the answered creations, with the answered addresses."""
    from tongdao.network.models import Device

    answered: dict[str, tuple[str, str]] = {}
    for log in logs:
        answered.update(log.created)
    with runtime.db.session(write=False) as session:
        rows = session.execute(
            select(Device.id, Device.ipv4, Device.ipv6, Device.host_index).where(
                Device.tenant_id == tenant.id
            )
        ).all()
        count = session.scalar(
            select(func.count()).select_from(Device).where(Device.tenant_id == tenant.id)
        )
    stored = {str(r.id): (r.ipv4, r.ipv6) for r in rows}
    missing = sorted(set(answered) - set(stored))
    unexpected = sorted(set(stored) - set(answered))
    wrong = sorted(i for i in set(answered) & set(stored) if answered[i] != stored[i])
    result = {
        "successful_creates": len(answered),
        "devices_in_store": count,
        "missing": len(missing),
        "unexpected": len(unexpected),
        "address_differs": len(wrong),
        "distinct_ipv4": len({r.ipv4 for r in rows}),
        "distinct_ipv6": len({r.ipv6 for r in rows}),
        "distinct_host_index": len({r.host_index for r in rows}),
    }
    result["ok"] = (
        count == len(answered) == len(rows)
        and not missing
        and not unexpected
        and not wrong
        and result["distinct_ipv4"] == result["distinct_ipv6"] == len(rows)
        and result["distinct_host_index"] == len(rows)
    )
    return result


def figures(logs: list[ClientLog], seconds: float) -> dict[str, Any]:
    def merged(op: str | None, kind: str = "latency_ms") -> list[float]:
        out: list[float] = []
        for log in logs:
            parts = getattr(log, kind)
            for name, values in parts.items():
                if op is None or name == op:
                    out.extend(values)
        return out

    errors: Counter[str] = Counter()
    for log in logs:
        errors.update(log.errors)
    total = summarize(merged(None))
    ok = sum(len(v) for log in logs for v in log.latency_ms.values()) - sum(
        n for k, n in errors.items() if "HTTP" in k
    )
    return {
        "latency": total,
        "by_operation": {
            op: {"latency": summarize(merged(op)), "service": summarize(merged(op, "service_ms"))}
            for op in ("create", "list")
        },
        "requests": total.get("samples", 0) + sum(n for k, n in errors.items() if "HTTP" not in k),
        "successful_requests": ok,
        "throughput_rps": round(ok / seconds, 1) if seconds else None,
        "creates_per_s": round(sum(len(log.created) for log in logs) / seconds, 1)
        if seconds
        else None,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(sorted(errors.items())),
        "truncated": any(log.truncated for log in logs),
    }


# --- driver --------------------------------------------------------------------------------
def run_backend(backend: str, cfg: LoadConfig, workdir: Path, threads: int) -> BackendResult:
    from tongdao.runtime import Runtime
    from tongdao.store import migrate

    result = BackendResult(backend, threads)
    try:
        with store_url(backend, workdir) as url:
            began = time.perf_counter()
            migrate.upgrade(url)
            runtime = Runtime.from_settings(bench_settings(url, workdir))
            try:
                tenant = create_tenant(runtime, cfg)
                with runtime.db.engine.connect() as conn:
                    query = (
                        "select sqlite_version()" if backend == "sqlite" else "show server_version"
                    )
                    result.version = str(conn.exec_driver_sql(query).scalar())
                result.setup["seconds"] = round(time.perf_counter() - began, 2)
                env = {"TONGDAO_REQUEST_THREADS": str(threads)}
                with ServerProcess(url, workdir / "server", env=env) as server:
                    watch = CpuWatch(server.pid)
                    began = time.monotonic()
                    logs = run_clients(server.base_url, tenant, cfg)
                    wall = time.monotonic() - began
                    result.cpu = watch.result()
                result.run = {"wall_s": round(wall, 2), **figures(logs, cfg.seconds)}
                result.check = check_nothing_lost(runtime, tenant, logs)
            finally:
                runtime.db.dispose()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return result


def default_request_threads(backend: str) -> int:
    """The server's own default for ``TONGDAO_REQUEST_THREADS`` on a backend."""
    from tongdao.config import load_settings

    url = "sqlite://" if backend == "sqlite" else "postgresql+psycopg://bench@localhost/bench"
    return load_settings(env="test", database_url=url).resolved_request_threads


def variants(backends: list[str], threads: list[int] | None) -> dict[str, tuple[str, int]]:
    """Runs by name: each backend once per thread count, one after the other (so that the
    counts are compared side by side on the same machine state). With one count (or the
    server's default), a run is named after its backend alone."""
    if not threads:
        return {backend: (backend, default_request_threads(backend)) for backend in backends}
    return {
        (backend if len(threads) == 1 else f"{backend} threads={n}"): (backend, n)
        for backend in backends
        for n in threads
    }


def run(
    cfg: LoadConfig, backends: list[str], *, mode: str, threads: list[int] | None = None
) -> dict[str, Any]:
    """``threads``: the server's ``TONGDAO_REQUEST_THREADS`` per run (default: its own)."""
    plan = variants(backends, threads)
    runs = run_backends(
        "load",
        mode,
        list(plan),
        announce=lambda name: f"[load] {name}: {cfg.clients} clients for {cfg.seconds:g} s ...",
        tmp_prefix="tongdao-load",
        run_backend=lambda name, tmp: run_backend(plan[name][0], cfg, tmp, plan[name][1]),
    )
    results = runs.results
    errors: dict[str, str] = {}
    for name, r in results.items():
        if r.error:
            errors[name] = r.error
        elif not r.check.get("ok"):
            errors[name] = f"something was lost or doubled: {r.check}"
    return {
        **runs.head,
        "config": {
            **asdict(cfg),
            "page_size": PAGE_SIZE,
            "loop": "POST a device, then GET the first page of the tenant's devices",
            "transport": "uvicorn+h11, loopback, one keep-alive connection per client",
            "default_request_threads": {b: default_request_threads(b) for b in backends},
        },
        "budget_p99_ms": BUDGET_P99_MS,
        "machine": runs.machine,
        "backends": {name: r.to_json() for name, r in results.items()},
        "contended": any(r.cpu.get("contended", False) for r in results.values()),
        "errors": errors,
    }


def summary(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"load benchmark ({report['mode']}): {cfg['clients']} clients x {cfg['seconds']:g} s, "
        f"create + list per loop, nproc={report['machine']['nproc']}, {report['duration_s']} s",
        f"{'backend':<28}{'op':<8}{'n':>7}{'p50':>9}{'p99':>9}{'max':>9}{'req/s':>8}"
        f"{'errors':>8}  budget p99 (all)",
    ]
    for backend, data in report["backends"].items():
        label = f"{backend} {data['version'] or ''}".strip()
        if data["error"]:
            lines.append(f"{label:<28}ERROR {data['error']}")
            continue
        rows = [("all", data["latency"])] + [
            (op, v["latency"]) for op, v in data["by_operation"].items()
        ]
        for op, lat in rows:
            if not lat.get("samples"):
                continue
            extra = ""
            if op == "all":
                verdict = "PASS" if lat["p99_ms"] <= report["budget_p99_ms"] else "FAIL"
                extra = (
                    f"{data['throughput_rps']:>8}{data['errors']:>8}  "
                    f"{report['budget_p99_ms']:g} ms {verdict}"
                )
            lines.append(
                f"{label[:27]:<28}{op:<8}{lat['samples']:>7}{lat['p50_ms']:>9.1f}"
                f"{lat['p99_ms']:>9.1f}{lat['max_ms']:>9.1f}{extra}"
            )
        check = data["nothing_lost"]
        lines.append(
            f"{'':<28}nothing lost: {'yes' if check.get('ok') else 'NO'} "
            f"({check.get('successful_creates')} created, {check.get('devices_in_store')} stored)"
        )
        cpu = data.get("measurement_cpu") or {}
        if cpu:
            lines.append(
                f"{'':<28}machine {cpu['machine_busy_pct']}% busy, other work "
                f"{cpu['other_work_pct']}% of it"
                + ("  ** CONTENDED: numbers are pessimistic **" if cpu["contended"] else "")
            )
    lines.append("latencies in ms, client side")
    return "\n".join(lines)
