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
from typing import Any

from sqlalchemy import String, Uuid, bindparam, literal, select, union_all

from tongdao.errors import Conflict
from tongdao.ipam import service as ipam
from tongdao.network.models import Device, PopTenantInterface, Site
from tongdao.runtime import Ctx

LOCK = "wireguard-keys"


_HOLDERS = ("a device", "a site connector", "a PoP interface")
_QUERIES: dict[bool, Any] = {}


def _holders_query(with_own: bool) -> Any:
    """One statement over the three tables (rank, id) for ``:key``, without ``:own`` when
    ``with_own``; built once: composing it per request cost more CPU than running it."""
    stmt = _QUERIES.get(with_own)
    if stmt is None:
        key = bindparam("key", type_=String())
        own = bindparam("own", type_=Uuid())
        parts = []
        for rank, (id_col, key_col) in enumerate(
            (
                (Device.id, Device.public_key),
                (Site.id, Site.connector_public_key),
                (PopTenantInterface.id, PopTenantInterface.public_key),
            )
        ):
            part = select(literal(rank).label("rank"), id_col.label("id")).where(key_col == key)
            parts.append(part.where(id_col != own) if with_own else part)
        stmt = _QUERIES[with_own] = union_all(*parts)
    return stmt


def ensure_free(ctx: Ctx, key: str | None, *, field: str, own: uuid.UUID | None = None) -> None:
    """409 ``{field: ...}`` when a device, site connector or PoP interface other than ``own``
    (the id of the object being saved) holds ``key``. Serialises writers of keys."""
    if key is None:
        return
    ipam.lock(ctx.session, LOCK)
    params: dict[str, Any] = {"key": key}
    if own is not None:
        params["own"] = own
    ranks = [row.rank for row in ctx.session.execute(_holders_query(own is not None), params)]
    if ranks:
        what = _HOLDERS[min(ranks)]
        raise Conflict(
            f"this WireGuard public key is already used by {what}; every device, site and "
            "PoP interface has its own key pair",
            {field: "already in use"},
        )
