"""A tenant's OpenID Provider settings and its e-mail domain claims.

Rules (one home, used by the API and the console):

* the issuer is an ``https`` URL (``http`` only on a loopback host, for tests and a provider
  on the same machine); the client secret is sealed (``sso.client_secret``) and never shown;
* every allowed e-mail domain is a domain this tenant claimed and the compliance officer
  approved; a group mapping names groups of this tenant;
* a domain is approved for one tenant at most; a claim in use by the provider is not
  withdrawn.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tongdao.config import Environment
from tongdao.errors import Conflict, NotFound, ValidationError
from tongdao.runtime import Ctx
from tongdao.sso.models import ClaimState, EmailTrust, SsoDomainClaim, SsoProvider
from tongdao.sso.schemas import DomainClaimIn, DomainDecisionIn, ProviderIn, ProviderPublic
from tongdao.tenancy.models import Group

SECRET_PURPOSE = "sso.client_secret"  # noqa: S105 - a purpose, not a secret
CALLBACK_PATH = "/console/sso/callback"


def redirect_uri(ctx: Ctx) -> str:
    """The redirect URI the tenant registers at its provider (the console's callback)."""
    return ctx.runtime.settings.link_base_url + CALLBACK_PATH


def sign_in_link(ctx: Ctx, tenant_id: uuid.UUID) -> str:
    """A link straight to the tenant's provider, for the admin to hand to employees."""
    return f"{ctx.runtime.settings.link_base_url}/console/sign-in/sso?tenant={tenant_id}"


def normalise_domain(value: str) -> str:
    """``Example.COM.`` -> ``example.com``; an internationalised name in its ``xn--`` form.
    ValueError for anything that is not a DNS name with at least two labels."""
    text = value.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("is not a valid domain name") from exc
    labels = text.split(".")
    if len(labels) < 2 or len(text) > 253:
        raise ValueError("is not a valid domain name")
    for label in labels:
        if not 1 <= len(label) <= 63 or label.startswith("-") or label.endswith("-"):
            raise ValueError("is not a valid domain name")
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            raise ValueError("is not a valid domain name")
    return text


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space: carrier-grade NAT, VPN tunnels
        "172.16.0.0/12",
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking networks, often used inside data centres
        "fc00::/7",
        "fec0::/10",
    )
)


