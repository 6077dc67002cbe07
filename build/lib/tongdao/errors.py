"""Tongdao's exception hierarchy.

    TongdaoError
    ├── ConfigurationError      settings refused at start (not an API error)
    └── DomainError             carries an HTTP status and a stable code
        ├── ValidationError     422, with field-keyed messages
        ├── AuthenticationError 401
        ├── PermissionDenied    403
        ├── NotFound            404 (also for another tenant's object)
        ├── Conflict            409
        ├── PayloadTooLarge     413
        ├── Throttled           429, with retry_after seconds
        └── Unavailable         503, with retry_after seconds (the store is unreachable)

Library errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping


class TongdaoError(Exception):
    """Base of every error Tongdao raises on purpose."""


class ConfigurationError(TongdaoError):
    """The configuration is unusable; the process refuses to start."""


class DomainError(TongdaoError):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, str] = dict(fields or {})


class ValidationError(DomainError):
    status_code = 422
    code = "validation_error"

    def __init__(self, fields: Mapping[str, str], message: str | None = None) -> None:
        if message is None:
            message = "; ".join(f"{key}: {text}" for key, text in fields.items())
        super().__init__(message, fields)


class AuthenticationError(DomainError):
    status_code = 401
    code = "not_authenticated"


class PermissionDenied(DomainError):
    status_code = 403
    code = "permission_denied"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "payload_too_large"


class Throttled(DomainError):
    status_code = 429
    code = "throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    status_code = 503
    code = "store_unavailable"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
