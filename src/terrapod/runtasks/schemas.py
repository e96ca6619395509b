"""TFE wire shapes for run tasks (HCP Terraform "Run Tasks", "Task Stages", "Task Results" and
"Run Tasks Integration" APIs; seed 000 names the same resources event hooks and tasks).

Quirks kept here: ``hmac-key`` is always null in responses (write-only); a task's organization
relationship carries the organization's name as its id (TFE addresses organizations by name);
``workspace-tasks`` carry both ``stage`` (older clients, the first stage) and ``stages``;
``task-stages`` always list ``policy-evaluations`` (empty: Terrapod runs no OPA policies) so
the CLI's decoder finds the relationship it asks for.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.db.hooks import RelatedResources
from terrapod.jsonapi.documents import Resource, iso, ref, refs, resource
from terrapod.jsonapi.models import (
    Omitted,
    Timestamp,
    WireModel,
    listing,
    single,
    to_many,
    to_one,
)
from terrapod.jsonapi.parsing import Attributes
from terrapod.organizations.models import Organization
from terrapod.runtasks.models import RunTask, TaskResult, TaskStage, WorkspaceTask
from terrapod.runtasks.service import (
    MAX_DESCRIPTION_LENGTH,
    MAX_HMAC_KEY_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_URL_LENGTH,
    StageView,
    stages_of_runs,
)

# -- requests ------------------------------------------------------------------------------


class RunTaskAttributes(Attributes):
    """Run task attributes a client may send (name, url and category to create)."""

    name: str | Omitted = Field(
        default=None,
        json_schema_extra={
            "maxLength": MAX_NAME_LENGTH,
            "description": "Letters, numbers, '-' and '_'; unique in the organization",
        },
    )
    url: str | Omitted = Field(
        default=None,
        json_schema_extra={
            "maxLength": MAX_URL_LENGTH,
            "description": "Where task requests are POSTed (http:// or https://)",
        },
    )
    description: str | None = Field(
        default=None, json_schema_extra={"maxLength": MAX_DESCRIPTION_LENGTH}
    )
    category: str | Omitted = Field(default=None, json_schema_extra={"enum": ["task"]})
    enabled: bool | Omitted = Field(default=None)
    hmac_key: str | None = Field(
        default=None,
        json_schema_extra={
            "maxLength": MAX_HMAC_KEY_LENGTH,
            "description": "Write-only: signs requests (X-TFC-Task-Signature, HMAC-SHA512); "
            "empty or null removes it",
        },
    )


class WorkspaceTaskAttributes(Attributes):
    """Workspace task attributes (enforcement-level to create)."""

    enforcement_level: str | Omitted = Field(
        default=None, json_schema_extra={"enum": ["advisory", "mandatory"]}
    )
    stage: str | Omitted = Field(
        default=None,
        json_schema_extra={
            "enum": ["pre_plan", "post_plan", "pre_apply"],
            "description": "Deprecated: one stage (use stages)",
        },
    )
    stages: list[str] | Omitted = Field(
        default=None,
        json_schema_extra={
            "description": "pre_plan, post_plan and/or pre_apply (default post_plan)"
        },
    )


class TaskResultCallbackAttributes(Attributes):
    """What a task service sends back (Run Tasks Integration, callback)."""

    status: str | Omitted = Field(
        default=None, json_schema_extra={"enum": ["passed", "failed", "running"]}
    )
    message: str | None = Field(default=None, json_schema_extra={"maxLength": MAX_MESSAGE_LENGTH})
    url: str | None = Field(default=None, json_schema_extra={"maxLength": MAX_URL_LENGTH})


class OverrideAttributes(Attributes):
    comment: str | None = Field(default=None, json_schema_extra={"maxLength": 4096})


def domain_values(attrs: Attributes) -> dict[str, Any]:
    """The attributes the client sent, by domain name (null included, absent left out)."""
    return attrs.model_dump(exclude_unset=True)


# -- responses -------------------------------------------------------------------------------


class RunTaskResponseAttributes(WireModel):
    name: str
    url: str
    description: str | None
    category: Literal["task"]
    enabled: bool
    hmac_key: None = Field(description="Always null: the key is write-only")
    created_at: Timestamp
    updated_at: Timestamp


class RunTaskRelationships(WireModel):
    organization: to_one("organizations")  # type: ignore[valid-type]
    workspace_tasks: to_many("workspace-tasks")  # type: ignore[valid-type]


class SelfLink(WireModel):
    self_: str = Field(alias="self")


class WorkspaceTaskResponseAttributes(WireModel):
    enforcement_level: Literal["advisory", "mandatory"]
    stage: str
    stages: list[str]
    created_at: Timestamp
    updated_at: Timestamp


class WorkspaceTaskRelationships(WireModel):
    task: to_one("tasks")  # type: ignore[valid-type]
    workspace: to_one("workspaces")  # type: ignore[valid-type]


class StagePermissions(WireModel):
    can_override_policy: bool
    can_override_tasks: bool
    can_override: bool


class StageActions(WireModel):
    is_overridable: bool


class TaskStageResponseAttributes(WireModel):
    stage: Literal["pre_plan", "post_plan", "pre_apply"]
    status: str
    status_timestamps: dict[str, str]
    permissions: StagePermissions
    actions: StageActions
    created_at: Timestamp
    updated_at: Timestamp


class TaskStageRelationships(WireModel):
    run: to_one("runs")  # type: ignore[valid-type]
    task_results: to_many("task-results")  # type: ignore[valid-type]
    policy_evaluations: to_many("policy-evaluations")  # type: ignore[valid-type]


class TaskResultResponseAttributes(WireModel):
    status: str
    message: str | None
    url: str | None
    status_timestamps: dict[str, str]
    stage: str
    task_id: str | None
    task_name: str
    task_url: str
    workspace_task_id: str | None
    workspace_task_enforcement_level: Literal["advisory", "mandatory"]
    created_at: Timestamp
    updated_at: Timestamp


class TaskResultRelationships(WireModel):
    task_stage: to_one("task-stages")  # type: ignore[valid-type]


RunTaskDocument = single(
    "tasks", RunTaskResponseAttributes, relationships=RunTaskRelationships, links=SelfLink
)
RunTaskList = listing(
    "tasks", RunTaskResponseAttributes, relationships=RunTaskRelationships, links=SelfLink
)
WorkspaceTaskDocument = single(
    "workspace-tasks",
    WorkspaceTaskResponseAttributes,
    relationships=WorkspaceTaskRelationships,
    links=SelfLink,
)
WorkspaceTaskList = listing(
    "workspace-tasks",
    WorkspaceTaskResponseAttributes,
    relationships=WorkspaceTaskRelationships,
    links=SelfLink,
)
TaskStageDocument = single(
    "task-stages", TaskStageResponseAttributes, relationships=TaskStageRelationships, links=SelfLink
)
TaskStageList = listing(
    "task-stages", TaskStageResponseAttributes, relationships=TaskStageRelationships, links=SelfLink
)
TaskResultDocument = single(
    "task-results",
    TaskResultResponseAttributes,
    relationships=TaskResultRelationships,
    links=SelfLink,
)


def serialize_task(task: RunTask, org: Organization, attachments: list[WorkspaceTask]) -> Resource:
    return resource(
        "tasks",
        task.id,
        {
            "name": task.name,
            "url": task.url,
            "description": task.description,
            "category": task.category,
            "enabled": task.enabled,
            # Write-only (seed 000 shows it null in every response).
            "hmac-key": None,
            "created-at": iso(task.created_at),
            "updated-at": iso(task.updated_at),
        },
        relationships={
            "organization": ref("organizations", org.name),
            "workspace-tasks": refs("workspace-tasks", [a.id for a in attachments]),
        },
        links={"self": f"/api/v2/tasks/{task.id}"},
    )


def serialize_workspace_task(wt: WorkspaceTask) -> Resource:
    return resource(
        "workspace-tasks",
        wt.id,
        {
            "enforcement-level": wt.enforcement_level,
            "stage": wt.stages[0],
            "stages": list(wt.stages),
            "created-at": iso(wt.created_at),
            "updated-at": iso(wt.updated_at),
        },
        relationships={
            "task": ref("tasks", wt.task_id),
            "workspace": ref("workspaces", wt.workspace_id),
        },
        links={"self": f"/api/v2/workspaces/{wt.workspace_id}/tasks/{wt.id}"},
    )


def serialize_stage(view: StageView) -> Resource:
    stage = view.stage
    overridable = stage.status == "awaiting_override"
    return resource(
        "task-stages",
        stage.id,
        {
            "stage": stage.stage,
            "status": stage.status,
            "status-timestamps": dict(stage.status_timestamps or {}),
            "permissions": {
                "can-override-policy": False,
                "can-override-tasks": view.can_override,
                "can-override": view.can_override,
            },
            "actions": {"is-overridable": overridable and view.can_override},
            "created-at": iso(stage.created_at),
            "updated-at": iso(stage.updated_at),
        },
        relationships={
            "run": ref("runs", stage.run_id),
            "task-results": refs("task-results", [r.id for r in view.results]),
            "policy-evaluations": {"data": []},
        },
        links={"self": f"/api/v2/task-stages/{stage.id}"},
    )


def serialize_result(result: TaskResult, stage: TaskStage) -> Resource:
    return resource(
        "task-results",
        result.id,
        {
            "status": result.status,
            "message": result.message,
            "url": result.url,
            "status-timestamps": dict(result.status_timestamps or {}),
            "stage": stage.stage,
            "task-id": result.task_id,
            "task-name": result.task_name,
            "task-url": result.task_url,
            "workspace-task-id": result.workspace_task_id,
            "workspace-task-enforcement-level": result.enforcement_level,
            "created-at": iso(result.created_at),
            "updated-at": iso(result.updated_at),
        },
        relationships={"task-stage": ref("task-stages", result.task_stage_id)},
        links={"self": f"/api/v2/task-results/{result.id}"},
    )


async def on_run_task_stages(session: AsyncSession, related: RelatedResources) -> None:
    """Hook ``run_task_stages``: the runs' stages as identifiers, and as resources with their
    results for ``include=task_stages``."""
    stages, results = await stages_of_runs(session, related)
    for stage in stages:
        related.refs.setdefault(stage.run_id, []).append({"type": "task-stages", "id": stage.id})
    if related.full:
        for stage in stages:
            stage_results = results.get(stage.id, [])
            related.resources.append(
                serialize_stage(StageView(stage, stage_results, can_override=False))
            )
            related.resources.extend(serialize_result(r, stage) for r in stage_results)
