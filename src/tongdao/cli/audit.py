"""``tongdao audit verify | purge | export``: the tamper-evident log's checks, retention and
regulator exports.

* ``verify`` asks the server (``GET /audit/verify``), or with ``--local`` reads the store
  directly (``--data-dir`` / ``--database-url``, where the server runs, with its data key);
  exit 1 and the first bad record's seq and id when the chain is broken.
* ``purge`` works on the store directly (a retention job on the server's host, never over
  the API): it refuses dates younger than rule ``logs.retention`` and a chain that does not
  verify, deletes the older records and writes a signed checkpoint.
* ``export`` downloads ``GET /audit/export`` and writes the records file and
  ``manifest.json`` into ``--out``, after checking each file against the manifest's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer

from tongdao._version import __version__
from tongdao.cli.client import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    TIMEOUT_SECONDS,
    Client,
    ServerOpt,
    TokenOpt,
)
from tongdao.cli.common import DatabaseUrlOpt, DataDirOpt, fail, settings_from

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
_EXPORT_FILES = frozenset({"records.csv", "records.jsonl", "manifest.json"})


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def parse_time(option: str, value: str | None) -> datetime | None:
    """``2026-05-01`` (midnight UTC) or an ISO 8601 time (naive is UTC); bad input exits 2."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option}: {value!r} is not a date (YYYY-MM-DD) or ISO 8601 time", EXIT_USAGE)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif report.get("ok"):
        since = (
            f" after checkpoint seq {report['checkpoint_seq']} (purged through seq "
            f"{report['purged_through_seq']})"
            if report.get("checkpoint_seq")
            else ""
        )
        typer.echo(
            f"audit chain OK: {report['checked']} records checked{since}; head seq "
            f"{report['head_seq']} hash {report['head_hash']}"
        )
    if not report.get("ok"):
        problem = report.get("problem") or {}
        typer.echo(
            f"error: audit chain broken ({problem.get('kind')}): {problem.get('message')}",
            err=True,
        )
        raise typer.Exit(1)


