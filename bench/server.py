"""The control plane under uvicorn in a child process, on a free loopback port.

Parent side: :class:`ServerProcess` starts ``python -m bench.server``, reads the port the child
bound (127.0.0.1, port 0: no race for a free port), waits for ``/healthz`` and stops the child
on exit. The child exits on its own when its standard input closes, so it cannot outlive a
parent that was killed.

The child wraps the app in :class:`ServiceTimer`, which reports in an ``x-bench-service-us``
response header how long the application took from receiving the request to starting the
response: the in-process service time, without the client and the HTTP round trip.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

SERVICE_HEADER = "x-bench-service-us"
# The data key of the benchmark's throwaway stores (the test suite's, not a secret).
DATA_KEY = base64.b64encode(bytes(range(32))).decode()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def bench_settings(database_url: str, data_dir: Path) -> Any:
    from tongdao.config import load_settings

    return load_settings(
        env="test",
        data_dir=data_dir,
        database_url=database_url,
        data_key=DATA_KEY,
        argon2_time_cost=1,
        argon2_memory_kib=8,
    )


class ServiceTimer:
    """ASGI middleware: adds the application's time to the response's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter_ns()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_us = (time.perf_counter_ns() - start) // 1000
                headers = list(message.get("headers", []))
                headers.append((SERVICE_HEADER.encode(), str(elapsed_us).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


# --- child ---------------------------------------------------------------------------------
def _exit_when_orphaned(server: Any) -> None:
    """Stop when the parent closes our stdin (on purpose or by dying)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    server.should_exit = True
    time.sleep(15)
    os._exit(3)  # the graceful stop hung


def child_main(argv: list[str] | None = None) -> None:
    import uvicorn

    from tongdao.api.app import create_app
    from tongdao.runtime import Runtime, freeze_heap

    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    runtime = Runtime.from_settings(bench_settings(args.database_url, args.data_dir))
    app = ServiceTimer(create_app(runtime))
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says it is TCP, and uvicorn's own bind does; a proto-0 socket would
    # leave Nagle on and add a 40 ms delayed-ACK stall to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    threading.Thread(target=_exit_when_orphaned, args=(server,), daemon=True).start()
    freeze_heap()  # as `tongdao server` does
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        runtime.db.dispose()


# --- parent --------------------------------------------------------------------------------
class ServerProcess:
    """``with ServerProcess(url, data_dir) as server: server.base_url``."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        *,
        start_timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        # Settings for the server, as TONGDAO_* environment variables over this process's.
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._stderr_path = data_dir / "server.stderr"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def base_url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.server",
                    "--database-url",
                    self.database_url,
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=Path(__file__).resolve().parent.parent,
                env={**os.environ, **self.env},
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        line = self._read_line(deadline)
        if not line.startswith("PORT "):
            self._fail(f"unexpected first line from the server: {line!r}")
        self.port = int(line.split()[1])
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._fail("the server did not become healthy")
                time.sleep(0.05)

    def _read_line(self, deadline: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        result: list[bytes] = []
        reader = threading.Thread(
            target=lambda: result.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if not result:
            self._fail("the server did not report its port in time")
        return result[0].decode().strip()

    def _fail(self, why: str) -> None:
        self.stop()
        err = self._stderr_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{why}; server stderr:\n{err}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the child's watchdog begins a graceful stop
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    child_main()
