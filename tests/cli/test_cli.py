"""The ``tongdao`` API client commands against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.support.live import serve
from tests.support.world import PASSWORD, USCC_C, World
from tongdao.cli import app as cli_app
from tongdao.cli.client import Client
from tongdao.testing.keys import public_key

Cli = Callable[..., Result]


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn in a thread, on a free loopback port."""
    with serve(app) as url:
        yield url


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def cli(server_url: str, config_dir: Path) -> Cli:
    """Run ``tongdao ARGS`` in process; never a traceback, whatever the outcome."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, token: str | None = None) -> Result:
        env = {
            "TONGDAO_CONFIG_DIR": str(config_dir),
            "TONGDAO_SERVER": server_url,
            "TONGDAO_TOKEN": token,
            "TONGDAO_TENANT": None,
        }
        result = runner.invoke(cli_app, list(args), input=input, env=env)
        assert "Traceback" not in result.output, result.output
        if result.exception is not None:
            assert isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    return run


def ok_json(result: Result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def login(cli: Cli, email: str = "operator_admin@operator.example") -> Result:
    result = cli("login", "--email", email, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    return result


def test_operator_and_tenant_admin_workflow(
    world: World, cli: Cli, server_url: str, config_dir: Path, tmp_path: Path
) -> None:
    result = login(cli)
    assert "logged in" in result.stdout
    creds = config_dir / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    saved = json.loads(creds.read_text())
    assert saved["server"] == server_url

    me = ok_json(cli("whoami", "--json"))
    assert isinstance(me, dict)
    assert me["email"] == "operator_admin@operator.example"
    plain = cli("whoami")
    assert plain.exit_code == 0
    assert "operator_admin@operator.example" in plain.stdout

    body = json.dumps({"name_en": "Example Trading", "name_zh": "示例贸易", "uscc": USCC_C})
    tenant = ok_json(cli("tenants", "create", "--data", body, "--json"))
    assert isinstance(tenant, dict)
    tid = tenant["id"]
    listed = ok_json(cli("tenants", "list", "--json"))
    assert isinstance(listed, dict)
    assert tid in [t["id"] for t in listed["data"]]
    assert listed["count"] == 3
    table = cli("tenants", "list")
    assert table.stdout.splitlines()[0].split()[:2] == ["ID", "NAME_EN"]
    assert "示例贸易" in table.stdout

    user = ok_json(
        cli(
            "users", "create", "--tenant", tid, "--set", "email=amy@example.com",
            "--set", "display_name=Amy", "--set", 'roles=["employee"]',
            "--set", "legal_name=Amy Example", "--set", "id_type=passport",
            "--set", "id_number=E12345678", "--set", "mobile=+8613800138000", "--json",
        )
    )  # fmt: skip
    assert isinstance(user, dict)
    assert user["roles"] == ["employee"]
    assert user["id_number_masked"] == "*****5678"
    device = ok_json(
        cli(
            "devices", "create", "--tenant", tid, "--set", "name=amy-laptop",
            "--set", f"public_key={public_key()}", "--set", f"user_id={user['id']}", "--json",
        )
    )  # fmt: skip
    assert isinstance(device, dict)
    did = device["id"]
    # Rule identity.real_name: pending until a compliance officer (not the NOC) verifies.
    assert device["state"] == "pending"
    pending = cli("devices", "config", "--tenant", tid, did)
    assert pending.exit_code == 1 and "rule identity.real_name" in pending.stderr
    refused = cli("users", "verify-identity", user["id"], "--tenant", tid)
    assert refused.exit_code == 1 and "do not allow update on identity" in refused.stderr
    officer = world.operators["compliance_officer"].token
    verified = cli("users", "verify-identity", user["id"], "--tenant", tid, token=officer)
    assert verified.exit_code == 0, verified.output
    assert "identity_verified_at" in verified.stdout
    shown_device = ok_json(cli("devices", "get", did, "--tenant", tid, "--json"))
    assert isinstance(shown_device, dict) and shown_device["state"] == "active"

    early = cli("devices", "config", "--tenant", tid, did)
    assert early.exit_code == 1
    assert early.stderr.startswith("error: no PoP has yet published a WireGuard key")

    pop = ok_json(
        cli(
            "pops", "create", "--set", "name=bj1", "--set", "region=cn-north",
            "--set", "country=CN", "--set", "endpoint_host=vpn.example.cn", "--json",
        )
    )  # fmt: skip
    assert isinstance(pop, dict)
    published = httpx.put(
        f"{server_url}/api/v1/pops/{pop['id']}/interfaces/{tid}",
        json={"public_key": public_key()},
        headers={"Authorization": f"Bearer {saved['token']}"},
    )
    assert published.status_code == 200, published.text

    target = tmp_path / "amy.conf"
    written = cli("devices", "config", "--tenant", tid, did, "-o", str(target))
    assert written.exit_code == 0, written.output
    text = target.read_text()
    assert "[Peer]" in text
    assert "Endpoint = vpn.example.cn:" in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    printed = cli("devices", "config", "--tenant", tid, did)
    assert printed.stdout == text

    renamed = ok_json(
        cli("devices", "update", did, "--tenant", tid, "--set", "name=amy-mac", "--json")
    )
    assert isinstance(renamed, dict)
    assert renamed["name"] == "amy-mac"
    shown = cli("devices", "get", did, "--tenant", tid)
    assert "amy-mac" in shown.stdout

    events = ok_json(
        cli("audit", "events", "--tenant-id", tid, "--object-type", "device", "--json")
    )
    assert isinstance(events, dict)
    assert {e["action"] for e in events["data"]} >= {"create", "update"}

    gone = cli("devices", "delete", did, "--tenant", tid)
    assert gone.exit_code == 0
    assert cli("devices", "get", did, "--tenant", tid).exit_code == 1

    out = cli("logout")
    assert out.exit_code == 0
    assert not creds.exists()
    after = cli("whoami")
    assert after.exit_code == 1
    assert "tongdao login" in after.stderr


def test_validation_error_lists_fields(world: World, cli: Cli) -> None:
    result = cli(
        "tenants", "create", "--data", '{"uscc": "123"}', "--set", "name_en=Bad Co",
        token=world.admin.token,
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ")
    assert "  uscc: must be 18 characters of digits and capital letters" in lines
    assert result.stdout == ""


def test_permission_and_not_found_errors(world: World, cli: Cli) -> None:
    denied = cli("pops", "list", token=world.a.employee.token)
    assert denied.exit_code == 1
    assert denied.stderr.startswith("error: ")
    missing = cli(
        "users", "get", "01a2054a-316e-7000-b260-4cf621ee188f", "--tenant", str(world.a.id),
        token=world.admin.token,
    )  # fmt: skip
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: ")


def test_usage_errors_exit_2(world: World, cli: Cli) -> None:
    token = world.admin.token
    assert cli("tenants", "create", "--set", "novalue", token=token).exit_code == 2
    bad = cli("tenants", "create", "--data", "{not json", token=token)
    assert bad.exit_code == 2
    assert "--data" in bad.stderr
    assert cli("users", "list", token=token).exit_code == 2
    assert cli("pops", "list", "--tenant", str(world.a.id), token=token).exit_code == 2
    assert cli("pops", "update", "x", token=token).exit_code == 2
    assert cli("whoami", "--server", "ftp://example.com", token=token).exit_code == 2


def test_unreachable_server_exits_3(cli: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = cli("whoami", "--server", url, "--token", "tds_nothing")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: cannot reach server at {url}")


def test_list_paging_table_and_json(world: World, cli: Cli) -> None:
    token = world.admin.token
    for name in ("p1", "p2", "p3"):
        made = cli(
            "pops", "create", "--data",
            json.dumps({"name": name, "region": "cn-north", "country": "CN",
                        "endpoint_host": f"{name}.example.cn"}),
            token=token,
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        assert ["name", name] in [line.split() for line in made.stdout.splitlines()]
    first = ok_json(cli("pops", "list", "--limit", "1", "--json", token=token))
    assert isinstance(first, dict)
    assert len(first["data"]) == 1
    assert first["next_cursor"]
    second = ok_json(
        cli("pops", "list", "--limit", "1", "--cursor", first["next_cursor"], "--json", token=token)
    )
    assert isinstance(second, dict)
    assert second["data"][0]["id"] != first["data"][0]["id"]
    everything = ok_json(cli("pops", "list", "--limit", "1", "--all", "--json", token=token))
    assert isinstance(everything, dict)
    assert sorted(p["name"] for p in everything["data"]) == ["p1", "p2", "p3"]
    assert everything["next_cursor"] is None
    filtered = ok_json(cli("pops", "list", "--filter", "country=XX", "--json", token=token))
    assert filtered == {"data": [], "count": 0, "next_cursor": None}
    paged = cli("pops", "list", "--limit", "2", token=token)
    assert paged.stdout.splitlines()[0].split() == [
        "ID", "NAME", "REGION", "COUNTRY", "ENDPOINT_HOST", "STATE",
    ]  # fmt: skip
    assert len(paged.stdout.splitlines()) == 3
    assert "--cursor" in paged.stderr


def test_tokens_create_list_revoke(world: World, cli: Cli) -> None:
    token = world.admin.token
    created = ok_json(
        cli("tokens", "create", "--name", "ci", "--scope", "read", "--days", "7", "--json",
            "--password-stdin", input=PASSWORD + "\n", token=token)
    )  # fmt: skip
    assert isinstance(created, dict)
    assert created["scopes"] == ["read"]
    me = ok_json(cli("whoami", "--json", token=created["token"]))
    assert isinstance(me, dict)
    assert me["email"] == "operator_admin@operator.example"
    listed = ok_json(cli("tokens", "list", "--json", token=token))
    assert isinstance(listed, dict)
    assert created["id"] in [t["id"] for t in listed["data"]]
    assert cli("tokens", "revoke", created["id"], token=token).exit_code == 0
    assert cli("whoami", token=created["token"]).exit_code == 1


def test_operator_records(world: World, cli: Cli) -> None:
    token = world.admin.token
    record = ok_json(
        cli("operator", "set", "--set", "legal_name=Tongdao JV", "--set", f"uscc={USCC_C}",
            "--json", token=token)
    )  # fmt: skip
    assert isinstance(record, dict)
    assert record["legal_name"] == "Tongdao JV"
    shown = cli("operator", "show", token=token)
    assert "Tongdao JV" in shown.stdout
    holders = cli("operator", "shareholders", "list", token=token)
    assert holders.exit_code == 0, holders.output


def test_saved_token_only_goes_to_its_server(
    world: World, cli: Cli, server_url: str, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(cli)
    monkeypatch.setenv("TONGDAO_CONFIG_DIR", str(config_dir))
    assert Client.resolve(None, None).token is not None
    assert Client.resolve(server_url + "/", None).token is not None
    assert Client.resolve("http://127.0.0.2:9", None).token is None


def test_damaged_credentials_are_a_usage_error(cli: Cli, config_dir: Path) -> None:
    config_dir.mkdir()
    (config_dir / "credentials.json").write_text("{")
    result = cli("whoami")
    assert result.exit_code == 2
    assert "tongdao login" in result.stderr


def test_admin_bootstrap_twice(tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = tmp_path / "data"
    args = ["admin", "bootstrap", "--email", "root@example.com", "--password-stdin", "--json"]
    env = {"TONGDAO_ARGON2_TIME_COST": "1", "TONGDAO_ARGON2_MEMORY_KIB": "8"}
    first = runner.invoke(cli_app, [*args, "--data-dir", str(data_dir)], input=PASSWORD, env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["email"] == "root@example.com"
    again = runner.invoke(cli_app, [*args, "--data-dir", str(data_dir)], input=PASSWORD, env=env)
    assert again.exit_code == 3
    assert again.stderr.startswith("error: an operator admin exists already")
    assert "Traceback" not in again.output
    assert os.path.isdir(data_dir)


def test_compliance_officer_decides_declared_networks(world: World, cli: Cli) -> None:
    tid = str(world.a.id)
    made = cli(
        "sites", "create", "--tenant", tid, "--set", "name=hq", "--set", "country=DE",
        "--set", "purpose=hq", "--set", 'prefixes=["198.18.7.0/24", "192.0.2.0/24"]',
        token=world.a.admin.token,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    officer = world.operators["compliance_officer"].token
    queue = ok_json(cli("declarations", "list", "--state", "pending", "--json", token=officer))
    assert isinstance(queue, dict)
    ids = {d["cidr"]: d["id"] for d in queue["data"]}
    assert set(ids) == {"198.18.7.0/24", "192.0.2.0/24"}
    table = cli("declarations", "list", "--state", "pending", token=officer)
    assert table.stdout.splitlines()[0].split()[:4] == ["ID", "TENANT_ID", "SITE_ID", "CIDR"]

    approved = ok_json(
        cli("declarations", "approve", ids["198.18.7.0/24"], "--reason", "HQ LAN", "--json",
            token=officer)
    )  # fmt: skip
    assert isinstance(approved, dict)
    assert approved["state"] == "approved"
    assert cli("declarations", "reject", ids["192.0.2.0/24"], token=officer).exit_code == 2
    rejected = cli(
        "declarations", "reject", ids["192.0.2.0/24"], "--reason", "not an office", token=officer
    )
    assert rejected.exit_code == 0, rejected.output
    assert "not an office" in rejected.stdout
    # Not the operator admin's decision; the API's message is printed.
    denied = cli("declarations", "approve", ids["192.0.2.0/24"], token=world.admin.token)
    assert denied.exit_code == 1
    assert denied.stderr.startswith("error: ")
    shown = cli("sites", "list", "--tenant", tid, token=world.a.admin.token)
    assert "APPROVED_PREFIXES" in shown.stdout.splitlines()[0]

    # A public prefix is refused naming the rule, until the operator allows it.
    public = ["sites", "create", "--tenant", tid, "--set", "name=dmz", "--set", "country=DE",
              "--set", "purpose=datacenter", "--set", 'prefixes=["8.8.8.0/24"]']  # fmt: skip
    refused = cli(*public, token=world.a.admin.token)
    assert refused.exit_code == 1
    assert "network.no_default_or_public" in refused.stderr
    grant = cli(
        "prefix-allowances", "create", "--tenant", tid, "--set", "cidr=8.8.8.0/24",
        "--set", "reason=customer-owned block, contract 7", token=world.admin.token,
    )  # fmt: skip
    assert grant.exit_code == 0, grant.output
    assert cli(*public, token=world.a.admin.token).exit_code == 0


def test_tenant_vetting_and_licence_commands(world: World, cli: Cli) -> None:
    officer = world.operators["compliance_officer"].token
    # A checksum-failing USCC (Fujian): accepted, flagged, verified by hand, then approved.
    body = json.dumps({"name_en": "Min Trading", "uscc": "91350100M000100Y44"})
    tenant = ok_json(cli("tenants", "create", "--data", body, "--json", token=officer))
    assert isinstance(tenant, dict)
    tid = tenant["id"]
    assert tenant["needs_manual_verification"] is True
    assert "under_review" in cli("tenants", "review", tid, token=officer).stdout
    refused = cli("tenants", "approve", tid, token=officer)
    assert refused.exit_code == 1
    assert "rule kyc.uscc" in refused.stderr and "GB 32100-2015" in refused.stderr
    verified = cli("tenants", "verify-uscc", tid, token=officer)
    assert verified.exit_code == 0, verified.output
    assert "verified by hand" in verified.stdout
    assert cli("tenants", "approve", tid, token=officer).exit_code == 0
    active = ok_json(cli("tenants", "activate", tid, "--json", token=officer))
    assert isinstance(active, dict) and active["state"] == "active"
    suspended = cli(
        "tenants", "suspend", tid, "--reason", "unpaid invoice", "--json", token=officer
    )
    assert json.loads(suspended.stdout)["state_reason"] == "unpaid invoice"
    assert cli("tenants", "terminate", tid, token=officer, input="n\n").exit_code == 2
    assert "terminated" in cli("tenants", "terminate", tid, "--yes", token=officer).stdout
    # Rejecting needs a reason.
    other = ok_json(
        cli("tenants", "create", "--set", "name_en=Other", "--set", f"uscc={USCC_C}", "--json",
            token=officer)
    )  # fmt: skip
    assert isinstance(other, dict)
    assert cli("tenants", "reject", other["id"], token=officer).exit_code == 2
    rejected = cli("tenants", "reject", other["id"], "--reason", "no FIE evidence", token=officer)
    assert rejected.exit_code == 0, rejected.output

    status = cli("operator", "compliance", token=officer)
    assert status.exit_code == 0, status.output
    assert "B13 covers" in status.stdout and "nationwide" in status.stdout
    assert "licence warnings: none" in status.stdout
    assert "49.00% foreign" in status.stdout
    as_json = ok_json(cli("operator", "compliance", "--json", token=officer))
    assert isinstance(as_json, dict) and as_json["problems"] == []


def test_notices_consents_export_and_erase(world: World, cli: Cli, tmp_path: Path) -> None:
    admin, officer = world.admin.token, world.operators["compliance_officer"].token
    emp, tid = world.a.employee, str(world.a.id)
    text = tmp_path / "notice.txt"
    text.write_text("我们处理您的姓名、证件号码和手机号码……", encoding="utf-8")
    published = cli(
        "notices", "publish", "--version", "2026-01", "--title", "Notice",
        "--text", f"@{text}", "--transfer-abroad-text", "HQ abroad", "--json", token=admin,
    )  # fmt: skip
    assert published.exit_code == 0, published.output
    assert "证件号码" in cli("notices", "current", token=emp.token).stdout
    assert "2026-01" in cli("notices", "list", token=emp.token).stdout
    missing = cli("notices", "publish", "--version", "x", "--title", "t", "--text", "@/nonexistent",
                  "--transfer-abroad-text", "y", token=admin)  # fmt: skip
    assert missing.exit_code == 2 and "cannot read" in missing.stderr

    uid = str(emp.user_id)
    early = cli("users", "consent", uid, "--tenant", tid, "--kind", "transfer_abroad",
                "--notice-version", "2026-01", token=emp.token)  # fmt: skip
    assert early.exit_code == 1 and "rule pi.notice_and_consent" in early.stderr
    # One's own consent is given signed in (`tongdao login`), never with an API token.
    with_token = cli("users", "consent", uid, "--tenant", tid, "--kind", "notice",
                     "--notice-version", "2026-01", token=emp.token)  # fmt: skip
    assert with_token.exit_code == 1 and "signed-in session" in with_token.stderr
    login(cli, "employee@a.example")
    for kind in ("notice", "transfer_abroad"):
        given = cli("users", "consent", uid, "--tenant", tid, "--kind", kind,
                    "--notice-version", "2026-01")  # fmt: skip
        assert given.exit_code == 0, given.output
    listed = cli("users", "consents", uid, "--tenant", tid, token=emp.token)
    assert listed.stdout.count("self") == 2
    revoked = cli("users", "revoke-abroad-consent", uid, "--tenant", tid, token=emp.token)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout

    target = tmp_path / "me.json"
    exported = cli("users", "export", uid, "--tenant", tid, "-o", str(target), token=emp.token)
    assert exported.exit_code == 0, exported.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    data = json.loads(target.read_text())
    assert data["identity"]["id_type"] == "prc_resident_id"
    assert len(data["identity"]["id_number"]) == 18

    unconfirmed = cli("users", "erase", uid, "--tenant", tid, token=officer)
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.stderr
    erased = cli("users", "erase", uid, "--tenant", tid, "--yes", "--json", token=officer)
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.stdout)["consents_revoked"] == 0  # revoked above already
    gone = cli("whoami", token=emp.token)
    assert gone.exit_code == 1


def test_sessions_and_unlock(world: World, cli: Cli) -> None:
    login(cli, "employee@a.example")
    other = world.client.post(
        "/api/v1/auth/login", json={"email": "employee@a.example", "password": PASSWORD}
    )
    assert other.status_code == 200
    listed = ok_json(cli("sessions", "list", "--json"))
    assert isinstance(listed, dict)
    assert listed["count"] == 2
    assert sum(s["current"] for s in listed["data"]) == 1
    table = cli("sessions", "list")
    assert table.exit_code == 0
    assert "SOURCE_IP" in table.stdout
    assert ok_json(cli("sessions", "revoke-others", "--json")) == {"revoked": 1}
    other_token = {"Authorization": f"Bearer {other.json()['token']}"}
    assert world.client.get("/api/v1/auth/me", headers=other_token).status_code == 401
    for _ in range(world.runtime.settings.login_max_failures):
        world.client.post(
            "/api/v1/auth/login", json={"email": "employee@a.example", "password": "a guess"}
        )
    unlocked = ok_json(
        cli("users", "unlock-sign-in", str(world.a.employee.user_id), "--tenant",
            str(world.a.id), "--json", token=world.a.admin.token)
    )  # fmt: skip
    assert unlocked == {
        "user_id": str(world.a.employee.user_id),
        "cleared_failures": world.runtime.settings.login_max_failures,
    }


def test_password_reset_and_mail_commands(
    world: World, cli: Cli, server_url: str, tmp_path: Path
) -> None:
    from tongdao.mail.sender import mailer_of
    from tongdao.testing.outbox import choose_password

    admin = world.admin.token
    shown = ok_json(cli("operator", "mail", "show", "--json", token=admin))
    assert isinstance(shown, dict) and shown["delivery"] == "outbox"
    # The tenant admin resets an employee: no password or link in what they see.
    result = cli(
        "users",
        "reset-password",
        str(world.a.employee.user_id),
        "--tenant",
        str(world.a.id),
        "--json",
        token=world.a.admin.token,
    )
    sent = ok_json(result)
    assert isinstance(sent, dict) and sent["status"] == "sent"
    assert mailer_of(world.runtime).wait_idle(15)
    new_password = "chosen through the mailed link 8"
    choose_password(server_url, tmp_path / "outbox", "employee@a.example", new_password)
    result = cli(
        "login", "--email", "employee@a.example", "--password-stdin", input=new_password + "\n"
    )
    assert result.exit_code == 0, result.output
    # Anyone may ask; the answer does not say whether the account exists.
    for address in ("auditor@operator.example", "nobody@operator.example"):
        out = ok_json(cli("forgot-password", "--email", address, "--json"))
        assert isinstance(out, dict) and out["status"] == "accepted"
    staff = cli(
        "operator",
        "staff",
        "reset-password",
        str(world.operators["auditor"].user_id),
        "--json",
        token=admin,
    )
    assert ok_json(staff) == {"status": "sent", "purpose": "password_reset", "sessions_revoked": 1}
    assert mailer_of(world.runtime).wait_idle(15)
    # The relay: the password is write-only.
    result = cli(
        "operator",
        "mail",
        "set",
        "--set",
        "host=smtp.example.net",
        "--set",
        "port=587",
        "--set",
        "sender=noc@operator.example",
        "--set",
        "password=relay-pass-123",
        "--json",
        token=admin,
    )
    relay = ok_json(result)
    assert isinstance(relay, dict) and relay["password_set"] is True
    assert "relay-pass-123" not in result.stdout


def test_admin_bootstrap_the_first_compliance_officer(tmp_path: Path) -> None:
    """The admin cannot give the officer's role: a fresh operator's first officer is made on
    the store, once (refused while an active officer exists)."""
    runner = CliRunner()
    data_dir = ["--data-dir", str(tmp_path / "data")]
    env = {"TONGDAO_ARGON2_TIME_COST": "1", "TONGDAO_ARGON2_MEMORY_KIB": "8"}
    args = ["admin", "bootstrap", "--password-stdin", "--json", *data_dir]
    admin = runner.invoke(cli_app, [*args, "--email", "root@example.com"], input=PASSWORD, env=env)
    assert admin.exit_code == 0, admin.output
    officer_args = [*args, "--role", "compliance_officer", "--email", "officer@example.com"]
    first = runner.invoke(cli_app, officer_args, input=PASSWORD, env=env)
    assert first.exit_code == 0, first.output
    made = json.loads(first.stdout)
    assert made["email"] == "officer@example.com" and made["roles"] == ["compliance_officer"]
    again = runner.invoke(
        cli_app, [*officer_args[:-1], "other@example.com"], input=PASSWORD, env=env
    )
    assert again.exit_code == 3
    assert again.stderr.startswith("error: an active compliance officer exists already")
    wrong = runner.invoke(
        cli_app, [*args, "--role", "auditor", "--email", "a@example.com"], input=PASSWORD, env=env
    )
    assert wrong.exit_code == 1 and "--role" in wrong.stderr
    assert "Traceback" not in again.output + wrong.output
