"""The operator profile (a single row), licences and shareholders."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

from tongdao.api.crud import Resource
from tongdao.compliance import licensing, rules, watch
from tongdao.compliance import provinces as pv
from tongdao.compliance.uscc import check_uscc
from tongdao.errors import Conflict, NotFound, ValidationError
from tongdao.network.models import Pop, PopState
from tongdao.operator import schemas as s
from tongdao.operator.models import Licence, OperatorProfile, Shareholder
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Tenant, TenantState


def get_profile(ctx: Ctx) -> OperatorProfile:
    profile = ctx.session.scalar(select(OperatorProfile).order_by(OperatorProfile.created_at))
    if profile is None:
        raise NotFound("the operator profile is not set up yet; PUT it first")
    return profile


def put_profile(ctx: Ctx, data: s.OperatorUpdate) -> OperatorProfile:
    from tongdao.billing.service import SELLER_ADDRESS_PHONE_MAX, seller_address_phone

    # Every invoice's seller address and phone is the two joined: they must fit it together,
    # or every monthly run would refuse each tenant's invoice.
    length = len(seller_address_phone(data.address, data.contact_phone))
    limit = SELLER_ADDRESS_PHONE_MAX
    if length > limit:
        raise ValidationError(
            {
                "address": f"with the contact phone the address is {length} characters; an "
                f"invoice's seller address and phone hold {limit}"
            }
        )
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

    def to_public(self, ctx: Ctx, obj: Licence) -> BaseModel:
        return licence_public(obj, licensing.china_today(ctx.runtime.clock()))

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Licence:
        assert isinstance(data, s.LicenceCreate)
        licensing.raise_problems(
            licensing.licence_problems(
                licensing.parse_licence_number(data.number),
                data.service_codes,
                data.issuing_authority,
                data.provinces,
                data.valid_from,
                data.valid_to,
            )
        )
        if ctx.session.scalar(select(Licence.id).where(Licence.number == data.number)):
            raise Conflict("this licence is recorded already", {"number": "already recorded"})
        licence = Licence(**data.model_dump())
        ctx.session.add(licence)
        return licence

    def update(self, ctx: Ctx, obj: Licence, data: Any) -> Licence:
        changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
        merged = {
            key: changes.get(key, getattr(obj, key))
            for key in ("service_codes", "issuing_authority", "provinces", "valid_from", "valid_to")
        }
        licensing.raise_problems(
            licensing.licence_problems(licensing.parse_licence_number(obj.number), **merged)
        )
        for key, value in changes.items():
            setattr(obj, key, value)
        return obj


def licence_public(licence: Licence, today: date) -> s.LicencePublic:
    return s.LicencePublic.model_validate(
        {
            **{k: getattr(licence, k) for k in s.LicencePublic.model_fields if hasattr(licence, k)},
            "status": licensing.licence_state(licence, today),
            "days_to_expiry": licensing.days_to_expiry(licence, today),
            "expiry_warning_days": licensing.expiry_warning(licence, today),
        }
    )


def _problem(rule_id: str, message: str) -> s.RuleProblem:
    return s.RuleProblem(rule=rule_id, source=rules.rule(rule_id).source, message=message)


def compliance_status(ctx: Ctx) -> s.ComplianceStatus:
    """Licence warnings, ownership and what the rules find wrong today, for the dashboard."""
    today = licensing.china_today(ctx.runtime.clock())
    code = licensing.service_code()
    licences = list(ctx.session.scalars(select(Licence).order_by(Licence.valid_to)))
    holders = list(ctx.session.scalars(select(Shareholder)))
    current = [
        lic
        for lic in licences
        if code in lic.service_codes and licensing.licence_state(lic, today) == "valid"
    ]
    covered = sorted({p for lic in current for p in lic.provinces})
    if pv.NATIONWIDE in covered:
        covered = [pv.NATIONWIDE]

    warnings = []
    for lic in licences:
        level = licensing.expiry_warning(lic, today)
        if level is None:
            continue
        left = licensing.days_to_expiry(lic, today)
        warnings.append(
            s.LicenceWarning(
                licence_id=lic.id,
                number=lic.number,
                valid_to=lic.valid_to,
                days_to_expiry=left,
                warning_days=level,
                message=(
                    f"licence {lic.number} ({', '.join(lic.service_codes)}) expires on "
                    f"{lic.valid_to.isoformat()}, in {left} days; renew it and record the "
                    "renewal (rule licence.validity)"
                ),
            )
        )

    problems: list[s.RuleProblem] = []
    found = licensing.coverage_refusal(
        licences, today, licensing.Place("service", in_china=False, province=None)
    )
    if found is not None:
        problems.append(_problem(found.rule_id, found.detail))
    valid_codes = {
        c
        for lic in licences
        if licensing.licence_state(lic, today) == "valid"
        for c in lic.service_codes
    }
    for held in sorted(valid_codes) or [code]:
        found = licensing.ownership_refusal(holders, held)
        if found is not None and all(p.message != found.detail for p in problems):
            problems.append(_problem(found.rule_id, found.detail))
    if current:
        problems += _uncovered_in_service(ctx, licences, today)

    owned = licensing.ownership(holders)
    cap = licensing.foreign_cap(code)
    return s.ComplianceStatus(
        rules_version=rules.VERSION,
        today=today,
        service_code=code,
        covered_provinces=covered,
        warnings=warnings,
        ownership=s.OwnershipSummary(
            total_percent=owned.total,
            foreign_percent=owned.foreign,
            service_code=code,
            foreign_cap=cap.text() if cap else None,
        ),
        problems=problems,
        watch=watch.status(ctx.session, ctx.runtime.clock()),
    )


def _uncovered_in_service(ctx: Ctx, licences: list[Licence], today: date) -> list[s.RuleProblem]:
    """Active tenants (by province) and PoPs that today's licences no longer cover."""
    problems = []
    tenants: dict[str | None, list[str]] = {}
    for name, division in ctx.session.execute(
        select(Tenant.name_en, Tenant.division_code)
        .where(Tenant.state == TenantState.ACTIVE)
        .order_by(Tenant.name_en)
    ):
        tenants.setdefault(pv.province_of_division(division), []).append(name)
    for province, names in tenants.items():
        shown = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
        place = licensing.Place(f"{len(names)} active tenant(s) ({shown})", True, province)
        found = licensing.coverage_refusal(licences, today, place)
        if found is not None:
            problems.append(_problem(found.rule_id, f"in service: {found.detail}"))
    for name, region, country in ctx.session.execute(
        select(Pop.name, Pop.region, Pop.country).where(Pop.state == PopState.ACTIVE)
    ):
        found = licensing.coverage_refusal(
            licences, today, licensing.pop_place(name, region, country)
        )
        if found is not None:
            problems.append(_problem(found.rule_id, f"in service: {found.detail}"))
    return problems


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


