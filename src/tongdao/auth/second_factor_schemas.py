"""Schemas for second factors: WebAuthn credentials, the key's sign-in step, the staff rule."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tongdao.schemas import Strict

Credential = Annotated[
    dict[str, Any],
    Field(description="the browser's PublicKeyCredential as JSON (toJSON(), base64url fields)"),
]


class WebAuthnCredentialPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    device_type: str = Field(description="single_device (a security key) or multi_device")
    backed_up: bool = Field(description="a synced passkey")
    transports: list[str]


class WebAuthnRegister(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    credential: Credential
    current_password: Annotated[
        str,
        Field(
            min_length=1,
            max_length=256,
            description="your password again: a stolen session must not add its own key",
        ),
    ]
    totp_code: Annotated[
        str | None, Field(min_length=6, max_length=8, description="when TOTP is on")
    ] = None


class WebAuthnRemove(Strict):
    current_password: Annotated[
        str,
        Field(
            min_length=1,
            max_length=256,
            description="your password again: a stolen session must not strip your keys",
        ),
    ]


class WebAuthnSignIn(Strict):
    pending: Annotated[
        str, Field(min_length=10, max_length=100, description="from the 401 of /auth/login")
    ]
    credential: Credential


class SecondFactorStatus(BaseModel):
    totp_enabled: bool
    webauthn_credentials: int
    required: bool = Field(description="the operator's rule applies to you")
    enrolment_only: bool = Field(
        description="this session may only set up a second factor (then it works fully)"
    )


class SecondFactorPolicyPublic(BaseModel):
    required_for_staff: bool = Field(
        description="every operator staff member must sign in with TOTP or a security key"
    )


class SecondFactorPolicyUpdate(Strict):
    required_for_staff: bool


class SecondFactorsReset(BaseModel):
    user_id: uuid.UUID
    webauthn_removed: int
    totp_removed: int
    revoked: int = Field(description="sessions and API tokens revoked")
