"""Annotated field types shared by every resource's schema family."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)

from tongdao import validation
from tongdao.compliance.uscc import check_uscc


def _uscc(value: str) -> str:
    result = check_uscc(value)
    if result.errors:
        raise ValueError("; ".join(result.errors))
    return result.code


def _cidr(value: str) -> str:
    return str(validation.network(value))


# The one rule for text meant to be one line (names, hosts, references, titles, codes): no
# control characters, line or paragraph separators or bidi overrides, so such a value can never
# start a line of a file it is written into (a wireguard.conf, a CSV). It goes last, after the
# string constraints: ``Annotated[str, StringConstraints(...), OneLine]``.
OneLine = AfterValidator(validation.single_line)
# Text that may span lines (notices, reasons, descriptions): keeps line breaks and tabs, refuses
# the other control characters. Such text never reaches a configuration file.
MultiLine = AfterValidator(validation.multi_line)

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), OneLine
]
LongName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), OneLine
]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), OneLine]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), MultiLine]
Reference = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), OneLine
]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32), OneLine]
# NFKC first (full-width forms become ASCII before the form is checked), then lower case and
# no mixed-script look-alikes (validation.email_address).
Email = Annotated[
    EmailStr,
    BeforeValidator(validation.nfkc),
    AfterValidator(validation.email_address),
    Field(max_length=320),
]
WireGuardKey = Annotated[str, AfterValidator(validation.wireguard_key)]
Cidr = Annotated[str, Field(max_length=43), AfterValidator(_cidr)]
Country = Annotated[str, Field(max_length=2, min_length=2), AfterValidator(validation.country)]
Region = Annotated[str, Field(max_length=16), AfterValidator(validation.region)]
HostOrIp = Annotated[str, Field(max_length=253), AfterValidator(validation.hostname_or_ip)]
Mobile = Annotated[str, Field(max_length=32), AfterValidator(validation.mobile)]
Uscc = Annotated[str, Field(max_length=32), AfterValidator(_uscc)]
Port = Annotated[int, Field(ge=1, le=65535)]
# A point in time from a request (filters, windows): UTC, 1970-01-01 to 9998-12-31.
UtcDateTime = Annotated[datetime, AfterValidator(validation.utc_instant)]


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_max_length=10_000)


class PublicModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
