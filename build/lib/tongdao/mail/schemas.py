"""Schemas for the operator's SMTP settings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from tongdao.mail.models import SmtpSecurity
from tongdao.schemas import Email, HostOrIp, OneLine, Port, Strict

Delivery = Literal["smtp", "outbox", "held"]


class MailSettingsUpdate(Strict):
    host: HostOrIp = Field(description="the SMTP relay's host name or address")
    port: Port = 587
    security: SmtpSecurity = Field(
        default=SmtpSecurity.STARTTLS,
        description="starttls (587), tls (implicit, 465) or none (only to a loopback relay, "
        "or in development)",
    )
    username: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320), OneLine] = ""
    password: Annotated[str, Field(max_length=512)] | None = Field(
        default=None,
        description="write-only, stored sealed; omit (or null) to keep the stored one, '' to "
        "clear it",
    )
    sender: Email = Field(description="the From address")


class MailSettingsPublic(BaseModel):
    configured: bool = Field(description="an SMTP relay is set")
    delivery: Delivery = Field(
        description="smtp: through the relay; outbox: no relay, development: written to "
        "<data dir>/outbox/*.eml; held: no relay in production, messages wait"
    )
    host: str | None = None
    port: int | None = None
    security: SmtpSecurity | None = None
    username: str | None = None
    password_set: bool = False
    sender: str | None = None
    updated_at: datetime | None = None
    pending: int = Field(description="messages waiting for delivery")
    failed: int = Field(description="messages given up on after repeated failures")
