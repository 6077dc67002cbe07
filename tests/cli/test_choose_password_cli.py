"""``tongdao choose-password --link URL``: a mailed invitation or reset link completed from a
terminal (the README's quick start has a compliance officer do it), against a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.support.live import serve
from tests.support.world import World
from tongdao.cli import app as cli_app
from tongdao.mail.sender import mailer_of
from tongdao.testing.outbox import link_token

EMAIL = "employee@a.example"
NEW_PASSWORD = "walnut harbour velvet compass"


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


def tongdao(server_url: str, tmp_path: Path, *args: str, typed: str | None = None) -> Result:
    env = {
        "TONGDAO_CONFIG_DIR": str(tmp_path / "config"),
        "TONGDAO_SERVER": server_url,
        "TONGDAO_TOKEN": None,
    }
    result = CliRunner().invoke(cli_app, list(args), input=typed, env=env)
    assert "Traceback" not in result.output, result.output
    return result


def test_choose_password_with_the_mailed_link(
    world: World, server_url: str, tmp_path: Path
) -> None:
    out = tongdao(server_url, tmp_path, "forgot-password", "--email", EMAIL)
    assert out.exit_code == 0, out.output
    assert mailer_of(world.runtime).wait_idle(15)
    token = link_token(tmp_path / "outbox", EMAIL)
    link = f"{server_url}/console/password/reset?token={token}"

    # The policy applies, keyed by the field; a refused password leaves the link usable.
    weak = tongdao(
        server_url, tmp_path, "choose-password", "--link", link, "--password-stdin", typed="short\n"
    )
    assert weak.exit_code == 1
    assert "new_password: must be at least 15 characters" in weak.output

    done = tongdao(
        server_url,
        tmp_path,
        "choose-password",
        "--link",
        link,
        "--password-stdin",
        typed=NEW_PASSWORD + "\n",
    )
    assert done.exit_code == 0, done.output
    assert "password set" in done.output
    login = tongdao(
        server_url,
        tmp_path,
        "login",
        "--email",
        EMAIL,
        "--password-stdin",
        typed=NEW_PASSWORD + "\n",
    )
    assert login.exit_code == 0, login.output

    # The link works once.
    again = tongdao(
        server_url,
        tmp_path,
        "choose-password",
        "--link",
        link,
        "--password-stdin",
        typed="another long enough passphrase\n",
    )
    assert again.exit_code == 1, again.output
    assert "link" in again.output.lower(), again.output
    # The bare token, as a person may copy it, is taken as well as the whole link.
    assert tongdao(server_url, tmp_path, "forgot-password", "--email", EMAIL).exit_code == 0
    second = token
    deadline = time.monotonic() + 15
    while second == token and time.monotonic() < deadline:
        time.sleep(0.1)
        second = link_token(tmp_path / "outbox", EMAIL)
    assert second != token, "no second link mailed"
    bare = tongdao(
        server_url,
        tmp_path,
        "choose-password",
        "--link",
        second,
        "--password-stdin",
        typed="another long enough passphrase\n",
    )
    assert bare.exit_code == 0, bare.output


def test_choose_password_refuses_a_link_without_a_token(server_url: str, tmp_path: Path) -> None:
    out = tongdao(
        server_url,
        tmp_path,
        "choose-password",
        "--link",
        f"{server_url}/console/?token=",
        "--password-stdin",
        typed="x\n",
    )
    assert out.exit_code == 2
    assert "--link: no token in it" in out.output
