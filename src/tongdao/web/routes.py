"""The console's static files and security headers (pages: :mod:`tongdao.web.pages`).

No build step and nothing fetched from elsewhere: every script, stylesheet and vendored library
is served from this package. Every console response carries a Content-Security-Policy that
allows only this origin and no inline script, so neither injected markup nor a tampered page
can load or send anything elsewhere.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)
_STATIC = resources.files("tongdao.web") / "static"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/console")
def console_slash() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/console/static/{name}")
def static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    entry = _STATIC / name
    if "/" in name or suffix not in _TYPES or not entry.is_file():
        return Response(status_code=404, headers=SECURITY_HEADERS)
    return Response(entry.read_bytes(), media_type=_TYPES[suffix], headers=SECURITY_HEADERS)
