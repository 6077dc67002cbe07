"""Tenants (customer companies), their users (employees and admins) and groups."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongdao.store.base import Base, TimestampedModel


class TenantState(StrEnum):
    APPLIED = "applied"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class UserState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class IdType(StrEnum):
    PRC_RESIDENT_ID = "prc_resident_id"
    PASSPORT = "passport"
    FOREIGN_PERMANENT_RESIDENCE = "foreign_permanent_residence"


class Tenant(TimestampedModel):
    __tablename__ = "tenants"
    __dataplane__ = True
    __audit_type__ = "tenant"

    name_en: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str] = mapped_column(String(200), default="")
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    uscc_checksum_ok: Mapped[bool]
    division_code: Mapped[str] = mapped_column(String(6))
    state: Mapped[str] = mapped_column(String(16), default=TenantState.APPLIED, index=True)
    contact_name: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(320), default="")
    contact_phone: Mapped[str] = mapped_column(String(32), default="")
    invoice_buyer_name: Mapped[str] = mapped_column(String(200), default="")
    invoice_tax_id: Mapped[str] = mapped_column(String(18), default="")
    invoice_address_phone: Mapped[str] = mapped_column(String(300), default="")
    invoice_bank: Mapped[str] = mapped_column(String(200), default="")
    invoice_account: Mapped[str] = mapped_column(String(64), default="")
    dns_servers: Mapped[list[str]] = mapped_column(default=list)
    ipv4_pool: Mapped[str] = mapped_column(String(43), unique=True)
    ipv6_pool: Mapped[str] = mapped_column(String(43), unique=True)
    # Vetting (KYC, tongdao.compliance.kyc): a USCC whose check character fails is verified by
    # hand; a Beijing customer is foreign-invested, with a reference to the evidence.
    uscc_verified_at: Mapped[datetime | None]
    uscc_verified_by: Mapped[uuid.UUID | None]
    foreign_invested: Mapped[bool] = mapped_column(default=False, server_default=false())
    foreign_invested_evidence: Mapped[str] = mapped_column(
        String(200), default="", server_default=""
    )
    # Why the tenant is in its state (required for rejected), set with each state change.
    state_reason: Mapped[str] = mapped_column(String(500), default="", server_default="")

    @property
    def needs_manual_verification(self) -> bool:
        return not self.uscc_checksum_ok and self.uscc_verified_at is None

    @property
    def vetting_missing(self) -> dict[str, str]:
        """What customer vetting still needs, by field (told from creation on, not only when
        approval is refused): see :func:`tongdao.compliance.kyc.vetting_missing`."""
        from tongdao.compliance.kyc import vetting_missing

        return vetting_missing(self)


class User(TimestampedModel):
    """A person who logs in or owns devices: operator staff (no tenant) or a tenant's user."""

    __tablename__ = "users"
    __dataplane__ = True
    __audit_type__ = "user"
    # Personal identity never enters the audit log in clear (it could not be erased there):
    # a change to the legal name or mobile shows as redacted, the ID number as encrypted.
    __audit_exclude__ = frozenset({"password_hash", "totp_secret_sealed", "legal_name", "mobile"})
    __audit_masked__ = frozenset({"id_number_sealed"})

    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]]
    state: Mapped[str] = mapped_column(String(16), default=UserState.ACTIVE)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    totp_secret_sealed: Mapped[str | None] = mapped_column(String(200))
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    # The console's language for this person ("en", "zh_CN"); None: the browser's choice.
    language: Mapped[str | None] = mapped_column(String(8))
    # Real identity (Cybersecurity Law art. 24); the ID number is sealed with AES-GCM.
    legal_name: Mapped[str | None] = mapped_column(String(200))
    id_type: Mapped[str | None] = mapped_column(String(32))
    id_number_sealed: Mapped[str | None] = mapped_column(String(300))
    id_number_last4: Mapped[str | None] = mapped_column(String(4))
    id_number_length: Mapped[int | None]
    mobile: Mapped[str | None] = mapped_column(String(20))
    identity_verified_at: Mapped[datetime | None]
    identity_verified_by: Mapped[uuid.UUID | None]
    # Set when the user's personal data was erased on request (the row stays, pseudonymised).
    erased_at: Mapped[datetime | None]

    memberships: Mapped[list[GroupMember]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class Group(TimestampedModel):
    __tablename__ = "groups"
    __dataplane__ = True
    __audit_type__ = "group"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")

    memberships: Mapped[list[GroupMember]] = relationship(
        back_populates="group", cascade="all, delete-orphan"
    )


class GroupMember(Base):
    __tablename__ = "group_members"
    __dataplane__ = True
    __audit_type__ = "group_member"

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))

    group: Mapped[Group] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")
