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


class TokenCreate(Strict):
    name: Name
    scopes: Annotated[list[Literal["read", "write"]], Field(min_length=1, max_length=2)] = ["read"]
    expires_in_days: Annotated[int, Field(ge=1, le=365)] = 90


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
