"""``tongdao gateway run --help`` and ``tongdao connector run --help`` each describe their own
agent (the connector's help used to describe the PoP gateway)."""

from __future__ import annotations

from typer.testing import CliRunner

from tongdao.cli import app as cli_app


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli_app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_connector_run_help_describes_the_connector() -> None:
    text = help_text("connector", "run")
    assert "Usage: tongdao connector run" in text
    assert "site's token" in text and "site's tunnel to its PoP" in text
    assert "SIGTERM stops the connector" in text
    for gateway_only in ("PoP's WireGuard interfaces", "nftables", "one per tenant"):
        assert gateway_only not in text


def test_gateway_run_help_describes_the_gateway() -> None:
    text = help_text("gateway", "run")
    assert "Usage: tongdao gateway run" in text
    assert "PoP's WireGuard interfaces (one per tenant)" in text and "nftables" in text
    assert "site" not in text


def test_both_take_the_same_options() -> None:
    def options(text: str) -> set[str]:
        return {word.rstrip(",") for word in text.split() if word.startswith("--")}

    assert options(help_text("connector", "run")) == options(help_text("gateway", "run"))
    assert {"--server", "--state-dir", "--token", "--metrics-port"} <= options(
        help_text("gateway", "run")
    )
