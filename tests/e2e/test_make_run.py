"""``make run`` serves where ``TONGDAO_HOST``, ``TONGDAO_PORT`` and ``TONGDAO_DATA_DIR`` say,
as ``tongdao server`` does (it used to pass ``--host 127.0.0.1 --port 8080`` over them)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.support.readme import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("how", ["environment", "make argument"])
def test_make_run_honours_port_and_data_dir(tmp_path: Path, how: str) -> None:
    if shutil.which("make") is None:
        need("make")
    if not (ROOT / ".venv" / "bin" / "tongdao").exists():
        need(".venv/bin/tongdao (make venv)")
    port = free_port()
    data = tmp_path / "data"
    settings = {"TONGDAO_PORT": str(port), "TONGDAO_DATA_DIR": str(data)}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TONGDAO_")},
        "TONGDAO_ARGON2_TIME_COST": "1",
        "TONGDAO_ARGON2_MEMORY_KIB": "8",
    }
    argv = ["make", "--no-print-directory", "-o", "system-packages", "run"]
    if how == "environment":
        env |= settings
    else:
        argv += [f"{k}={v}" for k, v in settings.items()]
    # -o system-packages: the Debian packages are not this test's business (no apt, no root).
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log.read_text()
    assert f"serving on http://127.0.0.1:{port}" in text, text
    assert (data / "tongdao.sqlite3").exists()
