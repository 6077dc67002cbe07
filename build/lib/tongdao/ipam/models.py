"""IPAM lock rows: updating one serialises allocations in its scope on every backend."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import Base


class IpamLock(Base):
    __tablename__ = "ipam_locks"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    generation: Mapped[int] = mapped_column(default=0)
