"""A tenant's OpenID Provider, the external identities linked to its users, the sign-ins in
flight (``state``/``nonce``/PKCE, single use) and the e-mail domains a tenant claims.

External identities are keyed by issuer + subject (``sub`` is unique per issuer only). A
domain is approved for one tenant at most: a partial unique index over approved claims
holds it even against two approvals racing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class EmailTrust(StrEnum):
    """Which claim says the ``email`` claim belongs to the person signing in."""

    EMAIL_VERIFIED = "email_verified"  # OpenID Connect Core: ``email_verified`` is true
    ENTRA_EDOV = "entra_xms_edov"  # Microsoft Entra ID: the optional ``xms_edov`` is true


class ClaimState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class SsoProvider(TimestampedModel):
    """A tenant's OpenID Provider (one per tenant). The client secret is sealed."""

    __tablename__ = "sso_providers"
    __audit_type__ = "sso_provider"
    __audit_masked__ = frozenset({"client_secret_sealed"})

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), unique=True
    )
    name: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_sealed: Mapped[str] = mapped_column(String(1000))
    allowed_domains: Mapped[list[str]] = mapped_column(default=list)
    groups_claim: Mapped[str] = mapped_column(String(100), default="")
    # claim value -> Tongdao group id (str), applied at each sign-in
    group_map: Mapped[dict[str, Any]] = mapped_column(default=dict)
    jit_users: Mapped[bool] = mapped_column(default=False)
    email_trust: Mapped[str] = mapped_column(String(32), default=EmailTrust.EMAIL_VERIFIED)
    enabled: Mapped[bool] = mapped_column(default=True)


class SsoIdentity(TimestampedModel):
    """A Tongdao user's identity at a provider: issuer + subject, linked at first sign-in."""

    __tablename__ = "sso_identities"
    __audit_type__ = "sso_identity"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    last_sign_in_at: Mapped[datetime | None] = mapped_column(default=None)


class SsoLogin(TimestampedModel):
    """A sign-in in flight: its ``state`` (hashed), bound to the browser that began it (hash of
    a cookie), its ``nonce`` and PKCE verifier (sealed), used once and briefly."""

    __tablename__ = "sso_logins"
    __audit_type__ = None  # the sign-in's outcome is audited as login / login_failed
    __table_args__ = (Index("ix_sso_logins_source_ip_expires", "source_ip", "expires_at"),)

    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sso_providers.id", ondelete="CASCADE"), index=True
    )
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(100))
    verifier_sealed: Mapped[str] = mapped_column(String(300))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    # A command-line sign-in (RFC 8252): the loopback URI the console's callback hands the
    # code on to; the CLI holds the secret whose hash is ``browser_hash``.
    cli_redirect: Mapped[str | None] = mapped_column(String(200), default=None)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    # The address that began it (as the sign-in throttle counts addresses): the begin
    # throttle counts the unfinished ones per address (tongdao.sso.throttle).
    source_ip: Mapped[str | None] = mapped_column(String(64), default=None)


class SsoDomainClaim(TimestampedModel):
    """A tenant's claim to an e-mail domain, with its evidence; the compliance officer
    decides. Approved for one tenant at most."""

    __tablename__ = "sso_domain_claims"
    __audit_type__ = "sso_domain_claim"
    __table_args__ = (
        Index(
            "uq_sso_domain_claims_approved_domain",
            "domain",
            unique=True,
            sqlite_where=text("state = 'approved'"),
            postgresql_where=text("state = 'approved'"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    domain: Mapped[str] = mapped_column(String(253))
    evidence: Mapped[str] = mapped_column(String(2000))
    state: Mapped[str] = mapped_column(String(16), default=ClaimState.PENDING)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(String(500), default="")
