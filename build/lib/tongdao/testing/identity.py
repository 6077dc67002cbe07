"""A recorded and verified real identity for users made straight in a store (benchmarks,
demos, fixtures that bypass the API), so that their devices are served under rule
identity.real_name rather than around it.

Through the API the same takes a tenant admin recording the identity (``PATCH .../users/{id}``)
and a compliance officer verifying it (``POST .../identity-verification``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from tongdao.crypto import FieldCipher
from tongdao.tenancy.models import IdType, User
from tongdao.tenancy.service import ID_NUMBER_PURPOSE


def seed_verified(
    user: User,
    cipher: FieldCipher,
    now: datetime,
    *,
    n: int = 0,
    verified_by: uuid.UUID | None = None,
) -> None:
    """Give ``user`` a passport identity (distinct per ``n``), verified at ``now``."""
    number = f"E{n:08d}"
    user.legal_name = user.legal_name or user.display_name
    user.id_type = IdType.PASSPORT
    user.id_number_sealed = cipher.seal(number, ID_NUMBER_PURPOSE)
    user.id_number_last4 = number[-4:]
    user.id_number_length = len(number)
    user.mobile = f"+86139{n % 100_000_000:08d}"
    user.identity_verified_at = now
    user.identity_verified_by = verified_by
