"""The "billing" benchmark (issue 13, speed): the monthly billing run on PostgreSQL.

On a throwaway PostgreSQL cluster (:func:`bench.store.store_url`):

1. **populate**: ``tenants`` tenants through the tenant service (pools by IPAM, each with a
   tenant admin, as in :mod:`bench.store`), ``users - 1`` more user accounts each
   (bulk-loaded), one site per ``site_every`` tenants, two plans (per-account seats, sites,
   traffic and cross-border per GB with included traffic); every tenant subscribed to the
   first plan from before the month, and one in ``switch_every`` switched to the second plan
   mid-month (two prorated segments). A PoP with an enrolled gateway carries a month (``hours``
   hours) of hourly rollups for every tenant: the per-tenant hourly rows of the usage ledger
   (``usage_tenant_hourly``, devices and sites; what the run charges traffic from), written
   with SQL as ingestion would have, then ``VACUUM ANALYZE``.
2. **run**: :func:`tongdao.billing.service.run_month` for the month, in process, as the
   ``billing.month`` job and ``tongdao billing run --month`` call it: one invoice per tenant,
   written in batches of tenants (``TONGDAO_BILLING_RUN_BATCH``). Figure: wall time of
   the run (budget ≤ 10 s) and per tenant; every invoice is checked (one per tenant, numbers
   without gaps, totals = sum of lines).
3. **rerun**: the same month again (changes nothing: every tenant already has its invoice).

**Side by side** (``--against <checkout>``, e.g. ``--against /work/main``): the data are made
once, then each round bills a fresh copy of the populated database (``CREATE DATABASE ...
TEMPLATE``) once with the other checkout's code ("before") and once with this one's ("after"),
in alternating order, each in a child process of its own (``<checkout>/src`` first on the
path), so that the CPU of the run's Python (the child) and of PostgreSQL are measured apart.
Every copy is checked as above, and the invoices and lines of all copies must be identical
(:func:`digest`): an optimisation that changes a result fails the benchmark.

Each phase records the CPU split (:class:`bench.machine.CpuWatch`): other work's share of the
machine says how far to trust the figures on a shared host.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from bench.machine import CpuWatch
from bench.runs import run_backends
from bench.server import bench_settings
from bench.store import create_tenants, store_url

BACKENDS = ("postgresql",)
RUN_BUDGET_S = 10.0
USER_CHUNK = 10_000


@dataclass(frozen=True)
class BillingConfig:
    tenants: int = 1_000
    users: int = 100  # accounts per tenant (the tenant admin and users - 1 more)
    hours: int = 720  # the month of hourly rollups (a 30-day month)
    site_every: int = 4  # one tenant in this many has a site
    switch_every: int = 10  # one tenant in this many changes plan mid-month
    seed: int = 13


FULL = BillingConfig()
QUICK = BillingConfig(tenants=20, users=10, hours=72)


@dataclass
class BillingResult:
    backend: str
    version: str | None = None
    load: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    rerun: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, dict[str, Any]] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "load": self.load,
            "run": self.run,
            "rerun": self.rerun,
            "cpu": self.cpu,
            "compare": self.compare,
            "error": self.error,
        }


def the_month() -> date:
    """A 30-day month that has ended (so the run may bill it): September of last year. With
    fewer ``hours`` only the month's first hours carry traffic."""
    return date(datetime.now(UTC).year - 1, 9, 1)


