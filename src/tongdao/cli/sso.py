"""``tongdao login --sso``: single sign-on from the command line, by the loopback redirect of
RFC 8252 (OAuth 2.0 for Native Apps).

The CLI listens on ``http://127.0.0.1:<free port>/callback``, keeps a secret and sends only its
SHA-256 to the server with the address (``POST /auth/sso/begin``). It prints the provider's
URL; the person opens it and signs in at their company's provider, which sends the browser to
the console, which hands the answer on to the loopback address. The CLI then finishes
(``POST /auth/sso/complete``) with the secret: a code seen by anyone else is useless without
it. The provider's own PKCE, ``state`` and ``nonce`` are the server's, as for the console.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import typer

from tongdao.cli.client import Client
from tongdao.cli.common import fail

WAIT_SECONDS = 600
PAGE = (
    "<!doctype html><meta charset=utf-8><title>Tongdao</title>"
    "<p>Tongdao received the answer of your identity provider: return to the terminal. "
    "You may close this window.</p>"
)


def _handler(done: threading.Event, answers: list[dict[str, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/callback":
                self.send_error(404)
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if "state" in query and not done.is_set():
                answers.append(query)
                done.set()

        def log_message(self, format: str, *args: Any) -> None:
            return  # the terminal shows the CLI's own lines only

    return Handler


def sso_login(client: Client, email: str) -> dict[str, Any]:
    """Run the loopback sign-in; returns the server's login answer (token, user)."""
    done = threading.Event()
    answers: list[dict[str, str]] = []
    server = HTTPServer(("127.0.0.1", 0), _handler(done, answers))
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="sso-loopback", daemon=True)
    thread.start()
    try:
        secret = secrets.token_urlsafe(32)
        begun = client.json(
            "POST",
            "/auth/sso/begin",
            body={
                "email": email,
                "redirect_uri": f"http://127.0.0.1:{port}/callback",
                "binding_challenge": hashlib.sha256(secret.encode()).hexdigest(),
            },
        )
        typer.echo(f"Sign in at {begun.get('provider', 'your identity provider')}: open")
        typer.echo(str(begun["authorization_url"]))
        if not done.wait(WAIT_SECONDS):
            fail(f"no answer from the identity provider within {WAIT_SECONDS} s")
    finally:
        server.shutdown()
        server.server_close()
    answer = answers[0]
    result: dict[str, Any] = client.json(
        "POST",
        "/auth/sso/complete",
        body={
            "state": answer.get("state", ""),
            "code": answer.get("code", ""),
            "error": answer.get("error", "")[:200],
            "binding_verifier": secret,
        },
    )
    return result
