"""Commands for real identity, consents, personal data and privacy notices.

``tongdao users verify-identity | withdraw-verification | export | erase | consents | consent |
revoke-abroad-consent`` act on one user; ``tongdao notices list | current | publish`` on the
operator's privacy notices.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from tongdao.cli.client import EXIT_USAGE, Client, ServerOpt, TokenOpt
from tongdao.cli.common import fail
from tongdao.cli.resources import (
    IdArg,
    JsonOpt,
    TenantOpt,
    list_pages,
    print_json,
    show,
    user_path,
)

CONSENT_COLUMNS = (
    "id",
    "kind",
    "notice_version",
    "method",
    "given_via",
    "given_at",
    "revoked_at",
    "current",
)
NOTICE_COLUMNS = ("id", "version", "seq", "title", "reconsent_required", "published_at")


def _text(value: str, option: str) -> str:
    """A text option: itself, or the contents of @file."""
    if not value.startswith("@"):
        return value
    try:
        return Path(value[1:]).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{option}: cannot read {value[1:]}: {exc.strerror}", EXIT_USAGE)


def _write_private(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        fail(f"--output: cannot write {path}: {exc.strerror}", EXIT_USAGE)


# --- users -----------------------------------------------------------------------------------
def verify_identity(
    user_id: IdArg,
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Record that you checked the user's real identity (tenant admin, compliance officer);
    their pending devices become active."""
    path = user_path(tenant, user_id) + "/identity-verification"
    show(Client.resolve(server, token).json("POST", path), as_json)


def withdraw_verification(
    user_id: IdArg,
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Take a verification back; the user's devices wait as pending."""
    path = user_path(tenant, user_id) + "/identity-verification"
    show(Client.resolve(server, token).json("DELETE", path), as_json)


def export(
    user_id: IdArg,
    tenant: TenantOpt,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file (mode 0600)")
    ] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Export everything held about the user as JSON, ID number decrypted (audited)."""
    data = Client.resolve(server, token).json("GET", user_path(tenant, user_id) + "/personal-data")
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    _write_private(output, text)
    typer.echo(f"wrote {output}", err=True)


def erase(
    user_id: IdArg,
    tenant: TenantOpt,
    yes: Annotated[bool, typer.Option("--yes", help="confirm: this cannot be undone")] = False,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Erase the user's personal data on their request: pseudonymise, revoke devices and
    sessions; logs within the retention period are kept."""
    if not yes:
        fail("erasing cannot be undone: add --yes", EXIT_USAGE)
    path = user_path(tenant, user_id) + "/personal-data/erase"
    show(Client.resolve(server, token).json("POST", path), as_json)


def consents(
    user_id: IdArg,
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """List the user's consents (revoked and lapsed ones too)."""
    client = Client.resolve(server, token)
    path = user_path(tenant, user_id) + "/consents"
    list_pages(client, path, [], CONSENT_COLUMNS, as_json=as_json)


def consent(
    user_id: IdArg,
    tenant: TenantOpt,
    kind: Annotated[str, typer.Option("--kind", help="notice or transfer_abroad")],
    notice_version: Annotated[str, typer.Option("--notice-version", help="the current notice")],
    evidence: Annotated[
        str | None,
        typer.Option("--evidence", help="the signed form, when recording for someone else"),
    ] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Give a consent for yourself (signed in with `tongdao login`: not with an API token), or
    record one given on paper for someone else (with --evidence)."""
    body: dict[str, Any] = {"kind": kind, "notice_version": notice_version}
    if evidence is not None:
        body["evidence"] = evidence
    path = user_path(tenant, user_id) + "/consents"
    show(Client.resolve(server, token).json("POST", path, body=body), as_json)


def revoke_abroad_consent(
    user_id: IdArg,
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke the user's consent to transfer abroad: their traffic stops going abroad."""
    path = user_path(tenant, user_id) + "/consents/transfer-abroad"
    Client.resolve(server, token).request("DELETE", path)
    if as_json:
        print_json({"user_id": user_id, "transfer_abroad": "revoked"})
    else:
        typer.echo(f"revoked the consent to transfer abroad of {user_id}")


def add_user_commands(users: typer.Typer) -> None:
    users.command("verify-identity")(verify_identity)
    users.command("withdraw-verification")(withdraw_verification)
    users.command("export")(export)
    users.command("erase")(erase)
    users.command("consents")(consents)
    users.command("consent")(consent)
    users.command("revoke-abroad-consent")(revoke_abroad_consent)


# --- notices ---------------------------------------------------------------------------------
notices_app = typer.Typer(
    help="The operator's privacy notices (versioned; users consent to the current one).",
    no_args_is_help=True,
)


@notices_app.command("list")
def notices_list(
    as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """List every published version, newest first."""
    list_pages(
        Client.resolve(server, token), "/privacy-notices", [], NOTICE_COLUMNS, as_json=as_json
    )


@notices_app.command("current")
def notices_current(
    as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """Show the notice users accept now."""
    show(Client.resolve(server, token).json("GET", "/privacy-notices/current"), as_json)


@notices_app.command("publish")
def notices_publish(
    version: Annotated[str, typer.Option("--version", help="e.g. 2026-01")],
    title: Annotated[str, typer.Option("--title")],
    text: Annotated[str, typer.Option("--text", help="the notice, or @file")],
    transfer_abroad_text: Annotated[
        str,
        typer.Option(
            "--transfer-abroad-text",
            help="the separate statement for consent to transfer abroad, or @file",
        ),
    ],
    keep_consents: Annotated[
        bool,
        typer.Option("--keep-consents", help="consents to earlier versions stay current"),
    ] = False,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Publish a new version (operator admin, compliance officer)."""
    body = {
        "version": version,
        "title": title,
        "text": _text(text, "--text"),
        "transfer_abroad_text": _text(transfer_abroad_text, "--transfer-abroad-text"),
        "reconsent_required": not keep_consents,
    }
    show(Client.resolve(server, token).json("POST", "/privacy-notices", body=body), as_json)
