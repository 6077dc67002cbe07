"""Leases that let one replica of several run a scheduled job (see tongdao.jobs.lease)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tongdao.store.base import Base


class JobLease(Base):
    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    expires_at: Mapped[datetime]
    # What the job last finished (for the monthly billing run: "YYYY-MM").
    last_done: Mapped[str] = mapped_column(String(32), default="")
