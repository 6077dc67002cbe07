"""The control plane's Prometheus metrics, ``GET /metrics`` (prometheus-client).

What it shows, per server process (each replica has its own; counters add up across them):

* ``tongdao_http_request_duration_seconds{method,route}``: request latency, by the route's
  *template* (``/api/v1/tenants/{tenant_id}/devices``), never the raw path, so ids do not
  become label values; a path no route matches counts as ``route="unmatched"``. Long polls are
  requests too: ``/api/v1/gateway/desired-state`` takes up to its ``wait``.
* ``tongdao_http_responses_total{method,route,status}``: answers by status class (``2xx``).
* ``tongdao_gateway_long_poll_waiters``: agents' long polls held open now.
* ``tongdao_gateway_reports_total{outcome}`` (``accepted``, ``duplicate``, ``refused``),
  ``tongdao_gateway_report_rows_total`` (stored) and
  ``tongdao_gateway_report_rows_dropped_total{reason}``: usage report ingest.
* ``tongdao_agents_online{role}``: gateways and connectors that long-polled this replica in the
  last :data:`ONLINE_WINDOW` seconds; ``tongdao_gateway_applied_version_lag{pop}``: how many
  versions the PoP's online gateway is behind ``tongdao_config_version``;
  ``tongdao_connector_applied_version_lag_max``: the most any online connector is behind.

Nothing in it names a tenant or a person: labels are route templates, methods, status
classes, reasons and PoP names (the operator's own infrastructure); connectors (which belong
to a tenant's site) are counted, never labelled.

Who may read it (:func:`metrics_access`): with ``TONGDAO_METRICS_TOKEN`` set, whoever sends
it as a bearer token (401 otherwise); without it, clients on the loopback address only, and
not through a proxy (a request carrying ``X-Forwarded-For`` is refused): 404 to anyone else.
A user's API token of any role does not open it.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from starlette.requests import Request
from starlette.routing import BaseRoute

from tongdao.runtime import Runtime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ONLINE_WINDOW = 90.0  # seconds: a long poll holds up to 60 s, an agent polls again at once
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class PollTracker:
    """Which agents long-polled this process, and when (for ``tongdao_agents_online``)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._seen: dict[uuid.UUID, float] = {}
        self._holding: dict[uuid.UUID, int] = {}
        self._limit = limit

    def begin(self, gateway_id: uuid.UUID) -> None:
        with self._lock:
            self._holding[gateway_id] = self._holding.get(gateway_id, 0) + 1
            self._seen[gateway_id] = time.monotonic()

    def end(self, gateway_id: uuid.UUID) -> None:
        with self._lock:
            left = self._holding.get(gateway_id, 0) - 1
            if left > 0:
                self._holding[gateway_id] = left
            else:
                self._holding.pop(gateway_id, None)
            self._seen[gateway_id] = time.monotonic()

    def online(self, window: float = ONLINE_WINDOW) -> set[uuid.UUID]:
        cutoff = time.monotonic() - window
        with self._lock:
            for gateway_id in [g for g, at in self._seen.items() if at < cutoff]:
                if gateway_id not in self._holding:
                    del self._seen[gateway_id]
            if len(self._seen) > self._limit:  # bounded: forget the oldest
                for gateway_id, _ in sorted(self._seen.items(), key=lambda kv: kv[1])[
                    : len(self._seen) - self._limit
                ]:
                    self._seen.pop(gateway_id, None)
            return set(self._seen) | set(self._holding)


