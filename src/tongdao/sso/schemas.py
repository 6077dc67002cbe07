"""Request and response bodies of the SSO routes: a tenant's OpenID Provider settings (the
client secret is write-only), its e-mail domain claims and their decisions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from tongdao.schemas import MultiLine, Name, OneLine, Strict
from tongdao.sso.models import EmailTrust

Url = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), OneLine
]
ClientId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), OneLine
]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=500), OneLine]
Domain = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=253), OneLine
]
ClaimName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), OneLine]
Evidence = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2000), MultiLine
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), MultiLine]


class ProviderIn(Strict):
    """The whole settings (PUT): an omitted ``client_secret`` keeps the stored one."""

    name: Name = Field(description="shown to employees: 'Continue to <name>'")
    issuer: Url = Field(description="the provider's issuer URL, exactly as its discovery says")
    client_id: ClientId
    client_secret: Secret | None = Field(
        default=None, description="write-only; required the first time"
    )
    allowed_domains: list[Domain] = Field(
        default_factory=list,
        max_length=50,
        description="e-mail domains whose people may sign in: approved claims of this tenant",
    )
    groups_claim: ClaimName = Field(default="", description="the ID token claim with groups")
    group_map: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=200), OneLine], uuid.UUID
    ] = Field(
        default_factory=dict,
        max_length=200,
        description="a value of the groups claim -> the Tongdao group it puts the user in",
    )
    jit_users: bool = Field(
        default=False, description="create an employee at first sign-in if none was invited"
    )
    email_trust: EmailTrust = Field(
        default=EmailTrust.EMAIL_VERIFIED,
        description="email_verified: the claim email_verified must be true; entra_xms_edov: "
        "Entra ID's optional claim xms_edov must be true",
    )
    enabled: bool = True


class ProviderPublic(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    issuer: str
    client_id: str
    client_secret_set: bool
    allowed_domains: list[str]
    groups_claim: str
    group_map: dict[str, uuid.UUID]
    jit_users: bool
    email_trust: EmailTrust
    enabled: bool
    redirect_uri: str = Field(description="register this at the provider")
    updated_at: datetime


class DomainClaimIn(Strict):
    domain: Domain
    evidence: Evidence = Field(
        description="how the tenant shows it owns the domain (DNS TXT record, registrar "
        "record, letter)"
    )


class DomainDecisionIn(Strict):
    decision: Literal["approve", "reject"]
    reason: Reason = ""


class DomainClaimPublic(BaseModel):
    model_config = {"from_attributes": True}

    id: uuid.UUID
    tenant_id: uuid.UUID
    domain: str
    evidence: str
    state: str
    reason: str
    decided_at: datetime | None
    created_at: datetime


Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class SsoBegin(Strict):
    """A command-line sign-in (RFC 8252): the CLI listens on ``redirect_uri`` (loopback) and
    keeps a secret whose SHA-256 (hex) is ``binding_challenge``."""

    email: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320), OneLine
    ]
    redirect_uri: Annotated[str, StringConstraints(max_length=200), OneLine]
    binding_challenge: Hex64


class SsoBegun(BaseModel):
    authorization_url: str
    provider: str


class SsoComplete(Strict):
    state: Annotated[str, StringConstraints(min_length=1, max_length=200), OneLine]
    code: Annotated[str, StringConstraints(max_length=2000), OneLine] = ""
    error: Annotated[str, StringConstraints(max_length=200), OneLine] = ""
    binding_verifier: Annotated[str, StringConstraints(min_length=1, max_length=200), OneLine]
