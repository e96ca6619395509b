"""TFE wire shapes for variable sets (HCP Terraform "Variable Sets API"; seed 003, Variable
Sets).

Quirks kept here: the set's ``global`` attribute (a Python keyword, ``is_global`` in the
domain); ``description`` is a string, never null (TFE's default is ""); ``project-count`` is
always 0 and ``projects`` always empty, because Terrapod has no projects; ``parent`` names the
organization, as go-tfe and pytfe read it. A set's variable is a ``vars`` resource whose
``varset`` relationship names the set; a sensitive value is null in every response. In
``/workspaces/{id}/all-vars`` a set's variable keeps go-tfe's ``configurable`` relationship
pointing at the workspace (go-tfe decodes it into a Workspace) and links to the set's copy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from terrapod.errors import Invalid
from terrapod.jsonapi.documents import Resource, iso, ref, refs, resource
from terrapod.jsonapi.models import (
    Omitted,
    RelatedLinks,
    Timestamp,
    WireModel,
    listing,
    single,
    to_many,
    to_one,
)
from terrapod.jsonapi.parsing import Attributes, validate_attributes
from terrapod.variables.schemas import VariableAttributes
from terrapod.variables.schemas import domain_values as variable_values
from terrapod.variables.schemas import serialize as serialize_workspace_variable
from terrapod.varsets.models import VariableSetVariable
from terrapod.varsets.service import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, Effective, VarsetView

__all__ = ["VariableAttributes", "variable_values"]


class VarsetAttributes(Attributes):
    """Attributes a client may send for a set (``name`` is required to create)."""

    name: str | Omitted = Field(default=None, json_schema_extra={"maxLength": MAX_NAME_LENGTH})
    description: str | None = Field(
        default=None, json_schema_extra={"maxLength": MAX_DESCRIPTION_LENGTH}
    )
    global_: bool | Omitted = Field(
        default=None,
        alias="global",
        json_schema_extra={
            "description": "Apply to every workspace of the organization, now and later"
        },
    )
    priority: bool | Omitted = Field(
        default=None,
        json_schema_extra={
            "description": "Its values win over workspace variables (not over run variables)"
        },
    )


def set_values(attrs: VarsetAttributes) -> dict[str, Any]:
    """The attributes the client sent, by domain name (null included, absent left out)."""
    values = attrs.model_dump(exclude_unset=True)
    if "global_" in values:
        values["is_global"] = values.pop("global_")
    return values


def _relationship_list(relationships: dict[str, Any], name: str) -> list[Any] | None:
    """``relationships.<name>.data`` as a list; None when the relationship is absent."""
    if name not in relationships:
        return None
    pointer = f"/data/relationships/{name}"
    rel = relationships[name]
    if not isinstance(rel, dict) or not isinstance(rel.get("data"), list):
        raise Invalid(
            f"relationship {name} must be an object whose data is a list", pointer=pointer
        )
    items: list[Any] = rel["data"]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid("each element must be an object", pointer=f"{pointer}/data/{index}")
    return items


def workspace_ids(relationships: dict[str, Any]) -> list[str] | None:
    """The ids in ``relationships.workspaces`` (None: absent, so unchanged on update)."""
    items = _relationship_list(relationships, "workspaces")
    if items is None:
        return None
    ids = []
    for index, item in enumerate(items):
        pointer = f"/data/relationships/workspaces/data/{index}"
        if item.get("type") != "workspaces":
            raise Invalid("type must be workspaces", pointer=pointer + "/type")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise Invalid("id is required", pointer=pointer + "/id")
        ids.append(item["id"])
    return ids


def new_variables(relationships: dict[str, Any]) -> list[dict[str, Any]]:
    """The variables in ``relationships.vars`` (complete definitions, as TFE takes them),
    each as the attributes sent by domain name."""
    items = _relationship_list(relationships, "vars") or []
    out = []
    for index, item in enumerate(items):
        pointer = f"/data/relationships/vars/data/{index}"
        try:
            attrs = validate_attributes(VariableAttributes, item.get("attributes"))
        except Invalid as exc:
            inner = (exc.pointer or "").removeprefix("/data")
            raise Invalid(exc.detail, pointer=pointer + inner) from exc
        out.append(variable_values(attrs))
    return out


# -- responses ------------------------------------------------------------------------------


class VarsetResponseAttributes(WireModel):
    name: str
    description: str
    global_: bool = Field(alias="global")
    priority: bool
    created_at: Timestamp
    updated_at: Timestamp
    var_count: int
    workspace_count: int
    project_count: int


class VarsetRelationships(WireModel):
    organization: to_one("organizations")  # type: ignore[valid-type]
    parent: to_one("organizations")  # type: ignore[valid-type]
    vars: to_many("vars")  # type: ignore[valid-type]
    workspaces: to_many("workspaces")  # type: ignore[valid-type]
    projects: to_many("projects")  # type: ignore[valid-type]


class SelfLinks(WireModel):
    self_: str = Field(alias="self")


VarsetDocument = single(
    "varsets", VarsetResponseAttributes, relationships=VarsetRelationships, links=SelfLinks
)
VarsetList = listing(
    "varsets", VarsetResponseAttributes, relationships=VarsetRelationships, links=SelfLinks
)


def serialize(view: VarsetView) -> Resource:
    varset, org = view.varset, view.org
    return resource(
        "varsets",
        varset.id,
        {
            "name": varset.name,
            "description": varset.description,
            "global": varset.is_global,
            "priority": varset.priority,
            "created-at": iso(varset.created_at),
            "updated-at": iso(varset.updated_at),
            "var-count": len(view.variables),
            "workspace-count": len(view.workspace_ids),
            "project-count": 0,
        },
        relationships={
            "organization": ref("organizations", org.name),
            "parent": ref("organizations", org.name),
            "vars": refs("vars", [v.id for v in view.variables]),
            "workspaces": refs("workspaces", view.workspace_ids),
            "projects": refs("projects", []),
        },
        links={"self": f"/api/v2/varsets/{varset.id}"},
    )


# Member for member what serialize_variable() sends.
class VarsetVariableResponseAttributes(WireModel):
    """A variable of a set; ``value`` is null when it is sensitive."""

    key: str
    value: str | None
    description: str | None
    category: Literal["terraform", "env"]
    hcl: bool
    sensitive: bool
    version_id: str
    created_at: Timestamp


class VarsetIdentifier(WireModel):
    type: Literal["varsets"]
    id: str


class VarsetRelationship(WireModel):
    data: VarsetIdentifier
    links: RelatedLinks


class VarsetVariableRelationships(WireModel):
    varset: VarsetRelationship


VarsetVariableDocument = single(
    "vars",
    VarsetVariableResponseAttributes,
    relationships=VarsetVariableRelationships,
    links=SelfLinks,
)
VarsetVariableList = listing(
    "vars",
    VarsetVariableResponseAttributes,
    relationships=VarsetVariableRelationships,
    links=SelfLinks,
)


def _variable_attributes(variable: VariableSetVariable) -> dict[str, Any]:
    return {
        "key": variable.key,
        # Never the ciphertext, never the plain text of a sensitive value.
        "value": None if variable.sensitive else (variable.value or ""),
        "description": variable.description,
        "category": variable.category,
        "hcl": variable.hcl,
        "sensitive": variable.sensitive,
        "version-id": variable.version_id,
        "created-at": iso(variable.created_at),
    }


def _variable_link(variable: VariableSetVariable) -> str:
    return f"/api/v2/varsets/{variable.varset_id}/relationships/vars/{variable.id}"


def serialize_variable(variable: VariableSetVariable) -> Resource:
    vs = variable.varset_id
    return resource(
        "vars",
        variable.id,
        _variable_attributes(variable),
        relationships={
            "varset": {
                "data": {"type": "varsets", "id": vs},
                "links": {"related": f"/api/v2/varsets/{vs}"},
            }
        },
        links={"self": _variable_link(variable)},
    )


def serialize_effective(entry: Effective, workspace_id: str) -> Resource:
    """One variable of ``/workspaces/{id}/all-vars``, in the workspace variables' shape."""
    variable = entry.variable
    if not isinstance(variable, VariableSetVariable):
        return serialize_workspace_variable(variable)
    return resource(
        "vars",
        variable.id,
        _variable_attributes(variable),
        relationships={
            "configurable": {
                "data": {"type": "workspaces", "id": workspace_id},
                "links": {"related": f"/api/v2/workspaces/{workspace_id}"},
            }
        },
        links={"self": _variable_link(variable)},
    )
