"""Schema family for access policies. Default deny: a rule only ever allows."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from tongdao.schemas import Cidr, Description, Name, OneLine, PublicModel, Strict

_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


def _port_range(value: str) -> str:
    match = _PORTS.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a port or port range like 443 or 8000-8100")
    lo = int(match.group(1))
    hi = int(match.group(2) or lo)
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"{value!r}: ports run 1-65535, low to high")
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


PortRange = Annotated[str, Field(max_length=11), OneLine]


class Source(Strict):
    kind: Literal["group", "user", "device", "site"]
    id: uuid.UUID


class SiteTarget(Strict):
    kind: Literal["site"]
    id: uuid.UUID


class PrefixTarget(Strict):
    kind: Literal["prefix"]
    cidr: Cidr


Target = Annotated[SiteTarget | PrefixTarget, Field(discriminator="kind")]


class Rule(Strict):
    sources: Annotated[list[Source], Field(min_length=1, max_length=100)]
    destinations: Annotated[list[Target], Field(min_length=1, max_length=100)]
    protocol: Literal["any", "tcp", "udp", "icmp"] = "any"
    ports: Annotated[list[PortRange], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _ports_need_protocol(self) -> Rule:
        self.ports = [_port_range(p) for p in self.ports]
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise ValueError("ports apply to tcp or udp rules only")
        return self


Rules = Annotated[list[Rule], Field(min_length=1, max_length=1000)]


class PolicyCreate(Strict):
    name: Name
    description: Description = ""
    enabled: bool = True
    rules: Rules


class PolicyUpdate(Strict):
    name: Name | None = None
    description: Description | None = None
    enabled: bool | None = None
    rules: Rules | None = None


class PolicyPublic(PublicModel):
    tenant_id: uuid.UUID
    name: str
    description: str
    enabled: bool
    rules: list[Rule]


class PolicyFilters(BaseModel):
    enabled: bool | None = None
    name: Annotated[str, Field(max_length=100), OneLine] | None = None
