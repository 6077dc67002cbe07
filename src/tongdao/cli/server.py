"""``tongdao server``: migrate the store, then serve the API and console."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from

log = logging.getLogger("tongdao.server")


def serve(
    host: Annotated[str | None, typer.Option(envvar="TONGDAO_HOST", help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(envvar="TONGDAO_PORT", help="TCP port")] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    migrate: Annotated[bool, typer.Option(help="upgrade the schema before serving")] = True,
    trusted_proxies: Annotated[
        str | None,
        typer.Option(
            envvar="TONGDAO_TRUSTED_PROXIES",
            help="addresses/networks of reverse proxies whose X-Forwarded-For is believed "
            "(comma-separated; none by default)",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json (one object per line)")] = "text",
) -> None:
    """Run the control plane: REST API under /api/v1, web console under /console/."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from tongdao import logs
    from tongdao.api.app import create_app
    from tongdao.runtime import Runtime, freeze_heap
    from tongdao.store import migrate as migrations

    logs.configure(log_level, log_format)
    settings = settings_from(
        data_dir, database_url, host=host, port=port, trusted_proxies=trusted_proxies
    )
    url = settings.resolved_database_url
    if migrate:
        try:
            migrations.upgrade(url)
        except SQLAlchemyError as exc:
            fail(f"cannot migrate the store at {settings.resolved_database_url}: {exc}")
    runtime = Runtime.from_settings(settings)
    app = create_app(runtime)
    # X-Forwarded-For decides the client address (login throttle, audit source address), so
    # it is believed only from the proxies named in TONGDAO_TRUSTED_PROXIES, never by default
    # (uvicorn's own default trusts loopback, and its FORWARDED_ALLOW_IPS variable is ignored).
    proxies = settings.trusted_proxy_list
    freeze_heap()  # before saying "serving": the README's reader starts then
    log.info(
        "serving on http://%s:%d (store: %s; proxy headers from: %s)",
        settings.host,
        settings.port,
        runtime.db.url.render_as_string(hide_password=True),
        ", ".join(proxies) or "nobody",
    )
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=log_level.lower(),
            log_config=None,  # uvicorn logs through the root handler set up above
            timeout_graceful_shutdown=10,
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies,
        )
    finally:
        runtime.db.dispose()
