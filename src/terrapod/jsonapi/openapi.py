"""OpenAPI descriptions of JSON:API request bodies built from the attribute models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from terrapod.jsonapi.documents import JSONAPI_CONTENT_TYPE


def jsonapi_body(model: type[BaseModel], type_: str, *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is ``{"data": {"type", "attributes"}}``."""
    attributes = model.model_json_schema(by_alias=True, mode="validation")
    schema = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "example": type_},
                    "attributes": attributes,
                    "relationships": {"type": "object"},
                },
            }
        },
    }
    return {
        "requestBody": {
            "required": required,
            "content": {
                JSONAPI_CONTENT_TYPE: {"schema": schema},
                "application/json": {"schema": schema},
            },
        }
    }
