"""A real OpenID Provider for tests: django-oidc-provider (PyPI) in its own server process.

The provider is the Django project in ``tests/support/oidc_idp`` (django-oidc-provider,
configured, with a login form), run by ``python -m tests.support.oidc_idp.serve`` on a free
127.0.0.1 port with its own SQLite store. ``OidcProvider`` starts and stops it, seeds it through
its test-only control API (clients, users with e-mail, groups and extra claims, disabling a
user, rotating the signing key, a fault in the next ID token), and ``sign_in`` plays the
employee at the provider's login form with httpx.

``make_template`` migrates a store once; each provider starts from a copy of it (a fresh
migration takes seconds, a start on a migrated store about one). Fixtures: ``oidc_providers``
and ``oidc_provider`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import selectors
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urljoin

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
EmailVerified = Literal["true", "false", "omit"]
IdTokenFault = Literal[
    "wrong_audience", "wrong_nonce", "wrong_issuer", "expired", "bad_signature", "foreign_key"
]


class SignInRefused(Exception):
    """The provider's login form did not let the user in (wrong password, disabled user)."""


@dataclass(frozen=True)
class OidcClient:
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass(frozen=True)
class OidcUser:
    username: str
    password: str
    email: str
    sub: str
    groups: tuple[str, ...] = ()


def _environment(database: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["DJANGO_SETTINGS_MODULE"] = "tests.support.oidc_idp.settings"
    env["OIDC_IDP_DATABASE"] = str(database)
    env.setdefault("OIDC_IDP_SECRET_KEY", secrets.token_urlsafe(32))
    env.setdefault("OIDC_IDP_CONTROL_TOKEN", secrets.token_urlsafe(16))
    env.update(extra)
    return env


def make_template(directory: Path) -> Path:
    """Migrate an empty provider store once; returns the SQLite file to copy."""
    database = directory / "template.sqlite3"
    subprocess.run(
        [sys.executable, "-m", "tests.support.oidc_idp.serve", "--migrate-only"],
        cwd=REPO_ROOT,
        env=_environment(database),
        check=True,
        timeout=120,
    )
    return database


@dataclass
class OidcProvider:
    """One running provider; ``start`` it, ``stop`` it (the fixtures do both)."""

    directory: Path
    template: Path
    email_verified: EmailVerified = "true"
    id_token_expire: int = 600
    base_url: str = ""
    started_in: float = 0.0
    _control_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _process: subprocess.Popen[str] | None = None
    _log: IO[str] | None = None
    _http: httpx.Client | None = None

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/openid"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def log_path(self) -> Path:
        return self.directory / "provider.log"

    def start(self) -> None:
        began = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        database = self.directory / "provider.sqlite3"
        shutil.copyfile(self.template, database)
        env = _environment(
            database,
            OIDC_IDP_CONTROL_TOKEN=self._control_token,
            OIDC_IDP_SECRET_KEY=secrets.token_urlsafe(32),
            OIDC_IDP_EMAIL_VERIFIED=self.email_verified,
            OIDC_IDP_ID_TOKEN_EXPIRE=str(self.id_token_expire),
        )
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.oidc_idp.serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.base_url = self._wait_ready(self._process)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._control_token}"},
            timeout=10,
        )
        self.started_in = time.monotonic() - began

    def _wait_ready(self, process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.1):
                    line = process.stdout.readline()
                    if line.startswith("ready "):
                        return line.split()[1]
                    if not line:
                        break
                if process.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"the OpenID Provider did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if self._http is not None:
            self._http.close()
            self._http = None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None, "the provider is not running"
        response = self._http.post(f"/control/{path}", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def add_client(self, redirect_uri: str, *, client_id: str | None = None) -> OidcClient:
        """Register a confidential client (authorization code, RS256 ID tokens, no consent)."""
        client = OidcClient(
            client_id=client_id or f"client-{secrets.token_hex(6)}",
            client_secret=secrets.token_urlsafe(24),
            redirect_uri=redirect_uri,
        )
        self._control(
            "clients",
            {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_uris": [redirect_uri],
            },
        )
        return client

    def add_user(
        self,
        email: str,
        *,
        groups: tuple[str, ...] = (),
        given_name: str = "",
        family_name: str = "",
        username: str | None = None,
    ) -> OidcUser:
        username = username or email
        password = secrets.token_urlsafe(16)
        created = self._control(
            "users",
            {
                "username": username,
                "email": email,
                "password": password,
                "groups": list(groups),
                "given_name": given_name,
                "family_name": family_name,
            },
        )
        return OidcUser(username, password, email, created["sub"], tuple(sorted(groups)))

    def set_user_active(self, user: OidcUser, active: bool) -> None:
        """Disable (or enable again) a user: a disabled user's login is refused."""
        self._control(f"users/{user.username}/active", {"active": active})

    def set_user_groups(self, user: OidcUser, groups: tuple[str, ...]) -> None:
        """The user's groups from now on (the ``groups`` claim of later ID tokens)."""
        self._control(f"users/{user.username}/groups", {"groups": list(groups)})

    def set_user_claims(self, user: OidcUser, claims: dict[str, Any]) -> None:
        """Extra claims in the user's later ID tokens, e.g. Entra's ``oid``, ``tid``,
        ``xms_edov``."""
        self._control(f"users/{user.username}/claims", {"claims": claims})

    def inject_id_token_fault(self, fault: IdTokenFault) -> None:
        """The next ID token the provider issues is wrong in this way: ``wrong_audience``,
        ``wrong_nonce``, ``wrong_issuer``, ``expired`` (validly signed), ``bad_signature``
        (claims changed after signing) or ``foreign_key`` (signed by an unpublished key under
        the real kid). For tests that a relying party refuses it."""
        self._control("faults", {"id_token": fault})

    def rotate_signing_key(self) -> str:
        """A new key signs from now on; the old one leaves the JWKS. Returns the new kid."""
        kid: str = self._control("keys/rotate", {})["kid"]
        return kid

    def sign_in(self, browser: httpx.Client, authorization_url: str, user: OidcUser) -> str:
        """Follow ``authorization_url`` as the user would, through the login form.

        ``browser`` keeps the provider's cookies (its session). Returns the URL the provider
        redirects back to (the client's redirect URI with ``code`` and ``state``), unfollowed.
        """
        response = browser.get(authorization_url)
        for _ in range(10):
            if response.status_code not in (301, 302, 303):
                break
            location = urljoin(str(response.url), response.headers["location"])
            if not location.startswith(self.base_url):
                return location
            response = browser.get(location)
        if "/login/" not in str(response.url):
            raise SignInRefused(f"no login form but {response.status_code} at {response.url}")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)
        following = re.search(r'name="next" value="([^"]*)"', response.text)
        assert csrf and following, response.text
        response = browser.post(
            str(response.url),
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "username": user.username,
                "password": user.password,
                "next": html.unescape(following.group(1)),
            },
        )
        for _ in range(10):
            if response.status_code not in (301, 302, 303):
                break
            location = urljoin(str(response.url), response.headers["location"])
            if not location.startswith(self.base_url):
                return location
            response = browser.get(location)
        raise SignInRefused(f"the provider answered {response.status_code} at {response.url}")
