"""Pydantic models of the JSON:API documents Terrapod sends, for the OpenAPI schema.

Routes build their documents as plain dicts (:mod:`terrapod.jsonapi.documents`, rendered by
orjson) because that is fast; nothing validates a response against these models at run time.
They exist so ``/openapi.json`` describes every body exactly, and the schema fuzzer
(``tests/quality/test_fuzz.py``) holds the server to it: every model forbids members it does
not declare, so an attribute added to a serializer without its model fails the fuzz run.

A domain's ``schemas.py`` declares one attribute model per resource type, matching its
``serialize()`` member for member, and builds the document models from it::

    OrganizationDocument = single("organizations", OrganizationResponseAttributes, ...)
    OrganizationList = listing("organizations", OrganizationResponseAttributes, ...)

and its ``api.py`` declares them on each route with :func:`responses`, which adds the error
document for the statuses the route can answer with and the headers every ``/api/v2``
response carries. Routers use :class:`JSONAPIRouteResponse` as their default response class
so the schema names ``application/vnd.api+json`` as the content type.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, cast

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import SkipJsonSchema

from terrapod.jsonapi.documents import JSONAPI_CONTENT_TYPE
from terrapod.jsonapi.parsing import dasherize

# iso() in documents.py: UTC, milliseconds, and a literal Z (go-tfe refuses +00:00).
Timestamp = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        json_schema_extra={"format": "date-time"},
    ),
]


class JSONAPIRouteResponse(JSONResponse):
    """The default response class of every JSON:API router.

    Routes return finished :class:`~terrapod.jsonapi.documents.JSONAPIResponse` objects, so
    FastAPI never renders with this class; it only tells the OpenAPI generator which media
    type the routes' documents (and the models in ``responses=``) have.
    """

    media_type = JSONAPI_CONTENT_TYPE


# ``X | Omitted = None``: a member that is sometimes left out, never null (the schema offers
# no null).
Omitted = SkipJsonSchema[None]


class WireModel(BaseModel):
    """Base of every response model: dasherized member names, nothing undeclared."""

    model_config = ConfigDict(alias_generator=dasherize, populate_by_name=True, extra="forbid")


# -- resource identifiers and relationships ------------------------------------------------


class RelatedLinks(WireModel):
    related: str


class LinksOnlyRelationship(WireModel):
    """A relationship given only as a link to fetch (e.g. a workspace's ``outputs``)."""

    links: RelatedLinks


def _list_of(item: Any) -> Any:
    """``list[item]`` for a model made at run time (a type checker cannot see it as a type)."""
    return cast("Any", list)[item]


def _camel(type_name: str) -> str:
    return "".join(part.capitalize() for part in type_name.replace("_", "-").split("-"))


@functools.cache
def _identifier(types: tuple[str, ...]) -> type[BaseModel]:
    name = "Or".join(_camel(t) for t in types) + "Identifier"
    fields: dict[str, Any] = {"type": (Literal[types], ...), "id": (str, ...)}
    return create_model(name, __base__=WireModel, **fields)


@functools.cache
def to_one(*types: str) -> type[BaseModel]:
    """``{"data": null | {"type": <one of types>, "id": …}}`` (``ref()`` in documents.py).

    More than one type is a polymorphic relationship, such as a workspace's ``locked-by``.
    """
    name = "Or".join(_camel(t) for t in types) + "Relationship"
    fields: dict[str, Any] = {"data": (_identifier(types) | None, ...)}
    return create_model(name, __base__=WireModel, **fields)


@functools.cache
def to_many(type_name: str) -> type[BaseModel]:
    """``{"data": [{"type": type_name, "id": …}, …]}`` (``refs()`` in documents.py)."""
    name = _camel(type_name) + "RelationshipList"
    fields: dict[str, Any] = {"data": (_list_of(_identifier((type_name,))), ...)}
    return create_model(name, __base__=WireModel, **fields)


# -- resources and documents --------------------------------------------------------------


class Pagination(WireModel):
    current_page: int
    page_size: int
    prev_page: int | None
    next_page: int | None
    total_pages: int
    total_count: int


class ListMeta(WireModel):
    pagination: Pagination


class PageLinks(WireModel):
    """Links to pages of the same list: paths with the query, or null when no such page."""

    self_: str = Field(alias="self")
    first: str
    prev: str | None
    next: str | None
    last: str


def _stem(attributes: type[BaseModel]) -> str:
    name = attributes.__name__
    for suffix in ("ResponseAttributes", "Attributes"):
        if name.endswith(suffix) and name != suffix:
            return name.removesuffix(suffix)
    return name


@functools.cache
def resource(
    type_name: str,
    attributes: type[BaseModel],
    *,
    relationships: type[BaseModel] | None = None,
    links: type[BaseModel] | None = None,
    meta: type[BaseModel] | None = None,
) -> type[BaseModel]:
    """The resource object model: ``{id, type, attributes, relationships?, links?, meta?}``.

    ``resource()`` in documents.py leaves out empty relationships, links and meta, so a model
    without them forbids them and one with them requires them.
    """
    fields: dict[str, Any] = {
        "id": (str, ...),
        "type": (Literal[type_name], ...),
        "attributes": (attributes, ...),
    }
    if relationships is not None:
        fields["relationships"] = (relationships, ...)
    if links is not None:
        fields["links"] = (links, ...)
    if meta is not None:
        fields["meta"] = (meta, ...)
    return create_model(_stem(attributes) + "Resource", __base__=WireModel, **fields)


def _included(included: Sequence[type[BaseModel]]) -> dict[str, Any]:
    if not included:
        return {}
    member: Any = included[0]
    for model in included[1:]:
        member = member | model
    # document() leaves ``included`` out when there is nothing to include.
    return {"included": (_list_of(member) | Omitted, None)}


@functools.cache
def single(
    type_name: str,
    attributes: type[BaseModel],
    *,
    relationships: type[BaseModel] | None = None,
    links: type[BaseModel] | None = None,
    included: tuple[type[BaseModel], ...] = (),
) -> type[BaseModel]:
    """``{"data": <resource>, "included"?: [...]}``: one resource."""
    item = resource(type_name, attributes, relationships=relationships, links=links)
    return create_model(
        _stem(attributes) + "Document",
        __base__=WireModel,
        data=(item, ...),
        **_included(included),
    )


@functools.cache
def listing(
    type_name: str,
    attributes: type[BaseModel],
    *,
    relationships: type[BaseModel] | None = None,
    links: type[BaseModel] | None = None,
    included: tuple[type[BaseModel], ...] = (),
    page_links: bool = True,
) -> type[BaseModel]:
    """``{"data": [<resource>…], "meta": {"pagination": …}, "links": …}``: one page of a list.

    ``page_links=False`` for the lists that answer without page links (a workspace's tags).
    """
    item = resource(type_name, attributes, relationships=relationships, links=links)
    fields: dict[str, Any] = {"data": (_list_of(item), ...), "meta": (ListMeta, ...)}
    if page_links:
        fields["links"] = (PageLinks, ...)
    return create_model(
        _stem(attributes) + "List", __base__=WireModel, **fields, **_included(included)
    )


# -- errors ----------------------------------------------------------------------------------


class ErrorSource(WireModel):
    pointer: str


class ErrorObject(WireModel):
    status: str = Field(pattern=r"^[1-5]\d\d$", description="The HTTP status, as a string")
    title: str
    detail: str
    source: ErrorSource | Omitted = None


class ErrorDocument(WireModel):
    """One or more errors; ``source.pointer`` names the request member at fault."""

    errors: list[ErrorObject] = Field(min_length=1)


# What each error status means in Terrapod (DESIGN.md, Errors).
ERROR_DESCRIPTIONS: Mapping[int, str] = {
    400: "Malformed request: broken JSON, a body that is not a JSON:API document, or a bad "
    "query parameter",
    401: "No API token, or one that is invalid, expired or revoked",
    403: "The caller may see the resource but not do this to it",
    404: "No such resource, or one the caller may not see",
    409: "Conflicts with the resource's current state",
    413: "Request body larger than the server accepts",
    422: "An invalid attribute; source.pointer names it",
    429: "Too many requests; Retry-After and X-RateLimit-Reset say when to try again",
}

# Every route that reads a body may answer 400 (not a JSON:API document), 413 (too large) and
# 422 (an invalid attribute) before it looks at anything else.
BODY_ERRORS = (400, 413, 422)

# Added by the observability middleware to every /api/v2 response (errors included). The
# terraform CLI refuses a TFP-API-Version below 2.5 and an X-TFE-Version not like vYYYYMM-N.
API_HEADERS: Mapping[str, dict[str, Any]] = {
    "TFP-API-Version": {
        "description": "TFE API version Terrapod implements",
        "required": True,
        "schema": {"type": "string", "pattern": r"^\d+\.\d+$"},
    },
    "TFP-AppName": {
        "description": "Always Terrapod",
        "required": True,
        "schema": {"type": "string", "const": "Terrapod"},
    },
    "X-TFE-Version": {
        "description": "TFE release Terrapod answers as",
        "required": True,
        "schema": {"type": "string", "pattern": r"^v\d{6}-\d+$"},
    },
    "X-Request-ID": {
        "description": "The request's id (the caller's X-Request-ID when well-formed)",
        "required": True,
        "schema": {"type": "string"},
    },
}

_AUTH_HEADERS = {
    "WWW-Authenticate": {
        "description": "Names the Bearer scheme",
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer "},
    }
}

# The $ref FastAPI gives ErrorDocument once any route declares it as a model (every JSON:API
# route does, for 401); routes whose own media type is not JSON:API refer to it by hand.
ERROR_DOCUMENT_REF = {"$ref": "#/components/schemas/ErrorDocument"}


def _error(status: int, *, by_reference: bool) -> dict[str, Any]:
    headers = {**API_HEADERS, **(_AUTH_HEADERS if status == 401 else {})}
    entry: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[status], "headers": headers}
    if by_reference:
        entry["content"] = {JSONAPI_CONTENT_TYPE: {"schema": ERROR_DOCUMENT_REF}}
    else:
        entry["model"] = ErrorDocument
    return entry


