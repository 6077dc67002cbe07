"""One WireGuard public key, one party: a key is used once in the whole data plane.

A key names a peer on a PoP's interface, in a site's router and in the usage reports, so a
device registered with its PoP interface's key, a connector's key or another tenant's key would
be ambiguous (or an impersonation). A key is refused (409, keyed by the request's field) when a
device, a site connector or a PoP interface of *any* tenant already holds it: keys are made on
the device from 32 random bytes, so two honest parties never share one, and public keys are not
secret, so saying that one is taken tells another tenant nothing it could use.

Within each table a unique index holds the line under any race (devices, sites' connector keys
and, from migration 0012, PoP interfaces). Across tables there is no index to lean on, so every
write of a key first takes one lock row (``wireguard-keys``) and then checks all three tables:
two transactions setting the same key in different tables are serialised, and the second sees
the first's key. The lock is taken before any IPAM lock, always in that order.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tongdao.errors import Conflict
from tongdao.ipam import service as ipam
from tongdao.network.models import Device, PopTenantInterface, Site
from tongdao.runtime import Ctx

LOCK = "wireguard-keys"


def ensure_free(ctx: Ctx, key: str | None, *, field: str, own: uuid.UUID | None = None) -> None:
    """409 ``{field: ...}`` when a device, site connector or PoP interface other than ``own``
    (the id of the object being saved) holds ``key``. Serialises writers of keys."""
    if key is None:
        return
    ipam.lock(ctx.session, LOCK)
    holders = (
        ("a device", select(Device.id).where(Device.public_key == key)),
        ("a site connector", select(Site.id).where(Site.connector_public_key == key)),
        (
            "a PoP interface",
            select(PopTenantInterface.id).where(PopTenantInterface.public_key == key),
        ),
    )
    for what, stmt in holders:
        if own is not None:
            stmt = stmt.where(stmt.selected_columns[0] != own)
        if ctx.session.scalar(stmt.limit(1)) is not None:
            raise Conflict(
                f"this WireGuard public key is already used by {what}; every device, site and "
                "PoP interface has its own key pair",
                {field: "already in use"},
            )
