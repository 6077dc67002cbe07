"""Device lifetime: a tenant's setting, each user's last sign-in, and the devices the
lifetime took off the gateways (so that signing in again gives back exactly those)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import Base


class DeviceLifetime(Base):
    """A tenant's device lifetime in days (no row: off)."""

    __tablename__ = "device_lifetimes"
    __audit_type__ = "device_lifetime"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    days: Mapped[int]
    # When the setting was turned on: nobody's clock starts before it.
    since: Mapped[datetime]


class LastSignIn(Base):
    """A user's last successful sign-in (console or CLI)."""

    __tablename__ = "last_sign_ins"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[datetime]


class LifetimeHold(Base):
    """A device the lifetime disabled; it is enabled again when its user signs in."""

    __tablename__ = "device_lifetime_holds"
    __audit_type__ = "device_lifetime_hold"

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    since: Mapped[datetime]