def responses(
    status: int,
    model: type[BaseModel] | None = None,
    *,
    errors: Iterable[int] = (),
    description: str | None = None,
    content: Mapping[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: its success (``model`` in the route's media type, or no body
    for 204, or ``content`` given verbatim) and the JSON:API error document for each of
    ``errors``. 401 comes from the router's own ``responses=`` (:func:`authenticated`). 400
    is always documented: the request middleware refuses a query string holding a NUL
    character with it before any route runs (observability/middleware.py, ``_refuse_nul``).

    With ``content`` the route's own media type is not JSON:API (a streamed file), so the
    error documents are given by reference with their media type spelled out. ``content={}``
    documents a success without a body (a 202 whose route has ``response_class=Response``:
    FastAPI would otherwise document its router's JSON:API media type for it).
    """
    success: dict[str, Any] = {
        "description": description or ("No content" if status == 204 else "Success"),
        "headers": dict(API_HEADERS),
    }
    if model is not None:
        success["model"] = model
    if content:
        success["content"] = dict(content)
    out: dict[int | str, dict[str, Any]] = {status: success}
    by_reference = content is not None
    for code in sorted({400, *errors}):
        out[code] = _error(code, by_reference=by_reference)
    if by_reference:
        out[401] = _error(401, by_reference=True)
    return out


def authenticated() -> dict[int | str, dict[str, Any]]:
    """The router-level ``responses=`` of a router whose every route needs a token."""
    return {401: _error(401, by_reference=False)}


# -- request parameters and bodies ------------------------------------------------------------


def query_parameter(
    name: str, schema: Mapping[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    """One query parameter the route reads from ``request.query_params`` itself."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": dict(schema),
    }


def page_parameters() -> list[dict[str, Any]]:
    """``page[number]`` and ``page[size]`` (jsonapi/pagination.py: 400 below 1, sizes over
    the maximum are clamped)."""
    return [
        query_parameter(
            "page[number]", {"type": "integer", "minimum": 1}, "Page to return, from 1"
        ),
        query_parameter(
            "page[size]",
            {"type": "integer", "minimum": 1},
            "Items per page; larger values are clamped to 100",
        ),
    ]


def openapi_extra(
    *parts: Mapping[str, Any], parameters: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Merge ``openapi_extra`` fragments (e.g. ``jsonapi_body(...)``) and query parameters."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(copy.deepcopy(dict(part)))
    if parameters:
        merged["parameters"] = [dict(p) for p in parameters]
    return merged


def _body_schemas(extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [media["schema"] for media in extra["requestBody"]["content"].values()]


def require_attributes(extra: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """``jsonapi_body(...)`` with ``data.attributes`` and the named attributes required: for
    creates that share an attribute model with updates but refuse a body without them."""
    out = copy.deepcopy(dict(extra))
    for schema in _body_schemas(out):
        data = schema["properties"]["data"]
        data["required"] = sorted({*data.get("required", []), "attributes"})
        attributes = data["properties"]["attributes"]
        attributes["required"] = sorted({*attributes.get("required", []), *names})
    return out


def list_body(item: Mapping[str, Any], *, description: str) -> dict[str, Any]:
    """``openapi_extra`` for a relationship route whose body is ``{"data": [item, …]}``."""
    schema = {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": dict(item)}},
        "description": description,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSONAPI_CONTENT_TYPE: {"schema": schema},
                "application/json": {"schema": copy.deepcopy(schema)},
            },
        }
    }
