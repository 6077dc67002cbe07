"""``tongdao gateway run`` and ``tongdao connector run``: the agents on PoP hosts and sites;
``enrol``, ``list`` and ``revoke``: their credentials, through the API.

Both agents are the same program: what an enrolled agent runs (a PoP's tenant interfaces,
routing tables and firewall, or a site's single tunnel to its PoP) is decided by the control
plane from the enrolment token it was given. A PoP and a site each have one live credential:
enrolling again replaces the earlier one.
"""

from __future__ import annotations

import logging
import signal
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from tongdao.cli.client import Client, ServerOpt, TokenOpt
from tongdao.cli.common import fail
from tongdao.cli.resources import JsonOpt, list_pages, print_json, seg

app = typer.Typer(
    help="The PoP gateway agent (runs on the PoP host, as root) and its credentials.",
    no_args_is_help=True,
)
connector_app = typer.Typer(
    help="The site connector (runs in the tenant's office or HQ network, as root) and its "
    "credentials.",
    no_args_is_help=True,
)

CREDENTIAL_COLUMNS = (
    "id",
    "hostname",
    "agent_version",
    "applied_version",
    "last_seen_at",
    "created_at",
    "revoked_at",
    "revoked_reason",
)
PopOpt = Annotated[str, typer.Option("--pop", "-p", help="the PoP's id", show_default=False)]
TenantOpt = Annotated[
    str,
    typer.Option("--tenant", "-t", envvar="TONGDAO_TENANT", help="tenant id", show_default=False),
]
SiteOpt = Annotated[str, typer.Option("--site", help="the site's id", show_default=False)]
TtlOpt = Annotated[
    int, typer.Option("--ttl-hours", min=1, max=168, help="hours the one-time token is valid")
]
CredentialArg = Annotated[str, typer.Argument(metavar="ID", help="the credential's id")]


def _pop_path(pop: str) -> str:
    return f"/pops/{seg(pop)}"


def _site_path(tenant: str, site: str) -> str:
    return f"/tenants/{seg(tenant)}/sites/{seg(site)}"


def _enrol(path: str, ttl_hours: int, as_json: bool, server: str | None, token: str | None) -> None:
    data = Client.resolve(server, token).json("POST", path, body={"ttl_hours": ttl_hours})
    if as_json:
        print_json(data)
        return
    typer.echo(data["token"])
    typer.echo(
        f"one-time enrolment token, valid until {data['expires_at']}; give it to the agent "
        "with --token (its first run replaces the credential enrolled before)",
        err=True,
    )


def _list(path: str, as_json: bool, server: str | None, token: str | None) -> None:
    list_pages(Client.resolve(server, token), path, [], CREDENTIAL_COLUMNS, as_json=as_json)


def _revoke(path: str, what: str, as_json: bool, server: str | None, token: str | None) -> None:
    Client.resolve(server, token).request("DELETE", path)
    object_id = path.rsplit("/", 1)[-1]
    if as_json:
        print_json({"id": object_id, "revoked": True})
    else:
        typer.echo(f"revoked {what} {object_id}")


ServerOptRun = Annotated[str, typer.Option(envvar="TONGDAO_SERVER", help="control plane URL")]
StateDirOpt = Annotated[Path, typer.Option(help="credential, keys, last applied state")]
EnrolTokenOpt = Annotated[
    str | None,
    typer.Option(envvar="TONGDAO_ENROLMENT_TOKEN", help="one-time enrolment token (first run)"),
]
NetnsOpt = Annotated[
    str | None, typer.Option(help="manage a network namespace instead of the host (tests)")
]
PollWaitOpt = Annotated[float, typer.Option(help="seconds a long poll may hold")]
ReconcileOpt = Annotated[
    float, typer.Option(help="seconds between full reads of WireGuard to repair drift", min=1.0)
]
LogLevelOpt = Annotated[str, typer.Option(help="debug, info, warning, error")]
LogFormatOpt = Annotated[str, typer.Option(help="text, or json (one object per line)")]
ReportIntervalOpt = Annotated[
    float, typer.Option(help="seconds between usage reports to the control plane")
]
MetricsPortOpt = Annotated[int, typer.Option(help="Prometheus /metrics on 127.0.0.1:PORT; 0 = off")]


class EngineChoice(StrEnum):
    auto = "auto"
    kernel = "kernel"
    wireguard_go = "wireguard-go"


EngineOpt = Annotated[
    EngineChoice,
    typer.Option(
        envvar="TONGDAO_ENGINE",
        help="WireGuard engine: auto (the kernel module where it is present or loadable, "
        "else wireguard-go), kernel, or wireguard-go",
    ),
]


