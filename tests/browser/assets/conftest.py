"""Fixtures for the vendored-asset browser tests: Debian's Chromium and a real uvicorn.

The server is the ``app`` fixture (fresh SQLite store) on a free loopback port. ``page`` fails
the test on any console error (a CSP refusal, a script error) and records every request the
page makes, so a test can assert that nothing left the machine.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright

from tests.conftest import need

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = "127.0.0.1"


@dataclass
class Watched:
    """A page with what it logged and asked for."""

    page: Page
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        need("Chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    """The app served by a real uvicorn on loopback."""
    port = free_port()
    config = uvicorn.Config(
        app, host=LOOPBACK, port=port, log_level="warning", ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-assets", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    """A page whose requests to any host but 127.0.0.1 are aborted (and recorded)."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    seen = Watched(pg)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            seen.problems.append(msg.text)

    def gate(route: Route) -> None:
        url = route.request.url
        seen.requests.append(url)
        if urlsplit(url).hostname != LOOPBACK:
            seen.aborted.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", gate)
    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
    try:
        yield seen
    finally:
        context.close()