def populate(runtime: Any, cfg: BillingConfig, month: date, result: BillingResult) -> None:
    from tongdao.audit.recorder import SYSTEM, set_actor
    from tongdao.billing import money
    from tongdao.billing.models import CrossBorderBasis, Plan, SeatBasis, Subscription
    from tongdao.gateway.service import create_enrolment, enrol
    from tongdao.network.models import Pop, Site
    from tongdao.runtime import Ctx
    from tongdao.store import partitions
    from tongdao.tenancy.models import User

    began = time.perf_counter()
    tenants, _stats = create_tenants(runtime, cfg.tenants)
    result.load["tenants_s"] = round(time.perf_counter() - began, 2)
    engine = runtime.db.engine
    began = time.perf_counter()
    before = datetime.combine(month, datetime.min.time(), UTC) - timedelta(days=40)
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert(User), rows)
        rows.clear()

    for i, t in enumerate(tenants):
        for n in range(1, cfg.users):
            rows.append(
                {
                    "tenant_id": t.id,
                    "email": f"user{n:03d}@tenant{i:04d}.bench.example",
                    "display_name": f"User {n:03d}",
                    "roles": ["employee"],
                    "password_hash": None,
                    "created_at": before,
                    "updated_at": before,
                }
            )
            if len(rows) >= USER_CHUNK:
                flush()
    if rows:
        flush()
    with engine.begin() as conn:  # the tenant admins, too, existed before the month
        conn.execute(text("UPDATE users SET created_at = :b"), {"b": before})
    result.load["users"] = cfg.tenants * cfg.users
    result.load["users_s"] = round(time.perf_counter() - began, 2)

    began = time.perf_counter()
    codes = {
        f"{kind}_tax_code": "3040203000000000000"
        for kind in ("base", "seat", "site", "traffic", "cross_border")
    }
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        ctx = Ctx(session=session, runtime=runtime)
        plans = [
            Plan(
                name=name, vat_rate=Decimal("0.06"), base_fee=Decimal(base),
                seat_price=Decimal(seat), seat_basis=SeatBasis.ACCOUNT,
                site_price=Decimal("200.00"), included_traffic_gb=100,
                traffic_price_per_gb=Decimal("0.80"), cross_border_price_per_gb=Decimal("6.50"),
                cross_border_basis=CrossBorderBasis.GB, **codes,
            )
            for name, base, seat in (("Bench Seats", "999.00", "35.00"),
                                     ("Bench Seats Plus", "1999.00", "30.00"))
        ]  # fmt: skip
        session.add_all(plans)
        session.flush()
        pop = Pop(
            name="bench-pop", region="CN-BJ", country="CN", endpoint_host="198.51.100.10",
            port_min=51820, port_max=51829,
        )  # fmt: skip
        session.add(pop)
        session.flush()
        _enrolment, token = create_enrolment(ctx, pop, timedelta(hours=1))
        gateway, _credential = enrol(ctx, token, "bench-0", "bench")
        gateway.created_at = before
        switch_on = month + timedelta(days=11)
        for i, t in enumerate(tenants):
            session.add(
                Subscription(
                    tenant_id=t.id, plan_id=plans[0].id, starts_on=month - timedelta(days=31)
                )
            )
            if i % cfg.switch_every == 0:
                session.add(Subscription(tenant_id=t.id, plan_id=plans[1].id, starts_on=switch_on))
            if i % cfg.site_every == 0:
                session.add(
                    Site(
                        tenant_id=t.id, name=f"site-{i:04d}", country="CN", pop_id=pop.id,
                        purpose="office", prefixes=[f"10.{i // 250}.{i % 250}.0/24"],
                        created_at=before,
                    )
                )  # fmt: skip
        session.commit()
        gateway_id, pop_id = gateway.id, pop.id
    result.load["plans_sites_s"] = round(time.perf_counter() - began, 2)

    began = time.perf_counter()
    start, _end = money.month_bounds_utc(month)
    with engine.begin() as conn:
        partitions.ensure_months(conn, [month])
        # Every tenant, every hour: its devices' and (one in site_every) its site's bytes,
        # varying by tenant and hour; one in five hours with some cross-border bytes.
        conn.execute(
            text(
                "INSERT INTO usage_tenant_hourly (tenant_id, hour, gateway_id, peer_kind, "
                "pop_id, rx_bytes, tx_bytes, cross_border_rx_bytes, cross_border_tx_bytes) "
                "SELECT t.id, h.hour, :g, k.kind, :p, "
                "100000000 + (h.n * 7919 + t.n * 104729) % 50000000, "
                "300000000 + (h.n * 6151 + t.n * 15485863) % 90000000, "
                "CASE WHEN h.n % 5 = 0 THEN 20000000 ELSE 0 END, "
                "CASE WHEN h.n % 5 = 0 THEN 5000000 ELSE 0 END "
                "FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM tenants) t "
                "CROSS JOIN (SELECT CAST(:start AS timestamptz) + n * interval '1 hour' AS hour, n "
                "FROM generate_series(0, :hours - 1) n) h "
                "CROSS JOIN (VALUES ('device'), ('site')) k(kind) "
                "WHERE k.kind = 'device' OR t.n % :site_every = 1"
            ),
            {
                "g": gateway_id,
                "p": pop_id,
                "start": start,
                "hours": cfg.hours,
                "site_every": cfg.site_every,
            },
        )
        result.load["tenant_hourly_rows"] = int(
            conn.scalar(text("SELECT count(*) FROM usage_tenant_hourly")) or 0
        )
    result.load["fill_month_s"] = round(time.perf_counter() - began, 2)
    began = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    result.load["analyze_s"] = round(time.perf_counter() - began, 2)


