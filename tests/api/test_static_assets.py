"""``/console/static/<path>``: nested packaged files are served with their type; nothing else is.

Each traversal attempt is sent to a real uvicorn as the raw request line (httpx would
normalise a literal ``..`` away before it left the client), and the path resolver is checked
on its own with decoded paths.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from importlib import resources

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tongdao.web.routes import _static_file

STATIC = resources.files("tongdao.web") / "static"

SERVED = [
    ("js/device-keys.js", "text/javascript; charset=utf-8"),
    ("console.css", "text/css; charset=utf-8"),
    ("icon.svg", "image/svg+xml"),
    ("vendor/htmx/htmx.min.js", "text/javascript; charset=utf-8"),
    ("vendor/chartjs/chart.umd.min.js", "text/javascript; charset=utf-8"),
    ("vendor/qrcode-generator/qrcode.mjs", "text/javascript; charset=utf-8"),
    ("vendor/swagger-ui/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ("vendor/swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    ("vendor/swagger-ui/favicon-32x32.png", "image/png"),
    ("js/swagger-init.js", "text/javascript; charset=utf-8"),
    ("js/device-keys.js", "text/javascript; charset=utf-8"),
]

# Raw request paths below /console/static/ (percent-encoding as sent on the wire).
REFUSED_RAW = [
    "../routes.py",
    "..%2Froutes.py",
    "%2e%2e/routes.py",
    "%2E%2E%2Froutes.py",
    "vendor/../console.css",
    "vendor/%2e%2e/console.css",
    "vendor/htmx/../../console.css",
    "%252e%252e/console.css",  # encoded twice: arrives as a literal '%2e%2e'
    "/etc/passwd",  # //etc/passwd after the prefix: an absolute path
    "%2Fetc%2Fpasswd",
    "%2F%2Fetc%2Fpasswd",
    "vendor%5Chtmx%5Chtmx.min.js",  # backslashes
    "..%5C..%5Croutes.py",
    "vendor/htmx/htmx.min.js%00.js",  # NUL
    "vendor/htmx/htmx.min.js%20",
    "./console.css",
    ".%2Fconsole.css",
    "vendor//htmx/htmx.min.js",  # empty segment
    "vendor/htmx/",  # a directory
    "vendor",
    "vendor/htmx/LICENSE",  # no allowed suffix
    "vendor/swagger-ui/swagger-ui-bundle.js.LICENSE.txt",
    "vendor/README.md",
    "../templates/base.html",  # templates are not static files
    "../__init__.py",
    "vendor/htmx/htmx.min.JS",  # suffixes are exact
    "vendor/htmx/htmx.min.%EF%BD%8A%EF%BD%93",  # fullwidth 'ｊｓ'
    "vendor/htmx/nothing.js",
    "vendor/htmx/htmx.min.js/",
    ".hidden.js",
]


def test_packaged_files_are_served_with_their_types(client: TestClient) -> None:
    for path, media_type in SERVED:
        response = client.get(f"/console/static/{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"] == media_type, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.content == STATIC.joinpath(*path.split("/")).read_bytes(), path


def test_an_unchanged_file_revalidates_with_its_etag(client: TestClient) -> None:
    first = client.get("/console/static/vendor/htmx/htmx.min.js")
    etag = first.headers["etag"]
    assert etag.strip('"') == hashlib.sha256(first.content).hexdigest()[:32]
    again = client.get("/console/static/vendor/htmx/htmx.min.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = client.get("/console/static/js/device-keys.js", headers={"If-None-Match": etag})
    assert other.status_code == 200


@pytest.fixture
def live_port(app: FastAPI) -> Iterator[int]:
    """The app behind a real uvicorn, which passes a request's path on as sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-static", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_traversal_and_unlisted_files_are_404(live_port: int) -> None:
    answered: dict[str, tuple[int, bytes]] = {}
    for raw in REFUSED_RAW:
        # http.client sends the request line exactly as written: no normalisation of '..'.
        conn = http.client.HTTPConnection("127.0.0.1", live_port, timeout=10)
        try:
            conn.request("GET", f"/console/static/{raw}")
            response = conn.getresponse()
            answered[raw] = (response.status, response.read())
        finally:
            conn.close()
    assert {raw: status for raw, (status, _) in answered.items() if status != 404} == {}
    assert {raw: body[:40] for raw, (_, body) in answered.items() if body} == {}


@pytest.mark.parametrize(
    "path",
    [
        "../routes.py",
        "..",
        "vendor/../console.css",
        "/etc/passwd",
        "C:\\Windows\\win.ini",
        "vendor\\htmx\\htmx.min.js",
        "vendor/htmx/htmx.min.js\x00.js",
        "~/.ssh/id_ed25519.js",
        "a/" * 9 + "x.js",  # deeper than any asset
        "x" * 101 + ".js",
        "",
    ],
)
def test_the_resolver_refuses_what_is_not_a_plain_relative_path(path: str) -> None:
    assert _static_file(path) is None


def test_the_resolver_finds_nested_files() -> None:
    found = _static_file("vendor/swagger-ui/swagger-ui.css")
    assert found is not None and found.is_file()
