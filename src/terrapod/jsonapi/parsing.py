"""Reading JSON:API request documents with errors that name the bad field.

Attribute models are Pydantic models whose field names are the snake_case of TFE's dasherized
attribute names (see :class:`Attributes`). Unknown attributes are ignored, as TFE does; wrong
types are 422 with ``source.pointer`` at the attribute; broken JSON is 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from terrapod.errors import BadRequest, Invalid, PayloadTooLarge

DEFAULT_MAX_BODY = 10 * 1024 * 1024

A = TypeVar("A", bound=BaseModel)


def dasherize(name: str) -> str:
    return name.replace("_", "-")


class Attributes(BaseModel):
    """Base for request attribute models: dasherized aliases, strict types, extras ignored."""

    model_config = ConfigDict(
        alias_generator=dasherize, populate_by_name=True, extra="ignore", strict=True
    )


@dataclass
class Parsed(Generic[A]):
    type: str
    id: str | None
    attributes: A
    relationships: dict[str, Any] = field(default_factory=dict)
    # Attribute names the client actually sent (dasherized), to tell "absent" from "null".
    sent: frozenset[str] = frozenset()


async def read_body(request: Request, *, max_body: int | None = None) -> bytes:
    """The raw body, refusing bodies over the limit (the app's ``max_request_body_bytes``
    unless ``max_body``) before reading them whole."""
    configured: int = getattr(request.app.state, "max_request_body_bytes", DEFAULT_MAX_BODY)
    limit = max_body or configured
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length header is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, max_body: int | None = None) -> Any:
    """Read and decode the body, refusing bodies over the limit before reading them whole."""
    raw = await read_body(request, max_body=max_body)
    if not raw.strip():
        raise BadRequest("request body is empty; a JSON:API document is required", pointer="")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", pointer="") from exc


def _pointer(loc: tuple[Any, ...], raw: Any) -> str:
    """The JSON pointer of the offending member. Pydantic's ``loc`` also names union members
    and validators (``str``, ``function-after[…]``); only elements that index into what the
    client actually sent become part of the pointer."""
    if not loc:
        return "/data/attributes"
    # The first element is the attribute itself, present or (when required) missing.
    field = dasherize(loc[0]) if isinstance(loc[0], str) else str(loc[0])
    parts = [field]
    node = raw.get(field) if isinstance(raw, dict) else None
    for element in loc[1:]:
        key = dasherize(element) if isinstance(element, str) else element
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, dict) and element in node:
            key, node = element, node[element]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            continue
        parts.append(str(key))
    return "/data/attributes/" + "/".join(parts)


def _message(error: dict[str, Any]) -> str:
    loc = ".".join(dasherize(str(p)) for p in error["loc"]) or "attributes"
    return f"{loc}: {error['msg']}"


def reject_nul(value: Any, pointer: str) -> None:
    """NUL cannot be stored in PostgreSQL text and never belongs in TFE attributes."""
    if isinstance(value, str):
        if "\x00" in value:
            raise Invalid("must not contain NUL characters", pointer=pointer)
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key, pointer)
            reject_nul(item, f"{pointer}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_nul(item, f"{pointer}/{index}")


def _enforce_limits(model: type[BaseModel], instance: BaseModel) -> None:
    """``maxLength`` and ``maximum`` in a field's ``json_schema_extra`` are enforced here, for
    every attribute model: the OpenAPI schema and the check cannot disagree, and no value
    wider than its column reaches the database."""
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        value = getattr(instance, name)
        attribute = dasherize(name)
        limit = extra.get("maxLength")
        if isinstance(limit, int) and isinstance(value, str) and len(value) > limit:
            raise Invalid(
                f"{attribute} must be at most {limit} characters",
                pointer=f"/data/attributes/{attribute}",
            )
        maximum = extra.get("maximum")
        if isinstance(maximum, int) and isinstance(value, int) and value > maximum:
            raise Invalid(
                f"{attribute} must be at most {maximum}", pointer=f"/data/attributes/{attribute}"
            )


def validate_attributes(model: type[A], raw: Any) -> A:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Invalid("attributes must be an object", pointer="/data/attributes")
    reject_nul(raw, "/data/attributes")
    try:
        instance = model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(_message(dict(first)), pointer=_pointer(tuple(first["loc"]), raw)) from exc
    _enforce_limits(model, instance)
    return instance


async def parse_resource(
    request: Request,
    model: type[A],
    *,
    types: set[str] | None = None,
    require_type: bool = False,
    max_body: int | None = None,
) -> Parsed[A]:
    """Parse ``{"data": {"type": …, "attributes": {…}, "relationships": {…}}}``.

    ``types`` lists the acceptable ``data.type`` values. TFE clients are not consistent
    (terraform sends ``"type": ""`` on lock; go-tfe sends singular names on some endpoints),
    so a type mismatch is only an error when ``require_type`` is set.
    """
    body = await read_json(request, max_body=max_body)
    if not isinstance(body, dict) or "data" not in body:
        raise BadRequest("request body must be a JSON:API document with a data member", pointer="")
    data = body["data"]
    if not isinstance(data, dict):
        raise BadRequest("data must be an object", pointer="/data")
    type_ = data.get("type", "")
    if not isinstance(type_, str):
        raise Invalid("type must be a string", pointer="/data/type")
    if require_type and types and type_ not in types:
        expected = " or ".join(sorted(types))
        raise Invalid(f"type must be {expected}, got {type_!r}", pointer="/data/type")
    id_ = data.get("id")
    if id_ is not None and not isinstance(id_, str):
        raise Invalid("id must be a string", pointer="/data/id")
    relationships = data.get("relationships") or {}
    if not isinstance(relationships, dict):
        raise Invalid("relationships must be an object", pointer="/data/relationships")
    reject_nul(relationships, "/data/relationships")
    raw_attrs = data.get("attributes")
    attributes = validate_attributes(model, raw_attrs)
    sent = frozenset(raw_attrs.keys()) if isinstance(raw_attrs, dict) else frozenset()
    return Parsed(type_, id_, attributes, relationships, sent)


def relationship_id(
    relationships: dict[str, Any], name: str, type_: str | None = None
) -> str | None:
    """The id of a to-one relationship, validated; None when the relationship is absent."""
    rel = relationships.get(name)
    if rel is None:
        return None
    pointer = f"/data/relationships/{name}"
    if not isinstance(rel, dict) or "data" not in rel:
        raise Invalid(f"relationship {name} must be an object with data", pointer=pointer)
    data = rel["data"]
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise Invalid(f"relationship {name} needs data.id", pointer=pointer + "/data")
    if type_ is not None and data.get("type") not in (None, type_):
        raise Invalid(
            f"relationship {name} must be of type {type_}", pointer=pointer + "/data/type"
        )
    return str(data["id"])


async def parse_resource_list(request: Request) -> list[dict[str, Any]]:
    """Parse ``{"data": [{…}, …]}`` (relationship bodies); each element must be an object."""
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadRequest(
            "request body must be a JSON:API document whose data is a list", pointer="/data"
        )
    reject_nul(body["data"], "/data")
    items: list[dict[str, Any]] = []
    for index, item in enumerate(body["data"]):
        if not isinstance(item, dict):
            raise Invalid("each element of data must be an object", pointer=f"/data/{index}")
        items.append(item)
    return items


def ids_of(items: list[dict[str, Any]], type_: str) -> list[str]:
    """The ids of resource identifiers, all of ``type_``."""
    ids: list[str] = []
    for index, item in enumerate(items):
        if item.get("type") != type_:
            raise Invalid(f"type must be {type_}", pointer=f"/data/{index}/type")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise Invalid("id is required", pointer=f"/data/{index}/id")
        ids.append(item["id"])
    return ids
