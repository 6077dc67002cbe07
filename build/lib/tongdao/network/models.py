"""The overlay: PoPs, cross-border links, tenant sites and devices."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import TimestampedModel


class PopState(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    DISABLED = "disabled"


class LinkState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class SiteState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"


class SitePurpose(StrEnum):
    OFFICE = "office"
    HQ = "hq"
    DATACENTER = "datacenter"


class DeclarationState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class DeviceState(StrEnum):
    PENDING = "pending"  # registered; its owner's real identity is not verified yet
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"


class Pop(TimestampedModel):
    __tablename__ = "pops"
    __dataplane__ = True
    __audit_type__ = "pop"
    __table_args__ = (CheckConstraint("port_min <= port_max", name="port_range"),)

    name: Mapped[str] = mapped_column(String(100), unique=True)
    region: Mapped[str] = mapped_column(String(16), index=True)
    country: Mapped[str] = mapped_column(String(2))
    endpoint_host: Mapped[str] = mapped_column(String(253))
    port_min: Mapped[int]
    port_max: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default=PopState.ACTIVE)
    # The most a gateway of this PoP can move per peer and direction, in Mbit/s: usage rows
    # claiming more than this over their period are dropped (tongdao.gateway.usage).
    max_rate_mbps: Mapped[int] = mapped_column(default=10_000, server_default="10000")


class PopTenantInterface(TimestampedModel):
    """The WireGuard interface a PoP runs for one tenant: its public key, port and address."""

    __tablename__ = "pop_tenant_interfaces"
    __dataplane__ = True
    __audit_type__ = "pop_tenant_interface"
    __table_args__ = (
        UniqueConstraint("pop_id", "tenant_id"),
        UniqueConstraint("pop_id", "listen_port"),
        UniqueConstraint("tenant_id", "host_index"),
        UniqueConstraint("tenant_id", "ipv4"),
        UniqueConstraint("tenant_id", "ipv6"),
    )

    pop_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pops.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    # None until the gateway has made the interface's key pair and published the public key;
    # unique (and never a device's or connector's key: tongdao.network.keys).
    public_key: Mapped[str | None] = mapped_column(String(44), unique=True)
    listen_port: Mapped[int]
    host_index: Mapped[int]  # offset of both addresses in the tenant's pools (see ipam)
    ipv4: Mapped[str] = mapped_column(String(15))
    ipv6: Mapped[str] = mapped_column(String(39))


class Link(TimestampedModel):
    """A registered cross-border circuit between two PoPs."""

    __tablename__ = "links"
    __dataplane__ = True
    __audit_type__ = "link"
    __table_args__ = (
        UniqueConstraint("pop_a_id", "pop_b_id"),
        CheckConstraint("pop_a_id <> pop_b_id", name="distinct_pops"),
    )

    name: Mapped[str] = mapped_column(String(100), unique=True)
    pop_a_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pops.id", ondelete="RESTRICT"))
    pop_b_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pops.id", ondelete="RESTRICT"))
    circuit_ref: Mapped[str] = mapped_column(String(100))
    # The regulator's approval of the circuit (e.g. MIIT's international gateway approval);
    # a link between a PoP in China and one abroad is active only with it.
    approval_ref: Mapped[str | None] = mapped_column(String(100))
    capacity_mbps: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default=LinkState.ACTIVE)


class Site(TimestampedModel):
    """A tenant network (office LAN, HQ LAN abroad, data centre) joined by a connector."""

    __tablename__ = "sites"
    __dataplane__ = True
    __audit_type__ = "site"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "host_index"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    # What is routed: exactly the site's approved declarations (see PrefixDeclaration), kept
    # in step by tongdao.network.declared in the transaction that decides them.
    prefixes: Mapped[list[str]]
    purpose: Mapped[str] = mapped_column(String(16))
    pop_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pops.id", ondelete="RESTRICT"))
    connector_public_key: Mapped[str | None] = mapped_column(String(44), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=SiteState.PENDING)
    # The connector's tunnel address, allocated when its connector first asks for its state.
    host_index: Mapped[int | None]
    ipv4: Mapped[str | None] = mapped_column(String(15))
    ipv6: Mapped[str | None] = mapped_column(String(39))


class PrefixDeclaration(TimestampedModel):
    """One prefix of a site as the tenant declared it (purpose, country) and a compliance
    officer decided it. Only approved declarations are routed (rule network.declared_only)."""

    __tablename__ = "prefix_declarations"
    __audit_type__ = "prefix_declaration"
    __table_args__ = (
        UniqueConstraint("site_id", "cidr"),
        Index("ix_prefix_declarations_state_tenant", "state", "tenant_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    cidr: Mapped[str] = mapped_column(String(43))
    purpose: Mapped[str] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(String(2))
    state: Mapped[str] = mapped_column(String(16), default=DeclarationState.PENDING)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(String(500), default="")


class PrefixAllowance(TimestampedModel):
    """Operator policy: lets one tenant declare (and name in access rules) a prefix that the
    rule network.no_default_or_public otherwise refuses: a default route, a public prefix, or
    part of the overlay range that holds other tenants' pools."""

    __tablename__ = "prefix_allowances"
    __audit_type__ = "prefix_allowance"
    __table_args__ = (UniqueConstraint("tenant_id", "cidr"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    cidr: Mapped[str] = mapped_column(String(43))
    reason: Mapped[str] = mapped_column(String(500))


class Device(TimestampedModel):
    __tablename__ = "devices"
    __dataplane__ = True
    __audit_type__ = "device"
    __table_args__ = (
        UniqueConstraint("tenant_id", "host_index"),
        UniqueConstraint("tenant_id", "ipv4"),
        UniqueConstraint("tenant_id", "ipv6"),
        Index("ix_devices_tenant_id_id", "tenant_id", "id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[str] = mapped_column(String(44), unique=True)
    host_index: Mapped[int]  # offset of both addresses in the tenant's pools (see ipam)
    ipv4: Mapped[str] = mapped_column(String(15))
    ipv6: Mapped[str] = mapped_column(String(39))
    pop_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pops.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default=DeviceState.ACTIVE)