def verify(
    local: Annotated[
        bool,
        typer.Option("--local", help="read the store directly instead of asking the server"),
    ] = False,
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            help="also check the chain against this file of signed head checkpoints "
            "(implies --local): truncation and rewriting after an anchor are caught",
        ),
    ] = None,
    public_key: Annotated[
        list[str] | None,
        typer.Option(
            "--public-key",
            help="an anchor signing key to trust besides those derived from the data keys "
            "(base64 Ed25519 public key; repeatable)",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Walk the audit log's hash chain; exit 1 naming the first edited, deleted or moved
    record (or, with --anchor, the first anchored record no longer there)."""
    if anchor is not None:
        _verify_anchor(anchor, public_key or [], data_dir, database_url, as_json)
        return
    if not local:
        report = Client.resolve(server, token).json("GET", "/audit/verify")
        _print_report(report, as_json)
        return
    from sqlalchemy.exc import SQLAlchemyError

    from tongdao.audit.chain import SigningKey, verify_chain
    from tongdao.store.engine import Database

    settings = settings_from(data_dir, database_url)
    db: Database | None = None
    try:
        db = Database(settings.resolved_database_url)
        result = verify_chain(db, SigningKey.from_settings(settings))
    except (SQLAlchemyError, OSError) as exc:
        fail(f"cannot read the store (is it migrated?): {getattr(exc, 'orig', None) or exc}")
    finally:
        if db is not None:
            db.dispose()
    _print_report(result.model_dump(mode="json"), as_json)


def _verify_anchor(
    path: Path,
    public_keys: list[str],
    data_dir: Path | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from tongdao.audit import anchor as anchoring
    from tongdao.audit.chain import SigningKey, verify_chain
    from tongdao.store.engine import Database

    if not path.is_file():
        fail(f"--anchor: {path} is not a file", EXIT_USAGE)
    try:
        given = [anchoring.public_key_of(text) for text in public_keys]
    except ValueError:
        fail("--public-key: not a base64 Ed25519 public key", EXIT_USAGE)
    settings = settings_from(data_dir, database_url)
    db: Database | None = None
    try:
        db = Database(settings.resolved_database_url)
        chain_report = verify_chain(db, SigningKey.from_settings(settings))
        anchored = anchoring.check(
            db, anchoring.AnchorKeys.from_settings(settings), path, public_keys=given
        )
    except (SQLAlchemyError, OSError) as exc:
        fail(f"cannot read the store (is it migrated?): {getattr(exc, 'orig', None) or exc}")
    finally:
        if db is not None:
            db.dispose()
    report = chain_report.model_dump(mode="json")
    report["anchor"] = anchored.model_dump(mode="json")
    if not anchored.ok and report.get("ok"):
        report["ok"] = False
        report["problem"] = {"kind": "anchor", "message": anchored.problem}
    _print_report(report, as_json)
    if not as_json:
        typer.echo(
            f"anchors OK: {anchored.anchors} signed checkpoints, the newest at seq "
            f"{anchored.newest_seq}"
        )


def anchor_now(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="default TONGDAO_AUDIT_ANCHOR_FILE or <data dir>/audit-anchors.jsonl"
        ),
    ] = None,
) -> None:
    """Append the audit chain's head, signed (Ed25519), to the anchor file now (what the
    server's scheduler does every tick)."""
    from tongdao.audit import anchor as anchoring
    from tongdao.clock import utcnow
    from tongdao.store.engine import Database

    settings = settings_from(data_dir, database_url)
    path = file or anchoring.anchor_file(settings)
    db = Database(settings.resolved_database_url)
    try:
        entry = anchoring.write(db, anchoring.AnchorKeys.from_settings(settings), path, utcnow())
    finally:
        db.dispose()
    if entry is None:
        typer.echo(f"{path}: the head is anchored already")
    else:
        typer.echo(f"{path}: anchored seq {entry['seq']} hash {entry['hash']}")


def purge(
    before: Annotated[
        str,
        typer.Option(
            "--before", help="delete records that occurred before this date (YYYY-MM-DD, UTC)"
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete audit records older than --before (never younger than rule logs.retention: six
    calendar months and TONGDAO_RETENTION_MARGIN_DAYS) and
    write a signed checkpoint. Works on the store directly."""
    from sqlalchemy.exc import SQLAlchemyError

    from tongdao.audit.chain import SigningKey
    from tongdao.audit.retention import purge as purge_store
    from tongdao.clock import utcnow
    from tongdao.errors import DomainError
    from tongdao.store.engine import Database

    cutoff = parse_time("--before", before)
    assert cutoff is not None
    settings = settings_from(data_dir, database_url)
    if not yes and not typer.confirm(
        f"Delete every audit record before {cutoff.isoformat()} (after verifying the chain)?"
    ):
        fail("nothing purged")
    db: Database | None = None
    try:
        db = Database(settings.resolved_database_url)
        result = purge_store(
            db,
            SigningKey.from_settings(settings),
            cutoff,
            now=utcnow(),
            margin_days=settings.retention_margin_days,
        )
    except DomainError as exc:
        fail(exc.message)
    except (SQLAlchemyError, OSError) as exc:
        fail(f"cannot purge the store (is it migrated?): {getattr(exc, 'orig', None) or exc}")
    finally:
        if db is not None:
            db.dispose()
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    elif result.purged:
        typer.echo(
            f"purged {result.purged} records (seq {result.first_seq}..{result.through_seq}); "
            f"signed checkpoint seq {result.checkpoint_seq}"
        )
    else:
        typer.echo(f"nothing to purge before {cutoff.isoformat()}")


def _download(client: Client, path: str, params: list[tuple[str, str]], out: IO[bytes]) -> None:
    """Stream a GET into ``out``; API errors and transport failures end the command."""
    headers = {"User-Agent": f"tongdao-cli/{__version__}", "Accept": "application/zip"}
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    try:
        with (
            httpx.Client(timeout=TIMEOUT_SECONDS) as http,
            http.stream("GET", client.url(path), params=tuple(params), headers=headers) as response,
        ):
            if response.is_error:
                response.read()
                client._fail_with(response)
            for chunk in response.iter_bytes():
                out.write(chunk)
    except httpx.TimeoutException:
        fail(f"cannot reach server at {client.server}: timed out", EXIT_UNREACHABLE)
    except httpx.TransportError as exc:
        fail(f"cannot reach server at {client.server} ({exc})", EXIT_UNREACHABLE)


def _unpack(archive: zipfile.ZipFile, out: Path) -> dict[str, Any]:
    """Check the export against its manifest and write its files into ``out``."""
    names = set(archive.namelist())
    if "manifest.json" not in names or not names <= _EXPORT_FILES:
        fail(f"the server's export holds unexpected files: {sorted(names)}")
    manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    listed = {f["name"]: f for f in manifest.get("files", [])}
    if set(listed) != names - {"manifest.json"}:
        fail("the export's manifest does not list its files")
    for name in names:
        if (out / name).exists():
            fail(f"--out: {out / name} exists; choose an empty directory", EXIT_USAGE)
    for name, entry in listed.items():
        digest = hashlib.sha256()
        with archive.open(name) as src, open(out / name, "wb") as dst:
            while chunk := src.read(1 << 16):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != entry["sha256"]:
            fail(f"{name} does not match the SHA-256 in the manifest")
    (out / "manifest.json").write_bytes(archive.read("manifest.json"))
    return manifest


def export(
    out: Annotated[Path, typer.Option("--out", help="directory for the files (made if missing)")],
    tenant: Annotated[str | None, typer.Option("--tenant", help="tenant id")] = None,
    user: Annotated[str | None, typer.Option("--user", help="user id (about or by)")] = None,
    source_ip: Annotated[str | None, typer.Option("--source-ip", help="IP address")] = None,
    since: Annotated[str | None, typer.Option("--since", help="from (date or ISO time)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="to, exclusive")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="csv or jsonl")] = Format.CSV,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Export audit records for a regulator: the records file and manifest.json (filters,
    counts, SHA-256 of each file, chain range, ruleset version)."""
    params = [("format", fmt.value)]
    for key, value in (
        ("tenant_id", tenant),
        ("user_id", user),
        ("source_ip", source_ip),
        ("since", parse_time("--since", since)),
        ("until", parse_time("--until", until)),
    ):
        if value is not None:
            params.append((key, value.isoformat() if isinstance(value, datetime) else value))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out: cannot make {out}: {exc.strerror}", EXIT_USAGE)
    client = Client.resolve(server, token)
    with tempfile.TemporaryFile() as spool:
        _download(client, "/audit/export", params, spool)
        spool.seek(0)
        try:
            with zipfile.ZipFile(spool) as archive:
                manifest = _unpack(archive, out)
        except (zipfile.BadZipFile, ValueError, KeyError) as exc:
            fail(f"the server's answer is not a Tongdao export ({exc})")
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
        return
    for entry in manifest["files"]:
        typer.echo(f"wrote {out / entry['name']}  {entry['rows']} rows  sha256 {entry['sha256']}")
    chain = manifest["chain"]
    typer.echo(
        f"wrote {out / 'manifest.json'}  {manifest['records']} records (seq "
        f"{chain['first_seq']}..{chain['last_seq']}), {manifest['open_sessions']} open "
        f"sessions; chain head seq {chain['head_seq']}"
    )


def register(audit_app: typer.Typer) -> None:
    """Add these commands to the ``tongdao audit`` group."""
    audit_app.command("verify")(verify)
    audit_app.command("purge")(purge)
    audit_app.command("anchor")(anchor_now)
    audit_app.command("export")(export)


__all__ = ["register"]