def check(db: Any, cfg: BillingConfig, month: date) -> dict[str, Any]:
    """One invoice per tenant, numbers without gaps, totals = sums of lines."""
    from tongdao.billing.models import Invoice, InvoiceLine
    from tongdao.billing.service import number_value

    month_text = month.strftime("%Y-%m")
    with db.session(write=False) as session:
        invoices = session.execute(
            select(Invoice.number, Invoice.subtotal, Invoice.vat, Invoice.total).where(
                Invoice.month == month_text
            )
        ).all()
        lines = dict(
            session.execute(
                select(InvoiceLine.invoice_id, func.count()).group_by(InvoiceLine.invoice_id)
            ).all()
        )
        sums = session.execute(
            select(
                func.sum(Invoice.total),
                select(func.sum(InvoiceLine.amount) + func.sum(InvoiceLine.vat)).scalar_subquery(),
            )
        ).one()
    numbers = sorted(number_value(n) for n, *_ in invoices)
    if len(invoices) != cfg.tenants:
        raise RuntimeError(f"{len(invoices)} invoices for {cfg.tenants} tenants")
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise RuntimeError("invoice numbers have a gap")
    if any(s + v != t for _n, s, v, t in invoices) or sums[0] != sums[1]:
        raise RuntimeError("an invoice total is not the sum of its lines and VAT")
    return {
        "invoices": len(invoices),
        "lines": sum(lines.values()),
        "total_yuan": str(sums[0]),
    }


def digest(db: Any, month: date) -> dict[str, Any]:
    """A SHA-256 over every invoice of the month and its lines (numbers, tenants, buyer and
    seller, amounts, quantities, descriptions, keys; not ids or times), and the count of
    audit records: what must be the same whichever code made them."""
    from tongdao.audit.models import AuditEvent
    from tongdao.billing.models import Invoice, InvoiceLine

    h = hashlib.sha256()
    with db.session(write=False) as session:
        invoices = session.execute(
            select(Invoice).where(Invoice.month == month.strftime("%Y-%m")).order_by(Invoice.number)
        ).scalars()
        by_id = {}
        for inv in invoices:
            by_id[inv.id] = inv.number
            h.update(
                repr((inv.number, str(inv.tenant_id), inv.kind, inv.dedupe_key, inv.state,
                      inv.subtotal, inv.vat, inv.total, inv.amount_paid, inv.buyer_name,
                      inv.buyer_tax_id, inv.buyer_address_phone, inv.buyer_bank,
                      inv.buyer_account, inv.seller_name, inv.seller_tax_id,
                      inv.seller_address_phone, inv.payment_terms_days)).encode()
            )  # fmt: skip
        lines = session.execute(select(InvoiceLine)).scalars()
        rows = sorted(
            (by_id[x.invoice_id], x.position, x.kind, x.description, x.tax_code, x.unit,
             x.quantity, x.unit_price, x.period_start, x.period_end, x.amount, x.vat_rate,
             x.vat, x.usage_key, str(x.tenant_id))
            for x in lines
        )  # fmt: skip
        for row in rows:
            h.update(repr(row).encode())
        records = session.scalar(select(func.count()).select_from(AuditEvent))
    return {"sha256": h.hexdigest(), "audit_records": int(records or 0)}


def verify_audit(db: Any, url: str, workdir: Path) -> bool:
    """``tongdao audit verify`` on the copy: the chain holds over every record."""
    from tongdao.audit.chain import SigningKey, verify_chain

    report = verify_chain(db, SigningKey.from_settings(bench_settings(url, workdir)))
    if not report.ok:
        raise RuntimeError(f"the audit chain does not verify: {report.problem}")
    return True


# The child that bills one copy (run with a checkout's src first on the path): it connects,
# says "ready", waits for "go" (the parent starts its CPU watch in between), bills the month,
# prints the outcome and waits for the parent to read its CPU before it exits.
CHILD = """
import json, sys, time
from datetime import date
import tongdao
from tongdao.store.engine import Database
from tongdao.billing.service import run_month
db = Database(sys.argv[1])
with db.session(write=False) as s:
    s.connection()
print(json.dumps({"ready": tongdao.__file__}), flush=True)
sys.stdin.readline()
began = time.perf_counter()
out = run_month(db, date.fromisoformat(sys.argv[2]))
wall = time.perf_counter() - began
print(json.dumps({"wall_s": wall, "created": len(out.created), "existing": out.existing}),
      flush=True)
sys.stdin.readline()
db.dispose()
"""


