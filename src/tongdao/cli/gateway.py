"""``tongdao gateway run`` and ``tongdao connector run``: the agents on PoP hosts and sites.

Both are the same program: what an enrolled agent runs (a PoP's tenant interfaces, routing
tables and firewall, or a site's single tunnel to its PoP) is decided by the control plane
from the enrolment token it was given.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from tongdao.cli.common import fail

app = typer.Typer(
    help="The PoP gateway agent (runs on the PoP host, as root).", no_args_is_help=True
)
connector_app = typer.Typer(
    help="The site connector (runs in the tenant's office or HQ network, as root).",
    no_args_is_help=True,
)


@app.command("run")
@connector_app.command("run")
def run(
    server: Annotated[str, typer.Option(envvar="TONGDAO_SERVER", help="control plane URL")],
    state_dir: Annotated[Path, typer.Option(help="credential, keys, last applied state")],
    token: Annotated[
        str | None,
        typer.Option(envvar="TONGDAO_ENROLMENT_TOKEN", help="one-time enrolment token (first run)"),
    ] = None,
    netns: Annotated[
        str | None, typer.Option(help="manage a network namespace instead of the host (tests)")
    ] = None,
    poll_wait: Annotated[float, typer.Option(help="seconds a long poll may hold")] = 25.0,
    reconcile_every: Annotated[
        float,
        typer.Option(help="seconds between full reads of WireGuard to repair drift", min=1.0),
    ] = 60.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json (one object per line)")] = "text",
    report_interval: Annotated[
        float, typer.Option(help="seconds between usage reports to the control plane")
    ] = 30.0,
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus /metrics on 127.0.0.1:PORT; 0 = off")
    ] = 0,
) -> None:
    """Enrol (first run), then keep the PoP's WireGuard interfaces, routes and nftables rules
    in line with the control plane. SIGTERM stops the agent; the data plane keeps running."""
    from tongdao import logs
    from tongdao.agent.gateway import AgentError, GatewayAgent

    logs.configure(log_level, log_format)
    agent = GatewayAgent(
        server,
        state_dir,
        token=token,
        netns=netns,
        poll_wait=poll_wait,
        reconcile_every=reconcile_every,
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
