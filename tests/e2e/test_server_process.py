"""``tongdao server`` as a real process: migrate, serve, bootstrap, log in, stop on SIGTERM."""

from __future__ import annotations

import os
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


def run_server(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*TONGDAO, "server", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        page = client.get("/console/")
        assert page.status_code == 200
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
