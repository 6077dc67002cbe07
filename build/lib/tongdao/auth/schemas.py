"""Schemas for login, the caller's own account, TOTP and API tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tongdao.schemas import Name, OneLine, Strict
from tongdao.tenancy.schemas import UserPublic


class LoginRequest(Strict):
    email: Annotated[str, Field(min_length=3, max_length=320), OneLine]
    password: Annotated[str, Field(min_length=1, max_length=256)]
    totp_code: Annotated[str, Field(min_length=6, max_length=8)] | None = None


class LoginResponse(BaseModel):
    token: str
    expires_at: datetime
    user: UserPublic


class PasswordChange(Strict):
    current_password: Annotated[str, Field(min_length=1, max_length=256)]
    new_password: Annotated[str, Field(min_length=1, max_length=256)]


class TotpSetup(BaseModel):
    secret: str
    otpauth_uri: str


class TotpCode(Strict):
    code: Annotated[str, Field(min_length=6, max_length=8)]


class TotpConfirm(TotpCode):
    """Turning TOTP on takes the password too: a stolen session must not be able to bind the
    account to an authenticator its owner does not hold."""

    current_password: Annotated[str, Field(min_length=1, max_length=256)]


class TotpDisable(Strict):
    code: Annotated[str, Field(min_length=6, max_length=8)]
    current_password: Annotated[str, Field(min_length=1, max_length=256)]
    new_password: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=256,
            description="required when the current password is too weak to stand alone "
            "(shorter than 15 characters, or listed)",
        ),
    ] = None


class TokenCreate(Strict):
    name: Name
    scopes: Annotated[list[Literal["read", "write"]], Field(min_length=1, max_length=2)] = ["read"]
    expires_in_days: Annotated[
        int, Field(ge=1, le=365, description="at most TONGDAO_API_TOKEN_MAX_DAYS (90 by default)")
    ] = 90
    current_password: Annotated[
        str,
        Field(
            min_length=1,
            max_length=256,
            description="your password again: a token outlives the session that mints it",
        ),
    ]
    totp_code: Annotated[
        str | None, Field(min_length=6, max_length=8, description="when TOTP is on")
    ] = None


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    kind: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="shown once; only its hash is stored")


class SessionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    source_ip: str | None
    user_agent: str | None
    current: bool = Field(default=False, description="the session making this request")


class SessionsRevoked(BaseModel):
    revoked: int


class SignInUnlocked(BaseModel):
    user_id: uuid.UUID
    cleared_failures: int = Field(description="failed sign-ins that no longer count")
