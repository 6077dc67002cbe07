"""The operator profile (a single row), licences and shareholders."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from tongdao.api.crud import Resource
from tongdao.compliance.uscc import check_uscc
from tongdao.errors import Conflict, NotFound, ValidationError
from tongdao.operator import schemas as s
from tongdao.operator.models import Licence, OperatorProfile, Shareholder
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant


def get_profile(ctx: Ctx) -> OperatorProfile:
    profile = ctx.session.scalar(select(OperatorProfile).order_by(OperatorProfile.created_at))
    if profile is None:
        raise NotFound("the operator profile is not set up yet; PUT it first")
    return profile


def put_profile(ctx: Ctx, data: s.OperatorUpdate) -> OperatorProfile:
    profile = ctx.session.scalar(select(OperatorProfile).order_by(OperatorProfile.created_at))
    check = check_uscc(data.uscc)
    values = {
        **data.model_dump(exclude={"uscc", "contact_email"}),
        "contact_email": data.contact_email or "",
        "uscc": check.code,
        "uscc_checksum_ok": check.checksum_ok,
    }
    if profile is None:
        profile = OperatorProfile(**values)
        ctx.session.add(profile)
    else:
        for key, value in values.items():
            setattr(profile, key, value)
    return profile


class LicenceResource(Resource[Licence]):
    name = "operator"
    label = "licence"
    plural = "licences"
    model = Licence
    public = s.LicencePublic
    create_schema = s.LicenceCreate
    update_schema = s.LicenceUpdate
    tenant_scoped = False

    def tenant_column(self) -> Any:
        return None

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Licence:
        assert isinstance(data, s.LicenceCreate)
        if ctx.session.scalar(select(Licence.id).where(Licence.number == data.number)):
            raise Conflict("this licence is recorded already", {"number": "already recorded"})
        licence = Licence(**data.model_dump())
        ctx.session.add(licence)
        return licence

    def update(self, ctx: Ctx, obj: Licence, data: Any) -> Licence:
        changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
        start = changes.get("valid_from", obj.valid_from)
        end = changes.get("valid_to", obj.valid_to)
        if end <= start:
            raise ValidationError({"valid_to": "must be after valid_from"})
        for key, value in changes.items():
            setattr(obj, key, value)
        return obj


class ShareholderResource(Resource[Shareholder]):
    name = "operator"
    label = "shareholder"
    plural = "shareholders"
    model = Shareholder
    public = s.ShareholderPublic
    create_schema = s.ShareholderCreate
    update_schema = s.ShareholderUpdate
    tenant_scoped = False

    def tenant_column(self) -> Any:
        return None

    def _total_without(self, ctx: Ctx, own: uuid.UUID | None) -> Any:
        stmt = select(func.coalesce(func.sum(Shareholder.stake_percent), 0))
        if own is not None:
            stmt = stmt.where(Shareholder.id != own)
        return ctx.session.scalar(stmt)

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Shareholder:
        assert isinstance(data, s.ShareholderCreate)
        if self._total_without(ctx, None) + data.stake_percent > 100:
            raise ValidationError({"stake_percent": "stakes would add up to more than 100%"})
        holder = Shareholder(**data.model_dump())
        ctx.session.add(holder)
        return holder

    def update(self, ctx: Ctx, obj: Shareholder, data: Any) -> Shareholder:
        changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
        if "stake_percent" in changes and (
            self._total_without(ctx, obj.id) + changes["stake_percent"] > 100
        ):
            raise ValidationError({"stake_percent": "stakes would add up to more than 100%"})
        for key, value in changes.items():
            setattr(obj, key, value)
        return obj