def replace_register(ctx: Ctx, data: s.ShareholderRegister) -> list[Shareholder]:
    """Replace the whole shareholder register, validated as a whole, in the caller's
    transaction: a transfer from one holder to another is one change and the register is
    never invalid in between. Holders are matched by name (kept rows keep their id and their
    audit trail show the stake moving); others are added or removed. Refused (422, by field
    ``shareholders.<i>.<field>``): a name twice, or stakes not adding up to 100%. The foreign
    stake is recorded as it is: over the cap, activations are refused and the scheduled
    compliance check starts its grace period (tongdao.compliance.watch)."""
    need = Decimal(rules.rule("ownership.foreign_cap").param("total_percent"))
    errors: dict[str, str] = {}
    seen: dict[str, int] = {}
    for i, holder in enumerate(data.shareholders):
        key = holder.name.strip().casefold()
        if key in seen:
            errors[f"shareholders.{i}.name"] = f"listed twice (also shareholder {seen[key] + 1})"
        seen.setdefault(key, i)
    total = sum((h.stake_percent for h in data.shareholders), Decimal(0))
    if total != need:
        errors["shareholders"] = f"the stakes add up to {total}%, not {need}%"
    if errors:
        raise ValidationError(errors)
    current = {h.name.strip().casefold(): h for h in ctx.session.scalars(select(Shareholder))}
    kept: list[Shareholder] = []
    for holder in data.shareholders:
        row = current.pop(holder.name.strip().casefold(), None)
        if row is None:
            row = Shareholder(**holder.model_dump())
            ctx.session.add(row)
        else:
            row.name, row.foreign, row.stake_percent = (
                holder.name,
                holder.foreign,
                holder.stake_percent,
            )
        kept.append(row)
    for gone in current.values():
        ctx.session.delete(gone)
    return kept
