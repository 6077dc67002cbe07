"""Delivering queued mail: a background sender per process, SMTP through ``smtplib``.

The sender wakes when a transaction that queued mail commits (and when the server starts),
delivers every due message, and sleeps until the next retry is due; with nothing pending its
thread ends. Each message is claimed with a conditional update (``not_before`` doubles as a
lease), so two replicas never send one message together; a sender that dies after sending
but before deleting the row lets the lease expire and the message goes again (at least once).

Without SMTP settings, outside production, a message is written to ``<data dir>/outbox/`` as
an ``.eml`` file (mode 0600) and one log line names the file; in production it waits.
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tongdao.config import Environment
from tongdao.crypto import DecryptionError
from tongdao.mail.models import (
    BODY_PURPOSE,
    PASSWORD_PURPOSE,
    MailMessage,
    MailSettings,
    MailState,
    SmtpSecurity,
)
from tongdao.store.rows import rows_updated

if TYPE_CHECKING:
    from tongdao.runtime import Runtime

log = logging.getLogger("tongdao.mail")

MAX_ATTEMPTS = 8  # then the message is marked failed (about 2 hours of retries)
LEASE = timedelta(minutes=5)  # a claimed message another sender may take after this
HOLD = timedelta(minutes=5)  # production without SMTP settings: look again after this
MAX_SLEEP = 60.0
BATCH = 50
MAX_STORE_ERRORS = 10  # consecutive store failures before the thread ends (a wake restarts it)
SMTP_TIMEOUT = 20.0
DEV_SENDER = "tongdao@localhost"


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    security: SmtpSecurity
    username: str
    password: str | None
    sender: str


def get_settings(session: Session) -> MailSettings | None:
    """The relay's settings (one row; the oldest, should a race have written two)."""
    return session.scalar(select(MailSettings).order_by(MailSettings.created_at))


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes after each failed attempt, at most an hour."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def build_message(
    sender: str, recipient: str, subject: str, text: str, now: datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    # Not email.utils.make_msgid: it draws on the global ``random`` state, which this thread
    # must not touch (nor should a Message-ID be guessable).
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{sender.rpartition('@')[2] or 'localhost'}>"
    message["Auto-Submitted"] = "auto-generated"
    # UTF-8 in quoted-printable whatever the language (a Chinese body would otherwise go out
    # as base64): the link stays readable in the raw message and `quopri -d` decodes it.
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    return message


def send_smtp(relay: Relay, message: EmailMessage, *, ca_file: Path | None) -> None:
    """Hand one message to the relay; TLS certificates are always verified."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    client: smtplib.SMTP
    if relay.security is SmtpSecurity.TLS:
        client = smtplib.SMTP_SSL(relay.host, relay.port, timeout=SMTP_TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(relay.host, relay.port, timeout=SMTP_TIMEOUT)
    with client:
        if relay.security is SmtpSecurity.STARTTLS:
            client.starttls(context=context)  # refuses (SMTPNotSupportedError), never falls back
        if relay.username:
            client.login(relay.username, relay.password or "")
        client.send_message(message)


def write_outbox(directory: Path, message: EmailMessage, name: str) -> Path:
    """Write the message as ``<directory>/<name>.eml``, readable by the server's user only."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{name}.eml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(message.as_bytes())
    return path


