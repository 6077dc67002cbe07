"""The desired state of one PoP gateway: what the control plane wants it to run.

Shared by the control plane (which compiles it) and the agent (which plans and applies it).
Plain, JSON-round-trippable pydantic models; no private keys ever appear here (each gateway
generates its interfaces' keys and publishes only the public halves).

Per tenant served by the PoP there is one WireGuard interface named ``wgt<listen port>``, one
routing table numbered like the port, and nftables rules that let the tenant's traffic flow
only between its own peers, as its access policy allows (default deny).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PeerKind = Literal["device", "site", "pop"]
Protocol = Literal["any", "tcp", "udp", "icmp"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Peer(Frozen):
    """A WireGuard peer on a tenant interface."""

    public_key: str
    kind: PeerKind
    ref: str = Field(description="id of the device, site or peer PoP")
    allowed_ips: tuple[str, ...] = Field(description="CIDRs routed to this peer")
    endpoint: str | None = Field(default=None, description="host:port, for peers we dial")
    keepalive: int | None = None


class PolicyRule(Frozen):
    """One allow rule, already resolved to addresses: ``src`` may reach ``dst``."""

    src: tuple[str, ...]
    dst: tuple[str, ...]
    protocol: Protocol = "any"
    ports: tuple[str, ...] = ()  # "443" or "8000-8100"; only with tcp/udp


class TenantInterface(Frozen):
    tenant_id: uuid.UUID
    ifname: str = Field(max_length=15)
    listen_port: int
    table: int = Field(description="routing table for traffic arriving on the interface")
    address_v4: str = Field(description="gateway address with the pool's prefix length")
    address_v6: str
    pools: tuple[str, ...] = Field(description="the tenant's overlay pools")
    public_key: str | None = Field(
        default=None, description="the interface key the control plane has (None: not yet)"
    )
    peers: tuple[Peer, ...] = ()
    policy: tuple[PolicyRule, ...] = ()


class DesiredState(Frozen):
    version: int
    pop_id: uuid.UUID
    role: Literal["pop", "connector"] = "pop"
    tenants: tuple[TenantInterface, ...] = ()


def interface_name(listen_port: int) -> str:
    return f"wgt{listen_port}"


def connector_interface_name(site_id: uuid.UUID) -> str:
    """Unique per site (wireguard-go sockets share one directory per host)."""
    return f"wgs{site_id.hex[-10:]}"


CONNECTOR_PORT = 51820
MAIN_TABLE = 254
