"""JSON:API error documents and the one table mapping domain errors to HTTP statuses.

Every error Terrapod returns has the shape
``{"errors": [{"status": "422", "title": "...", "detail": "...", "source": {"pointer": "..."}}]}``.
Services raise the domain errors from :mod:`terrapod.errors`; nothing below the API layer
knows about status codes.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from terrapod.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

JSONAPI_CONTENT_TYPE = "application/vnd.api+json"

# The one mapping from domain errors to HTTP (STYLE.md, convention 7).
STATUS_BY_ERROR: dict[type[DomainError], int] = {
    BadRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Invalid: 422,
    RateLimited: 429,
    Unavailable: 503,
}

TITLES = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    406: "not acceptable",
    409: "conflict",
    413: "payload too large",
    415: "unsupported media type",
    422: "invalid attribute",
    429: "too many requests",
    500: "internal server error",
    503: "service unavailable",
}


def error_object(
    status: int, detail: str, *, pointer: str | None = None, title: str | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "status": str(status),
        "title": title or TITLES.get(status, "error"),
        "detail": detail,
    }
    if pointer is not None:
        obj["source"] = {"pointer": pointer}
    return obj


def error_response(
    status: int,
    detail: str,
    *,
    pointer: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"errors": [error_object(status, detail, pointer=pointer, title=title)]}
    return Response(
        orjson.dumps(body), status_code=status, media_type=JSONAPI_CONTENT_TYPE, headers=headers
    )


def errors_response(status: int, errors: list[dict[str, Any]]) -> Response:
    return Response(
        orjson.dumps({"errors": errors}), status_code=status, media_type=JSONAPI_CONTENT_TYPE
    )


def domain_error_response(exc: DomainError) -> Response:
    status = next((code for kind, code in STATUS_BY_ERROR.items() if isinstance(exc, kind)), 400)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after), "X-RateLimit-Reset": str(exc.retry_after)}
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": 'Bearer realm="terrapod"'}
    return error_response(status, exc.detail, pointer=exc.pointer, headers=headers)
