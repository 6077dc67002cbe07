"""The rules Tongdao enforces, as data: one versioned table, each rule with its source.

A rule change is one edit here (a number, a list of codes, a text) and a new ``VERSION``; the
code that enforces a rule looks it up by id and never restates its parameters. A refusal names
the rule and its source (:class:`ComplianceRefusal`), so an operator can tell a customer, and a
regulator can check, why something was not done.

Sources are those listed in ``product.md``; the ids are stable and appear in API errors, audit
records and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tongdao.errors import Conflict

VERSION = "2026-12-06.2"


@dataclass(frozen=True)
class Rule:
    id: str
    text: str
    source: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def param(self, name: str) -> Any:
        return self.params[name]


def _rules(*rules: Rule) -> Mapping[str, Rule]:
    table = {r.id: r for r in rules}
    assert len(table) == len(rules), "duplicate rule id"
    return MappingProxyType(table)


_CATALOGUE = "2015 Telecommunications Business Catalogue"
_NEGATIVE_LIST = "2020 Special Administrative Measures for Foreign Investment Access, item 16"

RULES: Mapping[str, Rule] = _rules(
    # --- operator licence and ownership ------------------------------------------------------
    Rule(
        "licence.number_format",
        "A licence number is an optional province prefix, service codes joined by '.', then "
        "'-', a 4-digit year and a 4-digit serial (B1.B2-20100266, 京B1-20180001)",
        "2015 catalogue; published licence examples (Baidu, Huawei Cloud)",
        MappingProxyType(
            {
                "service_codes": (
                    "A11",
                    "A12",
                    "A13",
                    "A14",
                    "A15",
                    "A21",
                    "A22",
                    "A23",
                    "A24",
                    "A25",
                    "A26",
                    "B1",
                    "B11",
                    "B12",
                    "B13",
                    "B14",
                    "B2",
                    "B21",
                    "B22",
                    "B23",
                    "B24",
                    "B25",
                    "B26",
                ),
                # Who issues a licence: MIIT issues cross-regional ones (no province prefix),
                # a province's communications administration those with its prefix (京, 沪, ...).
                # The issuing authority must name one of these (substring, case-insensitive).
                "issuing_authorities": {
                    "national": ("工业和信息化部", "MIIT", "Ministry of Industry and Information"),
                    "provincial": ("通信管理局", "Communications Administration"),
                },
            }
        ),
    ),
    Rule(
        "licence.b13_required",
        "The operator must hold a valid licence covering B13 (domestic IP-VPN) before any "
        "tenant, site or PoP is given service",
        _CATALOGUE,
        MappingProxyType({"service_code": "B13"}),
    ),
    Rule(
        "licence.region_covered",
        "The licence must cover the province of the customer (its USCC division code) and of "
        "each PoP and site in China",
        _CATALOGUE,
    ),
    Rule(
        "licence.validity",
        "A licence is valid from its start date to its expiry (VATS licences run 5 years); an "
        "expired licence covers nothing",
        "2001 Administrative Measures for Value-Added Telecommunications Business Licences",
        MappingProxyType({"term_years": 5, "warn_days": (90, 30, 7)}),
    ),
    Rule(
        "ownership.foreign_cap",
        "The foreign stake in a value-added telecom operator is at most 50% for B13 (and the "
        "other capped codes); stakes must sum to 100%",
        f"{_NEGATIVE_LIST}; MIIT 2024 No. 107 (B13 stays at 50% in the pilot zones)",
        MappingProxyType(
            {
                "cap_percent": {
                    "B13": 50,
                    "B11": 50,
                    "B12": 50,
                    "B14": 50,
                    "B24": 50,
                    "B25": 50,
                    "B26": 50,
                },
                "uncapped": ("B21", "B22", "B23"),
                # Basic telecom (A codes) must be Chinese-controlled: foreign stake below this.
                "chinese_controlled": {"prefix": "A", "foreign_below_percent": 50},
                "total_percent": 100,
            }
        ),
    ),
    # --- customer vetting --------------------------------------------------------------------
    Rule(
        "kyc.uscc",
        "A customer is identified by its Unified Social Credit Code; a checksum failure sends "
        "the customer to manual verification instead of rejecting it",
        "GB 32100-2015",
    ),
    Rule(
        "kyc.foreign_invested_beijing",
        "A Beijing customer of this service is a foreign-invested enterprise operating in "
        "Beijing, with evidence of its foreign-invested status",
        "State Council reply on the Beijing services opening pilot, October 2021",
        MappingProxyType({"division_prefix": "11"}),
    ),
    Rule(
        "kyc.active_only",
        "Only an active (vetted and approved) tenant receives data-plane service",
        "Cybersecurity Law art. 24 (art. 26 after 2026); operator licence conditions",
    ),
    # --- real identity and personal information ----------------------------------------------
    Rule(
        "identity.real_name",
        "No device of a user is activated until the user's real identity is recorded and "
        "verified: an employee's by a tenant admin whose own identity is verified, or by the "
        "compliance officer; a tenant admin's by the compliance officer only",
        "Cybersecurity Law art. 24 (art. 26 after the 2026 amendment)",
        MappingProxyType(
            {
                # What a verifier checks before verifying, and who may verify (never the
                # person themselves); tongdao.auth.permissions grants "identity" to these.
                "required_fields": ("legal_name", "id_type", "id_number", "mobile"),
                "verifier_roles": ("tenant_admin", "compliance_officer"),
                # Who verifies a user holding one of "admin_roles" (and a tenant admin whose
                # identity is not verified keeps that role until then).
                "admin_roles": ("tenant_admin",),
                "admin_verifier_roles": ("compliance_officer",),
            }
        ),
    ),
    Rule(
        "pi.notice_and_consent",
        "A user is told the purpose (versioned notice) and gives a separate consent before "
        "their traffic or data goes abroad; personal data is minimal and encrypted at rest",
        "PIPL arts. 38-40",
        MappingProxyType(
            {
                # A consent given to an older notice stays current unless a later notice was
                # published asking for fresh consent (its reconsent_required flag).
                "consent_kinds": ("notice", "transfer_abroad"),
                "revocable": ("transfer_abroad",),
            }
        ),
    ),
    # --- declared networks and cross-border --------------------------------------------------
    Rule(
        "network.declared_only",
        "Only a site prefix declared with purpose and country and approved by a compliance "
        "officer is routed",
        "MIIT 2017 notice on cleaning up the network access market (internal office use)",
    ),
    Rule(
        "network.no_default_or_public",
        "Default routes, public prefixes outside the tenant's declaration and traffic to "
        "another tenant are refused unless an operator-level policy allows them",
        "International Gateway Measures 2002; MIIT 2017 notice",
        MappingProxyType(
            {
                # A prefix wholly inside one of these blocks is never routed on the Internet
                # (IANA special-purpose registries: private use, shared address space,
                # documentation, benchmarking, unique local); any other prefix counts as
                # public. The documentation and benchmarking ranges are deliberately private
                # here: they are what test networks and demos are made of.
                "private_blocks": (
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "100.64.0.0/10",
                    "192.0.2.0/24",
                    "198.51.100.0/24",
                    "203.0.113.0/24",
                    "198.18.0.0/15",
                    "fc00::/7",
                    "2001:db8::/32",
                    "3fff::/20",
                ),
                # Prefixes this short are a default route or split one (0.0.0.0/1 + 128/1).
                "default_max_prefixlen": {4: 1, 6: 1},
            }
        ),
    ),
    Rule(
        "crossborder.registered_link",
        "Cross-border routes exist only over a registered link with its approval reference",
        "International Gateway Measures 2002; MIIT 2017 notice",
        # A link is cross-border when one PoP is in this country and the other is not (Hong
        # Kong, Macao and Taiwan have their own codes, so they count as abroad here).
        MappingProxyType({"home_country": "CN"}),
    ),
    Rule(
        "crossborder.tenant_authorised",
        "A tenant's traffic crosses the border only under its own approved, unexpired "
        "cross-border authorisation (internal office use), within the link's capacity",
        "MIIT 2017 notice (工信部信管函〔2017〕32号); carriers' cross-border service terms",
    ),
    # --- logs ----------------------------------------------------------------------------------
    Rule(
        "logs.retention",
        "Network logs are kept at least 6 months; nothing younger can be purged",
        "Cybersecurity Law art. 21 (art. 23 after the 2026 amendment)",
        # Six calendar months (not 180 days: six months can be 184), see
        # tongdao.compliance.retention; the operator adds a margin (TONGDAO_RETENTION_MARGIN_DAYS).
        MappingProxyType({"months": 6}),
    ),
)


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]


class ComplianceRefusal(Conflict):
    """Refused by a rule: the message and the error name the rule and its source."""

    code = "compliance_refused"

    def __init__(self, rule_id: str, detail: str, fields: Mapping[str, str] | None = None) -> None:
        r = RULES[rule_id]
        self.rule = r
        self.detail = detail
        super().__init__(f"{detail} (rule {r.id}: {r.text}; source: {r.source})", fields)
