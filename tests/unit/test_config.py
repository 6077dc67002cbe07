"""Settings fail closed outside development."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from tongdao.config import load_settings
from tongdao.errors import ConfigurationError

KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize("key", [None, "changeme", "", "placeholder"])
def test_production_refuses_missing_or_placeholder_key(key: str | None) -> None:
    with pytest.raises(ConfigurationError, match="TONGDAO_DATA_KEY"):
        load_settings(env="production", data_key=key, database_url="sqlite:///x.db")


def test_production_requires_a_database_url() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        load_settings(env="production", data_key=KEY)


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigurationError):
        load_settings(env="development", data_key=key)


def test_development_makes_a_private_key_file_once(tmp_path: Path) -> None:
    first = load_settings(env="development", data_dir=tmp_path).data_key_bytes
    second = load_settings(env="development", data_dir=tmp_path).data_key_bytes
    assert first == second
    assert len(first) == 32
    assert (tmp_path / "data.key").stat().st_mode & 0o777 == 0o600


def test_default_store_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = load_settings(data_dir=tmp_path).resolved_database_url
    assert url == f"sqlite:///{tmp_path.resolve() / 'tongdao.sqlite3'}"
