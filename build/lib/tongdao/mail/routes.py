"""Routes for the operator's SMTP settings."""

from __future__ import annotations

from fastapi import APIRouter

from tongdao.api.deps import GuardDep
from tongdao.auth.permissions import Action
from tongdao.mail import schemas as s
from tongdao.mail import service

router = APIRouter()


@router.get("/operator/mail", tags=["operator"], operation_id="get_mail_settings")
def get_mail_settings(guard: GuardDep) -> s.MailSettingsPublic:
    """The SMTP relay (never its password), how mail is delivered, and what waits."""
    guard.require("mail", Action.READ)
    return service.settings_public(guard.ctx)


@router.put("/operator/mail", tags=["operator"], operation_id="put_mail_settings")
def put_mail_settings(guard: GuardDep, body: s.MailSettingsUpdate) -> s.MailSettingsPublic:
    """Set the SMTP relay mail leaves by; the password is write-only and stored sealed.
    Messages waiting are retried at once."""
    guard.require("mail", Action.UPDATE)
    service.put_settings(guard.ctx, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    service.mailer_of(guard.ctx.runtime).wake()
    return service.settings_public(guard.ctx)