class Mailer:
    """The background sender of one server process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._signal = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._store_errors = 0

    @property
    def outbox(self) -> Path:
        return self.runtime.settings.data_dir / "outbox"

    # --- thread --------------------------------------------------------------------------
    def wake(self) -> None:
        """Deliver what is due now (called after a commit that queued mail, and at start)."""
        with self._lock:
            self._signal.set()
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="tongdao-mailer", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
            self._signal.set()
        if thread is not None:
            thread.join(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is due (the thread ended); for tests and the CLI."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            thread.join(min(remaining, 0.5))

    def _run(self) -> None:
        while True:
            self._signal.clear()
            delay: float | None
            try:
                delay = self.deliver_due()
                self._store_errors = 0
            except Exception as exc:  # the store is unreachable, say: try again later
                self._store_errors += 1
                log.warning("mail delivery paused: %s", exc)
                delay = None if self._store_errors >= MAX_STORE_ERRORS else 5.0 * self._store_errors
            with self._lock:
                if self._stopped or (delay is None and not self._signal.is_set()):
                    self._thread = None
                    return
            if delay is not None:
                self._signal.wait(min(delay, MAX_SLEEP))

    # --- delivery ------------------------------------------------------------------------
    def deliver_due(self) -> float | None:
        """Deliver every due message; seconds until the next one is due (None: none waits)."""
        db, clock = self.runtime.db, self.runtime.clock
        with db.session(write=False) as session:
            due = session.scalars(
                select(MailMessage.id)
                .where(MailMessage.state == MailState.PENDING, MailMessage.not_before <= clock())
                .order_by(MailMessage.not_before)
                .limit(BATCH)
            ).all()
        for message_id in due:
            self._deliver(message_id)
        with db.session(write=False) as session:
            upcoming: datetime | None = session.scalar(
                select(func.min(MailMessage.not_before)).where(
                    MailMessage.state == MailState.PENDING
                )
            )
        if upcoming is None:
            return None
        return max((upcoming - clock()).total_seconds(), 0.0)

    def _claim(self, message_id: object, now: datetime) -> bool:
        with self.runtime.db.session() as session:
            claimed = rows_updated(
                session,
                update(MailMessage)
                .where(
                    MailMessage.id == message_id,
                    MailMessage.state == MailState.PENDING,
                    MailMessage.not_before <= now,
                )
                .values(not_before=now + LEASE, attempts=MailMessage.attempts + 1),
            )
            session.commit()
        return claimed == 1

    def _deliver(self, message_id: object) -> None:
        runtime = self.runtime
        now = runtime.clock()
        if not self._claim(message_id, now):
            return  # another sender has it
        with runtime.db.session(write=False) as session:
            row = session.get(MailMessage, message_id)
            config = get_settings(session)
            if row is None:  # pragma: no cover - deleted meanwhile
                return
            attempts, recipient, subject, sealed = (
                row.attempts,
                row.recipient,
                row.subject,
                row.body_sealed,
            )
            relay_row = None
            if config is not None:
                relay_row = (
                    config.host,
                    config.port,
                    config.security,
                    config.username,
                    config.password_sealed,
                    config.sender,
                )
        production = runtime.settings.env is Environment.PRODUCTION
        if relay_row is None and production:
            self._release(message_id, now + HOLD, attempts - 1, "no SMTP settings")
            log.warning("mail %s waits: no SMTP settings (PUT /api/v1/operator/mail)", message_id)
            return
        try:
            text = runtime.cipher.open(sealed or "", BODY_PURPOSE)
            if relay_row is None:
                message = build_message(DEV_SENDER, recipient, subject, text, now)
                stamp = now.strftime("%Y%m%dT%H%M%SZ")
                path = write_outbox(self.outbox, message, f"{stamp}-{message_id}")
                log.info("mail %s (%s) written to the outbox: %s", message_id, subject, path)
            else:
                host, port, security, username, password_sealed, sender = relay_row
                relay = Relay(
                    host=host,
                    port=port,
                    security=SmtpSecurity(security),
                    username=username,
                    password=(
                        runtime.cipher.open(password_sealed, PASSWORD_PURPOSE)
                        if password_sealed
                        else None
                    ),
                    sender=sender,
                )
                message = build_message(sender, recipient, subject, text, now)
                send_smtp(relay, message, ca_file=runtime.settings.smtp_ca_file)
                log.info("mail %s (%s) delivered to %s:%d", message_id, subject, host, port)
        except (smtplib.SMTPException, OSError, DecryptionError, ValueError) as exc:
            self._failed(message_id, now, attempts, exc)
            return
        with runtime.db.session() as session:
            session.execute(delete(MailMessage).where(MailMessage.id == message_id))
            session.commit()

    def _release(self, message_id: object, not_before: datetime, attempts: int, error: str) -> None:
        with self.runtime.db.session() as session:
            session.execute(
                update(MailMessage)
                .where(MailMessage.id == message_id)
                .values(not_before=not_before, attempts=attempts, last_error=error[:500])
            )
            session.commit()

    def _failed(self, message_id: object, now: datetime, attempts: int, exc: Exception) -> None:
        permanent = isinstance(exc, (smtplib.SMTPRecipientsRefused, DecryptionError))
        error = f"{type(exc).__name__}: {exc}"[:500]
        if permanent or attempts >= MAX_ATTEMPTS:
            with self.runtime.db.session() as session:
                session.execute(
                    update(MailMessage)
                    .where(MailMessage.id == message_id)
                    .values(state=MailState.FAILED, body_sealed=None, last_error=error)
                )
                session.commit()
            log.error("mail %s given up after %d attempts: %s", message_id, attempts, error)
            return
        retry = now + backoff(attempts)
        self._release(message_id, retry, attempts, error)
        log.warning(
            "mail %s not delivered (attempt %d), retry at %s: %s",
            message_id,
            attempts,
            retry.isoformat(),
            error,
        )


_MAILERS_LOCK = threading.Lock()


def mailer_of(runtime: Runtime) -> Mailer:
    """The runtime's sender, made on first use."""
    with _MAILERS_LOCK:
        if runtime.mailer is None:
            runtime.mailer = Mailer(runtime)
        return runtime.mailer
