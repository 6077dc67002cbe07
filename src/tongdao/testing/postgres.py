"""A throwaway PostgreSQL cluster from Debian's binaries, on a Unix socket only.

Used by the test suite and the benchmarks: ``initdb`` into a temporary directory, ``postgres``
listening on no TCP address, databases made per test from a migrated template. As root the
server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import psycopg


def find_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "postgres").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresCluster:
    def __init__(self, bindir: Path | None = None, port: int = 5432) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bindir = found
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="tongdao-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.user = "postgres"
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            self._run_as = ["runuser", "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def start(self) -> PostgresCluster:
        self.sockdir.mkdir(parents=True)
        if self._run_as:
            os.chmod(self.root, 0o755)  # noqa: S103 - postgres must traverse it
            pg = pwd.getpwnam("postgres")
            os.chown(self.root, pg.pw_uid, pg.pw_gid)
            os.chown(self.sockdir, pg.pw_uid, pg.pw_gid)
        subprocess.run(
            [
                *self._run_as,
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        return self._launch()

    def _launch(self) -> PostgresCluster:
        self._proc = subprocess.Popen(
            [
                *self._run_as,
                str(self.bindir / "postgres"),
                "-D",
                str(self.datadir),
                "-k",
                str(self.sockdir),
                "-c",
                "listen_addresses=",
                "-p",
                str(self.port),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=256MB",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start: {err[-2000:]}") from None
                time.sleep(0.1)
        return self

    def dsn(self, database: str) -> str:
        return f"host={self.sockdir} port={self.port} user={self.user} dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.sockdir}&port={self.port}"

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str, template: str | None = None) -> str:
        suffix = f" TEMPLATE {template}" if template else ""
        self.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def drop_database(self, name: str, timeout_s: int = 60) -> bool:
        """Drop ``name``, ending its sessions; False (and what the cluster's backends were
        doing, on stderr) when that has not finished in ``timeout_s``. The drop then goes on in
        a daemon thread on its own connection, and the database is left to the cluster's end
        (:meth:`stop` kills the server after 20 s): a drop that hangs (seen twice under
        ``make test``, past ``statement_timeout``) no longer holds up the test or later drops."""
        error: list[BaseException] = []

        def drop() -> None:
            try:
                self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except BaseException as exc:  # reported by the caller's thread
                error.append(exc)

        worker = threading.Thread(target=drop, name=f"drop-{name}", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if not worker.is_alive():
            if error:
                raise error[0]
            return True
        try:
            with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
                conn.execute(b"SET statement_timeout = '5s'")
                rows = conn.execute(
                    b"SELECT pid, datname, backend_type, state, wait_event_type, wait_event,"
                    b" left(query, 120) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                ).fetchall()
        except psycopg.Error as exc:
            rows = [("unreadable", str(exc))]
        print(
            f"tongdao.testing.postgres: DROP DATABASE {name} not done in {timeout_s} s;"
            f" left to the cluster's end. Backends: {rows}",
            file=sys.stderr,
        )
        return False

    def halt(self) -> None:
        """Stop the server and keep its data, as ``systemctl stop postgresql`` does (fast
        shutdown: open sessions are ended); :meth:`resume` starts it again."""
        if self._proc is None or self._proc.poll() is not None:
            return
        subprocess.run(
            [
                *self._run_as,
                str(self.bindir / "pg_ctl"),
                *("stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30"),
            ],
            check=True,
            capture_output=True,
        )
        self._proc.wait(timeout=30)
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def resume(self) -> PostgresCluster:
        """Start the server again on the same data, socket and port after :meth:`halt`."""
        assert self._proc is None, "the server is running"
        return self._launch()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()  # smart shutdown
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
