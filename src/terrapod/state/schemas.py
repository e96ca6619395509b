"""TFE wire shapes for state versions and their outputs (HCP Terraform "State Versions" and
"State Version Outputs" APIs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from terrapod.crypto import SecretBox
from terrapod.jsonapi.documents import Resource, iso, ref, refs, resource
from terrapod.jsonapi.parsing import Attributes
from terrapod.state.models import PENDING, StateVersion, StateVersionOutput
from terrapod.state.service import output_value
from terrapod.storage import keys

# (object key, HTTP method) -> absolute signed URL
UrlFor = Callable[[str, str], str]


class StateVersionAttributes(Attributes):
    serial: int = Field(ge=0)
    md5: str
    lineage: str | None = None
    force: bool = False
    state: str | None = None
    json_state: str | None = None
    json_state_outputs: str | None = None


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
