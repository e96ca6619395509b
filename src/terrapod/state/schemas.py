"""TFE wire shapes for state versions and their outputs (HCP Terraform "State Versions" and
"State Version Outputs" APIs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field
from pydantic.config import JsonDict

from terrapod.crypto import SecretBox
from terrapod.jsonapi.documents import Resource, iso, ref, refs, resource
from terrapod.jsonapi.models import (
    Timestamp,
    WireModel,
    listing,
    single,
    to_many,
    to_one,
)
from terrapod.jsonapi.models import resource as resource_model
from terrapod.jsonapi.parsing import Attributes
from terrapod.state.models import PENDING, StateVersion, StateVersionOutput
from terrapod.state.service import output_value
from terrapod.storage import keys

# (object key, HTTP method) -> absolute signed URL
UrlFor = Callable[[str, str], str]

_BASE64: JsonDict = {"contentEncoding": "base64"}


class StateVersionAttributes(Attributes):
    # The schema extras describe service.py's checks (MD5_RE, base64 decoding) for the OpenAPI
    # schema only.
    serial: int = Field(ge=0, json_schema_extra={"maximum": 2**63 - 1})
    md5: str = Field(json_schema_extra={"pattern": "^[0-9a-f]{32}$"})
    lineage: str | None = Field(default=None, json_schema_extra={"maxLength": 64})
    force: bool = False
    state: str | None = Field(
        default=None,
        json_schema_extra={**_BASE64, "description": "The state file, inline (Terraform 1.0)"},
    )
    json_state: str | None = Field(default=None, json_schema_extra=_BASE64)
    json_state_outputs: str | None = Field(
        default=None,
        json_schema_extra={
            **_BASE64,
            "description": 'JSON object {"name": {"value", "type", "sensitive"}}',
        },
    )


# -- responses ------------------------------------------------------------------------------


class StateResource(WireModel):
    """A managed resource in the state, with its number of instances."""

    name: str
    type: str
    count: int
    module: str
    provider: str


# Member for member what serialize() sends.
class StateVersionResponseAttributes(WireModel):
    """A state version; its hosted-*-url members are signed URLs that need no token."""

    created_at: Timestamp
    size: int | None
    serial: int
    lineage: str | None
    md5: str
    status: Literal["pending", "finalized", "discarded"]
    state_version: int
    terraform_version: str | None
    resources: list[StateResource]
    # module or provider address -> resource type -> instance count
    modules: dict[str, dict[str, int]]
    providers: dict[str, dict[str, int]]
    resources_processed: bool
    intermediate: bool
    billable_rum_count: int
    vcs_commit_sha: str | None
    vcs_commit_url: str | None
    hosted_state_download_url: str | None
    hosted_json_state_download_url: str | None
    hosted_state_upload_url: str | None
    hosted_json_state_upload_url: str | None


class StateVersionRelationships(WireModel):
    workspace: to_one("workspaces")  # type: ignore[valid-type]
    run: to_one("runs")  # type: ignore[valid-type]
    created_by: to_one("users")  # type: ignore[valid-type]
    outputs: to_many("state-version-outputs")  # type: ignore[valid-type]
    rolled_back_from: to_one("state-versions")  # type: ignore[valid-type]


class StateVersionLinks(WireModel):
    self_: str = Field(alias="self")
    download: str


# Member for member what serialize_output() sends.
class OutputResponseAttributes(WireModel):
    """A state version output. ``value`` is any JSON value (null for a sensitive output
    except from ``GET /state-version-outputs/{id}``); ``detailed-type`` is Terraform's type
    expression, as JSON."""

    name: str
    sensitive: bool
    type: Literal["boolean", "number", "string", "array", "object", "null"]
    value: Any
    detailed_type: Any


class OutputLinks(WireModel):
    self_: str = Field(alias="self")


OutputResource = resource_model(
    "state-version-outputs", OutputResponseAttributes, links=OutputLinks
)
# ?include=outputs adds the versions' outputs (sensitive values null) as included resources.
StateVersionDocument = single(
    "state-versions",
    StateVersionResponseAttributes,
    relationships=StateVersionRelationships,
    links=StateVersionLinks,
    included=(OutputResource,),
)
StateVersionList = listing(
    "state-versions",
    StateVersionResponseAttributes,
    relationships=StateVersionRelationships,
    links=StateVersionLinks,
    included=(OutputResource,),
)
OutputDocument = single("state-version-outputs", OutputResponseAttributes, links=OutputLinks)
OutputList = listing("state-version-outputs", OutputResponseAttributes, links=OutputLinks)

# GET /state-versions/{id}/download: the state file exactly as it was uploaded.
STATE_FILE_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "description": "A Terraform state file (format version 4), byte for byte as stored",
        }
    }
}


def serialize(
    sv: StateVersion,
    outputs: list[StateVersionOutput],
    url_for: UrlFor,
) -> Resource:
    ws = sv.workspace_id
    pending = sv.status == PENDING
    attributes: dict[str, Any] = {
        "created-at": iso(sv.created_at),
        "size": sv.size,
        "serial": sv.serial,
        "lineage": sv.lineage,
        "md5": sv.md5,
        "status": sv.status,
        "state-version": 4,
        "terraform-version": sv.terraform_version,
        "resources": sv.resources or [],
        "modules": sv.modules or {},
        "providers": sv.providers or {},
        "resources-processed": not pending,
        "intermediate": False,
        "billable-rum-count": sv.resource_count,
        "vcs-commit-sha": None,
        "vcs-commit-url": None,
        "hosted-state-download-url": None
        if pending
        else url_for(keys.state_version(ws, sv.id), "GET"),
        "hosted-json-state-download-url": (
            url_for(keys.state_version_json(ws, sv.id), "GET") if sv.json_state_uploaded else None
        ),
        "hosted-state-upload-url": url_for(keys.state_version(ws, sv.id), "PUT")
        if pending
        else None,
        "hosted-json-state-upload-url": (
            None if sv.json_state_uploaded else url_for(keys.state_version_json(ws, sv.id), "PUT")
        ),
    }
    return resource(
        "state-versions",
        sv.id,
        attributes,
        relationships={
            "workspace": ref("workspaces", ws),
            "run": ref("runs", sv.run_id),
            "created-by": ref("users", sv.created_by_id),
            "outputs": refs("state-version-outputs", [o.id for o in outputs]),
            "rolled-back-from": ref("state-versions", sv.rolled_back_from_id),
        },
        links={
            "self": f"/api/v2/state-versions/{sv.id}",
            "download": f"/api/v2/state-versions/{sv.id}/download",
        },
    )


def serialize_output(output: StateVersionOutput, box: SecretBox, *, reveal: bool) -> Resource:
    return resource(
        "state-version-outputs",
        output.id,
        {
            "name": output.name,
            "sensitive": output.sensitive,
            "type": output.type,
            "value": output_value(box, output, reveal=reveal),
            "detailed-type": output.detailed_type,
        },
        links={"self": f"/api/v2/state-version-outputs/{output.id}"},
    )
