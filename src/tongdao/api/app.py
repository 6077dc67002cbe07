"""The ASGI application: ``/api/v1`` (REST + OpenAPI), health probes and the web console."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import text

from tongdao import __version__
from tongdao.api import errors
from tongdao.api.metrics import RequestMetrics, ServerMetrics, metrics_access
from tongdao.gateway.changes import PgListener
from tongdao.runtime import Runtime

log = logging.getLogger("tongdao.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(
        self, app: ASGIApp, limit: int, larger: tuple[tuple[re.Pattern[str], int], ...] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        # Routes that take larger bodies (document uploads): a path pattern and its limit;
        # the refusal names the field ``file``.
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, field = self.limit, None
        for pattern, bigger in self.larger:
            if pattern.fullmatch(scope.get("path", "")):
                limit, field = bigger, "file"
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit, field)
            return
        seen = 0
        responded = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLargeError:
            if not responded:
                await self._refuse(send, limit, field)

    async def _refuse(self, send: Send, limit: int, field: str | None) -> None:
        response = JSONResponse(
            errors.error_body(
                "payload_too_large",
                f"request bodies are limited to {limit} bytes",
                {field: f"larger than {limit} bytes"} if field else None,
            ),
            status_code=413,
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class _TooLargeError(Exception):
    pass


def create_app(runtime: Runtime) -> FastAPI:
    from tongdao.access.routes import router as access_router
    from tongdao.audit.routes import router as audit_router
    from tongdao.auth.reset_routes import router as reset_router
    from tongdao.auth.routes import router as auth_router
    from tongdao.auth.second_factor_routes import router as second_factor_router
    from tongdao.billing.routes import router as billing_router
    from tongdao.crossborder import documents as crossborder_documents
    from tongdao.crossborder.routes import router as crossborder_router
    from tongdao.gateway.ledger_routes import router as ledger_router
    from tongdao.gateway.routes import router as gateway_router
    from tongdao.gateway.usage import router as usage_router
    from tongdao.jobs.scheduler import Scheduler
    from tongdao.mail.routes import router as mail_router
    from tongdao.mail.sender import mailer_of
    from tongdao.network.routes import router as network_router
    from tongdao.operator.bootstrap import warn_conflicting_staff
    from tongdao.operator.routes import router as operator_router
    from tongdao.privacy.routes import router as privacy_router
    from tongdao.quotas.routes import router as quotas_router
    from tongdao.tenancy.routes import router as tenancy_router
    from tongdao.web.docs import router as docs_router
    from tongdao.web.first_run import FirstRun
    from tongdao.web.pages import ROUTERS as CONSOLE_ROUTERS
    from tongdao.web.password import router as password_page_router
    from tongdao.web.routes import router as web_router

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync endpoints and dependencies run in anyio's default thread pool: cap how many
        # run at once (anyio's default is 40). Under load, 40 requests sharing one interpreter
        # lock each run slowly, and a writer holding the store's write lock waits for the
        # interpreter behind the others (bench/load.py; figures in Settings).
        to_thread.current_default_thread_limiter().total_tokens = (
            runtime.settings.resolved_request_threads
        )
        listener = None
        if not runtime.db.is_sqlite:
            # Changes committed through other replicas wake this one's long-polling gateways.
            listener = PgListener(runtime.db.url.render_as_string(hide_password=False)).start()
        try:
            app.state.first_run.announce(runtime)
        except Exception as exc:  # a store not reachable yet: the setup page retries
            log.warning("could not check for a first operator admin: %s", exc)
        try:
            warn_conflicting_staff(runtime)  # one account as admin and officer: say so
        except Exception as exc:
            log.warning("could not check staff for separate duties: %s", exc)
        mailer = mailer_of(runtime)
        mailer.wake()  # deliver what was queued before a restart
        # Scheduled work (the monthly billing run) under leases in the store.
        scheduler = app.state.scheduler = Scheduler(
            runtime, runtime.settings.jobs_interval_seconds
        ).start()
        try:
            yield
        finally:
            scheduler.stop()
            mailer.stop()
            if listener is not None:
                listener.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Tongdao control plane",
        version=__version__,
        description="Enterprise VPN for a licensed operator: tenants, users, devices, sites, "
        "PoPs, cross-border links and access policy.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served by tongdao.web.docs from the vendored Swagger UI
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.first_run = FirstRun()
    metrics = ServerMetrics(runtime)
    app.state.metrics = metrics
    errors.install(app)

    # Each router is included into the app itself (a nested APIRouter made FastAPI match
    # every request once more per level, a fifth of a request's CPU), the routers with the
    # most requested routes (devices, sites) first: FastAPI tries routes in order. No two
    # API routes match one path and method (tests/unit/test_routes.py), so the order changes
    # which route answers nothing, only how soon it is found.
    for router in (
        network_router,
        auth_router,
        second_factor_router,
        operator_router,
        tenancy_router,
        privacy_router,
        access_router,
        audit_router,
        gateway_router,
        usage_router,
        ledger_router,
        reset_router,
        mail_router,
        billing_router,
        quotas_router,
        crossborder_router,
    ):
        app.include_router(router, prefix="/api/v1", responses=errors.ERROR_RESPONSES)

    @app.get("/healthz", tags=["health"], operation_id="healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"], operation_id="readyz")
    def readyz() -> JSONResponse:
        """The store answers and its schema is at the version this code expects."""
        from tongdao.store.migrate import current_revision, head_revision

        try:
            with runtime.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                current = current_revision(conn)
        except Exception as exc:  # any store failure means not ready
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"status": "unavailable", "reason": "store unreachable"}, 503)
        head = head_revision()
        if current != head:
            return JSONResponse(
                {"status": "unavailable", "reason": f"schema at {current}, code expects {head}"},
                503,
            )
        return JSONResponse({"status": "ready", "schema": current})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        """Prometheus text exposition (see tongdao.api.metrics: what, and who may read it)."""
        allowed = metrics_access(request, runtime.settings.metrics_token)
        if allowed == 401:
            return JSONResponse(
                errors.error_body("not_authenticated", "the metrics token is required"),
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if allowed != 200:
            return JSONResponse(errors.error_body("not_found", "Not Found"), 404)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    app.include_router(web_router)
    for console_router in CONSOLE_ROUTERS:
        app.include_router(console_router)
    app.include_router(docs_router)
    app.include_router(password_page_router)
    app.add_middleware(
        BodyLimit,
        limit=runtime.settings.max_body_bytes,
        larger=(
            (
                re.compile(r"/api/v1/tenants/[^/]+/crossborder/applications/[^/]+/documents"),
                crossborder_documents.MAX_BYTES,
            ),
            (
                re.compile(r"/console/crossborder/[^/]+/documents"),
                crossborder_documents.MAX_BYTES + 64 * 1024,
            ),
        ),
    )
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: refusals count too
    metrics.learn_routes(app.routes)
    return app
