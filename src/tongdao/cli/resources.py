"""API client commands: login, tokens, operator records, network and tenant resources, audit.

The CRUD commands come from one table, :data:`RESOURCES`: each :class:`Spec` names a command
group, its collection path (``{tenant}`` marks a tenant-scoped one, filled from ``--tenant``)
and the columns its table shows. Every command prints a readable table or key/value list, or
with ``--json`` the API's own JSON.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from tongdao.cli.client import (
    EXIT_USAGE,
    Client,
    ServerOpt,
    TokenOpt,
    forget_credentials,
    load_credentials,
    save_credentials,
)
from tongdao.cli.common import fail


@dataclass(frozen=True)
class Spec:
    """One CRUD resource as the CLI sees it."""

    name: str  # command group, e.g. "devices"
    path: str  # collection path under /api/v1, e.g. "/tenants/{tenant}/devices"
    columns: tuple[str, ...]  # list table columns
    help: str

    @property
    def scoped(self) -> bool:
        return "{tenant}" in self.path

    def collection(self, tenant: str | None) -> str:
        """The collection path, with ``--tenant`` filled in (required when scoped)."""
        if not self.scoped:
            if tenant:
                fail(f"--tenant: {self.name} do not belong to a tenant", EXIT_USAGE)
            return self.path
        if not tenant:
            fail(f"{self.name} belong to a tenant: pass --tenant TENANT_ID", EXIT_USAGE)
        return self.path.replace("{tenant}", seg(tenant))

    def item(self, tenant: str | None, object_id: str) -> str:
        return f"{self.collection(tenant)}/{seg(object_id)}"


RESOURCES: tuple[Spec, ...] = (
    Spec(
        "pops",
        "/pops",
        ("id", "name", "region", "country", "endpoint_host", "state"),
        "Points of presence (WireGuard gateways).",
    ),
    Spec(
        "links",
        "/links",
        ("id", "name", "pop_a_id", "pop_b_id", "capacity_mbps", "state"),
        "Registered links between PoPs (cross-border ones need an approval).",
    ),
    Spec(
        "tenants",
        "/tenants",
        ("id", "name_en", "name_zh", "uscc", "state", "ipv4_pool"),
        "Customer companies.",
    ),
    Spec(
        "users",
        "/tenants/{tenant}/users",
        ("id", "email", "display_name", "roles", "state"),
        "A tenant's users.",
    ),
    Spec(
        "groups",
        "/tenants/{tenant}/groups",
        ("id", "name", "description", "member_ids"),
        "A tenant's user groups.",
    ),
    Spec(
        "devices",
        "/tenants/{tenant}/devices",
        ("id", "name", "user_id", "ipv4", "pop_id", "state"),
        "A tenant's WireGuard devices.",
    ),
    Spec(
        "sites",
        "/tenants/{tenant}/sites",
        ("id", "name", "country", "prefixes", "approved_prefixes", "purpose", "state"),
        "A tenant's declared office / HQ networks (prefixes are routed once approved).",
    ),
    Spec(
        "prefix-allowances",
        "/tenants/{tenant}/prefix-allowances",
        ("id", "cidr", "reason", "created_at"),
        "Operator exceptions for a tenant: default routes, public prefixes it may declare.",
    ),
    Spec(
        "policies",
        "/tenants/{tenant}/policies",
        ("id", "name", "enabled", "description"),
        "A tenant's access policies.",
    ),
)
OPERATOR_RESOURCES: tuple[Spec, ...] = (
    Spec(
        "licences",
        "/operator/licences",
        ("id", "number", "service_codes", "provinces", "valid_from", "valid_to"),
        "The operator's telecom business licences.",
    ),
    Spec(
        "shareholders",
        "/operator/shareholders",
        ("id", "name", "foreign", "stake_percent"),
        "The operator's shareholders (foreign stake at most 50%).",
    ),
    Spec(
        "staff",
        "/operator/staff",
        ("id", "email", "display_name", "roles", "state"),
        "Operator staff accounts.",
    ),
)
TOKEN_COLUMNS = ("id", "name", "kind", "scopes", "expires_at", "revoked_at")
DECLARATION_COLUMNS = (
    "id",
    "tenant_id",
    "site_id",
    "cidr",
    "purpose",
    "country",
    "state",
    "reason",
)
AUDIT_COLUMNS = ("id", "occurred_at", "actor", "action", "object_type", "object_id", "tenant_id")

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="the object's id")]
TenantOpt = Annotated[
    str, typer.Option("--tenant", "-t", envvar="TONGDAO_TENANT", help="tenant id")
]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", "-d", help="JSON object, @file.json, or - for standard input"),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="key=value (value parsed as JSON if it parses); repeatable"),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="page size")]
CursorOpt = Annotated[str | None, typer.Option("--cursor", help="continue from a next_cursor")]
AllOpt = Annotated[bool, typer.Option("--all", help="follow next_cursor to the last page")]
FilterOpt = Annotated[
    list[str] | None, typer.Option("--filter", "-f", help="key=value query filter; repeatable")
]


def seg(value: str) -> str:
    """One URL path segment, escaped."""
    return quote(value, safe="")


def user_path(tenant: str, user_id: str) -> str:
    """The API path of one user of a tenant."""
    return f"/tenants/{seg(tenant)}/users/{seg(user_id)}"


# --- input ------------------------------------------------------------------------------------


def _pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        fail(f"{option}: expected key=value, got {text!r}", EXIT_USAGE)
    return key.strip(), value


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true, lists, objects), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_body(data: str | None, sets: Sequence[str] | None) -> dict[str, Any]:
    """The request body: ``--data`` (JSON, @file or -) overlaid with each ``--set``."""
    body: Any = {}
    if data is not None:
        source = "--data"
        if data == "-":
            text, source = sys.stdin.read(), "standard input"
        elif data.startswith("@"):
            try:
                text = Path(data[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                fail(f"--data: cannot read {data[1:]}: {exc.strerror}", EXIT_USAGE)
            source = data[1:]
        else:
            text = data
        try:
            body = json.loads(text)
        except ValueError as exc:
            fail(f"--data: {source} is not valid JSON ({exc})", EXIT_USAGE)
        if not isinstance(body, dict):
            fail("--data: expected a JSON object", EXIT_USAGE)
    for item in sets or ():
        key, value = _pair(item, "--set")
        body[key] = parse_value(value)
    return dict(body)


def query(filters: Sequence[str] | None, **named: Any) -> list[tuple[str, str]]:
    """Query parameters from named options that are set plus ``--filter key=value`` pairs."""
    params = [(k, str(v)) for k, v in named.items() if v is not None]
    params += [_pair(item, "--filter") for item in filters or ()]
    return params


# --- output -----------------------------------------------------------------------------------


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def cell(value: Any) -> str:
    """A value as table text: lists joined by commas, nested objects as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def width(text: str) -> int:
    """Terminal columns taken by text (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, columns: int) -> str:
    return text + " " * (columns - width(text))


def table(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with an upper-case header."""
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max(width(r[i]) for r in [header, *cells]) for i in range(len(columns))]
    return "\n".join(
        "  ".join(pad(text, w) for text, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *cells]
    )


