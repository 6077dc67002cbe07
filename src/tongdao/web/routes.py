"""The web console: static pages that talk to ``/api/v1`` with the caller's token."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

router = APIRouter(include_in_schema=False)
_STATIC = resources.files("tongdao.web") / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/console/")
def console() -> HTMLResponse:
    return HTMLResponse((_STATIC / "index.html").read_text(encoding="utf-8"))


@router.get("/console/static/{name}")
def static(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    entry = _STATIC / name
    if "/" in name or suffix not in _TYPES or not entry.is_file():
        return Response(status_code=404)
    return Response(entry.read_bytes(), media_type=_TYPES[suffix],
                    headers={"Cache-Control": "no-cache"})
