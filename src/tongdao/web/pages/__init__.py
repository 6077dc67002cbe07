"""The console's pages, one module per area; :data:`ROUTERS` lists them in mount order."""

from __future__ import annotations

from fastapi import APIRouter

from tongdao.web.pages import session

ROUTERS: list[APIRouter] = [
    session.router,
]
