"""TFE wire shapes for run triggers (seed 003, "Run Triggers"; HCP Terraform "Run Triggers"
API; go-tfe ``RunTrigger``).

The destination is the ``workspace`` relationship and the source the ``sourceable`` one,
always of type ``workspaces`` (go-tfe decodes ``sourceable`` both as a plain relation and as
the polymorphic ``SourceableChoice``, from the same member). Both names are attributes too
(``workspace-name``, ``sourceable-name``), as pytfe builds its workspace objects from them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.models import Timestamp, WireModel, listing, single, to_one
from terrapod.jsonapi.models import resource as resource_model
from terrapod.jsonapi.parsing import Attributes
from terrapod.runtriggers.service import TriggerView
from terrapod.workspaces.schemas import (
    WorkspaceLinks,
    WorkspaceRelationships,
    WorkspaceResponseAttributes,
)


class RunTriggerAttributes(Attributes):
    """A run trigger has no attributes a client sets: the source is a relationship."""


# -- responses ------------------------------------------------------------------------------


# Member for member what serialize() sends.
class RunTriggerResponseAttributes(WireModel):
    """``workspace-name`` is the destination's name, ``sourceable-name`` the source's."""

    workspace_name: str
    sourceable_name: str
    created_at: Timestamp


class RunTriggerRelationships(WireModel):
    workspace: to_one("workspaces")  # type: ignore[valid-type]
    sourceable: to_one("workspaces")  # type: ignore[valid-type]


class RunTriggerLinks(WireModel):
    self_: str = Field(alias="self")


# ``include=workspace,sourceable`` adds the workspaces, as GET /workspaces/:id shows them.
IncludedWorkspace = resource_model(
    "workspaces",
    WorkspaceResponseAttributes,
    relationships=WorkspaceRelationships,
    links=WorkspaceLinks,
)
RunTriggerDocument = single(
    "run-triggers",
    RunTriggerResponseAttributes,
    relationships=RunTriggerRelationships,
    links=RunTriggerLinks,
    included=(IncludedWorkspace,),
)
RunTriggerList = listing(
    "run-triggers",
    RunTriggerResponseAttributes,
    relationships=RunTriggerRelationships,
    links=RunTriggerLinks,
    included=(IncludedWorkspace,),
)

_TYPE: Literal["run-triggers"] = "run-triggers"


def serialize(view: TriggerView) -> Resource:
    trigger = view.trigger
    attributes: dict[str, Any] = {
        "workspace-name": view.workspace.name,
        "sourceable-name": view.sourceable.name,
        "created-at": iso(trigger.created_at),
    }
    return resource(
        _TYPE,
        trigger.id,
        attributes,
        relationships={
            "workspace": ref("workspaces", trigger.workspace_id),
            "sourceable": ref("workspaces", trigger.sourceable_id),
        },
        links={"self": f"/api/v2/run-triggers/{trigger.id}"},
    )
