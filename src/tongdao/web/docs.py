"""``/api/v1/docs``: Swagger UI served from the package, so the API reference works offline.

FastAPI's own docs page loads Swagger UI from a CDN and starts it with an inline script, which
the console's Content-Security-Policy forbids. This page loads the vendored bundle
(``static/vendor/swagger-ui/``) and a small init file (``static/js/swagger-init.js``) that reads
the OpenAPI URL from a data attribute, under a policy that allows only this origin.

Swagger UI needs two things beyond the console's policy, both checked in Chromium (see
``tests/browser/test_docs.py``): its stylesheet draws icons from ``data:`` SVG/PNG images
(``img-src 'self' data:``), and nothing else. React sets element styles through the CSSOM,
which ``style-src 'self'`` allows, so no ``'unsafe-inline'`` and no ``'unsafe-eval'``.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tongdao.web.routes import SECURITY_HEADERS

router = APIRouter(include_in_schema=False)

DOCS_URL = "/api/v1/docs"
VENDOR = "/console/static/vendor/swagger-ui"

DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
DOCS_HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY}


def docs_page(request: Request) -> HTMLResponse:
    title = escape(f"{request.app.title} · API")
    openapi_url = escape(request.app.openapi_url or "/api/v1/openapi.json")
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{VENDOR}/favicon-32x32.png" type="image/png">
<link rel="stylesheet" href="{VENDOR}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{VENDOR}/swagger-ui-bundle.js"></script>
<script src="/console/static/js/swagger-init.js"></script>
</body>
</html>
"""
    return HTMLResponse(html, headers=DOCS_HEADERS)


# A plain Starlette route, like FastAPI's own docs route: a page, not an API operation.
router.add_route(DOCS_URL, docs_page, methods=["GET"], include_in_schema=False)