def show(obj: Any, as_json: bool) -> None:
    """One object as JSON or as ``key: value`` lines."""
    if as_json or not isinstance(obj, dict):
        print_json(obj)
        return
    if not obj:
        return
    keys = max(width(k) for k in obj)
    for key, value in obj.items():
        typer.echo(f"{pad(key, keys)}  {cell(value)}")


def list_pages(
    client: Client,
    path: str,
    params: list[tuple[str, str]],
    columns: Sequence[str],
    *,
    as_json: bool,
    follow: bool = False,
) -> None:
    """GET a list (following next_cursor with ``follow``) and print it."""
    page = client.json("GET", path, params=params)
    items: list[Any] = list(page.get("data", []))
    seen: set[str] = set()
    while follow and page.get("next_cursor") and page["next_cursor"] not in seen:
        seen.add(page["next_cursor"])
        rest = [(k, v) for k, v in params if k != "cursor"] + [("cursor", page["next_cursor"])]
        page = client.json("GET", path, params=rest)
        items += page.get("data", [])
    if as_json:
        if follow:
            page = {"data": items, "count": page.get("count", len(items)), "next_cursor": None}
        print_json(page)
        return
    if not items:
        typer.echo("(none)")
        return
    typer.echo(table(items, columns))
    if page.get("next_cursor"):
        typer.echo(
            f"{len(items)} of {page.get('count', '?')} shown; "
            f"next page: --cursor {page['next_cursor']} (or --all)",
            err=True,
        )


# --- the generic CRUD group -------------------------------------------------------------------


