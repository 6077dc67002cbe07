"""Customer vetting (KYC): what a tenant must show before it is approved and activated.

* Its USCC passed the format checks at creation (:mod:`tongdao.compliance.uscc`); a code whose
  check character does not match was accepted but flagged, and a compliance officer must
  verify it by hand before approval (rule ``kyc.uscc``).
* A customer registered in Beijing (division code ``11xxxx``) is a foreign-invested enterprise
  and the record names the evidence of that status (rule ``kyc.foreign_invested_beijing``).

Then the operator's licences must cover the tenant's province
(:mod:`tongdao.compliance.licensing`). :func:`require_vetted` runs all of it when a tenant is
approved or activated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from tongdao.compliance import licensing
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.runtime import Ctx
from tongdao.web.i18n import N_


class TenantFacts(Protocol):
    @property
    def name_en(self) -> str: ...
    @property
    def uscc(self) -> str: ...
    @property
    def uscc_checksum_ok(self) -> bool: ...
    @property
    def uscc_verified_at(self) -> datetime | None: ...
    @property
    def division_code(self) -> str: ...
    @property
    def foreign_invested(self) -> bool: ...
    @property
    def foreign_invested_evidence(self) -> str: ...


def kyc_refusal(tenant: TenantFacts) -> tuple[licensing.Refusal, str] | None:
    """The first KYC rule the tenant fails, with the field to fix (None: vetted)."""
    if not tenant.uscc_checksum_ok and tenant.uscc_verified_at is None:
        return (
            licensing.Refusal(
                "kyc.uscc",
                f"the check character of USCC {tenant.uscc} does not match; a compliance "
                "officer verifies the code with the registration authority and records it "
                "(uscc_verified: true) before approval",
            ),
            "uscc_verified",
        )
    prefix = str(rule("kyc.foreign_invested_beijing").param("division_prefix"))
    if tenant.division_code.startswith(prefix):
        if not tenant.foreign_invested:
            return (
                licensing.Refusal(
                    "kyc.foreign_invested_beijing",
                    f"the tenant is registered in Beijing (division {tenant.division_code}) but "
                    "is not recorded as a foreign-invested enterprise",
                ),
                "foreign_invested",
            )
        if not tenant.foreign_invested_evidence.strip():
            return (
                licensing.Refusal(
                    "kyc.foreign_invested_beijing",
                    "the evidence of foreign-invested status (e.g. the foreign investment "
                    "information report receipt) is not recorded",
                ),
                "foreign_invested_evidence",
            )
    return None


USCC_TO_VERIFY = N_(
    "a compliance officer verifies the USCC with the registration authority (rule kyc.uscc)"
)
BEIJING_FIE = N_(
    "a customer registered in Beijing must be a foreign-invested enterprise "
    "(rule kyc.foreign_invested_beijing)"
)
BEIJING_EVIDENCE = N_(
    "record the evidence of foreign-invested status, e.g. the foreign investment information "
    "report receipt (rule kyc.foreign_invested_beijing)"
)


def vetting_missing(tenant: TenantFacts) -> dict[str, str]:
    """Every KYC item the tenant still lacks, by field (a Beijing customer is told at creation
    that it must be a foreign-invested enterprise and show the evidence)."""
    missing: dict[str, str] = {}
    if not tenant.uscc_checksum_ok and tenant.uscc_verified_at is None:
        missing["uscc_verified"] = USCC_TO_VERIFY
    prefix = str(rule("kyc.foreign_invested_beijing").param("division_prefix"))
    if tenant.division_code.startswith(prefix):
        if not tenant.foreign_invested:
            missing["foreign_invested"] = BEIJING_FIE
        if not tenant.foreign_invested_evidence.strip():
            missing["foreign_invested_evidence"] = BEIJING_EVIDENCE
    return missing


def require_vetted(ctx: Ctx, tenant: TenantFacts, *, field: str = "state") -> None:
    """Raise a ComplianceRefusal unless the tenant passes KYC and the licences cover it."""
    found = kyc_refusal(tenant)
    if found is not None:
        refusal, key = found
        raise ComplianceRefusal(refusal.rule_id, refusal.detail, {key: refusal.detail})
    licensing.require_service(
        ctx, licensing.tenant_place(tenant.name_en, tenant.division_code), field=field
    )
