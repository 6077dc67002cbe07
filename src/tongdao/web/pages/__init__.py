"""The console's pages, one module per area.

Each area module has a ``router`` (an ``APIRouter(route_class=ConsoleRoute)``) and may have
``NAV``, its menu entries (:class:`tongdao.web.console.NavItem`); :data:`AREAS` lists the
areas in the order their menu entries appear.
"""

from __future__ import annotations

from types import ModuleType

from fastapi import APIRouter

from tongdao.web.console import NavItem
from tongdao.web.pages import (
    audit,
    billing,
    compliance,
    compliance_watch,
    crossborder,
    keys,
    ledger,
    me,
    network,
    operator,
    people,
    quotas,
    session,
)

AREAS: list[ModuleType] = [
    session,
    operator,
    compliance,
    compliance_watch,
    people,
    network,
    ledger,
    crossborder,
    billing,
    quotas,
    audit,
    me,
    keys,
]
ROUTERS: list[APIRouter] = [area.router for area in AREAS]


def navigation_items() -> list[NavItem]:
    items: list[NavItem] = []
    for area in AREAS:
        items.extend(getattr(area, "NAV", []))
    return items
