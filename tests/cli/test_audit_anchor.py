"""Anchoring the audit chain outside the database (tongdao.audit.anchor): deleting the newest
records and moving the head back passes `audit verify`, and is caught against the signed
anchor file; a forged or edited anchor line is not trusted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cli.test_audit_cli import Cli, run  # noqa: F401  (the fixture)
from tests.conftest import both_stores
from tests.store.test_audit_chain import write
from tests.support.world import World
from tongdao.audit import anchor
from tongdao.audit.chain import SigningKey, verify_chain
from tongdao.audit.models import AUDIT_EVENTS, CHAIN_HEAD
from tongdao.jobs.scheduler import Scheduler
from tongdao.runtime import Runtime

T = AUDIT_EVENTS


def keys(runtime: Runtime) -> anchor.AnchorKeys:
    return anchor.AnchorKeys.from_settings(runtime.settings)


def truncate(runtime: Runtime, keep: int) -> None:
    """Delete every record after seq ``keep`` and move the head back to it, as someone with
    write access to the database would."""
    with runtime.db.engine.begin() as conn:
        kept_hash = conn.execute(sa.select(T.c.hash).where(T.c.seq == keep)).scalar_one()
        conn.execute(sa.delete(T).where(T.c.seq > keep))
        conn.execute(
            sa.update(CHAIN_HEAD).where(CHAIN_HEAD.c.id == 1).values(seq=keep, hash=kept_hash)
        )


@both_stores
def test_truncation_passes_verify_but_not_the_anchor(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    write(runtime, 3)
    first = anchor.write(runtime.db, keys(runtime), path, datetime.now(UTC))
    assert first is not None and first["seq"] == 3
    assert anchor.write(runtime.db, keys(runtime), path, datetime.now(UTC)) is None  # unmoved
    write(runtime, 4)
    second = anchor.write(runtime.db, keys(runtime), path, datetime.now(UTC))
    assert second is not None and second["seq"] == 7
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert anchor.check(runtime.db, keys(runtime), path).ok

    truncate(runtime, 5)
    assert verify_chain(runtime.db, SigningKey.from_settings(runtime.settings)).ok  # unseen
    report = anchor.check(runtime.db, keys(runtime), path)
    assert not report.ok and report.problem is not None
    assert report.problem.startswith("truncated: anchor line 2")
    assert "names seq 7, but the chain's head is at seq 5" in report.problem

    # New records written over the truncation: the anchored seq 7 now has another hash.
    write(runtime, 3)
    report = anchor.check(runtime.db, keys(runtime), path)
    assert report.problem is not None and report.problem.startswith("rewritten: record seq 7")


def test_an_edited_or_foreign_anchor_line_is_not_trusted(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    write(runtime, 3)
    anchor.write(runtime.db, keys(runtime), path, datetime.now(UTC))
    line = json.loads(path.read_text())
    # Moving the anchor back to seq 2 (to hide a truncation) breaks its signature.
    path.write_text(json.dumps({**line, "seq": 2}) + "\n")
    report = anchor.check(runtime.db, keys(runtime), path)
    assert report.problem == (
        "anchor line 1 is not trusted: its signature does not hold (forged or edited)"
    )
    # A line signed by someone else's key, naming ours, fails too; naming its own, it is not
    # trusted unless that public key is given.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate()
    forged = anchor.AnchorKeys("k-other", other, {})
    path.unlink()
    anchor.write(runtime.db, forged, path, datetime.now(UTC))
    report = anchor.check(runtime.db, keys(runtime), path)
    assert report.problem is not None and "'k-other', which is not a trusted key" in report.problem
    given = anchor.check(runtime.db, keys(runtime), path, public_keys=[other.public_key()])
    assert given.problem is not None and "'k-other'" in given.problem  # key ids: ours only
    path.unlink()
    assert anchor.check(runtime.db, keys(runtime), path).problem is not None  # no anchor


def test_the_scheduler_anchors_and_the_cli_verifies_against_the_file(
    world: World,
    run: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    runtime = world.runtime
    path = anchor.anchor_file(runtime.settings)
    assert path == runtime.settings.data_dir / "audit-anchors.jsonl"
    Scheduler(runtime, 0).anchor()
    anchored = json.loads(path.read_text().splitlines()[-1])
    ok = run("audit", "verify", "--anchor", str(path))
    assert ok.exit_code == 0, ok.output
    assert "audit chain OK" in ok.stdout and "anchors OK: 1 signed checkpoints" in ok.stdout
    now = run("audit", "anchor")
    assert now.exit_code == 0 and "anchored already" in now.stdout

    truncate(runtime, anchored["seq"] - 2)
    assert run("audit", "verify", "--local").exit_code == 0  # the chain alone cannot tell
    caught = run("audit", "verify", "--anchor", str(path))
    assert caught.exit_code == 1
    assert "audit chain broken (anchor): truncated: anchor line 1" in caught.stderr
    as_json = json.loads(run("audit", "verify", "--anchor", str(path), "--json").stdout)
    assert as_json["ok"] is False and as_json["anchor"]["head_seq"] == anchored["seq"] - 2
    missing = run("audit", "verify", "--anchor", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2 and "is not a file" in missing.stderr


@pytest.mark.parametrize("bad", ["[1]", '"x"', "null", "7", "{not json"])
def test_a_line_that_is_not_a_json_object_is_reported_not_a_crash(
    world: World,
    run: Cli,  # noqa: F811
    bad: str,
) -> None:
    """A line of valid JSON that is not an object ([1], "x", null) is an unreadable line like
    one that is not JSON: the check names it, the CLI exits 1 with a message, and the
    scheduler's anchor job goes on appending."""
    runtime = world.runtime
    path = anchor.anchor_file(runtime.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bad + "\n")
    Scheduler(runtime, 0).anchor()  # does not raise
    lines = path.read_text().splitlines()
    assert lines[0] == bad and json.loads(lines[-1])["seq"] > 0
    report = anchor.check(runtime.db, keys(runtime), path)
    assert report.problem == "anchor line 1 is not trusted: it is not a JSON object"
    caught = run("audit", "verify", "--anchor", str(path))
    assert caught.exit_code == 1, caught.output
    assert "anchor line 1 is not trusted: it is not a JSON object" in caught.stderr
    assert "Traceback" not in caught.output
