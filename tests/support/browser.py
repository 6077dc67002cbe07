"""The console in a real browser: Debian's Chromium driven by Playwright against uvicorn.

- :func:`chromium` launches Debian's Chromium (never a downloaded one) with the flags this
  machine's closed network needs.
- :func:`serve` runs an app on a real uvicorn on a free loopback port.
- :func:`watch` collects console errors (a CSP refusal, a script error) so tests can assert
  there were none.
- :func:`shoot` keeps a screenshot as a test artefact under ``build/screenshots/`` (or
  ``$TONGDAO_ARTEFACTS/screenshots``) after checking that no character on the page fell back
  to a missing-glyph box.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

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
ROOT = Path(__file__).resolve().parents[2]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def artefacts() -> Path:
    base = Path(os.environ.get("TONGDAO_ARTEFACTS", ROOT / "build"))
    folder = base / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        need("Chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: FastAPI, *, lifespan: str = "on") -> Iterator[str]:
    """The app on a real uvicorn; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def watch(page: Page) -> list[str]:
    """Console errors and page errors from now on (expected 4xx loads excepted)."""
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            problems.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    return problems


# Draws each distinct character of the page in the font its element uses and compares it
# with the font's missing-glyph box (drawn from a private-use code point no font carries).
# Returns the characters whose drawing equals that box.
_MISSING_GLYPHS = """
() => {
  const canvas = document.createElement("canvas");
  canvas.width = 48; canvas.height = 48;
  const g = canvas.getContext("2d", {willReadFrequently: true});
  const draw = (ch, font) => {
    g.clearRect(0, 0, 48, 48);
    g.font = font; g.textBaseline = "top"; g.fillStyle = "#000";
    g.fillText(ch, 4, 4);
    return g.getImageData(0, 0, 48, 48).data.join(",");
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Map();
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!el || el.closest("script,style,[hidden]")) continue;
    const style = getComputedStyle(el);
    const font = `${style.fontStyle} ${style.fontWeight} 32px ${style.fontFamily}`;
    for (const ch of node.textContent) {
      if (ch.trim() === "" || ch.charCodeAt(0) < 0x2e80) continue;
      if (!seen.has(ch)) seen.set(ch, font);
    }
  }
  const missing = [];
  const boxes = new Map();
  for (const [ch, font] of seen) {
    if (!boxes.has(font)) boxes.set(font, draw("\\u{F0000}", font));
    if (draw(ch, font) === boxes.get(font)) missing.push(ch);
  }
  return missing;
}
"""


def missing_glyphs(page: Page) -> list[str]:
    found: list[str] = page.evaluate(_MISSING_GLYPHS)
    return found


def shoot(page: Page, name: str) -> Path:
    """Check the page draws every character, then keep its screenshot as an artefact."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    path = artefacts() / f"{safe}.png"
    page.screenshot(path=str(path), full_page=True)
    missing = missing_glyphs(page)
    assert not missing, f"{name}: drawn as missing-glyph boxes: {''.join(missing)}"
    return path
