"""Runtime configuration, read from ``TONGDAO_*`` environment variables.

Settings fail closed: outside ``development`` a placeholder or missing data key
refuses to start rather than encrypting personal data with a guessable key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tongdao.errors import ConfigurationError
from tongdao.filemodes import private_dir, tighten_file

KEY_ID_PATTERN = r"^[A-Za-z0-9-]{1,32}$"  # no ':' (it separates the parts of a sealed value)
PLACEHOLDER_KEYS = frozenset({"", "changeme", "change-me", "secret", "placeholder"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


class Settings(BaseSettings):
    """Everything a ``tongdao server`` process needs to know at start."""

    model_config = SettingsConfigDict(env_prefix="TONGDAO_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is an SQLite file in the data directory",
    )
    data_key: str | None = Field(
        default=None,
        description="base64 of 32 random bytes: the AES-256-GCM key for personal data at rest",
    )
    data_key_id: str = Field(
        default="k1",
        pattern=KEY_ID_PATTERN,
        description="id of the data key, written into every value it seals (for rotation)",
    )
    previous_data_keys: str | None = Field(
        default=None,
        description="older data keys, kept to open values sealed before a rotation until "
        "`tongdao admin rotate-data-key` has re-encrypted them: 'k1:<base64>,k0:<base64>'",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    request_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="requests whose blocking work (the store, password hashing) runs at once; "
        "the rest wait their turn, first come first served. Default: 2 on SQLite, 4 on "
        "PostgreSQL (see resolved_request_threads). More threads do not make a process "
        "faster: they share one interpreter lock and the store's write lock, and each "
        "running request slows the others (measured in bench/load.py)",
    )
    jobs_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="how often `tongdao server` looks for scheduled work (the monthly billing "
        "run) under a lease in the store; 0 turns the scheduler off (another replica runs it)",
    )
    billing_run_batch: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="tenants billed per transaction by the monthly run, computed first and "
        "then written at once (a batch commits whole or not at all): fewer statements, commits "
        "and audit-chain appends",
    )
    usage_raw_months: int = Field(
        default=2,
        ge=1,
        description="whole Asia/Shanghai months of raw usage reports kept before the current "
        "one (the usage retention job drops older ones; the hourly ledger keeps the bytes)",
    )
    usage_hourly_months: int = Field(
        default=24,
        ge=13,
        description="whole Asia/Shanghai months of the hourly usage ledger kept before the "
        "current one (at least 13: a year of invoices can be checked and corrected against it)",
    )
    audit_anchor_file: Path | None = Field(
        default=None,
        description="the append-only file the scheduler writes signed audit-chain head "
        "checkpoints to (tongdao.audit.anchor); default <data dir>/audit-anchors.jsonl",
    )
    retention_margin_days: int = Field(
        default=7,
        ge=0,
        le=366,
        description="days kept beyond rule logs.retention's six calendar months before audit "
        "records may be purged or erased (tongdao.compliance.retention)",
    )
    session_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="failed sign-ins of one account from one address before each further "
        "attempt from there waits (1 s, doubling per failure)",
    )
    login_window_seconds: int = Field(default=900, ge=1)
    login_max_delay_seconds: int = Field(default=900, ge=1)
    login_memory_seconds: int = Field(
        default=86400,
        ge=1,
        description="how long the failures of one account from one address count for its "
        "delays (until a success from there or an admin's unlock clears them)",
    )
    login_address_max_failures: int = Field(
        default=50, ge=1, description="failed sign-ins from one address, any accounts, per window"
    )
    login_account_max_failures: int = Field(
        default=100,
        ge=1,
        description="failed sign-ins of one account from anywhere per window before every "
        "attempt on it is spaced by login_account_spacing_seconds (slowed, never locked)",
    )
    login_account_spacing_seconds: int = Field(default=10, ge=1)
    api_token_max_days: int = Field(default=90, ge=1, le=365)
    trusted_proxies: str = Field(
        default="",
        description="addresses or networks (comma-separated) of reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto are believed; none by default",
    )
    metrics_token: str | None = Field(
        default=None,
        min_length=16,
        description="bearer token that opens GET /metrics; unset: loopback clients only",
    )
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    # Mail and one-time links (tongdao.mail, tongdao.auth.links); the SMTP relay itself is set
    # through the API (PUT /operator/mail), its password sealed with the data key.
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the URL people reach this server at, for links in mail; default "
        "http://<host>:<port>. Never taken from a request's Host header",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) the SMTP relay's certificate is checked "
        "against, instead of the system's",
    )
    # WebAuthn (security keys and passkeys, tongdao.auth.second_factor). A browser offers
    # them only in a secure context: under https with the console's domain in production,
    # http://localhost in development and tests.
    webauthn_rp_id: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="the WebAuthn relying party id: the console's domain (a passkey is bound "
        "to it); default the host of TONGDAO_PUBLIC_URL, else localhost",
    )
    webauthn_origin: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+$",
        description="the origin the console's pages are served from, as the browser sees it "
        "(https://console.example.com); default the origin of TONGDAO_PUBLIC_URL, else "
        "http://localhost:<port>. A response made for another origin is refused",
    )
    webauthn_challenge_seconds: int = Field(
        default=300,
        ge=30,
        le=900,
        description="how long a WebAuthn challenge (registration or sign-in) may be answered",
    )
    reset_link_ttl_seconds: int = Field(default=3600, ge=300, le=86400)
    invitation_link_ttl_seconds: int = Field(default=7 * 86400, ge=3600, le=30 * 86400)
    password_reset_max_per_email: int = Field(default=3, ge=1)
    password_reset_max_per_address: int = Field(default=20, ge=1)
    password_reset_window_seconds: int = Field(default=3600, ge=60)

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            if self.data_key is None or self.data_key.strip().lower() in PLACEHOLDER_KEYS:
                raise ValueError(
                    "TONGDAO_DATA_KEY must be set to base64 of 32 random bytes in production"
                )
            if self.database_url is None:
                raise ValueError("TONGDAO_DATABASE_URL must be set in production")
        if self.data_key is not None and self.data_key.strip().lower() not in PLACEHOLDER_KEYS:
            _decode_key(self.data_key)
        _proxy_networks(self.trusted_proxies)
        if self.data_key_id in _previous_keys(self.previous_data_keys):
            raise ValueError(
                f"TONGDAO_PREVIOUS_DATA_KEYS names the current key id {self.data_key_id!r}; "
                "give the new key a new id"
            )
        return self

    @property
    def link_base_url(self) -> str:
        """Where links in mail point: TONGDAO_PUBLIC_URL, else this server's own address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def webauthn_rp(self) -> tuple[str, str]:
        """The WebAuthn relying party id and the origin responses must come from."""
        public = urlsplit(self.public_url) if self.public_url else None
        rp_id = self.webauthn_rp_id or (public.hostname if public else None) or "localhost"
        if self.webauthn_origin:
            origin = self.webauthn_origin.rstrip("/")
        elif public is not None:
            origin = f"{public.scheme}://{public.netloc}"
        else:
            origin = f"http://localhost:{self.port}"
        return rp_id, origin

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tongdao.sqlite3').resolve()}"

    @cached_property
    def data_key_bytes(self) -> bytes:
        """The data key; in development a key file in the data directory is made once."""
        if self.data_key is not None and self.data_key.strip().lower() not in PLACEHOLDER_KEYS:
            return _decode_key(self.data_key)
        if self.env is Environment.PRODUCTION:  # pragma: no cover - refused by the validator
            raise ConfigurationError("no data key")
        return _development_key(self.data_dir / "data.key")

    @property
    def resolved_request_threads(self) -> int:
        """``request_threads``, or the store's default: 4 on PostgreSQL, 2 on SQLite.

        Measured side by side with 20 clients on 2 cores: PostgreSQL p99 382 ms (2), 314 ms
        (4), 1.5 s (40); SQLite 216 ms (2), 245 ms (4), 320 ms (40). Fewer threads than
        concurrent writers do not deadlock: no dependency takes SQLite's write lock before its
        endpoint (``tongdao.api.deps.reads_apart``), and what a request reads after its commit
        takes no lock (``tongdao.store.engine``, "one write per request")."""
        if self.request_threads is not None:
            return self.request_threads
        return 2 if self.resolved_database_url.startswith("sqlite") else 4

    @property
    def trusted_proxy_list(self) -> list[str]:
        """The trusted proxies as uvicorn's ``forwarded_allow_ips`` takes them."""
        return [str(net) for net in _proxy_networks(self.trusted_proxies)]

    @property
    def data_keys(self) -> dict[str, bytes]:
        """Every key by id: the current one (which seals) and the previous ones (which open)."""
        keys = _previous_keys(self.previous_data_keys)
        keys[self.data_key_id] = self.data_key_bytes
        return keys


