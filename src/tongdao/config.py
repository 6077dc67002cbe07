"""Runtime configuration, read from ``TONGDAO_*`` environment variables.

Settings fail closed: outside ``development`` a placeholder or missing data key
refuses to start rather than encrypting personal data with a guessable key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tongdao.errors import ConfigurationError

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
    data_key_id: str = "k1"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    session_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)

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
        return self

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


def _decode_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("TONGDAO_DATA_KEY is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("TONGDAO_DATA_KEY must decode to exactly 32 bytes")
    return raw


def _development_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode())
    return _decode_key(path.read_text())


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides (CLI options) on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
