"""``tongdao admin``: work directly on the store (bootstrap, migrations)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, read_secret, settings_from

app = typer.Typer(
    help="Administration on the store itself (run where the server runs).", no_args_is_help=True
)


@app.command()
def bootstrap(
    email: Annotated[str, typer.Option(help="the first operator admin's email")],
    display_name: Annotated[str | None, typer.Option(help="their name")] = None,
    role: Annotated[
        str,
        typer.Option(
            help="operator_admin (refused once one exists) or compliance_officer (refused "
            "while an active one exists: the operator admin cannot give that role)"
        ),
    ] = "operator_admin",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create the first operator admin (or, with --role compliance_officer, the first
    compliance officer). Refused once one exists."""
    from tongdao.errors import Conflict, ValidationError
    from tongdao.operator.bootstrap import create_first_admin, create_first_officer
    from tongdao.runtime import Ctx, Runtime
    from tongdao.store import migrate

    makers = {"operator_admin": create_first_admin, "compliance_officer": create_first_officer}
    if role not in makers:
        fail(f"--role: {role!r} is not operator_admin or compliance_officer")
    make = makers[role]
    label = role.replace("_", " ")
    name = display_name if display_name is not None else label.capitalize()
    settings = settings_from(data_dir, database_url)
    password = read_secret("Password", password_stdin)
    try:
        migrate.upgrade(settings.resolved_database_url)
    except SQLAlchemyError as exc:
        fail(f"cannot reach or migrate the store: {getattr(exc, 'orig', None) or exc}")
    runtime = Runtime.from_settings(settings)
    try:
        with runtime.db.session() as session:
            ctx = Ctx(session=session, runtime=runtime)
            try:
                user = make(ctx, email, name, password, actor="cli:admin bootstrap")
            except Conflict as exc:
                fail(exc.message, 3)
            except ValidationError as exc:
                options = {"email": "--email", "display_name": "--display-name"}
                fail("; ".join(f"{options.get(k, k)}: {v}" for k, v in exc.fields.items()))
            session.commit()
            if as_json:
                typer.echo(
                    json.dumps({"id": str(user.id), "email": user.email, "roles": user.roles})
                )
            else:
                typer.echo(f"created {label} {user.email} ({user.id})")
    finally:
        runtime.db.dispose()


@app.command("migrate")
def migrate_cmd(data_dir: DataDirOpt = None, database_url: DatabaseUrlOpt = None) -> None:
    """Upgrade the store's schema to this version's head."""
    from tongdao.store import migrate

    settings = settings_from(data_dir, database_url)
    migrate.upgrade(settings.resolved_database_url)
    typer.echo(f"schema at {migrate.head_revision()}")


@app.command("check-migrations")
def check_migrations(data_dir: DataDirOpt = None, database_url: DatabaseUrlOpt = None) -> None:
    """Exit non-zero when the models and the migrations disagree (like ``alembic check``)."""
    from tongdao.store import migrate

    settings = settings_from(data_dir, database_url)
    migrate.upgrade(settings.resolved_database_url)
    diffs = migrate.differences(settings.resolved_database_url)
    if diffs:
        for diff in diffs:
            typer.echo(f"  {diff}", err=True)
        fail("models and migrations disagree; write a migration")
    typer.echo("models and migrations agree")


@app.command("new-migration")
def new_migration(
    message: Annotated[str, typer.Option("--message", "-m", help="what the migration does")],
) -> None:
    """Write a migration for the model changes (autogenerate against a scratch SQLite store).

    The revision id is numbered and descriptive, e.g. ``0002_add_site_contacts``; review the
    file before committing: autogenerate does not see renames or data moves.
    """
    import re
    import tempfile
    from pathlib import Path

    from alembic import command

    from tongdao.store import migrate

    # alembic_version.version_num is VARCHAR(32): "NNNN_" plus at most 27 characters.
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:27].rstrip("_")
    if not slug:
        fail("--message: say what the migration does")
    head = migrate.head_revision() or "0000"
    number = int(head[:4]) + 1 if head[:4].isdigit() else 1
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.sqlite3'}"
        migrate.upgrade(url)
        if not migrate.differences(url):
            fail("the models and migrations already agree; nothing to write")
        command.revision(
            migrate.alembic_config(url),
            message=message,
            autogenerate=True,
            rev_id=f"{number:04d}_{slug}",
        )


@app.command("rotate-data-key")
def rotate_data_key(
    check: Annotated[
        bool,
        typer.Option("--check", help="only count values per key id; exit 1 while old ones remain"),
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000)] = 500,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Re-encrypt every sealed value (ID numbers, TOTP secrets) under the current data key.

    Run it after starting the servers with the new key as TONGDAO_DATA_KEY (a new
    TONGDAO_DATA_KEY_ID) and the old one in TONGDAO_PREVIOUS_DATA_KEYS. Batches commit as they
    go: a run that stops is run again; a second run finds nothing to do. Once --check reports
    nothing under an old key id, drop that key.
    """
    from tongdao.privacy.keys import RotationError, RotationReport, count_by_key, rotate
    from tongdao.runtime import Runtime
    from tongdao.store import migrate

    settings = settings_from(data_dir, database_url)
    try:
        runtime = Runtime.from_settings(settings)
    except ValueError as exc:
        fail(str(exc), 2)
    try:
        with runtime.db.engine.connect() as conn:
            current = migrate.current_revision(conn)
        if current != migrate.head_revision():
            fail(
                f"the store's schema is at {current}, not at this version's head: run "
                "`tongdao admin migrate` first"
            )
        if check:
            report = RotationReport(settings.data_key_id, by_key=count_by_key(runtime.db))
        else:
            try:
                report = rotate(
                    runtime.db,
                    runtime.cipher,
                    batch_size=batch_size,
                    progress=lambda column, done: typer.echo(f"{column}: {done}", err=True),
                )
            except RotationError as exc:
                fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"cannot reach the store: {getattr(exc, 'orig', None) or exc}")
    finally:
        runtime.db.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for column, n in report.reencrypted.items():
            typer.echo(f"re-encrypted {n} value(s) of {column} under key {report.key_id}")
        for key_id, n in report.by_key.items():
            mark = " (current)" if key_id == report.key_id else ""
            typer.echo(f"key {key_id}{mark}: {n} value(s)")
        if report.remaining:
            typer.echo(f"{report.remaining} value(s) still under old keys", err=True)
        else:
            typer.echo("nothing is sealed under an old key: previous keys may be dropped")
    if check and report.remaining:
        raise typer.Exit(1)
