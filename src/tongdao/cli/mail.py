"""Commands for outgoing mail and password links.

``tongdao users reset-password USER_ID --tenant T`` and ``tongdao operator staff
reset-password ID`` (an admin ends the person's sessions and mails them a link: the admin sees
neither the password nor the link); ``tongdao operator mail show | set`` (the SMTP relay; the
password is write-only); ``tongdao forgot-password --email E`` and ``tongdao choose-password
--link URL`` (anonymous: ask for a link, and choose the password with a mailed link).
"""

from __future__ import annotations

from typing import Annotated

import httpx
import typer

from tongdao.cli.client import EXIT_USAGE, Client, ServerOpt, TokenOpt
from tongdao.cli.common import fail, read_secret
from tongdao.cli.resources import (
    DataOpt,
    IdArg,
    JsonOpt,
    SetOpt,
    TenantOpt,
    read_body,
    seg,
    show,
    user_path,
)

mail_app = typer.Typer(
    help="The SMTP relay outgoing mail leaves by (operator admin).", no_args_is_help=True
)


def reset_user_password(
    user_id: IdArg,
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """End the user's sessions and tokens and mail them a link to choose a new password."""
    path = user_path(tenant, user_id) + "/password-reset"
    show(Client.resolve(server, token).json("POST", path), as_json)


def reset_staff_password(
    staff_id: IdArg, as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None
) -> None:
    """End the staff member's sessions and tokens and mail them a link to choose a password."""
    path = f"/operator/staff/{seg(staff_id)}/password-reset"
    show(Client.resolve(server, token).json("POST", path), as_json)


@mail_app.command("show")
def mail_show(as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Show the relay (never its password), how mail is delivered and what waits."""
    show(Client.resolve(server, token).json("GET", "/operator/mail"), as_json)


@mail_app.command("set")
def mail_set(
    data: DataOpt = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Set the relay (PUT) from --data / --set: host, port, security, username, password,
    sender."""
    body = read_body(data, sets)
    show(Client.resolve(server, token).json("PUT", "/operator/mail", body=body), as_json)


def forgot_password(
    email: Annotated[str, typer.Option(help="the account's e-mail address")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
) -> None:
    """Ask for a link to choose a new password (sent only if an account uses the address)."""
    client = Client(Client.resolve(server, None).server, None)  # anonymous: no token sent
    show(client.json("POST", "/auth/password-reset", body={"email": email}), as_json)


def choose_password(
    link: Annotated[
        str,
        typer.Option(help="the link from the invitation or reset mail (or just its token)"),
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the new password from standard input")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Choose your password with the one-time link you were mailed (an invitation or a reset),
    without a browser. The password policy applies; every session and token of the account ends.
    """
    text = link.strip()
    token = httpx.URL(text).params.get("token") if "token=" in text else text
    if not token:
        fail("--link: no token in it (copy the whole link from the mail)", EXIT_USAGE)
    password = read_secret("New password", password_stdin)
    client = Client(Client.resolve(server, None).server, None)  # anonymous: no token sent
    client.request(
        "POST", "/auth/password-reset/complete", body={"token": token, "new_password": password}
    )
    typer.echo("password set; sign in with `tongdao login`")
