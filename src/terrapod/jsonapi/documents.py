"""Building JSON:API documents the way TFE clients decode them.

go-tfe decodes with hashicorp/jsonapi, which is strict: ``type`` must be exact on resources
and relationship data, and timestamps must end in a literal ``Z`` (CLIENT_FACTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response

from terrapod import timefmt

JSONAPI_CONTENT_TYPE = "application/vnd.api+json"

Resource = dict[str, Any]

# Serializers take the timestamp format from here; services (no web framework) from timefmt.
iso = timefmt.iso


def ref(type_: str, id_: str | None) -> dict[str, Any]:
    """A to-one relationship object (``{"data": null}`` when there is no target)."""
    return {"data": {"type": type_, "id": id_} if id_ is not None else None}


def refs(type_: str, ids: Sequence[str]) -> dict[str, Any]:
    return {"data": [{"type": type_, "id": i} for i in ids]}


def resource(
    type_: str,
    id_: str,
    attributes: Mapping[str, Any],
    *,
    relationships: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Resource:
    obj: Resource = {"id": id_, "type": type_, "attributes": dict(attributes)}
    if relationships:
        obj["relationships"] = dict(relationships)
    if links:
        obj["links"] = dict(links)
    if meta:
        obj["meta"] = dict(meta)
    return obj


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


class JSONAPIResponse(Response):
    media_type = JSONAPI_CONTENT_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)


def document(
    data: Resource | list[Resource] | None,
    *,
    included: list[Resource] | None = None,
    meta: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
) -> JSONAPIResponse:
    body: dict[str, Any] = {"data": data}
    if included:
        body["included"] = _dedupe(included)
    if meta:
        body["meta"] = dict(meta)
    if links:
        body["links"] = dict(links)
    return JSONAPIResponse(
        body, status_code=status_code, headers=dict(headers or {}), background=background
    )


def no_content() -> Response:
    return Response(status_code=204)


def _dedupe(included: list[Resource]) -> list[Resource]:
    seen: set[tuple[str, str]] = set()
    out = []
    for item in included:
        key = (item["type"], item["id"])
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