def internal_address(address: str) -> bool:
    """True for an address of the operator's own network or this machine: private,
    shared, loopback, link-local (cloud metadata), multicast, reserved, unspecified; an
    IPv4-mapped IPv6 address as its IPv4 address. False for a name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address == "localhost"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in INTERNAL_NETWORKS if net.version == ip.version)
    )


def _public(host: str) -> bool:
    """False for an internal address (Tongdao fetches the provider's discovery from there);
    a name is checked again when it is resolved, before every fetch
    (tongdao.sso.oidc.check_endpoint)."""
    return not internal_address(host)


def check_issuer(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be the provider's https:// issuer URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError("must use https:// (http:// only for a provider on this machine)")
    if not (_public(parts.hostname) or _loopback(parts.hostname)):
        raise ValueError("must be a provider on the public Internet, not a private address")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be a plain URL with no query, fragment or user")
    return value.rstrip("/")


def get_provider(ctx: Ctx, tenant_id: uuid.UUID) -> SsoProvider | None:
    return ctx.session.scalar(select(SsoProvider).where(SsoProvider.tenant_id == tenant_id))


def require_provider(ctx: Ctx, tenant_id: uuid.UUID) -> SsoProvider:
    provider = get_provider(ctx, tenant_id)
    if provider is None:
        raise NotFound("the tenant has no identity provider")
    return provider


def approved_domains(ctx: Ctx, tenant_id: uuid.UUID) -> set[str]:
    return set(
        ctx.session.scalars(
            select(SsoDomainClaim.domain).where(
                SsoDomainClaim.tenant_id == tenant_id,
                SsoDomainClaim.state == ClaimState.APPROVED,
            )
        )
    )


def to_public(ctx: Ctx, provider: SsoProvider) -> ProviderPublic:
    return ProviderPublic(
        id=provider.id,
        tenant_id=provider.tenant_id,
        name=provider.name,
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret_set=bool(provider.client_secret_sealed),
        allowed_domains=list(provider.allowed_domains),
        groups_claim=provider.groups_claim,
        group_map={k: uuid.UUID(str(v)) for k, v in provider.group_map.items()},
        jit_users=provider.jit_users,
        email_trust=EmailTrust(provider.email_trust),
        enabled=provider.enabled,
        redirect_uri=redirect_uri(ctx),
        updated_at=provider.updated_at,
    )


def put_provider(ctx: Ctx, tenant_id: uuid.UUID, data: ProviderIn) -> SsoProvider:
    """Create or replace the tenant's provider settings (422 keyed by field)."""
    provider = get_provider(ctx, tenant_id)
    errors: dict[str, str] = {}
    issuer = data.issuer
    try:
        issuer = check_issuer(data.issuer)
    except ValueError as exc:
        errors["issuer"] = str(exc)
    else:
        # A provider on this machine is for tests and trials: in production a tenant admin
        # must not make the server call its own loopback services.
        local = _loopback(urlsplit(issuer).hostname or "")
        if local and ctx.runtime.settings.env == Environment.PRODUCTION:
            errors["issuer"] = "must be a provider on the public Internet, not a private address"
    if provider is None and not data.client_secret:
        errors["client_secret"] = "required: the secret the provider gave for this client"  # noqa: S105
    approved = approved_domains(ctx, tenant_id)
    domains: list[str] = []
    for i, raw in enumerate(data.allowed_domains):
        try:
            domain = normalise_domain(raw)
        except ValueError as exc:
            errors[f"allowed_domains.{i}"] = str(exc)
            continue
        if domain not in approved:
            errors[f"allowed_domains.{i}"] = (
                "is not a domain of this tenant approved by the compliance officer: claim it first"
            )
        elif domain not in domains:
            domains.append(domain)
    if data.group_map:
        wanted = set(data.group_map.values())
        found = set(
            ctx.session.scalars(
                select(Group.id).where(Group.tenant_id == tenant_id, Group.id.in_(wanted))
            )
        )
        for value, group_id in data.group_map.items():
            if group_id not in found:
                errors[f"group_map.{value}"] = "no such group in this tenant"
        if not data.groups_claim:
            errors["groups_claim"] = "required when groups are mapped"
    if errors:
        raise ValidationError(errors)
    values: dict[str, Any] = {
        "name": data.name,
        "issuer": issuer,
        "client_id": data.client_id,
        "allowed_domains": domains,
        "groups_claim": data.groups_claim,
        "group_map": {k: str(v) for k, v in sorted(data.group_map.items())},
        "jit_users": data.jit_users,
        "email_trust": str(data.email_trust),
        "enabled": data.enabled,
    }
    if data.client_secret:
        values["client_secret_sealed"] = ctx.runtime.cipher.seal(data.client_secret, SECRET_PURPOSE)
    if provider is None:
        provider = SsoProvider(tenant_id=tenant_id, **values)
        ctx.session.add(provider)
    else:
        for key, value in values.items():
            if getattr(provider, key) != value:
                setattr(provider, key, value)
    ctx.session.flush()
    return provider


def delete_provider(ctx: Ctx, tenant_id: uuid.UUID) -> None:
    ctx.session.delete(require_provider(ctx, tenant_id))
    ctx.session.flush()


def provider_for_email(ctx: Ctx, email: str) -> SsoProvider | None:
    """The provider of the tenant holding an approved claim to the address's domain, if it
    is on and allows the domain."""
    try:
        domain = normalise_domain(email.rpartition("@")[2])
    except ValueError:
        return None
    tenant_id = ctx.session.scalar(
        select(SsoDomainClaim.tenant_id).where(
            SsoDomainClaim.domain == domain, SsoDomainClaim.state == ClaimState.APPROVED
        )
    )
    if tenant_id is None:
        return None
    provider = get_provider(ctx, tenant_id)
    if provider is None or not provider.enabled or domain not in provider.allowed_domains:
        return None
    return provider


# --- e-mail domain claims ---------------------------------------------------------------------


def list_claims(ctx: Ctx, tenant_id: uuid.UUID | None) -> list[SsoDomainClaim]:
    stmt = select(SsoDomainClaim).order_by(SsoDomainClaim.created_at.desc(), SsoDomainClaim.id)
    if tenant_id is not None:
        stmt = stmt.where(SsoDomainClaim.tenant_id == tenant_id)
    return list(ctx.session.scalars(stmt.limit(500)))


def claim_domain(ctx: Ctx, tenant_id: uuid.UUID, data: DomainClaimIn) -> SsoDomainClaim:
    try:
        domain = normalise_domain(data.domain)
    except ValueError as exc:
        raise ValidationError({"domain": str(exc)}) from exc
    open_claim = ctx.session.scalar(
        select(SsoDomainClaim.id).where(
            SsoDomainClaim.tenant_id == tenant_id,
            SsoDomainClaim.domain == domain,
            SsoDomainClaim.state.in_([ClaimState.PENDING, ClaimState.APPROVED]),
        )
    )
    if open_claim is not None:
        raise ValidationError({"domain": "this tenant has already claimed this domain"})
    claim = SsoDomainClaim(tenant_id=tenant_id, domain=domain, evidence=data.evidence)
    ctx.session.add(claim)
    ctx.session.flush()
    return claim


def tenant_claim(ctx: Ctx, tenant_id: uuid.UUID, claim_id: uuid.UUID) -> SsoDomainClaim:
    claim = ctx.session.get(SsoDomainClaim, claim_id)
    if claim is None or claim.tenant_id != tenant_id:
        raise NotFound("domain claim not found")
    return claim


def decide_claim(ctx: Ctx, claim: SsoDomainClaim, data: DomainDecisionIn) -> SsoDomainClaim:
    """The compliance officer approves or rejects a pending claim (a rejection says why)."""
    if claim.state != ClaimState.PENDING:
        raise Conflict(f"the claim is already {claim.state}")
    if data.decision == "reject" and not data.reason:
        raise ValidationError({"reason": "required: say why the claim is rejected"})
    if data.decision == "approve":
        taken = ctx.session.scalar(
            select(SsoDomainClaim.id).where(
                SsoDomainClaim.domain == claim.domain,
                SsoDomainClaim.state == ClaimState.APPROVED,
            )
        )
        if taken is not None:
            raise Conflict("the domain is already approved for another tenant")
    claim.state = ClaimState.APPROVED if data.decision == "approve" else ClaimState.REJECTED
    claim.reason = data.reason
    claim.decided_by = ctx.require_principal().user_id
    claim.decided_at = ctx.runtime.clock()
    try:
        with ctx.session.begin_nested():
            ctx.session.flush()
    except IntegrityError as exc:  # another approval of the domain won the race
        raise Conflict("the domain is already approved for another tenant") from exc
    return claim


def withdraw_claim(ctx: Ctx, claim: SsoDomainClaim) -> None:
    provider = get_provider(ctx, claim.tenant_id)
    if (
        claim.state == ClaimState.APPROVED
        and provider is not None
        and claim.domain in provider.allowed_domains
    ):
        raise Conflict("the identity provider allows this domain: remove it there first")
    ctx.session.delete(claim)
    ctx.session.flush()
