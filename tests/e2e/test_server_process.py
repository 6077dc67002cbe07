"""``tongdao server`` as a real process: migrate, serve, bootstrap, log in, stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.world import PASSWORD, USCC_A
from tongdao.testing.postgres import PostgresCluster

TONGDAO = [sys.executable, "-m", "tongdao"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_server(
    args: list[str], env: dict[str, str], *, umask: int = -1
) -> tuple[subprocess.Popen[str], str]:
    """``tongdao server`` on a free port, once it answers /readyz (``umask`` -1: inherited)."""
    port = free_port()
    proc = subprocess.Popen(
        [*TONGDAO, "server", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        umask=umask,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{stop(proc)}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server did not become ready in 60 s:\n{stop(proc)}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read() if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    return out


def assert_graceful(proc: subprocess.Popen[str], out: str) -> None:
    # uvicorn drains, runs shutdown, then re-raises SIGTERM so the exit shows the signal.
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out
    assert "Traceback" not in out


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TONGDAO_ENV": "development",
        "TONGDAO_ARGON2_TIME_COST": "1",
        "TONGDAO_ARGON2_MEMORY_KIB": "8",
        "TONGDAO_DATA_DIR": str(tmp_path / "data"),
    }


def exercise(base: str, env: dict[str, str], store: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        # A fresh store opens to the first-run setup page (its code is on the server's output).
        first = client.get("/console/")
        assert first.status_code == 303 and first.headers["location"] == "/console/setup"
        assert "Setup code" in client.get("/console/setup").text
    bootstrap(env, *store)
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        page = client.get("/console/", follow_redirects=True)
        assert page.status_code == 200
        assert str(page.url).endswith("/console/sign-in")
        assert "Tongdao" in page.text
        assert client.get("/api/v1/openapi.json").json()["info"]["title"]
        token = client.post(
            "/api/v1/auth/login", json={"email": "noc@operator.example", "password": PASSWORD}
        ).json()["token"]
        h = {"Authorization": f"Bearer {token}"}
        resp = client.post("/api/v1/tenants", json={"name_en": "Acme", "uscc": USCC_A}, headers=h)
        assert resp.status_code == 201, resp.text
        assert client.get("/api/v1/tenants", headers=h).json()["count"] == 1


def test_server_on_sqlite(env: dict[str, str], tmp_path: Path) -> None:
    proc, base = run_server([], env)
    try:
        exercise(base, env, [])
    finally:
        out = stop(proc)
    assert_graceful(proc, out)
    assert re.search(r"setup code: [A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", out), out
    assert (tmp_path / "data" / "tongdao.sqlite3").exists()
    assert (tmp_path / "data" / "data.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.postgres
def test_server_on_postgresql(env: dict[str, str], pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database("server_process")
    try:
        proc, base = run_server(["--database-url", url], env)
        try:
            exercise(base, env, ["--database-url", url])
        finally:
            out = stop(proc)
        assert_graceful(proc, out)
    finally:
        pg_cluster.drop_database("server_process")


def test_production_without_key_refuses_to_start(env: dict[str, str]) -> None:
    result = subprocess.run(
        [*TONGDAO, "server", "--port", str(free_port())],
        env={**env, "TONGDAO_ENV": "production", "TONGDAO_DATABASE_URL": "sqlite:///x.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "TONGDAO_DATA_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def bootstrap(env: dict[str, str], *store: str) -> None:
    """``tongdao admin bootstrap`` for noc@operator.example (``store``: e.g. --database-url)."""
    boot = subprocess.run(
        [
            *TONGDAO,
            "admin",
            "bootstrap",
            "--email",
            "noc@operator.example",
            "--password-stdin",
            *store,
        ],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert boot.returncode == 0, boot.stderr


def failed_login_sources(client: httpx.Client, headers: dict[str, str]) -> list[str | None]:
    page = client.get(
        "/api/v1/audit/events", params={"action": "login_failed"}, headers=headers
    ).json()
    return [event["source_ip"] for event in page["data"]]


def test_forwarded_for_is_ignored_unless_from_a_trusted_proxy(env: dict[str, str]) -> None:
    """uvicorn believes X-Forwarded-For from loopback by default; Tongdao believes it from
    TONGDAO_TRUSTED_PROXIES only, which is empty by default."""
    bootstrap(env)
    bad = {"email": "noc@operator.example", "password": "a wrong guess"}
    good = {"email": "noc@operator.example", "password": PASSWORD}
    # uvicorn's own switch (FORWARDED_ALLOW_IPS) is no way around the setting.
    proc, base = run_server([], {**env, "FORWARDED_ALLOW_IPS": "*"})
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            # Forged addresses neither spread guesses over many "addresses" for the throttle
            # nor reach the audit log: both see the socket's peer, 127.0.0.1.
            for n in range(3):
                forged = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
                resp = client.post("/api/v1/auth/login", json=bad, headers=forged)
                assert resp.status_code == 401, resp.text
            resp = client.post(
                "/api/v1/auth/login", json=good, headers={"X-Forwarded-For": "203.0.113.99"}
            )
            assert resp.status_code == 200, resp.text
            headers = {"Authorization": f"Bearer {resp.json()['token']}"}
            assert failed_login_sources(client, headers) == ["127.0.0.1"] * 3
            sessions = client.get("/api/v1/auth/sessions", headers=headers).json()["data"]
            assert [s["source_ip"] for s in sessions] == ["127.0.0.1"]
    finally:
        out = stop(proc)
    assert_graceful(proc, out)
    assert "proxy headers from: nobody" in out

    proc, base = run_server([], {**env, "TONGDAO_TRUSTED_PROXIES": "127.0.0.1,::1"})
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            # From the configured proxy the header names the client.
            resp = client.post(
                "/api/v1/auth/login", json=bad, headers={"X-Forwarded-For": "203.0.113.7"}
            )
            assert resp.status_code == 401
            resp = client.post(
                "/api/v1/auth/login",
                json=good,
                headers={"X-Forwarded-For": "198.51.100.8", "User-Agent": "e2e"},
            )
            assert resp.status_code == 200, resp.text
            headers = {"Authorization": f"Bearer {resp.json()['token']}"}
            sources = failed_login_sources(client, headers)
            assert sources == ["203.0.113.7", *["127.0.0.1"] * 3]
            sessions = client.get("/api/v1/auth/sessions", headers=headers).json()["data"]
            assert [s["source_ip"] for s in sessions] == ["198.51.100.8", "127.0.0.1"]
    finally:
        out = stop(proc)
    assert_graceful(proc, out)
    assert "proxy headers from: 127.0.0.1/32, ::1/128" in out
