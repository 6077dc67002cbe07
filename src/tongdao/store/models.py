"""Imports every domain's models so that ``Base.metadata`` knows all tables."""

from tongdao.access.models import Policy
from tongdao.audit.models import AuditEvent
from tongdao.auth.models import ApiToken, LoginAttempt
from tongdao.gateway.models import ConfigVersion, Gateway, GatewayEnrolment, UsageRecord
from tongdao.ipam.models import IpamLock
from tongdao.network.models import Device, Link, Pop, PopTenantInterface, Site
from tongdao.operator.models import Licence, OperatorProfile, Shareholder
from tongdao.tenancy.models import Group, GroupMember, Tenant, User

__all__ = [
    "ApiToken",
    "AuditEvent",
    "ConfigVersion",
    "Device",
    "Gateway",
    "GatewayEnrolment",
    "Group",
    "GroupMember",
    "IpamLock",
    "Licence",
    "Link",
    "LoginAttempt",
    "OperatorProfile",
    "Policy",
    "Pop",
    "PopTenantInterface",
    "Shareholder",
    "Site",
    "Tenant",
    "UsageRecord",
    "User",
]
