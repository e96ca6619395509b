"""TFE wire shapes for workspaces (HCP Terraform "Workspaces" API, seed 003 additions).

Quirks kept here: ``operations`` is the deprecated boolean form of ``execution-mode``;
``locked-by`` may only name users, runs or teams (go-tfe decodes it polymorphically and
fails on anything else), so a lock held by an organization token shows as null.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic.config import JsonDict

from terrapod.access.principal import Principal
from terrapod.errors import BadRequest, Invalid
from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.models import (
    LinksOnlyRelationship,
    Omitted,
    Timestamp,
    WireModel,
    listing,
    single,
    to_one,
)
from terrapod.jsonapi.parsing import Attributes, reject_nul, validate_attributes
from terrapod.workspaces.service import WorkspaceView, permissions_for

# service.py's checks, for the OpenAPI schema only (the service enforces them).
_NAME: JsonDict = {"pattern": "^[A-Za-z0-9_-]{1,90}$"}
_TAG: JsonDict = {"pattern": "^[a-z0-9][a-z0-9:_-]{0,254}$"}


# The json_schema_extra values describe service.py's checks (and column widths) for the OpenAPI
# schema only; the service enforces them. Attributes the service refuses as null
# (service.NOT_NULL) are offered without null: `T | Omitted` (SkipJsonSchema) still parses null, so
# the service can refuse it with its own message.
class WorkspaceAttributes(Attributes):
    """Workspace settings a client may set (name is required to create one)."""

    name: str | Omitted = Field(default=None, json_schema_extra=_NAME)
    description: str | None = None
    auto_apply: bool | Omitted = None
    auto_apply_run_trigger: bool | Omitted = None
    allow_destroy_plan: bool | Omitted = None
    execution_mode: str | Omitted = Field(
        default=None,
        json_schema_extra={
            "enum": ["remote", "local", "agent"],
            "description": "agent needs an agent pool the workspace may use (agent-pool-id)",
        },
    )
    operations: bool | None = Field(
        default=None, json_schema_extra={"description": "Deprecated form of execution-mode"}
    )
    terraform_version: str | Omitted = Field(
        default=None,
        json_schema_extra={
            "maxLength": 64,
            "description": "A version (1.15.5), a constraint (~> 1.15) or latest",
        },
    )
    working_directory: str | None = Field(
        default=None,
        json_schema_extra={"maxLength": 255, "description": "Relative path, no '..'"},
    )
    global_remote_state: bool | Omitted = None
    structured_run_output_enabled: bool | Omitted = None
    speculative_enabled: bool | Omitted = None
    queue_all_runs: bool | Omitted = None
    file_triggers_enabled: bool | Omitted = None
    trigger_prefixes: list[str] | Omitted = None
    trigger_patterns: list[str] | Omitted = None
    source_name: str | None = Field(default=None, json_schema_extra={"maxLength": 255})
    source_url: str | None = Field(default=None, json_schema_extra={"maxLength": 1024})
    labels: dict[str, str] | Omitted = Field(
        default=None,
        json_schema_extra={
            "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"},
            "additionalProperties": {"type": "string", "maxLength": 63},
        },
    )
    resource_cpu: str | None = Field(default=None, json_schema_extra={"maxLength": 32})
    resource_memory: str | None = Field(default=None, json_schema_extra={"maxLength": 32})
    agent_pool_id: str | None = Field(
        default=None,
        json_schema_extra={
            "description": "The agent pool (apool-…) of an execution-mode agent workspace; "
            "also accepted as the agent-pool relationship"
        },
    )
    tag_names: list[str] | None = Field(default=None, json_schema_extra={"items": _TAG})
    vcs_repo: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={"description": "VCS-backed workspaces are not supported yet: 422"},
    )


class LockAttributes(Attributes):
    reason: str | None = Field(
        default=None, json_schema_extra={"description": "Kept to its first 255 characters"}
    )


# -- responses ------------------------------------------------------------------------------


# permissions_for() in service.py.
class WorkspacePermissions(WireModel):
    """What the caller may do with the workspace."""

    can_update: bool
    can_destroy: bool
    can_queue_run: bool
    can_queue_apply: bool
    can_queue_destroy: bool
    can_read_variable: bool
    can_update_variable: bool
    can_read_state_versions: bool
    can_read_state_outputs: bool
    can_create_state_versions: bool
    can_lock: bool
    can_unlock: bool
    can_force_unlock: bool
    can_read_settings: bool
    can_manage_tags: bool
    can_manage_run_tasks: bool
    can_force_delete: bool
    can_manage_assessments: bool
    can_read_assessments: bool


class SettingOverwrites(WireModel):
    execution_mode: bool
    agent_pool: bool


class WorkspaceActions(WireModel):
    is_destroyable: bool


# Member for member what serialize() sends.
class WorkspaceResponseAttributes(WireModel):
    """A workspace."""

    name: str
    description: str | None
    environment: str
    auto_apply: bool
    auto_apply_run_trigger: bool
    allow_destroy_plan: bool
    execution_mode: Literal["remote", "local", "agent"]
    operations: bool
    terraform_version: str
    working_directory: str
    global_remote_state: bool
    structured_run_output_enabled: bool
    speculative_enabled: bool
    queue_all_runs: bool
    file_triggers_enabled: bool
    trigger_prefixes: list[str]
    trigger_patterns: list[str]
    source: str
    source_name: str | None
    source_url: str | None
    labels: dict[str, str]
    resource_cpu: str | None
    resource_memory: str | None
    tag_names: list[str]
    vcs_repo: dict[str, Any] | None
    vcs_repo_identifier: str | None
    locked: bool
    locked_reason: str
    locked_at: Timestamp | None
    resource_count: int
    created_at: Timestamp
    updated_at: Timestamp
    latest_change_at: Timestamp
    apply_duration_average: int | None
    plan_duration_average: int | None
    policy_check_failures: int | None
    run_failures: int | None
    workspace_kpis_runs_count: int | None
    auto_destroy_at: Timestamp | None
    setting_overwrites: SettingOverwrites
    permissions: WorkspacePermissions
    actions: WorkspaceActions


class WorkspaceRelationships(WireModel):
    organization: to_one("organizations")  # type: ignore[valid-type]
    current_state_version: to_one("state-versions")  # type: ignore[valid-type]
    current_run: to_one("runs")  # type: ignore[valid-type]
    latest_run: to_one("runs")  # type: ignore[valid-type]
    current_configuration_version: to_one("configuration-versions")  # type: ignore[valid-type]
    agent_pool: to_one("agent-pools")  # type: ignore[valid-type]
    # Only users, runs or teams: go-tfe decodes locked-by polymorphically (see the top).
    locked_by: to_one("users", "runs", "teams")  # type: ignore[valid-type]
    remote_state_consumers: LinksOnlyRelationship
    outputs: LinksOnlyRelationship


class WorkspaceLinks(WireModel):
    self_: str = Field(alias="self")
    self_html: str


WorkspaceDocument = single(
    "workspaces",
    WorkspaceResponseAttributes,
    relationships=WorkspaceRelationships,
    links=WorkspaceLinks,
)
WorkspaceList = listing(
    "workspaces",
    WorkspaceResponseAttributes,
    relationships=WorkspaceRelationships,
    links=WorkspaceLinks,
)


class TagResponseAttributes(WireModel):
    name: str


# GET …/relationships/tags answers with pagination meta but no page links.
TagList = listing("tags", TagResponseAttributes, page_links=False)


def domain_values(attrs: WorkspaceAttributes, sent: frozenset[str]) -> dict[str, Any]:
    """Attributes the client sent, as domain fields (``operations`` folded into the mode)."""
    values = attrs.model_dump(exclude_unset=True, exclude={"tag_names", "operations", "vcs_repo"})
    if "operations" in sent and "execution-mode" not in sent and attrs.operations is not None:
        values["execution_mode"] = "remote" if attrs.operations else "local"
    return values


def _locked_by(view: WorkspaceView) -> dict[str, Any]:
    ws = view.workspace
    if ws.locked and ws.locked_by_kind in ("users", "runs", "teams"):
        return ref(ws.locked_by_kind, ws.locked_by_id)
    return {"data": None}


def serialize(view: WorkspaceView, principal: Principal) -> Resource:
    ws, org = view.workspace, view.organization
    perms = permissions_for(principal, ws, org)
    attributes: dict[str, Any] = {
        "name": ws.name,
        "description": ws.description,
        "environment": "default",
        "auto-apply": ws.auto_apply,
        "auto-apply-run-trigger": ws.auto_apply_run_trigger,
        "allow-destroy-plan": ws.allow_destroy_plan,
        "execution-mode": ws.execution_mode,
        "operations": ws.execution_mode != "local",
        "terraform-version": ws.terraform_version,
        "working-directory": ws.working_directory or "",
        "global-remote-state": ws.global_remote_state,
        "structured-run-output-enabled": ws.structured_run_output_enabled,
        "speculative-enabled": ws.speculative_enabled,
        "queue-all-runs": ws.queue_all_runs,
        "file-triggers-enabled": ws.file_triggers_enabled,
        "trigger-prefixes": ws.trigger_prefixes,
        "trigger-patterns": ws.trigger_patterns,
        "source": "tfe-api",
        "source-name": ws.source_name,
        "source-url": ws.source_url,
        "labels": ws.labels,
        "resource-cpu": ws.resource_cpu,
        "resource-memory": ws.resource_memory,
        "tag-names": view.tags,
        "vcs-repo": None,
        "vcs-repo-identifier": None,
        "locked": ws.locked,
        "locked-reason": ws.lock_reason or "",
        "locked-at": iso(ws.locked_at),
        "resource-count": ws.resource_count,
        "created-at": iso(ws.created_at),
        "updated-at": iso(ws.updated_at),
        "latest-change-at": iso(ws.latest_change_at or ws.updated_at),
        "apply-duration-average": None,
        "plan-duration-average": None,
        "policy-check-failures": None,
        "run-failures": None,
        "workspace-kpis-runs-count": None,
        "auto-destroy-at": None,
        "setting-overwrites": {"execution-mode": False, "agent-pool": False},
        "permissions": perms,
        "actions": {"is-destroyable": perms["can-destroy"]},
    }
    return resource(
        "workspaces",
        ws.id,
        attributes,
        relationships={
            "organization": ref("organizations", org.name),
            "current-state-version": ref("state-versions", ws.current_state_version_id),
            "current-run": ref("runs", ws.current_run_id),
            "latest-run": ref("runs", ws.latest_run_id),
            "current-configuration-version": {"data": None},
            "agent-pool": ref("agent-pools", ws.agent_pool_id),
            "locked-by": _locked_by(view),
            "remote-state-consumers": {
                "links": {
                    "related": f"/api/v2/workspaces/{ws.id}/relationships/remote-state-consumers"
                }
            },
            "outputs": {
                "links": {"related": f"/api/v2/workspaces/{ws.id}/current-state-version-outputs"}
            },
        },
        links={
            "self": f"/api/v2/organizations/{org.name}/workspaces/{ws.name}",
            "self-html": f"/app/{org.name}/workspaces/{ws.name}",
        },
    )


def lock_reason(body: Any) -> str | None:
    """The reason of a lock request, from either body shape clients send: terraform's
    ``{"data": {"type": "", "attributes": {"reason": …}}}`` or the bare ``{"reason": …}`` of
    pytfe and older go-tfe."""
    if not isinstance(body, dict):
        raise BadRequest("the lock body must be a JSON object", pointer="")
    if "data" in body:
        data = body["data"]
        if not isinstance(data, dict):
            raise BadRequest("data must be an object", pointer="/data")
        return validate_attributes(LockAttributes, data.get("attributes")).reason
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise Invalid("reason must be a string", pointer="/reason")
    reject_nul(reason, "/reason")
    return reason
