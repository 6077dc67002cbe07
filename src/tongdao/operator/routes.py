"""Routes for the operator profile, licences and shareholders."""

from __future__ import annotations

from fastapi import APIRouter

from tongdao.api.crud import mount
from tongdao.api.deps import GuardDep
from tongdao.auth.permissions import Action
from tongdao.compliance import watch
from tongdao.compliance.schemas import WatchSettings, WatchStatus
from tongdao.operator import service
from tongdao.operator.schemas import (
    ComplianceStatus,
    OperatorPublic,
    OperatorUpdate,
    ShareholderPublic,
    ShareholderRegister,
)
from tongdao.operator.service import LicenceResource, ShareholderResource

router = APIRouter()


@router.get("/operator", tags=["operator"], operation_id="get_operator")
def get_operator(guard: GuardDep) -> OperatorPublic:
    guard.require("operator", Action.READ)
    return OperatorPublic.model_validate(service.get_profile(guard.ctx))


@router.put("/operator", tags=["operator"], operation_id="put_operator")
def put_operator(guard: GuardDep, body: OperatorUpdate) -> OperatorPublic:
    guard.require("operator", Action.UPDATE)
    profile = service.put_profile(guard.ctx, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return OperatorPublic.model_validate(profile)


@router.get(
    "/operator/compliance",
    tags=["operator"],
    operation_id="get_operator_compliance",
    summary="Licence expiry warnings, ownership and rule problems (the operator dashboard)",
)
def get_operator_compliance(guard: GuardDep) -> ComplianceStatus:
    guard.require("operator", Action.READ)
    return service.compliance_status(guard.ctx)


@router.get(
    "/operator/compliance/watch",
    tags=["operator"],
    operation_id="get_compliance_watch",
    summary="The scheduled compliance check: grace period and open breaches with their countdown",
)
def get_compliance_watch(guard: GuardDep) -> WatchStatus:
    guard.require("operator", Action.READ)
    return watch.status(guard.ctx.session, guard.ctx.runtime.clock())


@router.put(
    "/operator/compliance/watch",
    tags=["operator"],
    operation_id="put_compliance_watch",
    summary="Set the grace period (days, 1-30) before tenants are suspended for an unmet rule",
)
def put_compliance_watch(guard: GuardDep, body: WatchSettings) -> WatchStatus:
    guard.require("operator", Action.UPDATE)
    watch.put_settings(guard.ctx, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return watch.status(guard.ctx.session, guard.ctx.runtime.clock())


@router.put(
    "/operator/shareholders",
    tags=["operator"],
    operation_id="put_operator_shareholders",
    summary="Replace the whole shareholder register in one change (stakes add up to 100%)",
)
def put_operator_shareholders(
    guard: GuardDep, body: ShareholderRegister
) -> list[ShareholderPublic]:
    guard.require("operator", Action.UPDATE)
    rows = service.replace_register(guard.ctx, body)
    guard.ctx.session.flush()
    guard.ctx.session.commit()
    return [ShareholderPublic.model_validate(row) for row in rows]


mount(router, LicenceResource(), "/operator/licences", tags=["operator"])
mount(router, ShareholderResource(), "/operator/shareholders", tags=["operator"])