class AgentCollector(Collector):
    """Agents online and their applied-version lag, read from the store at scrape time."""

    def __init__(self, runtime: Runtime, polls: PollTracker) -> None:
        self.runtime = runtime
        self.polls = polls

    def collect(self) -> Iterable[Metric]:
        from tongdao.gateway.changes import current_version
        from tongdao.gateway.models import Gateway
        from tongdao.network.models import Pop

        online = self.polls.online()
        with self.runtime.db.session(write=False) as session:
            version = current_version(session)
            rows = (
                session.execute(
                    select(Gateway.id, Gateway.site_id, Gateway.applied_version, Pop.name)
                    .outerjoin(Pop, Pop.id == Gateway.pop_id)
                    .where(Gateway.id.in_(online), Gateway.revoked_at.is_(None))
                ).all()
                if online
                else []
            )
        yield GaugeMetricFamily(
            "tongdao_config_version",
            "the current version of the data plane's desired state",
            value=version,
        )
        counts = {"gateway": 0, "connector": 0}
        lag_by_pop: dict[str, int] = {}
        connector_lag = 0
        for _id, site_id, applied, pop_name in rows:
            lag = max(version - int(applied), 0)
            if site_id is not None:
                counts["connector"] += 1
                connector_lag = max(connector_lag, lag)
            else:
                counts["gateway"] += 1
                name = str(pop_name)
                lag_by_pop[name] = max(lag_by_pop.get(name, 0), lag)
        family = GaugeMetricFamily(
            "tongdao_agents_online",
            f"agents (gateway, connector) that long-polled this server in the last "
            f"{ONLINE_WINDOW:.0f} s",
            labels=["role"],
        )
        for role, count in counts.items():
            family.add_metric([role], count)
        yield family
        family = GaugeMetricFamily(
            "tongdao_gateway_applied_version_lag",
            "versions the PoP's online gateway is behind tongdao_config_version",
            labels=["pop"],
        )
        for name in sorted(lag_by_pop):
            family.add_metric([name], lag_by_pop[name])
        yield family
        yield GaugeMetricFamily(
            "tongdao_connector_applied_version_lag_max",
            "the most versions any online connector is behind tongdao_config_version",
            value=connector_lag,
        )


class ServerMetrics:
    """One server process's metrics, in a registry of its own (not prometheus-client's global
    one: tests run several apps in one process)."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "tongdao_http_request_duration_seconds",
            "request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.responses = Counter(
            "tongdao_http_responses",
            "answers by route template and status class",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.long_poll_waiters = Gauge(
            "tongdao_gateway_long_poll_waiters",
            "agents' long polls held open now",
            registry=self.registry,
        )
        self.reports = Counter(
            "tongdao_gateway_reports",
            "usage report chunks received, by outcome (accepted, duplicate, refused)",
            ["outcome"],
            registry=self.registry,
        )
        self.report_rows = Counter(
            "tongdao_gateway_report_rows",
            "usage rows stored",
            registry=self.registry,
        )
        self.report_rows_dropped = Counter(
            "tongdao_gateway_report_rows_dropped",
            "usage rows a report was stored without, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.polls = PollTracker()
        self.registry.register(AgentCollector(runtime, self.polls))
        from tongdao.quotas.metrics import QuotaCollector

        self.registry.register(QuotaCollector(runtime))  # issue 13: quota events
        self.route_paths: dict[int, str] = {}

    def learn_routes(self, routes: Sequence[BaseRoute]) -> None:
        """Note each route's full template (with its router's prefix), once every router
        is included: FastAPI may hand the middleware the route as its router declared it
        (``/tenants/{tenant_id}/devices``, without ``/api/v1``)."""
        try:
            from fastapi.routing import iter_route_contexts
        except ImportError:  # older FastAPI copies included routes, full path and all
            return
        for context in iter_route_contexts(routes):
            if context.path:
                self.route_paths.setdefault(id(context.original_route), context.path)


def of(request: Request) -> ServerMetrics | None:
    """The app's metrics (``None`` for an app built without them)."""
    metrics = getattr(request.app.state, "metrics", None)
    return metrics if isinstance(metrics, ServerMetrics) else None


class RequestMetrics:
    """ASGI middleware: each HTTP request's latency and status by route template. The
    template is read after the app answered (the router sets ``scope["route"]``)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            route = route_template(scope, self.metrics.route_paths)
            self.metrics.request_seconds.labels(method, route).observe(time.perf_counter() - began)
            self.metrics.responses.labels(method, route, f"{status // 100}xx").inc()


def route_template(scope: Scope, full_paths: dict[int, str]) -> str:
    route = scope.get("route")
    path = full_paths.get(id(route)) or getattr(route, "path", None)
    if isinstance(path, str):
        return path
    root = scope.get("root_path", "")
    if scope.get("endpoint") is not None and isinstance(root, str) and root:
        return f"{root}/…"  # a mounted app (static files): its mount point only
    return "unmatched"


# --- who may read it -----------------------------------------------------------------------------
def metrics_access(request: Request, token: str | None) -> int:
    """200 when ``request`` may read /metrics, else the status to answer (401, 404)."""
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )
        return 200 if ok else 401
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback and "x-forwarded-for" not in request.headers:
        return 200
    return 404
