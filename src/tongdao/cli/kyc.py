"""Compliance officer commands: the tenant vetting workflow and the licence dashboard.

``tongdao tenants review|approve|reject|activate|suspend|terminate|verify-uscc ID`` move a
tenant through applied → under review → approved / rejected → active ⇄ suspended → terminated
(each a PATCH of the tenant; the server runs the vetting and licence rules and answers with the
rule that refused). ``tongdao operator compliance`` shows licence expiry warnings, ownership
and the problems the rules find.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from tongdao.cli.client import EXIT_USAGE, Client, ServerOpt, TokenOpt
from tongdao.cli.common import fail
from tongdao.cli.resources import IdArg, JsonOpt, print_json, seg, show, table

ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why; kept with the state")]


def _patch(tenant_id: str, body: dict[str, Any], server: str | None, token: str | None) -> Any:
    return Client.resolve(server, token).json("PATCH", f"/tenants/{seg(tenant_id)}", body=body)


def _move(
    tenant_id: str,
    state: str,
    reason: str | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    body: dict[str, Any] = {"state": state}
    if reason is not None:
        body["state_reason"] = reason
    tenant = _patch(tenant_id, body, server, token)
    if as_json:
        print_json(tenant)
    else:
        typer.echo(f"tenant {tenant['name_en']} ({tenant['uscc']}) is now {tenant['state']}")


def _transition(state: str, doc: str) -> Callable[..., None]:
    """The command that moves a tenant to ``state``, with an optional reason."""

    def command(
        tenant_id: IdArg,
        reason: ReasonOpt = None,
        as_json: JsonOpt = False,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        _move(tenant_id, state, reason, as_json, server, token)

    command.__doc__ = doc
    return command


review = _transition("under_review", "Start vetting an applied (or re-review a rejected) tenant.")
approve = _transition(
    "approved", "Approve a tenant under review (its KYC and the licences must allow it)."
)
activate = _transition(
    "active", "Activate an approved (or resume a suspended) tenant: its data-plane service starts."
)
suspend = _transition("suspended", "Suspend an active tenant: its service stops, its records stay.")


def reject(
    tenant_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="why the tenant is rejected")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Reject a tenant, with the reason."""
    if not reason.strip():
        fail("--reason: say why the tenant is rejected", EXIT_USAGE)
    _move(tenant_id, "rejected", reason, as_json, server, token)


def terminate(
    tenant_id: IdArg,
    reason: ReasonOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """End the tenant's service for good; its records are kept for retention."""
    if not yes and not typer.confirm(f"terminate tenant {tenant_id}? This cannot be undone"):
        fail("not terminated", EXIT_USAGE)
    _move(tenant_id, "terminated", reason, as_json, server, token)


def verify_uscc(
    tenant_id: IdArg,
    undo: Annotated[bool, typer.Option("--undo", help="withdraw the verification")] = False,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Record that a USCC whose check character fails was verified by hand."""
    tenant = _patch(tenant_id, {"uscc_verified": not undo}, server, token)
    if as_json:
        print_json(tenant)
    elif tenant["needs_manual_verification"]:
        typer.echo(f"USCC {tenant['uscc']}: verification withdrawn; the tenant is flagged again")
    else:
        typer.echo(f"USCC {tenant['uscc']}: verified by hand at {tenant['uscc_verified_at']}")


def compliance(as_json: JsonOpt = False, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Licence expiry warnings (90, 30, 7 days), ownership and rule problems."""
    status = Client.resolve(server, token).json("GET", "/operator/compliance")
    if as_json:
        print_json(status)
        return
    owned = status["ownership"]
    covered = ", ".join(status["covered_provinces"]) or "nothing"
    show(
        {
            "today (China)": status["today"],
            "rules version": status["rules_version"],
            f"{status['service_code']} covers": "nationwide" if covered == "*" else covered,
            "shareholding": f"{owned['total_percent']}% recorded, "
            f"{owned['foreign_percent']}% foreign (cap: {owned['foreign_cap'] or 'none'})",
        },
        False,
    )
    typer.echo("")
    if status["warnings"]:
        typer.echo("licence warnings:")
        typer.echo(
            table(status["warnings"], ("number", "valid_to", "days_to_expiry", "warning_days"))
        )
    else:
        typer.echo("licence warnings: none")
    typer.echo("")
    if status["problems"]:
        typer.echo("problems:")
        for problem in status["problems"]:
            typer.echo(f"  [{problem['rule']}] {problem['message']}")
            typer.echo(f"      source: {problem['source']}")
    else:
        typer.echo("problems: none")


def _nonpayment(
    tenant_id: str, action: str, reason: str, server: str | None, token: str | None
) -> Any:
    if not reason.strip():
        fail("--reason: say why", EXIT_USAGE)
    return Client.resolve(server, token).json(
        "POST", f"/tenants/{seg(tenant_id)}/billing/{action}", body={"reason": reason}
    )


def suspend_nonpayment(
    tenant_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="why (kept and audited)")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Suspend a tenant for non-payment (the billing clerk's decision): refused unless it has
    an overdue invoice. Its service stops on the gateways; its records stay."""
    row = _nonpayment(tenant_id, "suspension", reason, server, token)
    if as_json:
        print_json(row)
    else:
        typer.echo(
            f"tenant {tenant_id} suspended for non-payment (overdue ¥{row['overdue_total']}); "
            f"state: {row['tenant_state']}"
        )


def lift_nonpayment(
    tenant_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="why (kept and audited)")],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Lift a tenant's suspension for non-payment; it goes back in service unless the
    compliance watch (or a person) holds it suspended."""
    row = _nonpayment(tenant_id, "suspension/lift", reason, server, token)
    if as_json:
        print_json(row)
    else:
        typer.echo(
            f"tenant {tenant_id}: suspension for non-payment lifted; state: {row['tenant_state']}"
        )


def add_tenant_commands(tenants: typer.Typer) -> None:
    tenants.command("review")(review)
    tenants.command("approve")(approve)
    tenants.command("reject")(reject)
    tenants.command("activate")(activate)
    tenants.command("suspend")(suspend)
    tenants.command("terminate")(terminate)
    tenants.command("verify-uscc")(verify_uscc)
    tenants.command("suspend-nonpayment")(suspend_nonpayment)
    tenants.command("lift-nonpayment")(lift_nonpayment)


def add_operator_commands(operator: typer.Typer) -> None:
    operator.command("compliance")(compliance)