def crud_app(spec: Spec) -> typer.Typer:
    """list / get / create / update / delete for one resource."""
    sub = typer.Typer(help=spec.help, no_args_is_help=True)
    noun = spec.name

    def tenant_option() -> Any:
        if spec.scoped:
            return typer.Option(
                ..., "--tenant", "-t", envvar="TONGDAO_TENANT", help="tenant id", show_default=False
            )
        return typer.Option(None, "--tenant", hidden=True)

    @sub.command("list")
    def list_cmd(
        tenant: str | None = tenant_option(),
        limit: LimitOpt = None,
        cursor: CursorOpt = None,
        follow: AllOpt = False,
        filters: FilterOpt = None,
        as_json: JsonOpt = False,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        client = Client.resolve(server, token)
        params = query(filters, limit=limit, cursor=cursor)
        list_pages(
            client, spec.collection(tenant), params, spec.columns, as_json=as_json, follow=follow
        )

    @sub.command("get")
    def get_cmd(
        object_id: IdArg,
        tenant: str | None = tenant_option(),
        as_json: JsonOpt = False,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        client = Client.resolve(server, token)
        show(client.json("GET", spec.item(tenant, object_id)), as_json)

    @sub.command("create")
    def create_cmd(
        tenant: str | None = tenant_option(),
        data: DataOpt = None,
        sets: SetOpt = None,
        as_json: JsonOpt = False,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        client = Client.resolve(server, token)
        body = read_body(data, sets)
        show(client.json("POST", spec.collection(tenant), body=body), as_json)

    @sub.command("update")
    def update_cmd(
        object_id: IdArg,
        tenant: str | None = tenant_option(),
        data: DataOpt = None,
        sets: SetOpt = None,
        as_json: JsonOpt = False,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        client = Client.resolve(server, token)
        body = read_body(data, sets)
        if not body:
            fail("nothing to change: give --data or --set", EXIT_USAGE)
        show(client.json("PATCH", spec.item(tenant, object_id), body=body), as_json)

    @sub.command("delete")
    def delete_cmd(
        object_id: IdArg,
        tenant: str | None = tenant_option(),
        as_json: JsonOpt = False,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        client = Client.resolve(server, token)
        client.request("DELETE", spec.item(tenant, object_id))
        if as_json:
            print_json({"id": object_id, "deleted": True})
        else:
            typer.echo(f"deleted {noun} {object_id}")

    list_cmd.__doc__ = f"List {noun}."
    get_cmd.__doc__ = f"Show one of the {noun}."
    create_cmd.__doc__ = f"Create one of the {noun} from --data / --set."
    update_cmd.__doc__ = f"Change fields of one of the {noun} (PATCH)."
    delete_cmd.__doc__ = f"Delete one of the {noun}."
    return sub


# --- login, logout, whoami --------------------------------------------------------------------


def _plain_http_to_remote(url: str) -> bool:
    parsed = httpx.URL(url)
    if parsed.scheme != "http":
        return False
    if parsed.host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(parsed.host).is_loopback
    except ValueError:
        return True


def login(
    email: Annotated[str, typer.Option("--email", help="your account's email")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    totp: Annotated[
        str | None, typer.Option("--totp", help="current TOTP code, if the account has 2FA")
    ] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    sso: Annotated[
        bool,
        typer.Option(
            "--sso",
            help="sign in through your company's identity provider: prints a URL to open "
            "(loopback redirect, RFC 8252)",
        ),
    ] = False,
) -> None:
    """Log in with email and password (or --sso); saves the server and a session token."""
    url = Client.resolve(server, None).server
    client = Client(url)
    if sso:
        if password_stdin or totp:
            fail("--sso takes no password or TOTP code: your identity provider asks", EXIT_USAGE)
        from tongdao.cli.sso import sso_login

        _logged_in(url, sso_login(client, email), email, as_json)
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = str(typer.prompt("Password", hide_input=True))
    if not password:
        fail("password: empty", EXIT_USAGE)
    if _plain_http_to_remote(url):
        typer.echo(f"warning: sending your password to {url} without TLS", err=True)
    body = {"email": email, "password": password, "totp_code": totp}
    answer = client.json("POST", "/auth/login", body=body)
    _logged_in(url, answer, email, as_json)


def _logged_in(url: str, answer: dict[str, Any], email: str, as_json: bool) -> None:
    user = answer.get("user") or {}
    path = save_credentials(
        {
            "server": url,
            "token": answer["token"],
            "email": user.get("email", email),
            "expires_at": answer.get("expires_at"),
        }
    )
    if as_json:
        print_json(answer)
        return
    roles = ", ".join(user.get("roles", []))
    typer.echo(f"logged in to {url} as {user.get('email', email)} ({roles})")
    typer.echo(f"session expires {answer.get('expires_at')}; saved to {path}")


def logout() -> None:
    """Revoke the saved session token and forget it."""
    saved = load_credentials()
    if saved is None:
        typer.echo("not logged in")
        return
    try:
        Client(str(saved.get("server")), str(saved["token"])).request("POST", "/auth/logout")
    except typer.Exit:
        typer.echo("warning: the server did not revoke the token; forgetting it anyway", err=True)
    forget_credentials()
    typer.echo(f"logged out of {saved.get('server')}")


def whoami(as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Show the account the token belongs to."""
    show(Client.resolve(server, token).json("GET", "/auth/me"), as_json)


# --- tokens -----------------------------------------------------------------------------------

tokens_app = typer.Typer(help="Your API tokens.", no_args_is_help=True)


@tokens_app.command("list")
def tokens_list(as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """List your tokens."""
    list_pages(Client.resolve(server, token), "/tokens", [], TOKEN_COLUMNS, as_json=as_json)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="what the token is for")],
    scopes: Annotated[
        list[str] | None, typer.Option("--scope", help="read or write; repeatable (default: read)")
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, max=365, help="lifetime (the server caps it, 90)")
    ] = 90,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read your password from standard input")
    ] = False,
    totp: Annotated[
        str | None, typer.Option("--totp", help="current TOTP code, if the account has 2FA")
    ] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create an API token; its secret is shown once. Asks for your password again: a token
    outlives the session that makes it."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = str(typer.prompt("Password", hide_input=True))
    body: dict[str, Any] = {"name": name, "expires_in_days": days, "current_password": password}
    if totp:
        body["totp_code"] = totp
    if scopes:
        body["scopes"] = scopes
    created = Client.resolve(server, token).json("POST", "/tokens", body=body)
    show(created, as_json)
    if not as_json:
        typer.echo("store the token now: it is not shown again", err=True)


# --- sessions -------------------------------------------------------------------------------

sessions_app = typer.Typer(help="Your signed-in sessions.", no_args_is_help=True)
SESSION_COLUMNS = ("id", "created_at", "expires_at", "source_ip", "user_agent", "current")


@sessions_app.command("list")
def sessions_list(
    as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """List your live sessions (current marks the one this command uses)."""
    list_pages(
        Client.resolve(server, token), "/auth/sessions", [], SESSION_COLUMNS, as_json=as_json
    )


@sessions_app.command("revoke")
def sessions_revoke(
    session_id: IdArg, as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """Sign one of your sessions out."""
    Client.resolve(server, token).request("DELETE", f"/auth/sessions/{seg(session_id)}")
    if as_json:
        print_json({"id": session_id, "revoked": True})
    else:
        typer.echo(f"revoked session {session_id}")


@sessions_app.command("revoke-others")
def sessions_revoke_others(
    as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """Sign out everywhere else."""
    answer = Client.resolve(server, token).json("POST", "/auth/sessions/revoke-others")
    if as_json:
        print_json(answer)
    else:
        typer.echo(f"revoked {answer.get('revoked')} other session(s)")


def unlock_sign_in(
    user_id: IdArg,
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Clear the failed sign-ins counted against a user's account (tenant or operator admin)."""
    path = user_path(tenant, user_id) + "/sign-in-unlock"
    answer = Client.resolve(server, token).json("POST", path)
    if as_json:
        print_json(answer)
    else:
        typer.echo(f"cleared {answer.get('cleared_failures')} failed sign-in(s) of {user_id}")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: IdArg, as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """Revoke one of your tokens."""
    Client.resolve(server, token).request("DELETE", f"/tokens/{seg(token_id)}")
    if as_json:
        print_json({"id": token_id, "revoked": True})
    else:
        typer.echo(f"revoked token {token_id}")


# --- operator ---------------------------------------------------------------------------------

operator_app = typer.Typer(
    help="The operator: company record, licences, shareholders, staff.", no_args_is_help=True
)


@operator_app.command("show")
def operator_show(
    as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """Show the operator's company record."""
    show(Client.resolve(server, token).json("GET", "/operator"), as_json)


@operator_app.command("set")
def operator_set(
    data: DataOpt = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Replace the operator's company record (PUT) from --data / --set."""
    body = read_body(data, sets)
    show(Client.resolve(server, token).json("PUT", "/operator", body=body), as_json)


for _spec in OPERATOR_RESOURCES:
    _sub = crud_app(_spec)
    if _spec.name == "staff":
        # late import: tongdao.cli.mail builds on this module
        from tongdao.cli.mail import reset_staff_password

        _sub.command("reset-password")(reset_staff_password)
    operator_app.add_typer(_sub, name=_spec.name)


# --- devices config, audit ----------------------------------------------------------------


def device_config(
    device_id: Annotated[str, typer.Argument(metavar="DEVICE_ID", help="the device's id")],
    tenant: TenantOpt,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file (mode 0600)")
    ] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print (or write) the device's WireGuard configuration."""
    path = f"/tenants/{seg(tenant)}/devices/{seg(device_id)}/wireguard.conf"
    text = Client.resolve(server, token).request("GET", path).text
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        fail(f"--output: cannot write {output}: {exc.strerror}", EXIT_USAGE)
    typer.echo(f"wrote {output}", err=True)


audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


@audit_app.command("events")
def audit_events(
    tenant_id: Annotated[str | None, typer.Option("--tenant-id", help="only this tenant")] = None,
    object_type: Annotated[
        str | None, typer.Option("--object-type", help="e.g. device, tenant")
    ] = None,
    object_id: Annotated[str | None, typer.Option("--object-id")] = None,
    action: Annotated[str | None, typer.Option("--action", help="create, update, ...")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 time")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 time")] = None,
    limit: LimitOpt = None,
    cursor: CursorOpt = None,
    follow: AllOpt = False,
    filters: FilterOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """List audit events, newest first."""
    params = query(
        filters,
        tenant_id=tenant_id,
        object_type=object_type,
        object_id=object_id,
        action=action,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    client = Client.resolve(server, token)
    list_pages(client, "/audit/events", params, AUDIT_COLUMNS, as_json=as_json, follow=follow)


# --- declared networks ------------------------------------------------------------------------

declarations_app = typer.Typer(
    help="Declared site prefixes: a compliance officer approves or rejects each.",
    no_args_is_help=True,
)


@declarations_app.command("list")
def declarations_list(
    state: Annotated[
        str | None, typer.Option("--state", help="pending (the queue), approved or rejected")
    ] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id", help="only this tenant")] = None,
    site_id: Annotated[str | None, typer.Option("--site-id", help="only this site")] = None,
    limit: LimitOpt = None,
    cursor: CursorOpt = None,
    follow: AllOpt = False,
    filters: FilterOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """List declarations, oldest first (--state pending: what awaits a decision)."""
    params = query(
        filters, state=state, tenant_id=tenant_id, site_id=site_id, limit=limit, cursor=cursor
    )
    client = Client.resolve(server, token)
    list_pages(client, "/declarations", params, DECLARATION_COLUMNS, as_json=as_json, follow=follow)


@declarations_app.command("get")
def declarations_get(
    declaration_id: IdArg,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show one declaration."""
    show(Client.resolve(server, token).json("GET", f"/declarations/{seg(declaration_id)}"), as_json)


@declarations_app.command("approve")
def declarations_approve(
    declaration_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="an optional note for the record")] = "",
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Approve a declaration: its prefix is routed from now on (for an active site)."""
    path = f"/declarations/{seg(declaration_id)}/approve"
    show(Client.resolve(server, token).json("POST", path, body={"reason": reason}), as_json)


@declarations_app.command("reject")
def declarations_reject(
    declaration_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="why; the tenant sees it")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Reject a declaration (or withdraw its approval), with the reason."""
    path = f"/declarations/{seg(declaration_id)}/reject"
    show(Client.resolve(server, token).json("POST", path, body={"reason": reason}), as_json)


# --- registration -----------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``tongdao`` app."""
    from tongdao.cli import (
        kyc,  # vetting and licence commands, built on this module
        lifetime,  # device lifetime
        mail,  # password resets, the SMTP relay
        privacy,  # identity, consents, personal data, notices
        quotas_client,  # transfer caps and bandwidth limits
    )

    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.command("forgot-password")(mail.forgot_password)
    app.command("choose-password")(mail.choose_password)
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(sessions_app, name="sessions")
    kyc.add_operator_commands(operator_app)
    operator_app.add_typer(mail.mail_app, name="mail")
    app.add_typer(operator_app, name="operator")
    for spec in RESOURCES:
        sub = crud_app(spec)
        if spec.name == "devices":
            sub.command("config")(device_config)
            lifetime.add_device_commands(sub)  # expire
        if spec.name == "users":
            privacy.add_user_commands(sub)  # identity, consents, export, erase
            sub.command("unlock-sign-in")(unlock_sign_in)
            sub.command("reset-password")(mail.reset_user_password)
            quotas_client.add_user_commands(sub)  # limits
        if spec.name == "tenants":
            kyc.add_tenant_commands(sub)
            quotas_client.add_tenant_commands(sub)  # limits, quota-events
            lifetime.add_tenant_commands(sub)  # device-lifetime
        app.add_typer(sub, name=spec.name)
    app.add_typer(declarations_app, name="declarations")
    app.add_typer(privacy.notices_app, name="notices")
    app.add_typer(audit_app, name="audit")
