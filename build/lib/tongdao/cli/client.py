"""A small HTTP client for the Tongdao API, as the ``tongdao`` commands use it.

Where the server and token come from, first match wins:

* server: ``--server``, ``TONGDAO_SERVER``, the server saved by ``tongdao login``,
  ``http://127.0.0.1:8080``;
* token: ``--token``, ``TONGDAO_TOKEN``, the token saved by ``tongdao login`` (only sent to
  the server it was issued by).

Credentials live in ``$TONGDAO_CONFIG_DIR/credentials.json`` (default
``~/.config/tongdao``), mode 0600. Every failure ends the command with a message on stderr and
an exit code: 1 the API refused, 2 usage or local configuration, 3 the server is unreachable.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from tongdao._version import __version__
from tongdao.cli.common import fail

DEFAULT_SERVER = "http://127.0.0.1:8080"
API_PREFIX = "/api/v1"
TIMEOUT_SECONDS = 30.0
EXIT_API, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="TONGDAO_SERVER",
        help="control plane URL (default: the one saved by login, else http://127.0.0.1:8080)",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TONGDAO_TOKEN",
        help="API token (default: the one saved by login)",
        show_default=False,
    ),
]


# --- credentials file -------------------------------------------------------------------------


def config_dir() -> Path:
    """``$TONGDAO_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/tongdao``, else ``~/.config/tongdao``."""
    explicit = os.environ.get("TONGDAO_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tongdao"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def load_credentials() -> dict[str, Any] | None:
    """The saved login, or None when there is none."""
    path = credentials_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        fail(f"{path} is damaged; run `tongdao login` again", EXIT_USAGE)
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        typer.echo(f"warning: {path} is readable by others; chmod 600 it", err=True)
    return data


def save_credentials(data: dict[str, Any]) -> Path:
    """Write the login atomically, readable by the owner only."""
    path = credentials_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}", EXIT_USAGE)
    return path


def forget_credentials() -> bool:
    """Delete the saved login; False when there was none."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


# --- the client -------------------------------------------------------------------------------


def normalise_server(url: str) -> str:
    """Check a server URL and drop its trailing slash; a bad one is a usage error."""
    url = url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        fail(f"--server: {url!r} is not a URL ({exc})", EXIT_USAGE)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        fail(f"--server: {url!r} must look like https://host[:port]", EXIT_USAGE)
    return url


@dataclass
class Client:
    """One server and (maybe) one token; every method exits the command on failure."""

    server: str
    token: str | None = None

    @classmethod
    def resolve(cls, server: str | None, token: str | None) -> Client:
        """Apply the option > environment > saved login > default order."""
        saved = load_credentials()
        saved_server = normalise_server(saved["server"]) if saved and saved.get("server") else None
        url = normalise_server(server) if server else (saved_server or DEFAULT_SERVER)
        if token is None and saved is not None and saved_server == url:
            token = str(saved["token"])
        return cls(url, token or None)

    def url(self, path: str) -> str:
        return f"{self.server}{API_PREFIX}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """Send one request; API errors and transport failures end the command."""
        headers = {"User-Agent": f"tongdao-cli/{__version__}", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with httpx.Client(timeout=TIMEOUT_SECONDS) as http:
                response = http.request(
                    method,
                    self.url(path),
                    params=tuple(params or ()),
                    json=body,
                    headers=headers,
                )
        except httpx.TimeoutException:
            fail(f"cannot reach server at {self.server}: timed out", EXIT_UNREACHABLE)
        except httpx.TransportError as exc:
            fail(
                f"cannot reach server at {self.server} ({exc or type(exc).__name__})",
                EXIT_UNREACHABLE,
            )
        if response.is_error:
            self._fail_with(response)
        return response

    def json(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
    ) -> Any:
        """Send a request and decode its JSON answer (None for 204)."""
        response = self.request(method, path, params=params, body=body)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            fail(f"{self.server} answered {method} {path} with something that is not JSON")

    def _fail_with(self, response: httpx.Response) -> None:
        """Print the API's error (message, then one line per field) and exit 1."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if not isinstance(error, dict):
            reason = response.reason_phrase or "error"
            fail(f"HTTP {response.status_code} {reason} from {response.url}")
        message = str(error.get("message") or error.get("code") or "request refused")
        typer.echo(f"error: {message}", err=True)
        fields = error.get("fields") or {}
        if isinstance(fields, dict):
            for field, problem in fields.items():
                typer.echo(f"  {field}: {problem}", err=True)
        if response.status_code == 401 and not self.token:
            typer.echo("  (no token: run `tongdao login` or set TONGDAO_TOKEN)", err=True)
        raise typer.Exit(EXIT_API)
