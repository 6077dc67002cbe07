"""The ``tongdao`` command: server, administration on the store, and API client commands."""

from __future__ import annotations

import typer

from tongdao.cli import (
    admin,
    audit,
    billing,
    compliance,
    crossborder,
    gateway,
    quotas,
    resources,
    server,
    usage,
)

app = typer.Typer(
    name="tongdao",
    help="Tongdao: enterprise VPN platform for a licensed operator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("server")(server.serve)
app.add_typer(admin.app, name="admin")
app.add_typer(billing.app, name="billing")
app.add_typer(usage.app, name="usage")
app.add_typer(crossborder.app, name="crossborder")
app.add_typer(compliance.app, name="compliance")
app.add_typer(gateway.app, name="gateway")
app.add_typer(quotas.app, name="quotas")
app.add_typer(gateway.connector_app, name="connector")
resources.register(app)
audit.register(resources.audit_app)


def main() -> None:
    app()


__all__ = ["app", "main"]
