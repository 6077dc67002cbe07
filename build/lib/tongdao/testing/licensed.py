"""A licensed operator for tests, benchmarks and the demo.

Service (an active tenant, site or PoP) needs a valid B13 licence covering the place and a
complete shareholder register within the foreign cap (:mod:`tongdao.compliance.licensing`),
and a Beijing customer must be a foreign-invested enterprise with evidence
(:mod:`tongdao.compliance.kyc`). These records satisfy the rules rather than bypass them:
post them through the API (:func:`licence_body`, :data:`SHAREHOLDERS`,
:data:`FOREIGN_INVESTED`), or put them straight in a store with :func:`seed`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tongdao.clock import utcnow
from tongdao.compliance.licensing import add_years, china_today
from tongdao.operator.models import Licence, Shareholder

LICENCE_NUMBER = "B1-20190001"

# A joint venture at the cap: 51% domestic, 49% foreign (B13 allows at most 50%).
SHAREHOLDERS: tuple[dict[str, Any], ...] = (
    {"name": "Tongdao Holdings (Beijing) Co., Ltd.", "foreign": False, "stake_percent": "51"},
    {"name": "Overseas Telecom Ltd", "foreign": True, "stake_percent": "49"},
)

# What a Beijing customer's record needs before approval.
FOREIGN_INVESTED: dict[str, Any] = {
    "foreign_invested": True,
    "foreign_invested_evidence": "外商投资信息报告回执 (test record)",
}


def licence_body(now: datetime | None = None) -> dict[str, Any]:
    """A nationwide B13 licence from MIIT, valid since a year ago for the 5-year term."""
    today = china_today(now or utcnow())
    start = date(today.year - 1, today.month, 1)
    return {
        "number": LICENCE_NUMBER,
        "service_codes": ["B13"],
        "issuing_authority": "工业和信息化部 (MIIT)",
        "provinces": ["*"],
        "valid_from": start.isoformat(),
        "valid_to": add_years(start, 5).isoformat(),
    }


def seed(session: Session, now: datetime | None = None) -> None:
    """Record :func:`licence_body` and :data:`SHAREHOLDERS` straight in the store."""
    body = licence_body(now)
    session.add(
        Licence(
            number=body["number"],
            service_codes=body["service_codes"],
            issuing_authority=body["issuing_authority"],
            provinces=body["provinces"],
            valid_from=date.fromisoformat(body["valid_from"]),
            valid_to=date.fromisoformat(body["valid_to"]),
        )
    )
    for holder in SHAREHOLDERS:
        session.add(
            Shareholder(
                name=holder["name"],
                foreign=holder["foreign"],
                stake_percent=Decimal(holder["stake_percent"]),
            )
        )
