"""Imports every domain's models so that ``Base.metadata`` knows all tables."""

from tongdao.access.models import Policy
from tongdao.audit.models import AuditChainHead, AuditEvent, OpenConnection
from tongdao.auth.links import OneTimeLink, PasswordResetRequest
from tongdao.auth.models import ApiToken, LoginAttempt
from tongdao.auth.webauthn_models import SecondFactorPolicy, WebAuthnChallenge, WebAuthnCredential
from tongdao.billing.models import (
    Invoice,
    InvoiceLine,
    NonPaymentSuspension,
    NumberSeries,
    Payment,
    Plan,
    Reminder,
    Subscription,
)
from tongdao.compliance.models import ComplianceBreach, ComplianceSuspension, ComplianceWatch
from tongdao.crossborder.models import CrossBorderApplication, CrossBorderDocument
from tongdao.gateway.models import (
    ConfigVersion,
    Gateway,
    GatewayEnrolment,
    GatewayPeer,
    UsageHourly,
    UsageRecord,
    UsageTenantHourly,
)
from tongdao.gateway.xbends import UsageOverseasHourly
from tongdao.ipam.models import IpamLock
from tongdao.jobs.models import JobLease
from tongdao.lifetime.models import DeviceLifetime, LastSignIn, LifetimeHold
from tongdao.mail.models import MailMessage, MailSettings
from tongdao.network.models import (
    Device,
    Link,
    Pop,
    PopTenantInterface,
    PrefixAllowance,
    PrefixDeclaration,
    Site,
)
from tongdao.operator.models import Licence, OperatorProfile, Shareholder
from tongdao.privacy.models import Consent, PrivacyNotice
from tongdao.quotas.models import QuotaEvent, TenantLimits, UserLimits
from tongdao.scim.models import ScimGroup, ScimToken, ScimUser
from tongdao.sso.models import SsoDomainClaim, SsoIdentity, SsoLogin, SsoProvider
from tongdao.tenancy.models import Group, GroupMember, Tenant, User

__all__ = [
    "ApiToken",
    "AuditChainHead",
    "AuditEvent",
    "ComplianceBreach",
    "ComplianceSuspension",
    "ComplianceWatch",
    "ConfigVersion",
    "Consent",
    "CrossBorderApplication",
    "CrossBorderDocument",
    "Device",
    "DeviceLifetime",
    "Gateway",
    "GatewayEnrolment",
    "GatewayPeer",
    "Group",
    "GroupMember",
    "Invoice",
    "InvoiceLine",
    "IpamLock",
    "JobLease",
    "LastSignIn",
    "Licence",
    "LifetimeHold",
    "Link",
    "LoginAttempt",
    "MailMessage",
    "MailSettings",
    "NonPaymentSuspension",
    "NumberSeries",
    "OneTimeLink",
    "OpenConnection",
    "OperatorProfile",
    "PasswordResetRequest",
    "Payment",
    "Plan",
    "Policy",
    "Pop",
    "PopTenantInterface",
    "PrefixAllowance",
    "PrefixDeclaration",
    "PrivacyNotice",
    "QuotaEvent",
    "Reminder",
    "ScimGroup",
    "ScimToken",
    "ScimUser",
    "SecondFactorPolicy",
    "Shareholder",
    "Site",
    "SsoDomainClaim",
    "SsoIdentity",
    "SsoLogin",
    "SsoProvider",
    "Subscription",
    "Tenant",
    "TenantLimits",
    "UsageHourly",
    "UsageOverseasHourly",
    "UsageRecord",
    "UsageTenantHourly",
    "User",
    "UserLimits",
    "WebAuthnChallenge",
    "WebAuthnCredential",
]
