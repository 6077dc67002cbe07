"""Schema families for tenants, users (tenant users and operator staff) and groups."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from tongdao.auth.permissions import Role
from tongdao.schemas import (
    Description,
    Email,
    LongName,
    Mobile,
    MultiLine,
    Name,
    OneLine,
    OptionalText,
    Phone,
    PublicModel,
    Strict,
    Uscc,
)
from tongdao.tenancy.models import IdType, TenantState, UserState
from tongdao.words import field_name

TenantRole = Literal[Role.TENANT_ADMIN, Role.EMPLOYEE]
OperatorRole = Literal[
    Role.OPERATOR_ADMIN, Role.COMPLIANCE_OFFICER, Role.BILLING_CLERK, Role.AUDITOR
]
DnsServers = Annotated[list[IPv4Address | IPv6Address], Field(max_length=4)]


# --- tenants -------------------------------------------------------------------------------
class InvoiceFields(BaseModel):
    invoice_buyer_name: OptionalText | None = None
    invoice_tax_id: Uscc | None = None
    invoice_address_phone: Annotated[str, Field(max_length=300), OneLine] | None = None
    invoice_bank: OptionalText | None = None
    invoice_account: Annotated[str, Field(max_length=64), OneLine] | None = None


Evidence = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=200),
    OneLine,
    Field(description="reference to the evidence of foreign-invested status"),
]
StateReason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), MultiLine]


class KycFields(BaseModel):
    foreign_invested: bool | None = Field(
        default=None, description="a foreign-invested enterprise (required in Beijing)"
    )
    foreign_invested_evidence: Evidence | None = None


class TenantCreate(Strict, InvoiceFields, KycFields):
    name_en: LongName
    name_zh: OptionalText = ""
    uscc: Uscc
    contact_name: OptionalText = ""
    contact_email: Email | None = None
    contact_phone: Phone = ""
    dns_servers: DnsServers = []
    ipv4_pool_prefixlen: int = Field(
        default=22, ge=16, le=26, description="size of the tenant's IPv4 overlay pool"
    )


class TenantUpdate(Strict, InvoiceFields, KycFields):
    name_en: LongName | None = None
    name_zh: OptionalText | None = None
    contact_name: OptionalText | None = None
    contact_email: Email | None = None
    contact_phone: Phone | None = None
    dns_servers: DnsServers | None = None
    state: TenantState | None = None
    state_reason: StateReason | None = Field(
        default=None, description="why (required to reject); kept with the new state"
    )
    uscc_verified: bool | None = Field(
        default=None,
        description="true records that a USCC whose check character fails was verified by hand",
    )


class TenantPublic(PublicModel):
    name_en: str
    name_zh: str
    uscc: str
    uscc_checksum_ok: bool = Field(
        description="false: the check character does not match; verify the code manually"
    )
    division_code: str
    state: TenantState
    contact_name: str
    contact_email: str
    contact_phone: str
    invoice_buyer_name: str
    invoice_tax_id: str
    invoice_address_phone: str
    invoice_bank: str
    invoice_account: str
    dns_servers: list[str]
    ipv4_pool: str
    ipv6_pool: str
    needs_manual_verification: bool = Field(
        description="the USCC's check character fails and nobody has verified the code yet"
    )
    uscc_verified_at: datetime | None
    uscc_verified_by: uuid.UUID | None = Field(
        default=None, description="the compliance officer who verified the USCC by hand"
    )
    foreign_invested: bool
    foreign_invested_evidence: str
    state_reason: str
    vetting_missing: dict[str, str] = Field(
        default_factory=dict,
        description="what customer vetting still needs before approval, by field (empty: "
        "nothing; the licences are checked at approval)",
    )


class TenantFilters(BaseModel):
    state: TenantState | None = None
    needs_manual_verification: bool | None = None
    uscc: Annotated[str, Field(max_length=32), OneLine] | None = None
    q: Annotated[str, Field(max_length=100), OneLine] | None = Field(
        default=None, description="part of a name"
    )


# --- users ---------------------------------------------------------------------------------
class IdentityFields(BaseModel):
    legal_name: LongName | None = None
    id_type: IdType | None = None
    id_number: Annotated[str, Field(min_length=1, max_length=32), OneLine] | None = None
    mobile: Mobile | None = None

    @model_validator(mode="after")
    def _id_pair(self) -> IdentityFields:
        if (self.id_number is None) != (self.id_type is None):
            missing = "id_type" if self.id_type is None else "id_number"
            raise ValueError(
                f"the ID type and the ID number go together; the {field_name(missing)} is missing"
            )
        return self


class UserCreate(Strict, IdentityFields):
    email: Email
    display_name: LongName
    roles: Annotated[list[TenantRole], Field(min_length=1, max_length=2)] = [Role.EMPLOYEE]
    group_ids: Annotated[list[uuid.UUID], Field(max_length=100)] = []


class UserUpdate(Strict, IdentityFields):
    display_name: LongName | None = None
    roles: Annotated[list[TenantRole], Field(min_length=1, max_length=2)] | None = None
    state: UserState | None = None
    group_ids: Annotated[list[uuid.UUID], Field(max_length=100)] | None = None


class UserPublic(PublicModel):
    tenant_id: uuid.UUID | None
    email: str
    display_name: str
    roles: list[str]
    state: UserState
    totp_enabled: bool
    group_ids: list[uuid.UUID] = []
    legal_name: str | None
    id_type: IdType | None
    id_number_masked: str | None = None
    mobile_masked: str | None = None
    identity_verified_at: datetime | None = Field(
        description="when a tenant admin or compliance officer verified the real identity "
        "(POST .../identity-verification); null: the user's devices stay pending"
    )
    erased_at: datetime | None = Field(
        default=None, description="when the user's personal data was erased on request"
    )


class UserFilters(BaseModel):
    email: Annotated[str, Field(max_length=320), OneLine] | None = None
    state: UserState | None = None
    identity_verified: bool | None = Field(
        default=None, description="false: the users whose real identity awaits verification"
    )
    role: Role | None = None
    group_id: uuid.UUID | None = None


class StaffCreate(Strict):
    email: Email
    display_name: LongName
    roles: Annotated[list[OperatorRole], Field(min_length=1, max_length=4)]


class StaffUpdate(Strict):
    display_name: LongName | None = None
    roles: Annotated[list[OperatorRole], Field(min_length=1, max_length=4)] | None = None
    state: UserState | None = None


class StaffFilters(BaseModel):
    email: Annotated[str, Field(max_length=320), OneLine] | None = None
    state: UserState | None = None


# --- groups --------------------------------------------------------------------------------
class GroupCreate(Strict):
    name: Name
    description: Description = ""
    member_ids: Annotated[list[uuid.UUID], Field(max_length=10_000)] = []


class GroupUpdate(Strict):
    name: Name | None = None
    description: Description | None = None
    member_ids: Annotated[list[uuid.UUID], Field(max_length=10_000)] | None = None


class GroupPublic(PublicModel):
    tenant_id: uuid.UUID
    name: str
    description: str
    member_ids: list[uuid.UUID] = []


class GroupFilters(BaseModel):
    name: Annotated[str, Field(max_length=100), OneLine] | None = None
