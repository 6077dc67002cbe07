"""Outgoing mail, one-time links, invitations, admin resets and "forgot password".

Mail goes to a real SMTP server on loopback (aiosmtpd); each test reads the delivered message,
takes the link out of it and uses it, as the person would.
"""

from __future__ import annotations

import email
import email.policy
import gc
import logging
import os
import stat
import statistics
import threading
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import both_stores
from tests.support.live import serve
from tests.support.smtp import (
    LINK,
    SmtpServer,
    free_port,
    password_authenticator,
    self_signed,
    server_tls_context,
)
from tests.support.world import PASSWORD, World
from tongdao.audit.models import AuditEvent
from tongdao.auth import links, reset
from tongdao.auth.links import LinkPurpose, OneTimeLink
from tongdao.errors import ValidationError
from tongdao.mail import service as mail
from tongdao.mail.models import MailMessage, MailSettings
from tongdao.mail.sender import mailer_of
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import User

API = "/api/v1"
NEW_PASSWORD = "a brand new long passphrase 42"
EMPLOYEE = "employee@a.example"


def use_relay(world: World, port: int, **extra: Any) -> dict[str, Any]:
    body = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "noc@operator.example",
        **extra,
    }
    resp = world.client.put(f"{API}/operator/mail", json=body, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def login(client: TestClient, email: str, password: str) -> Any:
    return client.post(f"{API}/auth/login", json={"email": email, "password": password})


def idle(runtime: Runtime) -> None:
    assert mailer_of(runtime).wait_idle(15), "the mail sender did not finish"


def events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- forgot password -------------------------------------------------------------------------
def test_forgot_password_link_sets_password_and_ends_sessions(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    client = world.client
    use_relay(world, smtp.port)
    session = login(client, EMPLOYEE, PASSWORD)
    assert session.status_code == 200
    old_session = {"Authorization": f"Bearer {session.json()['token']}"}

    resp = client.post(f"{API}/auth/password-reset", json={"email": "Employee@A.example "})
    assert resp.status_code == 202, resp.text

    got = smtp.wait_for(EMPLOYEE)
    assert got.message["From"] == "noc@operator.example"
    assert got.link.startswith(runtime.settings.link_base_url + "/console/password/reset?")
    # Only the hash is stored.
    with runtime.db.session() as s:
        stored = s.scalars(select(OneTimeLink.token_hash)).all()
    assert got.token not in stored
    assert links.hash_secret(got.token) in stored
    # The page the link opens offers the form; no script, strict CSP.
    page = client.get("/console/password/reset", params={"token": got.token})
    assert page.status_code == 200
    assert 'name="new_password"' in page.text and "<script" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]

    done = client.post(
        f"{API}/auth/password-reset/complete",
        json={"token": got.token, "new_password": NEW_PASSWORD},
    )
    assert done.status_code == 204, done.text
    assert login(client, EMPLOYEE, NEW_PASSWORD).status_code == 200
    assert login(client, EMPLOYEE, PASSWORD).status_code == 401
    # Every earlier session and API token is dead.
    assert client.get(f"{API}/auth/me", headers=old_session).status_code == 401
    assert client.get(f"{API}/auth/me", headers=world.a.employee.headers).status_code == 401
    # Once only.
    again = client.post(
        f"{API}/auth/password-reset/complete",
        json={"token": got.token, "new_password": "yet another long passphrase 7"},
    )
    assert again.status_code == 422
    assert set(again.json()["error"]["fields"]) == {"token"}
    assert client.get("/console/password/reset", params={"token": got.token}).status_code == 410
    assert len(events(runtime, "password_set_by_link")) == 1
    assert len(events(runtime, "password_reset_requested")) == 1


def test_forgot_password_answers_the_same_for_a_missing_address(
    world: World, smtp: SmtpServer, runtime: Runtime, app: FastAPI
) -> None:
    use_relay(world, smtp.port)
    present = [
        "employee@a.example",
        "tenant_admin@a.example",
        "employee@b.example",
        "auditor@operator.example",
    ]
    missing = [f"nobody{n}@a.example" for n in range(len(present))]
    answers: dict[str, list[Any]] = {"present": [], "missing": []}
    times: dict[str, list[float]] = {"present": [], "missing": []}
    # Over real HTTP: the answer is on the wire before the account is looked up.
    with serve(app) as url, httpx.Client(base_url=url) as client:
        for yes, no in zip(present, missing, strict=True):
            for kind, address in (("present", yes), ("missing", no)):
                started = time.perf_counter()
                resp = client.post(f"{API}/auth/password-reset", json={"email": address})
                times[kind].append(time.perf_counter() - started)
                answers[kind].append(
                    (resp.status_code, resp.json(), resp.headers.get("retry-after"))
                )
        for address in present:
            smtp.wait_for(address)
        idle(runtime)
    assert {repr(a) for a in answers["present"] + answers["missing"]} == {
        repr((202, reset.ResetAccepted().model_dump(), None))
    }
    delivered = sorted(r.rcpt[0] for r in smtp.received)
    assert delivered == sorted(present)  # nothing for the missing addresses
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"forgot-password answer time, median ms: { ({k: v * 1000 for k, v in median.items()}) }")
    # The lookup, link and mail happen after the answer: no difference to measure.
    assert abs(median["present"] - median["missing"]) < 0.05


