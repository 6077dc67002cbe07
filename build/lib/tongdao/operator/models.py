"""The operator running Tongdao: its legal entity, licences and shareholders."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class OperatorProfile(TimestampedModel):
    __tablename__ = "operator_profile"
    __audit_type__ = "operator"

    legal_name: Mapped[str] = mapped_column(String(200))
    legal_name_zh: Mapped[str] = mapped_column(String(200), default="")
    uscc: Mapped[str] = mapped_column(String(18))
    uscc_checksum_ok: Mapped[bool] = mapped_column(default=True)
    address: Mapped[str] = mapped_column(String(300), default="")
    contact_email: Mapped[str] = mapped_column(String(320), default="")
    contact_phone: Mapped[str] = mapped_column(String(32), default="")


class Licence(TimestampedModel):
    __tablename__ = "licences"
    __audit_type__ = "licence"

    number: Mapped[str] = mapped_column(String(64), unique=True)
    service_codes: Mapped[list[str]]
    issuing_authority: Mapped[str] = mapped_column(String(200))
    provinces: Mapped[list[str]]
    valid_from: Mapped[date]
    valid_to: Mapped[date]


class Shareholder(TimestampedModel):
    __tablename__ = "shareholders"
    __audit_type__ = "shareholder"

    name: Mapped[str] = mapped_column(String(200))
    foreign: Mapped[bool]
    stake_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
