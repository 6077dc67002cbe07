"""Second factors beyond TOTP: WebAuthn credentials (security keys, passkeys), the one-time
challenges of their ceremonies, and the operator's rule that staff must use a second factor."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class WebAuthnCredential(TimestampedModel):
    """A security key or passkey a user registered (several per user, each with a name)."""

    __tablename__ = "webauthn_credentials"
    __audit_type__ = "webauthn_credential"
    __audit_exclude__ = frozenset({"public_key", "credential_id"})

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    # base64url without padding; the spec caps a credential id at 1023 bytes.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[str] = mapped_column(Text)  # COSE key, base64url
    # The authenticator's signature counter as last seen: a sign-in that does not raise it
    # (when the authenticator keeps one) is refused as a possible clone.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    device_type: Mapped[str] = mapped_column(String(20), default="")  # single/multi_device
    backed_up: Mapped[bool] = mapped_column(default=False)
    transports: Mapped[list[str]] = mapped_column(default=list)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class WebAuthnChallenge(TimestampedModel):
    """A challenge handed to the browser for one ceremony: bound to what asked for it (the
    signed-in session for a registration, the pending sign-in's cookie for a sign-in), used
    once (deleted when a response comes back, right or wrong) and short-lived."""

    __tablename__ = "webauthn_challenges"
    __audit_type__ = None  # the ceremony's outcome is audited, not its challenge
    __table_args__ = (Index("ix_webauthn_challenges_binding", "binding", "purpose"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))  # "register" or "sign_in"
    binding: Mapped[str] = mapped_column(String(64))  # sha256 hex of the bound secret
    challenge: Mapped[str] = mapped_column(String(200))  # base64url
    expires_at: Mapped[datetime]


class SecondFactorPolicy(TimestampedModel):
    """The operator's rule (one row): every operator staff member must sign in with a second
    factor (TOTP or WebAuthn). Changed by the operator admin; audited by the ORM hook."""

    __tablename__ = "second_factor_policy"
    __audit_type__ = "second_factor_policy"

    required_for_staff: Mapped[bool] = mapped_column(default=False)