@app.command("run")
def gateway_run(
    server: ServerOptRun,
    state_dir: StateDirOpt,
    token: EnrolTokenOpt = None,
    netns: NetnsOpt = None,
    poll_wait: PollWaitOpt = 25.0,
    reconcile_every: ReconcileOpt = 60.0,
    log_level: LogLevelOpt = "info",
    log_format: LogFormatOpt = "text",
    report_interval: ReportIntervalOpt = 30.0,
    metrics_port: MetricsPortOpt = 0,
    engine: EngineOpt = EngineChoice.auto,
) -> None:
    """Enrol with a PoP's token (first run), then keep the PoP's WireGuard interfaces (one per
    tenant), routing tables and nftables rules in line with the control plane. SIGTERM stops
    the agent; the data plane keeps running."""
    run(**locals())


@connector_app.command("run")
def connector_run(
    server: ServerOptRun,
    state_dir: StateDirOpt,
    token: EnrolTokenOpt = None,
    netns: NetnsOpt = None,
    poll_wait: PollWaitOpt = 25.0,
    reconcile_every: ReconcileOpt = 60.0,
    log_level: LogLevelOpt = "info",
    log_format: LogFormatOpt = "text",
    report_interval: ReportIntervalOpt = 30.0,
    metrics_port: MetricsPortOpt = 0,
    engine: EngineOpt = EngineChoice.auto,
) -> None:
    """Enrol with a site's token (first run), then keep the site's tunnel to its PoP and the
    routes to the tenant's other networks in line with the control plane. SIGTERM stops the
    connector; the tunnel keeps running."""
    run(**locals())


def run(
    *,
    server: str,
    state_dir: Path,
    token: str | None,
    netns: str | None,
    poll_wait: float,
    reconcile_every: float,
    log_level: str,
    log_format: str,
    report_interval: float,
    metrics_port: int,
    engine: EngineChoice = EngineChoice.auto,
) -> None:
    """Either agent: what it manages is decided by the control plane from its credential."""
    from tongdao import logs
    from tongdao.agent.engine import EngineError
    from tongdao.agent.gateway import AgentError, GatewayAgent
    from tongdao.agent.kernel import KernelEngine, choose_engine

    logs.configure(log_level, log_format)
    try:
        chosen = choose_engine(engine.value, netns)
    except EngineError as exc:
        fail(str(exc))
    logging.getLogger("tongdao.agent").info(
        "engine: %s chose the %s engine",
        engine.value,
        "kernel" if isinstance(chosen, KernelEngine) else "wireguard-go",
    )
    agent = GatewayAgent(
        server,
        state_dir,
        token=token,
        netns=netns,
        poll_wait=poll_wait,
        reconcile_every=reconcile_every,
        engine=chosen,
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("tongdao.agent").info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.control = agent.connect()
    except AgentError as exc:
        fail(str(exc))
    from tongdao.agent import reporter

    telemetry = reporter.start(agent, interval=report_interval, metrics_port=metrics_port)
    try:
        agent.run()
    finally:
        telemetry.stop()  # saves the last interval; it is sent on the next start


# --- credentials, through the API -----------------------------------------------------------
@app.command("enrol")
def gateway_enrol(
    pop: PopOpt,
    ttl_hours: TtlOpt = 24,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make a one-time enrolment token for the PoP's gateway (printed on stdout)."""
    _enrol(f"{_pop_path(pop)}/enrolments", ttl_hours, as_json, server, token)


@app.command("list")
def gateway_list(
    pop: PopOpt, as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """The PoP's gateway credentials: the live one and those revoked or replaced."""
    _list(f"{_pop_path(pop)}/gateways", as_json, server, token)


@app.command("revoke")
def gateway_revoke(
    gateway_id: CredentialArg,
    pop: PopOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a gateway's credential for good (its data plane keeps running, fail-static)."""
    _revoke(f"{_pop_path(pop)}/gateways/{seg(gateway_id)}", "gateway", as_json, server, token)


@connector_app.command("enrol")
def connector_enrol(
    tenant: TenantOpt,
    site: SiteOpt,
    ttl_hours: TtlOpt = 24,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make a one-time enrolment token for the site's connector (printed on stdout)."""
    _enrol(f"{_site_path(tenant, site)}/enrolments", ttl_hours, as_json, server, token)


@connector_app.command("list")
def connector_list(
    tenant: TenantOpt,
    site: SiteOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """The site's connector credentials: the live one and those revoked or replaced."""
    _list(f"{_site_path(tenant, site)}/connectors", as_json, server, token)


@connector_app.command("revoke")
def connector_revoke(
    connector_id: CredentialArg,
    tenant: TenantOpt,
    site: SiteOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a connector's credential for good."""
    path = f"{_site_path(tenant, site)}/connectors/{seg(connector_id)}"
    _revoke(path, "connector", as_json, server, token)