def _previous_keys(value: str | None) -> dict[str, bytes]:
    """``'k1:<base64>,k0:<base64>'`` → ``{"k1": b"...", "k0": b"..."}``."""
    keys: dict[str, bytes] = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not re.fullmatch(KEY_ID_PATTERN, key_id):
            raise ValueError(
                "TONGDAO_PREVIOUS_DATA_KEYS: each entry is <key id>:<base64 key>, the id made "
                "of letters, digits and '-'"
            )
        if key_id in keys:
            raise ValueError(f"TONGDAO_PREVIOUS_DATA_KEYS: key id {key_id!r} appears twice")
        try:
            keys[key_id] = _decode_key(encoded)
        except ValueError as exc:
            raise ValueError(f"TONGDAO_PREVIOUS_DATA_KEYS: key {key_id!r}: {exc}") from exc
    return keys


def _proxy_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``'192.0.2.10, 198.51.100.0/24'`` → networks; a name or ``*`` is refused."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in value.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(
                f"TONGDAO_TRUSTED_PROXIES: {item.strip()!r} is not an IP address or network "
                "(names and '*' are not accepted)"
            ) from exc
    return networks


def _decode_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("TONGDAO_DATA_KEY is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("TONGDAO_DATA_KEY must decode to exactly 32 bytes")
    return raw


def _development_key(path: Path) -> bytes:
    private_dir(path.parent)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask took away or left
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode())
    tighten_file(path)
    return _decode_key(path.read_text())


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides (CLI options) on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
