"""Shared CLI plumbing: settings from options, errors as messages with a non-zero exit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from tongdao.config import Settings, load_settings
from tongdao.errors import ConfigurationError

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="TONGDAO_DATA_DIR", help="where SQLite and keys live"),
]
DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="TONGDAO_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_from(data_dir: Path | None, database_url: str | None, **extra: object) -> Settings:
    try:
        return load_settings(data_dir=data_dir, database_url=database_url, **extra)
    except ConfigurationError as exc:
        fail(str(exc), 2)


def read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\n")
    else:
        value = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return str(value)
