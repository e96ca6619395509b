"""TFE pagination: ``page[number]``/``page[size]`` in, ``meta.pagination`` and ``links`` out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from terrapod.errors import BadRequest
from terrapod.jsonapi.documents import JSONAPIResponse, Resource, document

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Far beyond any real list, and small enough that the offset fits a 64-bit integer.
MAX_PAGE_NUMBER = 1_000_000_000


@dataclass(frozen=True)
class Page:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def _positive_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise BadRequest(f"{name} must be at least 1, got {value}")
    return value


def page_params(request: Request, *, default_size: int = DEFAULT_PAGE_SIZE) -> Page:
    number = _positive_int(request, "page[number]", 1)
    if number > MAX_PAGE_NUMBER:
        raise BadRequest(f"page[number] must be at most {MAX_PAGE_NUMBER}")
    # TFE clamps oversized pages to the maximum rather than refusing them.
    size = min(_positive_int(request, "page[size]", default_size), MAX_PAGE_SIZE)
    return Page(number, size)


def pagination(request: Request, page: Page, total: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``meta`` and ``links`` members for one page of ``total`` items."""
    total_pages = max(1, -(-total // page.size))
    next_page = page.number + 1 if page.number < total_pages else None
    # Past the end, "previous" is the last page that exists.
    prev_page = min(page.number - 1, total_pages) if page.number > 1 else None
    meta = {
        "pagination": {
            "current-page": page.number,
            "page-size": page.size,
            "prev-page": prev_page,
            "next-page": next_page,
            "total-pages": total_pages,
            "total-count": total,
        }
    }

    def link(number: int | None) -> str | None:
        if number is None:
            return None
        params = [
            (k, v) for k, v in request.query_params.multi_items() if not k.startswith("page[")
        ]
        params += [("page[number]", str(number)), ("page[size]", str(page.size))]
        return f"{request.url.path}?{urlencode(params)}"

    links = {
        "self": link(page.number),
        "first": link(1),
        "prev": link(prev_page),
        "next": link(next_page),
        "last": link(total_pages),
    }
    return meta, links


def include_params(request: Request) -> set[str]:
    """The requested ``include`` paths. Unknown values are ignored, as TFE does."""
    raw = request.query_params.get("include", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def page_document(
    request: Request,
    page: Page,
    total: int,
    data: list[Resource],
    *,
    included: list[Resource] | None = None,
) -> JSONAPIResponse:
    """One page of a list: ``data`` with its ``meta`` and ``links`` (see :func:`pagination`)."""
    meta, links = pagination(request, page, total)
    return document(data, included=included, meta=meta, links=links)