def bill_in_child(tree: Path, url: str, month: date) -> dict[str, Any]:
    """Bill ``month`` on ``url`` with the code of checkout ``tree``, in a child process: its
    wall time, and the CPU of the child (the run's Python) and of PostgreSQL."""
    python = tree / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    proc = subprocess.Popen(
        [str(python if python.exists() else sys.executable), "-c", CHILD, url, month.isoformat()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = json.loads(proc.stdout.readline())
        if not str(ready["ready"]).startswith(str(tree / "src")):
            raise RuntimeError(f"the child ran {ready['ready']}, not the code of {tree}")
        watch = CpuWatch(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        cpu = watch.result()
        if not line:
            raise RuntimeError(f"the run with {tree} failed (exit {proc.wait()})")
        outcome = json.loads(line)
        proc.stdin.write("done\n")
        proc.stdin.flush()
    finally:
        proc.stdin.close()
        if proc.wait(timeout=60) != 0:
            raise RuntimeError(f"the run with {tree} exited {proc.returncode}")
    return {
        "wall_s": round(outcome["wall_s"], 2),
        "created": outcome["created"],
        "cpu_s_python": cpu["cpu_s_app_server"],
        "cpu_s_postgresql": round(cpu["cpu_s_database_server"], 2),
        "other_work_pct": cpu["other_work_pct"],
        "machine_busy_pct": cpu["machine_busy_pct"],
        "cpu": cpu,
    }


def side_by_side(
    cluster: Any,
    template: str,
    cfg: BillingConfig,
    month: date,
    against: Path,
    rounds: int,
    workdir: Path,
) -> dict[str, Any]:
    """``rounds`` rounds of before (``against``) and after (this checkout), each on a fresh
    copy of the populated database, in alternating order; every copy checked, all alike."""
    from tongdao.store.engine import Database

    here = Path(__file__).resolve().parent.parent
    trees = {"before": against.resolve(), "after": here}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    digests: set[str] = set()
    for n in range(rounds):
        order = ("before", "after") if n % 2 == 0 else ("after", "before")
        for label in order:
            name = f"bill_{n}_{label}"
            url = cluster.create_database(name, template=template)
            try:
                got = bill_in_child(trees[label], url, month)
                db = Database(url)
                try:
                    got.update(check(db, cfg, month))
                    got.update(digest(db, month))
                    got["audit_verify_ok"] = verify_audit(db, url, workdir)
                finally:
                    db.dispose()
            finally:
                cluster.drop_database(name)
            digests.add(got["sha256"])
            runs[label].append(got)
            print(
                f"[billing] round {n + 1} {label}: {got['wall_s']} s wall, CPU "
                f"{got['cpu_s_python']} s Python + {got['cpu_s_postgresql']} s PostgreSQL, "
                f"other work {got['other_work_pct']}%",
                flush=True,
            )
    if len(digests) != 1:
        raise RuntimeError("before and after made different invoices")

    def best(label: str, key: str) -> float:
        return float(min(r[key] for r in runs[label]))

    ratios = {
        key: round(best("before", key) / best("after", key), 2) if best("after", key) else None
        for key in ("wall_s", "cpu_s_python", "cpu_s_postgresql")
    }
    return {"against": str(trees["before"]), "rounds": rounds, "runs": runs,
            "identical": True, "ratio_before_over_after_best": ratios}  # fmt: skip


@contextmanager
def cluster_url(workdir: Path) -> Iterator[tuple[Any, str]]:
    from tongdao.testing.postgres import PostgresCluster

    with PostgresCluster(port=55000 + os.getpid() % 1000) as cluster:
        yield cluster, cluster.create_database("tongdao_bench")


def run_backend(
    backend: str,
    cfg: BillingConfig,
    workdir: Path,
    against: Path | None = None,
    rounds: int = 2,
) -> BillingResult:
    from tongdao.billing.service import run_month
    from tongdao.runtime import Runtime
    from tongdao.store import migrate

    result = BillingResult(backend)
    random.seed(cfg.seed)
    if against is not None:
        return run_side_by_side(cfg, workdir, against, rounds, result)
    try:
        with store_url(backend, workdir) as url:
            migrate.upgrade(url)
            runtime = Runtime.from_settings(bench_settings(url, workdir))
            try:
                month = the_month()
                populate(runtime, cfg, month, result)
                watch = CpuWatch(None)
                began = time.perf_counter()
                outcome = run_month(runtime.db, month)
                wall = time.perf_counter() - began
                result.cpu["run"] = watch.result()
                result.run = {
                    "month": outcome.month,
                    "created": len(outcome.created),
                    "wall_s": round(wall, 2),
                    "ms_per_tenant": round(wall * 1000 / max(1, cfg.tenants), 2),
                    "budget_s": RUN_BUDGET_S if backend == "postgresql" else None,
                    "pass": wall <= RUN_BUDGET_S if backend == "postgresql" else None,
                    **check(runtime.db, cfg, month),
                }
                watch = CpuWatch(None)
                began = time.perf_counter()
                again = run_month(runtime.db, month)
                result.rerun = {
                    "created": len(again.created),
                    "existing": again.existing,
                    "wall_s": round(time.perf_counter() - began, 2),
                }
                result.cpu["rerun"] = watch.result()
                if again.created:
                    raise RuntimeError("running the month again made invoices")
                with runtime.db.session(write=False) as session:
                    if backend == "postgresql":
                        result.version = str(session.execute(text("show server_version")).scalar())
            finally:
                runtime.db.dispose()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return result


def run_side_by_side(
    cfg: BillingConfig, workdir: Path, against: Path, rounds: int, result: BillingResult
) -> BillingResult:
    from tongdao.runtime import Runtime
    from tongdao.store import migrate

    try:
        with cluster_url(workdir) as (cluster, url):
            migrate.upgrade(url)
            runtime = Runtime.from_settings(bench_settings(url, workdir))
            month = the_month()
            try:
                populate(runtime, cfg, month, result)
                with runtime.db.session(write=False) as session:
                    result.version = str(session.execute(text("show server_version")).scalar())
            finally:
                runtime.db.dispose()
            result.compare = side_by_side(
                cluster, "tongdao_bench", cfg, month, against, rounds, workdir
            )
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return result


def run(
    cfg: BillingConfig,
    backends: list[str],
    *,
    mode: str,
    against: Path | None = None,
    rounds: int = 2,
) -> dict[str, Any]:
    runs = run_backends(
        "billing",
        mode,
        backends,
        announce=lambda backend: (
            f"[billing] {backend}: {cfg.tenants} tenants x {cfg.users} users, "
            f"{cfg.hours} hours of rollups ..."
        ),
        tmp_prefix="tongdao-bench-billing",
        run_backend=lambda backend, tmp: run_backend(backend, cfg, tmp, against, rounds),
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
        f"billing benchmark ({report['mode']}): {cfg['tenants']} tenants x {cfg['users']} "
        f"users, {cfg['hours']} hours of rollups, {report['duration_s']} s"
    ]
    for backend, data in report["backends"].items():
        if data["error"]:
            lines.append(f"{backend}: ERROR {data['error']}")
        run = data["run"]
        if run:
            verdict = "" if run["pass"] is None else (" PASS" if run["pass"] else " FAIL")
            lines.append(
                f"{backend}: monthly run {run['wall_s']} s for {run['created']} invoices "
                f"({run['ms_per_tenant']} ms a tenant, budget {run['budget_s']} s){verdict}"
            )
        compare = data.get("compare") or {}
        for label in ("before", "after"):
            for n, r in enumerate(compare.get("runs", {}).get(label, []), start=1):
                lines.append(
                    f"{backend}: {label} (round {n}): {r['wall_s']} s wall, CPU "
                    f"{r['cpu_s_python']} s Python + {r['cpu_s_postgresql']} s PostgreSQL, "
                    f"other work {r['other_work_pct']}%, {r['invoices']} invoices, "
                    f"{r['audit_records']} audit records"
                )
        if compare:
            lines.append(
                f"{backend}: before/after (best of {compare['rounds']}): "
                f"{compare['ratio_before_over_after_best']}; results identical"
            )
        if data["rerun"]:
            lines.append(f"{backend}: rerun {data['rerun']['wall_s']} s (nothing made)")
        for phase, cpu in data["cpu"].items():
            lines.append(
                f"{backend}: during {phase}: machine {cpu['machine_busy_pct']}% busy, "
                f"other work {cpu['other_work_pct']}%"
                + ("  ** CONTENDED **" if cpu["contended"] else "")
            )
    return "\n".join(lines)