def test_forgot_password_is_throttled_per_address_and_quietly_per_email(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    use_relay(world, smtp.port)
    runtime.settings = runtime.settings.model_copy(
        update={"password_reset_max_per_email": 2, "password_reset_max_per_address": 4}
    )
    client = world.client
    for _ in range(3):
        resp = client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE})
        assert resp.status_code == 202
    client.post(f"{API}/auth/password-reset", json={"email": "nobody@a.example"})
    resp = client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE})
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0
    idle(runtime)
    assert len([r for r in smtp.received if EMPLOYEE in r.rcpt]) == 2
    # The second link replaced the first.
    first, second = (r for r in smtp.received if EMPLOYEE in r.rcpt)
    body = {"token": first.token, "new_password": NEW_PASSWORD}
    assert client.post(f"{API}/auth/password-reset/complete", json=body).status_code == 422
    body["token"] = second.token
    assert client.post(f"{API}/auth/password-reset/complete", json=body).status_code == 204


def test_an_expired_link_is_refused(world: World, smtp: SmtpServer, runtime: Runtime) -> None:
    use_relay(world, smtp.port)
    client = world.client
    assert client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE}).status_code == 202
    got = smtp.wait_for(EMPLOYEE)
    later = runtime.clock() + timedelta(seconds=runtime.settings.reset_link_ttl_seconds + 1)
    runtime.clock = lambda: later
    resp = client.post(
        f"{API}/auth/password-reset/complete",
        json={"token": got.token, "new_password": NEW_PASSWORD},
    )
    assert resp.status_code == 422
    assert "expired" in resp.json()["error"]["fields"]["token"]
    assert client.get("/console/password/reset", params={"token": got.token}).status_code == 410
    assert login(client, EMPLOYEE, PASSWORD).status_code == 200


