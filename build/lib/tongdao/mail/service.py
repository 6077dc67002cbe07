"""Outgoing mail: the SMTP settings and queueing a message with the change that causes it.

Delivery is decoupled from the transaction: :func:`queue` writes a :class:`MailMessage` row
into the caller's session (so it commits or rolls back with the change) and, once that
transaction commits, wakes the runtime's :class:`~tongdao.mail.sender.Mailer`, which delivers
it in the background and retries until the relay takes it. No mail leaves for a rolled-back
change, a relay that is down loses nothing, and no request waits for SMTP (so answering
"forgot password" takes as long whether or not a message is sent).
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from tongdao.config import Environment
from tongdao.errors import ValidationError
from tongdao.mail import schemas as s
from tongdao.mail.models import (
    BODY_PURPOSE,
    PASSWORD_PURPOSE,
    MailMessage,
    MailSettings,
    MailState,
    SmtpSecurity,
)
from tongdao.mail.sender import Mailer, get_settings, mailer_of
from tongdao.runtime import Ctx

_HOOKED = "tongdao.mail_after_commit"

__all__ = [
    "BODY_PURPOSE",
    "PASSWORD_PURPOSE",
    "Mailer",
    "get_settings",
    "mailer_of",
    "put_settings",
    "queue",
    "settings_public",
]


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def put_settings(ctx: Ctx, data: s.MailSettingsUpdate) -> MailSettings:
    if (
        data.security is SmtpSecurity.NONE
        and not is_loopback(data.host)
        and ctx.runtime.settings.env is not Environment.DEVELOPMENT
    ):
        raise ValidationError(
            {
                "security": "none (no encryption) is allowed only to a loopback relay, or in "
                "development; use starttls or tls"
            }
        )
    row = get_settings(ctx.session)
    if row is None:
        row = MailSettings(password_sealed=None)
        ctx.session.add(row)
    row.host = data.host
    row.port = data.port
    row.security = data.security.value
    row.username = data.username
    row.sender = data.sender
    if data.password is not None:
        row.password_sealed = (
            ctx.runtime.cipher.seal(data.password, PASSWORD_PURPOSE) if data.password else None
        )
    # Messages waiting for a retry go with the new settings at once.
    ctx.session.execute(
        update(MailMessage)
        .where(MailMessage.state == MailState.PENDING)
        .values(not_before=ctx.runtime.clock())
    )
    return row


def delivery_mode(ctx: Ctx, row: MailSettings | None) -> s.Delivery:
    if row is not None:
        return "smtp"
    return "held" if ctx.runtime.settings.env is Environment.PRODUCTION else "outbox"


def settings_public(ctx: Ctx) -> s.MailSettingsPublic:
    row = get_settings(ctx.session)
    counts = dict(
        ctx.session.execute(
            select(MailMessage.state, func.count()).group_by(MailMessage.state)
        ).all()
    )
    common = {
        "delivery": delivery_mode(ctx, row),
        "pending": counts.get(MailState.PENDING.value, 0),
        "failed": counts.get(MailState.FAILED.value, 0),
    }
    if row is None:
        return s.MailSettingsPublic(configured=False, **common)
    return s.MailSettingsPublic(
        configured=True,
        host=row.host,
        port=row.port,
        security=SmtpSecurity(row.security),
        username=row.username,
        password_set=row.password_sealed is not None,
        sender=row.sender,
        updated_at=row.updated_at,
        **common,
    )


def queue(ctx: Ctx, recipient: str, subject: str, text: str) -> MailMessage:
    """Write a message into the current transaction; it is sent after the commit."""
    message = MailMessage(
        recipient=recipient,
        subject=subject,
        body_sealed=ctx.runtime.cipher.seal(text, BODY_PURPOSE),
        state=MailState.PENDING.value,
        not_before=ctx.runtime.clock(),
    )
    ctx.session.add(message)
    if not ctx.session.info.get(_HOOKED):
        ctx.session.info[_HOOKED] = True
        mailer = mailer_of(ctx.runtime)

        def _after_commit(_session: Session) -> None:
            mailer.wake()

        event.listen(ctx.session, "after_commit", _after_commit)
    return message
