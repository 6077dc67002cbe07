"""Access policies: rules must name objects of the policy's own tenant."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from tongdao.access import schemas as s
from tongdao.access.models import Policy
from tongdao.api.crud import Resource, ensure_unique
from tongdao.errors import ValidationError
from tongdao.network.declared import check_rule_prefixes
from tongdao.network.models import Device, Site
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Group, Tenant, User

_KIND_MODELS: dict[str, Any] = {"group": Group, "user": User, "device": Device, "site": Site}


def _check_references(ctx: Ctx, tenant_id: uuid.UUID, rules: list[s.Rule]) -> None:
    wanted: dict[str, set[uuid.UUID]] = {kind: set() for kind in _KIND_MODELS}
    for rule in rules:
        for src in rule.sources:
            wanted[src.kind].add(src.id)
        for dst in rule.destinations:
            if isinstance(dst, s.SiteTarget):
                wanted["site"].add(dst.id)
    found: dict[str, set[uuid.UUID]] = {}
    for kind, ids in wanted.items():
        model = _KIND_MODELS[kind]
        found[kind] = (
            set(
                ctx.session.scalars(
                    select(model.id).where(model.tenant_id == tenant_id, model.id.in_(ids))
                )
            )
            if ids
            else set()
        )
    problems: dict[str, str] = {}
    for i, rule in enumerate(rules):
        for j, src in enumerate(rule.sources):
            if src.id not in found[src.kind]:
                problems[f"rules.{i}.sources.{j}.id"] = f"no such {src.kind} in this tenant"
        for j, dst in enumerate(rule.destinations):
            if isinstance(dst, s.SiteTarget) and dst.id not in found["site"]:
                problems[f"rules.{i}.destinations.{j}.id"] = "no such site in this tenant"
    if problems:
        raise ValidationError(problems)


def _check_prefixes(ctx: Ctx, tenant_id: uuid.UUID, rules: list[s.Rule]) -> None:
    """``prefix`` destinations lie in the tenant's pools or approved declarations, or an
    operator allowance covers them (rules network.declared_only, network.no_default_or_public)."""
    named = [
        (f"rules.{i}.destinations.{j}.cidr", dst.cidr)
        for i, rule in enumerate(rules)
        for j, dst in enumerate(rule.destinations)
        if isinstance(dst, s.PrefixTarget)
    ]
    tenant = ctx.session.get(Tenant, tenant_id)
    assert tenant is not None
    check_rule_prefixes(ctx, tenant, named)


def prefix_destinations(ctx: Ctx, tenant_id: uuid.UUID) -> list[tuple[str, str]]:
    """(policy name, cidr) of every ``prefix`` destination in the tenant's policies."""
    found = []
    for policy in ctx.session.scalars(
        select(Policy).where(Policy.tenant_id == tenant_id).order_by(Policy.name)
    ):
        for rule in policy.rules:
            for dst in rule.get("destinations", []):
                if dst.get("kind") == "prefix" and isinstance(dst.get("cidr"), str):
                    found.append((policy.name, dst["cidr"]))
    return found


def references_to(ctx: Ctx, tenant_id: uuid.UUID, kind: str, object_id: uuid.UUID) -> list[str]:
    """Names of the tenant's policies whose rules name the object."""
    target = str(object_id)
    names = []
    for policy in ctx.session.scalars(select(Policy).where(Policy.tenant_id == tenant_id)):
        for rule in policy.rules:
            refs = [*rule.get("sources", []), *rule.get("destinations", [])]
            if any(r.get("kind") == kind and r.get("id") == target for r in refs):
                names.append(policy.name)
                break
    return names


def _dump_rules(rules: list[s.Rule]) -> list[dict[str, Any]]:
    return [rule.model_dump(mode="json") for rule in rules]


class PolicyResource(Resource[Policy]):
    name = "policies"
    label = "policy"
    model = Policy
    public = s.PolicyPublic
    create_schema = s.PolicyCreate
    update_schema = s.PolicyUpdate
    filters = s.PolicyFilters

    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> Policy:
        assert isinstance(data, s.PolicyCreate) and tenant is not None
        ensure_unique(ctx, Policy.name, data.name, tenant_id=tenant.id, what="a policy")
        _check_references(ctx, tenant.id, data.rules)
        _check_prefixes(ctx, tenant.id, data.rules)
        policy = Policy(
            tenant_id=tenant.id,
            name=data.name,
            description=data.description,
            enabled=data.enabled,
            rules=_dump_rules(data.rules),
        )
        ctx.session.add(policy)
        return policy

    def update(self, ctx: Ctx, obj: Policy, data: Any) -> Policy:
        assert isinstance(data, s.PolicyUpdate)
        if data.name is not None:
            ensure_unique(
                ctx, Policy.name, data.name, own=obj.id, tenant_id=obj.tenant_id, what="a policy"
            )
            obj.name = data.name
        if data.description is not None:
            obj.description = data.description
        if data.enabled is not None:
            obj.enabled = data.enabled
        if data.rules is not None:
            _check_references(ctx, obj.tenant_id, data.rules)
            _check_prefixes(ctx, obj.tenant_id, data.rules)
            obj.rules = _dump_rules(data.rules)
        return obj
