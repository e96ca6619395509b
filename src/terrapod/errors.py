"""Domain errors. Services raise these; :mod:`terrapod.jsonapi.errors` maps them to HTTP."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service may raise on purpose.

    ``detail`` is shown to the caller, so it must name what is wrong and never contain a
    secret. ``pointer`` is the JSON pointer of the offending request field, when there is one.
    """

    default_detail = "request failed"

    def __init__(self, detail: str | None = None, *, pointer: str | None = None) -> None:
        self.detail = detail or self.default_detail
        self.pointer = pointer
        super().__init__(self.detail)


class BadRequest(DomainError):
    """The request itself is malformed (broken JSON, bad query parameter): HTTP 400."""

    default_detail = "malformed request"


class Unauthenticated(DomainError):
    default_detail = "a valid API token is required"


class Forbidden(DomainError):
    default_detail = "not permitted"


class NotFound(DomainError):
    default_detail = "resource not found"


class Conflict(DomainError):
    default_detail = "conflict with the resource's current state"


class Invalid(DomainError):
    default_detail = "invalid request"


class PayloadTooLarge(DomainError):
    default_detail = "request body too large"


class Unavailable(DomainError):
    """The server cannot answer now or as configured (HTTP 503); says what to fix."""

    default_detail = "service unavailable"


class RateLimited(DomainError):
    default_detail = "rate limit exceeded"

    def __init__(self, retry_after: int = 1, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