def test_a_weak_password_keeps_the_link(world: World, smtp: SmtpServer) -> None:
    use_relay(world, smtp.port)
    client = world.client
    client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE})
    token = smtp.wait_for(EMPLOYEE).token
    weak = client.post(
        f"{API}/auth/password-reset/complete", json={"token": token, "new_password": "short"}
    )
    assert weak.status_code == 422
    assert set(weak.json()["error"]["fields"]) == {"new_password"}
    ok = client.post(
        f"{API}/auth/password-reset/complete", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert ok.status_code == 204


# --- admins never set or learn a password ------------------------------------------------------
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_admins_cannot_send_a_password(world: World, method: str) -> None:
    user_path = f"{API}/tenants/{world.a.id}/users"
    staff_path = f"{API}/operator/staff"
    if method == "PATCH":
        user_path += f"/{world.a.employee.user_id}"
        staff_path += f"/{world.operators['auditor'].user_id}"
    body = {"email": "x1@a.example", "display_name": "X", "password": NEW_PASSWORD}
    if method == "PATCH":
        body = {"password": NEW_PASSWORD}
    for path, headers, extra in (
        (user_path, world.a.admin.headers, {}),
        (staff_path, world.admin.headers, {"roles": ["auditor"]}),
    ):
        resp = world.client.request(method, path, json={**body, **extra}, headers=headers)
        assert resp.status_code == 422, resp.text
        assert "password" in resp.json()["error"]["fields"]
    assert login(world.client, EMPLOYEE, NEW_PASSWORD).status_code == 401


def test_admin_reset_ends_sessions_and_mails_the_user(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    use_relay(world, smtp.port)
    client = world.client
    employee = world.a.employee
    resp = client.post(
        f"{API}/tenants/{world.a.id}/users/{employee.user_id}/password-reset",
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["purpose"] == "password_reset"
    assert resp.json()["sessions_revoked"] >= 1
    # The user's token is dead and the old password no longer works.
    assert client.get(f"{API}/auth/me", headers=employee.headers).status_code == 401
    assert login(client, EMPLOYEE, PASSWORD).status_code == 401
    got = smtp.wait_for(EMPLOYEE)
    assert got.token not in resp.text  # the admin never sees the link
    assert "administrator reset" in got.text
    # The user chooses the password on the server-rendered page (a plain form POST).
    form = client.post(
        "/console/password/reset",
        data={"token": got.token, "new_password": NEW_PASSWORD, "confirm_password": "other"},
    )
    assert form.status_code == 422 and "differ" in form.text
    form = client.post(
        "/console/password/reset",
        data={"token": got.token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    )
    assert form.status_code == 200, form.text
    assert "Password set" in form.text
    assert login(client, EMPLOYEE, NEW_PASSWORD).status_code == 200
    assert len(events(runtime, "password_reset")) == 1


def test_staff_reset_by_operator_admin(world: World, smtp: SmtpServer) -> None:
    use_relay(world, smtp.port)
    auditor = world.operators["auditor"]
    resp = world.client.post(
        f"{API}/operator/staff/{auditor.user_id}/password-reset", headers=world.admin.headers
    )
    assert resp.status_code == 202, resp.text
    got = smtp.wait_for("auditor@operator.example")
    done = world.client.post(
        f"{API}/auth/password-reset/complete",
        json={"token": got.token, "new_password": NEW_PASSWORD},
    )
    assert done.status_code == 204
    assert login(world.client, "auditor@operator.example", NEW_PASSWORD).status_code == 200


def test_a_new_user_is_invited_to_choose_a_password(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    use_relay(world, smtp.port)
    client = world.client
    resp = client.post(
        f"{API}/tenants/{world.a.id}/users",
        json={"email": "wang@a.example", "display_name": "Wang Fang"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    got = smtp.wait_for("wang@a.example")
    assert "Hello Wang Fang" in got.text and "created for you" in got.text
    page = client.get("/console/password/reset", params={"token": got.token})
    assert "Welcome" in page.text
    form = client.post(
        "/console/password/reset",
        data={"token": got.token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    )
    assert form.status_code == 200, form.text
    assert login(client, "wang@a.example", NEW_PASSWORD).status_code == 200
    # The invitation for a staff member, too.
    resp = client.post(
        f"{API}/operator/staff",
        json={"email": "li@operator.example", "display_name": "Li", "roles": ["auditor"]},
        headers=world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    assert LINK.search(smtp.wait_for("li@operator.example").text)
    with runtime.db.session() as s:
        invitation = s.scalar(
            select(OneTimeLink).where(
                OneTimeLink.purpose == "invitation", OneTimeLink.used_at.is_(None)
            )
        )
    assert invitation is not None
    ttl = invitation.expires_at - invitation.created_at
    assert abs(ttl.total_seconds() - runtime.settings.invitation_link_ttl_seconds) < 5


# --- delivery ----------------------------------------------------------------------------------
def test_mail_of_a_rolled_back_change_is_never_sent(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    use_relay(world, smtp.port)
    with runtime.db.session() as session:
        mail.queue(Ctx(session=session, runtime=runtime), "gone@a.example", "rolled back", "x")
        session.rollback()
    with runtime.db.session() as session:
        mail.queue(Ctx(session=session, runtime=runtime), "kept@a.example", "committed", "y")
        session.commit()
    assert smtp.wait_for("kept@a.example").message["Subject"] == "committed"
    idle(runtime)
    assert [r.rcpt for r in smtp.received] == [["kept@a.example"]]
    with runtime.db.session() as session:
        assert session.scalars(select(MailMessage)).all() == []  # delivered mail is deleted


def test_mail_waits_while_the_relay_is_down(world: World, runtime: Runtime) -> None:
    port = free_port()  # nothing listens here yet
    use_relay(world, port)
    client = world.client
    assert client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE}).status_code == 202
    deadline = time.monotonic() + 15
    while True:
        with runtime.db.session() as session:
            row = session.scalar(select(MailMessage))
        assert row is not None
        if row.attempts >= 1 and row.last_error:
            break
        assert time.monotonic() < deadline, "no delivery attempt"
        time.sleep(0.05)
    assert row.state == "pending" and row.not_before > runtime.clock()
    status = client.get(f"{API}/operator/mail", headers=world.admin.headers).json()
    assert status["pending"] == 1
    server = SmtpServer(port).start()
    try:
        use_relay(world, port)  # saving the settings retries what waits, at once
        got = server.wait_for(EMPLOYEE)
        body = {"token": got.token, "new_password": NEW_PASSWORD}
        assert client.post(f"{API}/auth/password-reset/complete", json=body).status_code == 204
    finally:
        server.stop()


def test_development_outbox(
    world: World, runtime: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tongdao.mail")
    status = world.client.get(f"{API}/operator/mail", headers=world.admin.headers).json()
    assert status["configured"] is False and status["delivery"] == "outbox"
    assert (
        world.client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE}).status_code == 202
    )
    idle(runtime)
    outbox = tmp_path / "outbox"
    files = sorted(outbox.glob("*.eml"))
    assert files, "nothing in the outbox"
    parsed = {
        f: email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files
    }
    mine = [f for f, m in parsed.items() if m["To"] == EMPLOYEE]
    assert len(mine) == 1
    assert stat.S_IMODE(os.stat(mine[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(outbox).st_mode) & 0o077 == 0
    assert any(str(mine[0]) in r.getMessage() for r in caplog.records)
    message = parsed[mine[0]]
    assert isinstance(message, EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    match = LINK.search(part.get_content())
    assert match
    body = {"token": match.group(2), "new_password": NEW_PASSWORD}
    resp = world.client.post(f"{API}/auth/password-reset/complete", json=body)
    assert resp.status_code == 204


# --- settings ----------------------------------------------------------------------------------
def test_mail_settings_password_is_sealed_and_never_returned(
    world: World, runtime: Runtime
) -> None:
    secret = "relay secret 9f8e7d"
    out = use_relay(world, 2525, username="tongdao", password=secret)
    assert out["password_set"] is True and secret not in str(out)
    got = world.client.get(f"{API}/operator/mail", headers=world.admin.headers)
    assert got.status_code == 200 and secret not in got.text
    with runtime.db.session() as session:
        row = session.scalar(select(MailSettings))
        assert row is not None and row.password_sealed is not None
        assert secret not in row.password_sealed
        assert runtime.cipher.open(row.password_sealed, mail.PASSWORD_PURPOSE) == secret
    # Kept when omitted, cleared with "".
    assert use_relay(world, 2525)["password_set"] is True
    assert use_relay(world, 2525, password="")["password_set"] is False
    for role in ("compliance_officer", "auditor", "billing_clerk"):
        headers = world.operators[role].headers
        assert world.client.get(f"{API}/operator/mail", headers=headers).status_code == 403


def test_no_encryption_only_to_loopback(world: World) -> None:
    body = {"host": "smtp.example.net", "port": 25, "security": "none", "sender": "a@b.example"}
    resp = world.client.put(f"{API}/operator/mail", json=body, headers=world.admin.headers)
    assert resp.status_code == 422
    assert set(resp.json()["error"]["fields"]) == {"security"}
    body["security"] = "starttls"
    resp = world.client.put(f"{API}/operator/mail", json=body, headers=world.admin.headers)
    assert resp.status_code == 200


# aiosmtpd leaves the plain transport under a STARTTLS connection for the garbage collector
# (a ResourceWarning in the test server, not in Tongdao): collected and ignored here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_relay_with_authentication(
    world: World, runtime: Runtime, tmp_path: Path, security: str
) -> None:
    cert, key = self_signed(tmp_path)
    context = server_tls_context(cert, key)
    logins: list[tuple[str, str]] = []
    auth = password_authenticator("tongdao", "relay secret 1", logins)
    if security == "starttls":
        server = SmtpServer(
            tls_context=context, require_starttls=True, authenticator=auth, auth_required=True
        )
    else:
        # Implicit TLS wraps the socket before aiosmtpd sees it, so it cannot tell that AUTH
        # is protected: say so.
        server = SmtpServer(ssl_context=context, authenticator=auth, auth_require_tls=False)
    runtime.settings = runtime.settings.model_copy(update={"smtp_ca_file": cert})
    server.start()
    try:
        use_relay(
            world,
            server.port,
            security=security,
            username="tongdao",
            password="relay secret 1",
        )
        assert (
            world.client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE}).status_code
            == 202
        )
        got = server.wait_for(EMPLOYEE)
        assert logins == [("tongdao", "relay secret 1")]
        assert got.token
    finally:
        server.stop()
        gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_untrusted_relay_certificate_is_refused(
    world: World, runtime: Runtime, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    server = SmtpServer(tls_context=server_tls_context(cert, key), require_starttls=True)
    server.start()  # the runtime is not told to trust this certificate
    try:
        use_relay(world, server.port, security="starttls")
        world.client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE})
        deadline = time.monotonic() + 15
        while True:
            with runtime.db.session() as session:
                row = session.scalar(select(MailMessage))
            if row is not None and row.last_error:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "CERTIFICATE_VERIFY_FAILED" in row.last_error or "certificate" in row.last_error
        assert server.received == []
    finally:
        server.stop()
        gc.collect()


# --- the race --------------------------------------------------------------------------------
@both_stores
def test_two_concurrent_uses_of_a_link_cannot_both_win(world: World, runtime: Runtime) -> None:
    with runtime.db.session() as session:
        user = session.get(User, world.a.employee.user_id)
        assert user is not None
        _link, secret = links.issue(
            Ctx(session=session, runtime=runtime), user, LinkPurpose.PASSWORD_RESET
        )
        session.commit()
    n = 8
    barrier = threading.Barrier(n)
    results: list[str] = []
    lock = threading.Lock()

    def use(i: int) -> None:
        barrier.wait()
        try:
            with runtime.db.session() as session:
                ctx = Ctx(session=session, runtime=runtime, source_ip="198.51.100.7")
                reset.complete(ctx, secret, f"{NEW_PASSWORD} number {i}")
                session.commit()
            outcome = "won"
        except ValidationError as exc:
            outcome = "refused" if "token" in exc.fields else repr(exc)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=use, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["refused"] * (n - 1) + ["won"], results


def test_forgot_password_page_of_the_console(world: World, smtp: SmtpServer) -> None:
    use_relay(world, smtp.port)
    client = world.client
    console = client.get("/console/")
    assert 'href="/console/password/forgot"' in console.text
    page = client.get("/console/password/forgot")
    assert page.status_code == 200 and 'action="/console/password/forgot"' in page.text
    assert "<script" not in page.text
    answers = []
    for address in (EMPLOYEE, "<b>nobody</b>@a.example"):
        resp = client.post("/console/password/forgot", data={"email": address})
        answers.append((resp.status_code, resp.text))
        assert "<b>" not in resp.text
    assert answers[0] == answers[1] and answers[0][0] == 202
    token = smtp.wait_for(EMPLOYEE).token
    page = client.get("/console/password/reset", params={"token": token + '"><script>'})
    assert page.status_code == 410 and "<script>" not in page.text


def test_rotating_the_data_key_reseals_the_relay_password_and_waiting_mail(
    world: World, runtime: Runtime, store_url: str, tmp_path: Path
) -> None:
    from tests.conftest import TEST_DATA_KEY
    from tests.store.test_key_rotation import KEY2, runtime_with
    from tongdao.privacy.keys import count_by_key, rotate

    use_relay(world, free_port(), password="relay secret 5")  # nothing listens: mail waits
    world.client.post(f"{API}/auth/password-reset", json={"email": EMPLOYEE})
    new = runtime_with(store_url, tmp_path / "k2", KEY2, "k2", f"k1:{TEST_DATA_KEY}")
    try:
        report = rotate(new.db, new.cipher, batch_size=10)
        assert report.reencrypted["mail_settings.password_sealed"] == 1
        assert report.reencrypted["mail_messages.body_sealed"] == 1
        assert "k1" not in count_by_key(new.db)
        with new.db.session() as session:
            row = session.scalar(select(MailSettings))
            message = session.scalar(select(MailMessage))
            assert row is not None and row.password_sealed is not None and message is not None
            assert new.cipher.open(row.password_sealed, mail.PASSWORD_PURPOSE) == "relay secret 5"
            assert LINK.search(new.cipher.open(message.body_sealed or "", mail.BODY_PURPOSE))
    finally:
        new.db.dispose()


def test_an_admin_reset_also_clears_a_bound_authenticator(
    world: World, smtp: SmtpServer, runtime: Runtime
) -> None:
    """A session thief who bound their own authenticator (TOTP needs the password to turn on,
    but a thief may hold both) cannot keep the owner out: the admin's reset clears TOTP."""
    import pyotp

    use_relay(world, smtp.port)
    client, employee = world.client, world.a.employee
    setup = client.post(f"{API}/auth/totp", headers=employee.headers)
    assert setup.status_code == 200, setup.text
    code = pyotp.TOTP(setup.json()["secret"]).now()
    body = {"code": code, "current_password": PASSWORD}
    assert (
        client.post(f"{API}/auth/totp/confirm", json=body, headers=employee.headers).status_code
        == 204
    )
    resp = client.post(
        f"{API}/tenants/{world.a.id}/users/{employee.user_id}/password-reset",
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 202, resp.text
    got = smtp.wait_for(EMPLOYEE)
    done = client.post(
        f"{API}/auth/password-reset/complete",
        json={"token": got.token, "new_password": NEW_PASSWORD},
    )
    assert done.status_code == 204, done.text
    # No code needed any more: the authenticator is gone, the owner is back in.
    assert login(client, EMPLOYEE, NEW_PASSWORD).status_code == 200
    with runtime.db.session() as session:
        user = session.get(User, employee.user_id)
        assert user is not None and not user.totp_enabled and user.totp_secret_sealed is None
    (event,) = events(runtime, "password_reset")
    assert event.after is not None and event.after["totp_cleared"] is True


@pytest.mark.parametrize("address", ["a\x00@b.example", "a\n@b.example", "a\u202e@b.example"])
def test_forgot_password_refuses_control_characters(world: World, address: str) -> None:
    """A NUL reached the store (a 500 on PostgreSQL): refused before, field-keyed; the console's
    form answers its own 422 page."""
    resp = world.client.post(f"{API}/auth/password-reset", json={"email": address})
    assert resp.status_code == 422, resp.text
    assert "email" in resp.json()["error"]["fields"]
    form = world.client.post("/console/password/forgot", data={"email": address})
    assert form.status_code == 422, form.text
    assert 'aria-invalid="true"' in form.text and "single line" in form.text  # by the field
