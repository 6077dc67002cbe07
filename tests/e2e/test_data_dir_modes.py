"""The data directory and the files holding personal data are the owner's only, whatever the
umask: ``tongdao server`` started as a real process with umask 022 (which would make files
0644 and directories 0755) leaves the data directory 0700 and the SQLite store, its WAL and
shared-memory siblings and the generated ``data.key`` 0600. A data directory left looser by an
earlier version is tightened when it holds nothing but Tongdao's files; a directory shared
with other files is left as it is, with a warning, and Tongdao's own files in it are 0600.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import httpx

from tests.e2e.test_server_process import env, run_server, stop

__all__ = ["env"]  # the fixture, shared with the server-process tests

UMASK = 0o022


def serve_with_umask(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``tongdao server`` under umask 022, ready, after one write (a failed login, which
    writes its attempt and an audit record) so that the WAL holds a transaction."""
    proc, base = run_server([], env, umask=UMASK)
    resp = httpx.post(
        f"{base}/api/v1/auth/login",
        json={"email": "nobody@example.com", "password": "not the password at all"},
        timeout=10,
    )
    assert resp.status_code == 401, resp.text
    return proc, base


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(data: Path) -> dict[str, str]:
    return {p.name: oct(mode(p)) for p in sorted(data.iterdir())}


def test_a_new_data_dir_is_private_under_umask_022(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, _base = serve_with_umask(env)
    try:
        # While the server runs, the WAL and its shared-memory index exist next to the store.
        names = {p.name for p in data.iterdir()}
        assert {"tongdao.sqlite3", "tongdao.sqlite3-wal", "tongdao.sqlite3-shm"} <= names, names
        assert "data.key" in names, names
        assert oct(mode(data)) == oct(0o700)
        assert modes(data) == {name: oct(0o600) for name in names}, modes(data)
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out
    assert oct(mode(data)) == oct(0o700)
    assert all(oct(mode(p)) == oct(0o600) for p in data.iterdir()), modes(data)


def _loose_store(data: Path) -> None:
    """A data dir as an earlier version left it under umask 022: 0755, files 0644."""
    old = os.umask(UMASK)
    try:
        data.mkdir(mode=0o755)
        conn = sqlite3.connect(data / "tongdao.sqlite3")
        conn.execute("CREATE TABLE earlier (x INTEGER)")
        conn.commit()
        conn.close()
        (data / "data.key").write_text(base64.b64encode(os.urandom(32)).decode())
    finally:
        os.umask(old)
    assert mode(data) == 0o755 and mode(data / "tongdao.sqlite3") == 0o644


def test_a_loose_data_dir_of_its_own_is_tightened(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    _loose_store(data)
    proc, _base = serve_with_umask(env)
    try:
        assert oct(mode(data)) == oct(0o700)
        assert all(oct(mode(p)) == oct(0o600) for p in data.iterdir()), modes(data)
    finally:
        out = stop(proc)
    assert "tightened" in out and str(data) in out, out


def test_a_shared_data_dir_is_left_alone_with_a_warning(
    env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _loose_store(data)
    (data / "notes.txt").write_text("someone else's file\n")
    (data / "notes.txt").chmod(0o644)
    proc, _base = serve_with_umask(env)
    try:
        assert oct(mode(data)) == oct(0o755)  # not Tongdao's alone: not changed
        assert oct(mode(data / "notes.txt")) == oct(0o644)
        ours = [p for p in data.iterdir() if p.name != "notes.txt"]
        assert all(oct(mode(p)) == oct(0o600) for p in ours), modes(data)
    finally:
        out = stop(proc)
    assert "WARNING" in out and "0o755" in out and str(data) in out, out
