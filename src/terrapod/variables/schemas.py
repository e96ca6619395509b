"""TFE wire shapes for workspace variables (HCP Terraform "Workspace Variables" API, and the
deprecated "Variables" API at ``/vars``; seed 003, Variables).

Quirks kept here: a sensitive variable's ``value`` is null in every response (TFE never
returns it; go-tfe decodes null as ""); the workspace is the ``configurable`` relationship
(go-tfe's ``relation,configurable``); a list has no ``meta.pagination``, because TFE does not
paginate it and pytfe reads it exactly once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from terrapod.jsonapi.documents import Resource, iso, resource
from terrapod.jsonapi.models import (
    Omitted,
    RelatedLinks,
    Timestamp,
    WireModel,
    single,
)
from terrapod.jsonapi.models import resource as resource_model
from terrapod.jsonapi.parsing import Attributes
from terrapod.variables.models import Variable
from terrapod.variables.service import MAX_DESCRIPTION_LENGTH, MAX_KEY_LENGTH


# The json_schema_extra values describe service.py's checks for the OpenAPI schema; maxLength
# is also enforced by the parser (jsonapi/parsing.py). Attributes the service refuses as null
# are offered without null (`T | Omitted`), so the service can refuse a null with its own
# message.
class VariableAttributes(Attributes):
    """Variable attributes a client may send (key and category are required to create)."""

    key: str | Omitted = Field(
        default=None,
        json_schema_extra={
            "maxLength": MAX_KEY_LENGTH,
            "description": "terraform: letters, digits, '_' and '-', not starting with a "
            "digit; env: no '=', whitespace or control characters. Unique per category in "
            "the workspace",
        },
    )
    value: str | None = Field(
        default=None,
        json_schema_extra={
            "description": "Write-only when sensitive; on update, absent or null keeps the "
            "current value"
        },
    )
    description: str | None = Field(
        default=None, json_schema_extra={"maxLength": MAX_DESCRIPTION_LENGTH}
    )
    category: str | Omitted = Field(default=None, json_schema_extra={"enum": ["terraform", "env"]})
    hcl: bool | Omitted = Field(
        default=None,
        json_schema_extra={"description": "Parse the value as HCL (terraform category only)"},
    )
    sensitive: bool | Omitted = Field(
        default=None,
        json_schema_extra={
            "description": "Once true, the value is never shown and it cannot be set back to false"
        },
    )


def domain_values(attrs: VariableAttributes) -> dict[str, Any]:
    """The attributes the client sent, by domain name (null included, absent left out)."""
    return attrs.model_dump(exclude_unset=True)


# -- responses ------------------------------------------------------------------------------


# Member for member what serialize() sends.
class VariableResponseAttributes(WireModel):
    """A workspace variable; ``value`` is null when it is sensitive."""

    key: str
    value: str | None
    description: str | None
    category: Literal["terraform", "env"]
    hcl: bool
    sensitive: bool
    version_id: str
    created_at: Timestamp


class WorkspaceIdentifier(WireModel):
    type: Literal["workspaces"]
    id: str


class ConfigurableRelationship(WireModel):
    """The workspace the variable belongs to."""

    data: WorkspaceIdentifier
    links: RelatedLinks


class VariableRelationships(WireModel):
    configurable: ConfigurableRelationship


class VariableLinks(WireModel):
    self_: str = Field(alias="self")


VariableResource = resource_model(
    "vars", VariableResponseAttributes, relationships=VariableRelationships, links=VariableLinks
)
VariableDocument = single(
    "vars", VariableResponseAttributes, relationships=VariableRelationships, links=VariableLinks
)
# ``list`` subscripted with a model made at run time (a type checker cannot see it as a type).
_LIST: Any = list
# Not jsonapi.models.listing(): this list has no meta or page links (see the top).
VariableList: type[BaseModel] = create_model(
    "VariableList", __base__=WireModel, data=(_LIST[VariableResource], ...)
)


def serialize(variable: Variable) -> Resource:
    ws = variable.workspace_id
    return resource(
        "vars",
        variable.id,
        {
            "key": variable.key,
            # Never the ciphertext, never the plain text of a sensitive value.
            "value": None if variable.sensitive else (variable.value or ""),
            "description": variable.description,
            "category": variable.category,
            "hcl": variable.hcl,
            "sensitive": variable.sensitive,
            "version-id": variable.version_id,
            "created-at": iso(variable.created_at),
        },
        relationships={
            "configurable": {
                "data": {"type": "workspaces", "id": ws},
                "links": {"related": f"/api/v2/workspaces/{ws}"},
            }
        },
        links={"self": f"/api/v2/workspaces/{ws}/vars/{variable.id}"},
    )
