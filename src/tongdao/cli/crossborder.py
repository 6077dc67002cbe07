"""``tongdao crossborder``: cross-border service per tenant.

API client commands (a tenant admin applies, uploads documents and submits; the compliance
officer reviews, approves or rejects) and ``expire``, the scheduled job run on the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from tongdao.cli.client import EXIT_USAGE, Client, ServerOpt, TokenOpt
from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from
from tongdao.cli.resources import (
    CursorOpt,
    IdArg,
    JsonOpt,
    LimitOpt,
    TenantOpt,
    list_pages,
    query,
    seg,
    show,
)

app = typer.Typer(
    help="Cross-border service per tenant: applications, decisions, expiry.",
    no_args_is_help=True,
)
COLUMNS = ("id", "tenant_id", "state", "bandwidth_mbps", "approved_mbps", "valid_to")
TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}


def _apps(tenant: str) -> str:
    return f"/tenants/{seg(tenant)}/crossborder/applications"


@app.command("apply")
def apply(
    tenant: TenantOpt,
    site: Annotated[list[str], typer.Option("--site", help="an overseas site's id; repeatable")],
    bandwidth: Annotated[int, typer.Option("--bandwidth", help="Mbit/s requested")],
    headcount: Annotated[int, typer.Option("--headcount")],
    manager: Annotated[str, typer.Option("--manager", help="responsible manager's name")],
    phone: Annotated[str, typer.Option("--phone", help="the manager's phone")],
    email: Annotated[str, typer.Option("--email", help="the manager's e-mail")],
    term_start: Annotated[str, typer.Option("--from", help="service start, YYYY-MM-DD")],
    term_end: Annotated[str, typer.Option("--to", help="service end, YYYY-MM-DD")],
    internal_use_only: Annotated[
        bool,
        typer.Option(
            "--internal-use-only",
            help="undertake: internal office use only, no telecom business (required)",
        ),
    ] = False,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Start an application (a draft); upload the documents, then submit it."""
    if not internal_use_only:
        fail("--internal-use-only: the service is for internal office use only", EXIT_USAGE)
    body = {
        "internal_use_only": True,
        "site_ids": site,
        "bandwidth_mbps": bandwidth,
        "headcount": headcount,
        "manager_name": manager,
        "manager_phone": phone,
        "manager_email": email,
        "term_start": term_start,
        "term_end": term_end,
    }
    show(Client.resolve(server, token).json("POST", _apps(tenant), body=body), as_json)


@app.command("upload")
def upload(
    tenant: TenantOpt,
    application_id: IdArg,
    kind: Annotated[str, typer.Option("--kind", help="business_licence, commitment_letter, other")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="PDF, PNG or JPEG")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload a document (at most 10 MiB) to a draft application."""
    client = Client.resolve(server, token)
    content_type = TYPES.get(file.suffix.lower(), "application/octet-stream")
    headers = {"Content-Type": content_type}
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    path = f"{_apps(tenant)}/{seg(application_id)}/documents"
    with file.open("rb") as handle:
        resp = httpx.post(
            client.url(path),
            params={"kind": kind, "filename": file.name},
            content=handle.read(),
            headers=headers,
            timeout=120,
        )
    if resp.is_error:
        client._fail_with(resp)
    show(resp.json(), as_json)


@app.command("submit")
def submit(
    tenant: TenantOpt,
    application_id: IdArg,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Send the draft to the compliance officer."""
    path = f"{_apps(tenant)}/{seg(application_id)}/submit"
    show(Client.resolve(server, token).json("POST", path), as_json)


@app.command("status")
def status(
    tenant: TenantOpt, as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """Whether the tenant is carried abroad, or which step is missing."""
    path = f"/tenants/{seg(tenant)}/crossborder/status"
    show(Client.resolve(server, token).json("GET", path), as_json)


@app.command("list")
def list_(
    state: Annotated[
        str | None, typer.Option("--state", help="submitted (the queue), under_review, ...")
    ] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id", help="only this tenant")] = None,
    limit: LimitOpt = None,
    cursor: CursorOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Applications, oldest first (--state submitted: the compliance officer's queue)."""
    params = query(None, state=state, tenant_id=tenant_id, limit=limit, cursor=cursor)
    client = Client.resolve(server, token)
    list_pages(client, "/crossborder/applications", params, COLUMNS, as_json=as_json)


@app.command("review")
def review(
    application_id: IdArg,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Take a submitted application into review (compliance officer)."""
    path = f"/crossborder/applications/{seg(application_id)}/review"
    show(Client.resolve(server, token).json("POST", path), as_json)


@app.command("approve")
def approve(
    application_id: IdArg,
    approval_ref: Annotated[str, typer.Option("--approval-ref", help="the carrier's reference")],
    link: Annotated[str, typer.Option("--link", help="the registered link's id")],
    mbps: Annotated[int, typer.Option("--mbps", help="approved bandwidth, Mbit/s")],
    valid_from: Annotated[str, typer.Option("--from", help="first valid day, YYYY-MM-DD")],
    valid_to: Annotated[str, typer.Option("--to", help="last valid day, YYYY-MM-DD")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Record the carrier's approval (compliance officer)."""
    body: dict[str, Any] = {
        "approval_ref": approval_ref,
        "link_id": link,
        "approved_mbps": mbps,
        "valid_from": valid_from,
        "valid_to": valid_to,
    }
    path = f"/crossborder/applications/{seg(application_id)}/approve"
    show(Client.resolve(server, token).json("POST", path, body=body), as_json)


@app.command("reject")
def reject(
    application_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="why; the tenant sees it")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Reject an application, with the reason (compliance officer)."""
    path = f"/crossborder/applications/{seg(application_id)}/reject"
    show(Client.resolve(server, token).json("POST", path, body={"reason": reason}), as_json)


@app.command("letter")
def letter(
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the PDF")],
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download the operator's commitment letter template (bilingual PDF)."""
    resp = Client.resolve(server, token).request("GET", "/crossborder/letter-template.pdf")
    output.write_bytes(resp.content)
    typer.echo(f"{output}: {len(resp.content)} bytes")


@app.command("expire")
def expire(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Run the expiry job on the store now (under its lease): open authorisations whose
    validity began, send the 30- and 7-day warnings, expire ended ones. Exit 3 when a server
    replica holds the lease."""
    from tongdao.jobs.lease import holder_id
    from tongdao.jobs.scheduler import LeaseHeld, run_crossborder_job
    from tongdao.runtime import Runtime

    runtime = Runtime.from_settings(settings_from(data_dir, database_url))
    try:
        outcome = run_crossborder_job(runtime, f"cli:{holder_id()}")
    except LeaseHeld:
        fail("the cross-border job is running elsewhere (its lease is held); try later", 3)
    finally:
        if runtime.mailer is not None:  # the warnings it queued leave before the command ends
            runtime.mailer.wait_idle(60)
            runtime.mailer.stop()
        runtime.db.dispose()
    counts = {
        "opened": [str(i) for i in outcome.opened],
        "warned_30": [str(i) for i in outcome.warned_30],
        "warned_7": [str(i) for i in outcome.warned_7],
        "expired": [str(i) for i in outcome.expired],
    }
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in counts.items()))
