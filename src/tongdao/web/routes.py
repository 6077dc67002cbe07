"""The console's static files and security headers (pages: :mod:`tongdao.web.pages`).

No build step and nothing fetched from elsewhere: every script, stylesheet and vendored library
is served from this package. Every console response carries a Content-Security-Policy that
allows only this origin and no inline script, so neither injected markup nor a tampered page
can load or send anything elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from importlib.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)
_STATIC = resources.files("tongdao.web") / "static"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
}
# A static path is one or more segments of letters, digits, '.', '_' and '-', each starting
# with a letter or digit: no '..', no dot-files, no empty segment, no leading '/', no backslash
# and no '%' (Starlette has already decoded the URL once, so an encoded trick arrives here as
# the character it encodes, or as a literal '%' when encoded twice: both are refused).
_STATIC_PATH = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,7}"
)

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


def _static_file(path: str) -> Traversable | None:
    """The packaged file at ``path`` under ``static/``, or None for anything else."""
    if not _STATIC_PATH.fullmatch(path):
        return None
    name = path.rsplit("/", 1)[-1]
    if "." not in name or name[name.rfind(".") :] not in _TYPES:
        return None
    entry = _STATIC
    for segment in path.split("/"):
        entry = entry / segment
    return entry if entry.is_file() else None


@router.get("/console/static/{path:path}")
def static(path: str, request: Request) -> Response:
    """A packaged asset (``console.js``, ``vendor/htmx/htmx.min.js``, ...), 404 otherwise.

    ``no-cache`` with a content hash as ETag: browsers revalidate and get a 304 for an
    unchanged file, so an upgrade never runs against a stale cached vendor file."""
    entry = _static_file(path)
    if entry is None:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    body = entry.read_bytes()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    suffix = path[path.rfind(".") :]
    return Response(body, media_type=_TYPES[suffix], headers=headers)
