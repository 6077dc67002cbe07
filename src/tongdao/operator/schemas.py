"""Schema families for the operator profile, its licences and shareholders."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from tongdao.compliance import licensing
from tongdao.compliance import provinces as pv
from tongdao.compliance.schemas import WatchStatus
from tongdao.schemas import (
    Email,
    LongName,
    OneLine,
    OptionalText,
    Phone,
    PublicModel,
    Strict,
    Uscc,
)


def _licence_number(value: str) -> str:
    # Format, province prefix and service codes (rule licence.number_format).
    return licensing.parse_licence_number(value).text


def _service_code(value: str) -> str:
    text = value.strip().upper()
    if text not in licensing.known_service_codes():
        raise ValueError(f"{value!r} is not a telecom service code of the catalogue (e.g. B13)")
    return text


def _province(value: str) -> str:
    text = licensing.normalise_provinces([value.strip()])[0]
    if text != pv.NATIONWIDE and text not in pv.PROVINCES:
        raise ValueError(
            f"{value!r} is not a GB/T 2260 province code (e.g. 11 Beijing) or 'nationwide'"
        )
    return text


LicenceNumber = Annotated[str, Field(max_length=64), AfterValidator(_licence_number)]
ServiceCode = Annotated[str, Field(max_length=4), AfterValidator(_service_code)]
Province = Annotated[
    str,
    Field(max_length=10, description="GB/T 2260 province code, or 'nationwide' (stored as '*')"),
    AfterValidator(_province),
]
Stake = Annotated[
    Decimal,
    Field(gt=0, le=100, max_digits=5, decimal_places=2),
    AfterValidator(lambda d: d.quantize(Decimal("0.01"))),
]


class OperatorUpdate(Strict):
    legal_name: LongName
    legal_name_zh: OptionalText = ""
    uscc: Uscc
    address: Annotated[str, Field(max_length=300), OneLine] = ""
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


LicenceStatus = Literal["valid", "expired", "not_yet_valid"]


class _Validity(BaseModel):
    @model_validator(mode="after")
    def _order(self) -> _Validity:
        start, end = getattr(self, "valid_from", None), getattr(self, "valid_to", None)
        if start is not None and end is not None and end <= start:
            raise ValueError("the last day of validity must be after the first")
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
    status: LicenceStatus = Field(description="today, in China: valid, expired or not_yet_valid")
    days_to_expiry: int = Field(description="days left after today; negative once expired")
    expiry_warning_days: int | None = Field(
        description="the warning reached (90, 30 or 7 days before expiry), or null"
    )


# --- the compliance dashboard ----------------------------------------------------------------
class LicenceWarning(BaseModel):
    licence_id: uuid.UUID
    number: str
    valid_to: date
    days_to_expiry: int
    warning_days: int = Field(description="90, 30 or 7: the warning this licence has reached")
    message: str


class RuleProblem(BaseModel):
    rule: str = Field(description="the rule's id, e.g. ownership.foreign_cap")
    source: str = Field(description="where the rule comes from")
    message: str


class OwnershipSummary(BaseModel):
    total_percent: Decimal
    foreign_percent: Decimal
    service_code: str
    foreign_cap: str | None = Field(description="e.g. 'at most 50%' for B13; null: no cap")


class ComplianceStatus(BaseModel):
    """What the operator dashboard shows: licence warnings, ownership and rule problems."""

    rules_version: str
    today: date = Field(description="the date in China the status was computed for")
    service_code: str
    covered_provinces: list[str] = Field(
        description="provinces the valid licences for the service code cover ('*': nationwide)"
    )
    warnings: list[LicenceWarning]
    ownership: OwnershipSummary
    problems: list[RuleProblem]
    watch: WatchStatus = Field(
        description="the scheduled compliance check: rules found unmet for the service in "
        "place, and the countdown to the suspension of the tenants they affect"
    )


class ShareholderCreate(Strict):
    name: LongName
    foreign: bool
    stake_percent: Stake


class ShareholderUpdate(Strict):
    name: LongName | None = None
    foreign: bool | None = None
    stake_percent: Stake | None = None


class ShareholderRegister(Strict):
    """The whole shareholder register, replaced in one request (a transfer is one change)."""

    shareholders: list[ShareholderCreate] = Field(min_length=1, max_length=100)


class ShareholderPublic(PublicModel):
    name: str
    foreign: bool
    stake_percent: Decimal
