"""Schema families for the operator profile, its licences and shareholders."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from tongdao.compliance.uscc import PROVINCE_PREFIXES
from tongdao.schemas import Email, LongName, OptionalText, Phone, PublicModel, Strict, Uscc

# Optional province prefix (e.g. 京), service classes joined by '.', '-', year and serial.
LICENCE_NUMBER = re.compile(r"^[\u4e00-\u9fff]?[A-Z]\d(?:\.[A-Z]\d)*-\d{4}\d{4}$")
SERVICE_CODE = re.compile(r"^[AB][12]\d?$")


def _licence_number(value: str) -> str:
    text = value.strip().upper()
    if not LICENCE_NUMBER.match(text):
        raise ValueError(
            "a licence number looks like B1.B2-20100266 or 京B1-20201234: optional province, "
            "service classes joined by '.', '-', 4-digit year and 4-digit serial"
        )
    return text


def _service_code(value: str) -> str:
    text = value.strip().upper()
    if not SERVICE_CODE.match(text):
        raise ValueError(f"{value!r} is not a telecom service code like B13")
    return text


def _province(value: str) -> str:
    text = value.strip()
    if text != "*" and text not in PROVINCE_PREFIXES:
        raise ValueError(f"{value!r} is not a GB/T 2260 province code (e.g. 11) or '*'")
    return text


LicenceNumber = Annotated[str, Field(max_length=64), AfterValidator(_licence_number)]
ServiceCode = Annotated[str, Field(max_length=4), AfterValidator(_service_code)]
Province = Annotated[str, Field(max_length=2), AfterValidator(_province)]
Stake = Annotated[
    Decimal,
    Field(gt=0, le=100, max_digits=5, decimal_places=2),
    AfterValidator(lambda d: d.quantize(Decimal("0.01"))),
]


class OperatorUpdate(Strict):
    legal_name: LongName
    legal_name_zh: OptionalText = ""
    uscc: Uscc
    address: Annotated[str, Field(max_length=300)] = ""
    contact_email: Email | None = None
    contact_phone: Phone = ""


class OperatorPublic(PublicModel):
    legal_name: str
    legal_name_zh: str
    uscc: str
    uscc_checksum_ok: bool
    address: str
    contact_email: str
    contact_phone: str


class _Validity(BaseModel):
    @model_validator(mode="after")
    def _order(self) -> _Validity:
        start, end = getattr(self, "valid_from", None), getattr(self, "valid_to", None)
        if start is not None and end is not None and end <= start:
            raise ValueError("valid_to must be after valid_from")
        return self


class LicenceCreate(Strict, _Validity):
    number: LicenceNumber
    service_codes: Annotated[list[ServiceCode], Field(min_length=1, max_length=20)]
    issuing_authority: LongName
    provinces: Annotated[list[Province], Field(min_length=1, max_length=40)]
    valid_from: date
    valid_to: date


class LicenceUpdate(Strict, _Validity):
    service_codes: Annotated[list[ServiceCode], Field(min_length=1, max_length=20)] | None = None
    issuing_authority: LongName | None = None
    provinces: Annotated[list[Province], Field(min_length=1, max_length=40)] | None = None
    valid_from: date | None = None
    valid_to: date | None = None


class LicencePublic(PublicModel):
    number: str
    service_codes: list[str]
    issuing_authority: str
    provinces: list[str]
    valid_from: date
    valid_to: date


class ShareholderCreate(Strict):
    name: LongName
    foreign: bool
    stake_percent: Stake


class ShareholderUpdate(Strict):
    name: LongName | None = None
    foreign: bool | None = None
    stake_percent: Stake | None = None


class ShareholderPublic(PublicModel):
    name: str
    foreign: bool
    stake_percent: Decimal
