"""Persistence: SQLAlchemy 2 models' base, engines and Alembic migrations."""

from tongdao.store.base import Base, TimestampedModel, UTCDateTime
from tongdao.store.engine import Database

__all__ = ["Base", "Database", "TimestampedModel", "UTCDateTime"]
