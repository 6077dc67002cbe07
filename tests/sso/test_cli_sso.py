"""``tongdao login --sso``: the CLI listens on a loopback address (RFC 8252), prints the
provider's URL, and the test plays the person at the real provider with httpx; the console
hands the answer on to the CLI, which finishes with its own secret and saves the session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import tests.support.browser as browser_support
from tests.conftest import make_settings
from tests.sso.support import API, connect
from tests.support.browser import serve
from tests.support.oidc_provider import OidcProvider
from tests.support.world import World
from tongdao.config import Settings


@pytest.fixture
def port() -> int:
    return browser_support.free_port()


@pytest.fixture
def settings(tmp_path: Path, store_url: str, port: int) -> Settings:
    return make_settings(tmp_path, store_url, public_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def live(world: World, app: FastAPI, port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(browser_support, "free_port", lambda: port)
    with serve(app) as url:
        yield url


def _cli(live: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "TONGDAO_CONFIG_DIR": str(tmp_path / "config"),
        "TONGDAO_SERVER": live,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TONGDAO_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tongdao", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_login_with_sso_through_a_loopback_redirect(
    live: str, world: World, oidc_provider: OidcProvider, tmp_path: Path
) -> None:
    connect(world, oidc_provider)
    user = oidc_provider.add_user("employee@a.example")
    process = _cli(live, tmp_path, "login", "--sso", "--email", user.email)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Sign in at IdP A"), first
        url = process.stdout.readline().strip()
        assert url.startswith(oidc_provider.base_url), url
        with httpx.Client(timeout=10) as browser:
            console = oidc_provider.sign_in(browser, url, user)
            assert console.startswith(f"{live}/console/sso/callback?"), console
            handed = browser.get(console)
            assert handed.status_code == 303, handed.text
            loopback = handed.headers["location"]
            assert loopback.startswith("http://127.0.0.1:") and "/callback?" in loopback
            assert browser.get(loopback).status_code == 200
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "logged in to" in out and "employee@a.example" in out, out
    saved = json.loads((tmp_path / "config" / "credentials.json").read_text())
    me = httpx.get(
        f"{live}{API}/auth/me", headers={"Authorization": f"Bearer {saved['token']}"}, timeout=10
    )
    assert me.status_code == 200 and me.json()["email"] == "employee@a.example"

    # The console's callback was handed on, never finished there: a replay of the loopback
    # answer without the CLI's secret is refused.
    state = loopback.split("state=")[1].split("&")[0]
    refused = httpx.post(
        f"{live}{API}/auth/sso/complete",
        json={"state": state, "code": "x", "binding_verifier": "not the secret"},
        timeout=10,
    )
    assert refused.status_code == 401, refused.text


def test_bad_input_is_a_message_and_an_exit_code(live: str, world: World, tmp_path: Path) -> None:
    process = _cli(live, tmp_path, "login", "--sso", "--email", "someone@nowhere.example")
    _out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "no single sign-on is set up" in err and "Traceback" not in err, err
    resp = httpx.post(
        f"{live}{API}/auth/sso/begin",
        json={
            "email": "employee@a.example",
            "redirect_uri": "http://evil.example:80/callback",
            "binding_challenge": "0" * 64,
        },
        timeout=10,
    )
    assert resp.status_code == 422 and "redirect_uri" in resp.json()["error"]["fields"]
