"""Error responses: every error is ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tongdao.errors import DomainError, Throttled, Unavailable
from tongdao.messages import translate_error, translate_exception
from tongdao.store import outage
from tongdao.web.i18n import HTML_LANG, negotiate

log = logging.getLogger("tongdao.api")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. validation_error")
    message: str = Field(description="what went wrong, for a person")
    fields: dict[str, str] = Field(
        default_factory=dict, description="field path (e.g. prefixes.1) → message"
    )


class ErrorResponse(BaseModel):
    """The body of every 4xx answer."""

    error: ErrorDetail


_STATUSES = {
    400: "the request could not be read",
    401: "no valid token",
    403: "the caller's roles or token scopes do not allow this",
    404: "no such object, or not the caller's to see",
    409: "conflicts with existing data (duplicate, in use, not ready)",
    413: "the request body is too large",
    422: "invalid input; `fields` says which and why",
    429: "too many failed logins; see Retry-After",
    503: "the store is unreachable for now; retry after Retry-After seconds",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in _STATUSES.items()
}


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def field_key(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _clean(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def validation_fields(errors: Sequence[Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in errors:
        key = field_key(err.get("loc", ()))
        fields.setdefault(key, _clean(str(err.get("msg", "invalid"))))
    return fields


def _language(request: Request) -> str:
    """The language an API error is written in: 简体中文 when Accept-Language asks for it."""
    return negotiate(accept_language=request.headers.get("accept-language", ""))


def localized(
    request: Request,
    code: str,
    message: str,
    fields: dict[str, str] | None,
    status_code: int,
    headers: dict[str, str] | None = None,
    *,
    exc: DomainError | None = None,
) -> JSONResponse:
    """An error answer in the caller's language; ``code`` and field keys never change."""
    language = _language(request)
    if exc is not None:
        message, translated = translate_exception(exc, language)
    else:
        message, translated = translate_error(message, fields or {}, language)
    headers = {
        **(headers or {}),
        "Content-Language": HTML_LANG[language],
        "Vary": "Accept-Language",
    }
    return JSONResponse(
        error_body(code, message, translated), status_code=status_code, headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers = {}
        if isinstance(exc, Throttled | Unavailable):
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return localized(
            request, exc.code, exc.message, exc.fields, exc.status_code, headers, exc=exc
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = validation_fields(exc.errors())
        message = "; ".join(f"{k}: {v}" for k, v in fields.items())
        return localized(request, "validation_error", message, fields, 422)

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        # Services check uniqueness first; this is the backstop for a concurrent duplicate.
        log.info("integrity error turned into 409: %s", exc.orig)
        return JSONResponse(
            error_body("conflict", "the change conflicts with existing data; retry"),
            status_code=409,
        )

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def _store(request: Request, exc: Exception) -> JSONResponse:
        # The store is down (or saturated): one log line per kind, not a traceback per
        # request, and an answer a client can act on. Anything else is a bug: a 500.
        kind = outage.unreachable_kind(exc)
        if kind is None:
            raise exc
        detail = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        outage.STORE_LOG.warning(kind, str(detail))
        return await _domain(
            request,
            Unavailable(
                "the store is unreachable for now; retry later", outage.RETRY_AFTER_SECONDS
            ),
        )

    @app.exception_handler(Exception)
    async def _internal(_request: Request, _exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server still logs the traceback.
        return JSONResponse(
            error_body("internal_error", "the server failed; the failure is logged"),
            status_code=500,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/console/") and exc.status_code == 404:
            from tongdao.web.console import not_found_page

            return not_found_page(request)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
