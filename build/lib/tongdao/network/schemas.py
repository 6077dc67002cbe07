"""Schema families for PoPs, links, sites, devices and PoP tenant interfaces."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

from tongdao.network.models import (
    DeclarationState,
    DeviceState,
    LinkState,
    PopState,
    SitePurpose,
    SiteState,
)
from tongdao.schemas import (
    Cidr,
    Country,
    Description,
    HostOrIp,
    MultiLine,
    Name,
    OneLine,
    Port,
    PublicModel,
    Reference,
    Region,
    Strict,
    WireGuardKey,
)


# --- PoPs ----------------------------------------------------------------------------------
class _PortRange(BaseModel):
    @model_validator(mode="after")
    def _ports(self) -> _PortRange:
        lo, hi = getattr(self, "port_min", None), getattr(self, "port_max", None)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("port_min must not exceed port_max")
        return self


class _RegionCountry(BaseModel):
    @model_validator(mode="after")
    def _country_matches(self) -> _RegionCountry:
        region, country = getattr(self, "region", None), getattr(self, "country", None)
        if region and country and region[:2] != country:
            raise ValueError(f"region {region} is not in country {country}")
        return self


DEFAULT_MAX_RATE_MBPS = 10_000
MaxRate = Annotated[
    int,
    Field(
        ge=1,
        le=1_000_000,
        description="the most one peer can move each way through this PoP, in Mbit/s; usage "
        "reports claiming more over their period are dropped",
    ),
]


class PopCreate(Strict, _PortRange, _RegionCountry):
    name: Name
    region: Region
    country: Country
    endpoint_host: HostOrIp
    port_min: Port = 51820
    port_max: Port = 52819
    state: PopState = PopState.ACTIVE
    max_rate_mbps: MaxRate = DEFAULT_MAX_RATE_MBPS


class PopUpdate(Strict, _PortRange, _RegionCountry):
    name: Name | None = None
    region: Region | None = None
    country: Country | None = None
    endpoint_host: HostOrIp | None = None
    port_min: Port | None = None
    port_max: Port | None = None
    state: PopState | None = None
    max_rate_mbps: MaxRate | None = None


class PopPublic(PublicModel):
    name: str
    region: str
    country: str
    endpoint_host: str
    port_min: int
    port_max: int
    state: PopState
    max_rate_mbps: int


class PopFilters(BaseModel):
    region: Annotated[str, Field(max_length=16), OneLine] | None = None
    country: Annotated[str, Field(max_length=2), OneLine] | None = None
    state: PopState | None = None


class InterfacePublish(Strict):
    public_key: WireGuardKey
    listen_port: Port | None = Field(
        default=None, description="omit to take the lowest free port in the PoP's range"
    )


class InterfacePublic(PublicModel):
    pop_id: uuid.UUID
    tenant_id: uuid.UUID
    public_key: str
    listen_port: int
    ipv4: str
    ipv6: str


# --- links ---------------------------------------------------------------------------------
class LinkCreate(Strict):
    name: Name
    pop_a_id: uuid.UUID
    pop_b_id: uuid.UUID
    circuit_ref: Reference
    approval_ref: Reference | None = Field(
        default=None,
        description="the regulator's approval of the circuit (e.g. MIIT's international "
        "gateway approval number); required for an active link between a PoP in China and "
        "one abroad (rule crossborder.registered_link)",
    )
    capacity_mbps: Annotated[int, Field(ge=1, le=1_000_000)]
    state: LinkState = LinkState.ACTIVE

    @model_validator(mode="after")
    def _two_pops(self) -> LinkCreate:
        if self.pop_a_id == self.pop_b_id:
            raise ValueError("a link joins two different PoPs")
        return self


class LinkUpdate(Strict):
    name: Name | None = None
    circuit_ref: Reference | None = None
    approval_ref: Reference | None = Field(
        default=None, description="null clears it (refused while the link crosses the border)"
    )
    capacity_mbps: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    state: LinkState | None = None


class LinkPublic(PublicModel):
    name: str
    pop_a_id: uuid.UUID
    pop_b_id: uuid.UUID
    circuit_ref: str
    approval_ref: str | None
    capacity_mbps: int
    state: LinkState


class LinkFilters(BaseModel):
    pop_id: uuid.UUID | None = None
    state: LinkState | None = None


# --- sites ---------------------------------------------------------------------------------
Prefixes = Annotated[
    list[Cidr],
    Field(
        min_length=1,
        max_length=64,
        description="the site's networks; each becomes a pending declaration that a "
        "compliance officer approves before it is routed",
    ),
]


class SiteCreate(Strict):
    name: Name
    country: Country
    prefixes: Prefixes
    purpose: SitePurpose
    pop_id: uuid.UUID | None = None
    connector_public_key: WireGuardKey | None = None


class SiteUpdate(Strict):
    name: Name | None = None
    country: Country | None = None
    prefixes: Prefixes | None = None
    purpose: SitePurpose | None = None
    pop_id: uuid.UUID | None = None
    connector_public_key: WireGuardKey | None = None
    state: SiteState | None = None


class DeclarationBrief(BaseModel):
    id: uuid.UUID
    cidr: str
    state: DeclarationState
    reason: str
    decided_at: datetime | None


class SitePublic(PublicModel):
    tenant_id: uuid.UUID
    name: str
    country: str
    prefixes: list[str] = Field(description="declared and not rejected: pending or approved")
    approved_prefixes: list[str] = Field(description="what is routed: the approved ones")
    declarations: list[DeclarationBrief] = Field(
        description="every declaration of the site, rejected ones with the reason"
    )
    purpose: SitePurpose
    pop_id: uuid.UUID | None
    connector_public_key: str | None
    state: SiteState


# --- declarations and allowances -----------------------------------------------------------
class DeclarationPublic(PublicModel):
    tenant_id: uuid.UUID
    site_id: uuid.UUID
    cidr: str
    purpose: SitePurpose
    country: str
    state: DeclarationState
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    reason: str


class DeclarationFilters(BaseModel):
    state: DeclarationState | None = None
    tenant_id: uuid.UUID | None = None
    site_id: uuid.UUID | None = None
    country: Annotated[str, Field(max_length=2), OneLine] | None = None
    purpose: SitePurpose | None = None


class Approval(Strict):
    reason: Description = Field(default="", description="an optional note for the record")


class Rejection(Strict):
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        MultiLine,
        Field(description="why, for the tenant and the record"),
    ]


class AllowanceCreate(Strict):
    cidr: Cidr
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        MultiLine,
        Field(description="why the operator allows it (e.g. the customer's contract clause)"),
    ]


class AllowanceUpdate(Strict):
    reason: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
            MultiLine,
        ]
        | None
    ) = None


class AllowancePublic(PublicModel):
    tenant_id: uuid.UUID
    cidr: str
    reason: str


class AllowanceFilters(BaseModel):
    cidr: Annotated[str, Field(max_length=43), OneLine] | None = None


class SiteFilters(BaseModel):
    state: SiteState | None = None
    country: Annotated[str, Field(max_length=2), OneLine] | None = None
    purpose: SitePurpose | None = None


# --- devices -------------------------------------------------------------------------------
class DeviceCreate(Strict):
    name: Name
    public_key: WireGuardKey
    user_id: uuid.UUID | None = Field(
        default=None, description="the owner; an employee's own devices default to them"
    )
    pop_id: uuid.UUID | None = None


class DeviceUpdate(Strict):
    name: Name | None = None
    public_key: WireGuardKey | None = None
    pop_id: uuid.UUID | None = None
    state: DeviceState | None = None


class DevicePublic(PublicModel):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    name: str
    public_key: str
    ipv4: str
    ipv6: str
    pop_id: uuid.UUID | None
    state: DeviceState


class DeviceFilters(BaseModel):
    user_id: uuid.UUID | None = None
    state: DeviceState | None = None
    public_key: Annotated[str, Field(max_length=44), OneLine] | None = None
