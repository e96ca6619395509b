"""TFE wire shapes for runs, plans, applies and run events (seeds/001_f222b4c78c2a08de.txt;
HCP Terraform "Runs", "Plans", "Applies" and "Run Events" APIs).

go-tfe decodes these strictly (CLIENT_FACTS.md): relationship types must be exact, and the
run's ``plan`` and ``apply`` relationships must exist from the moment the run is created.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.models import Timestamp, WireModel, listing, single, to_one
from terrapod.jsonapi.parsing import Attributes
from terrapod.runs import machine as m
from terrapod.runs import service
from terrapod.runs.logs import key_of
from terrapod.runs.models import Apply, Plan, RunEvent
from terrapod.runs.queries import RunView

# (log key of a phase) -> absolute URL that reads it without a token
LogUrlFor = Callable[[str], str]

_MAX_ADDRS = 1000


class RunVariableAttributes(BaseModel):
    """One run-specific variable: ``value`` is an HCL literal (``"\\"text\\""``, ``2``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=1024 * 1024)


class RunAttributes(Attributes):
    message: str | None = Field(default=None, max_length=10_000)
    is_destroy: bool | None = None
    refresh: bool | None = None
    refresh_only: bool | None = None
    replace_addrs: list[str] | None = Field(default=None, max_length=_MAX_ADDRS)
    target_addrs: list[str] | None = Field(default=None, max_length=_MAX_ADDRS)
    variables: list[RunVariableAttributes] | None = Field(default=None, max_length=1000)
    plan_only: bool | None = None
    save_plan: bool | None = None
    auto_apply: bool | None = None
    allow_empty_apply: bool | None = None
    allow_config_generation: bool | None = None
    debugging_mode: bool | None = None
    terraform_version: str | None = Field(default=None, max_length=64)
    invoke_action_addrs: list[str] | None = Field(default=None, max_length=_MAX_ADDRS)


def options_from(
    attrs: RunAttributes, *, source: str, configuration_version_id: str | None
) -> service.RunOptions:
    return service.RunOptions(
        message=attrs.message,
        is_destroy=bool(attrs.is_destroy),
        refresh=True if attrs.refresh is None else attrs.refresh,
        refresh_only=bool(attrs.refresh_only),
        replace_addrs=tuple(attrs.replace_addrs) if attrs.replace_addrs is not None else None,
        target_addrs=tuple(attrs.target_addrs) if attrs.target_addrs is not None else None,
        invoke_action_addrs=(
            tuple(attrs.invoke_action_addrs) if attrs.invoke_action_addrs is not None else None
        ),
        variables=tuple((v.key, v.value) for v in attrs.variables or ()),
        plan_only=attrs.plan_only,
        save_plan=bool(attrs.save_plan),
        auto_apply=attrs.auto_apply,
        allow_empty_apply=bool(attrs.allow_empty_apply),
        allow_config_generation=bool(attrs.allow_config_generation),
        debugging_mode=bool(attrs.debugging_mode),
        terraform_version=attrs.terraform_version,
        source=source,
        configuration_version_id=configuration_version_id,
    )


# -- responses ------------------------------------------------------------------------------


class RunActions(WireModel):
    is_cancelable: bool
    is_confirmable: bool
    is_discardable: bool
    is_force_cancelable: bool


class RunPermissions(WireModel):
    can_apply: bool
    can_cancel: bool
    can_comment: bool
    can_discard: bool
    can_force_execute: bool
    can_force_cancel: bool
    can_override_policy_check: bool


class RunVariable(WireModel):
    key: str
    value: str


# Member for member what serialize_run() sends.
class RunResponseAttributes(WireModel):
    """A run. ``status-timestamps`` maps ``<status>-at`` to when the run entered it."""

    actions: RunActions
    permissions: RunPermissions
    status: str
    status_timestamps: dict[str, str]
    created_at: Timestamp
    canceled_at: Timestamp | None
    force_cancel_available_at: Timestamp | None
    has_changes: bool
    message: str
    source: str
    trigger_reason: str
    is_destroy: bool
    refresh: bool
    refresh_only: bool
    replace_addrs: list[str] | None
    target_addrs: list[str] | None
    invoke_action_addrs: list[str] | None
    variables: list[RunVariable]
    plan_only: bool
    save_plan: bool
    auto_apply: bool
    allow_empty_apply: bool
    allow_config_generation: bool
    debugging_mode: bool
    is_drift_detection: bool
    terraform_version: str | None
    position_in_queue: int


class DataList(WireModel):
    data: list[Any]


class RunRelationships(WireModel):
    workspace: to_one("workspaces")  # type: ignore[valid-type]
    configuration_version: to_one("configuration-versions")  # type: ignore[valid-type]
    created_by: to_one("users")  # type: ignore[valid-type]
    confirmed_by: to_one("users")  # type: ignore[valid-type]
    plan: to_one("plans")  # type: ignore[valid-type]
    apply: to_one("applies")  # type: ignore[valid-type]
    cost_estimate: to_one("cost-estimates")  # type: ignore[valid-type]
    input_state_version: to_one("state-versions")  # type: ignore[valid-type]
    run_events: DataList
    task_stages: DataList
    policy_checks: DataList
    comments: DataList


class SelfLink(WireModel):
    self_: str = Field(alias="self")


class PhaseResponseAttributes(WireModel):
    """A plan or an apply. ``log-read-url`` reads the phase's log by offset without a token
    (STX first, ETX last once the phase has ended)."""

    status: Literal[
        "pending",
        "managed_queued",
        "queued",
        "running",
        "errored",
        "canceled",
        "finished",
        "unreachable",
    ]
    status_timestamps: dict[str, str]
    log_read_url: str
    resource_additions: int
    resource_changes: int
    resource_destructions: int
    resource_imports: int
    execution_details: dict[str, str]


class PlanResponseAttributes(PhaseResponseAttributes):
    has_changes: bool
    generated_configuration: bool


class ApplyResponseAttributes(PhaseResponseAttributes):
    pass


class PhaseRelationships(WireModel):
    run: to_one("runs")  # type: ignore[valid-type]


class PlanLinks(WireModel):
    self_: str = Field(alias="self")
    json_output: str
    json_output_redacted: str


class RunEventResponseAttributes(WireModel):
    action: str
    description: str | None
    created_at: Timestamp


class RunEventRelationships(WireModel):
    actor: to_one("users")  # type: ignore[valid-type]
    run: to_one("runs")  # type: ignore[valid-type]


class QueueResponseAttributes(RunResponseAttributes):
    pass


class CapacityAttributes(WireModel):
    pending: int
    running: int


PlanDocument = single(
    "plans", PlanResponseAttributes, relationships=PhaseRelationships, links=PlanLinks
)
ApplyDocument = single(
    "applies", ApplyResponseAttributes, relationships=PhaseRelationships, links=SelfLink
)
RunDocument = single("runs", RunResponseAttributes, relationships=RunRelationships, links=SelfLink)
RunList = listing("runs", RunResponseAttributes, relationships=RunRelationships, links=SelfLink)
RunEventDocument = single(
    "run-events", RunEventResponseAttributes, relationships=RunEventRelationships
)
RunEventList = listing(
    "run-events", RunEventResponseAttributes, relationships=RunEventRelationships
)
CapacityDocument = single("organization-capacity", CapacityAttributes)


class OrganizationPagination(WireModel):
    """TFE's organization run list leaves total-count and total-pages out (seed 001)."""

    current_page: int
    page_size: int
    prev_page: int | None
    next_page: int | None
    page_count: int


class OrganizationRunMeta(WireModel):
    pagination: OrganizationPagination


class OrganizationRunList(WireModel):
    data: list[Any]
    meta: OrganizationRunMeta


class EmptyList(WireModel):
    data: list[Any]
    meta: dict[str, Any]


def _when(value: datetime | None) -> str | None:
    return iso(value.astimezone(UTC)) if value is not None else None


def run_attributes(view: RunView, position: int = 0) -> dict[str, Any]:
    run = view.run
    confirmable = run.status in m.CONFIRMABLE and not run.plan_only
    return {
        "actions": {
            "is-cancelable": m.is_cancelable(run),
            "is-confirmable": confirmable,
            "is-discardable": m.is_discardable(run),
            "is-force-cancelable": m.is_force_cancelable(run),
        },
        "permissions": view.permissions,
        "status": run.status,
        "status-timestamps": dict(run.status_timestamps or {}),
        "created-at": _when(run.created_at),
        "canceled-at": _when(run.canceled_at),
        "force-cancel-available-at": _when(run.force_cancel_available_at),
        "has-changes": bool(run.has_changes),
        "message": run.message,
        "source": run.source,
        "trigger-reason": run.trigger_reason,
        "is-destroy": run.is_destroy,
        "refresh": run.refresh,
        "refresh-only": run.refresh_only,
        "replace-addrs": run.replace_addrs,
        "target-addrs": run.target_addrs,
        "invoke-action-addrs": run.invoke_action_addrs,
        "variables": list(run.variables or []),
        "plan-only": run.plan_only,
        "save-plan": run.save_plan,
        "auto-apply": run.auto_apply,
        "allow-empty-apply": run.allow_empty_apply,
        "allow-config-generation": run.allow_config_generation,
        "debugging-mode": run.debugging_mode,
        "is-drift-detection": run.is_drift_detection,
        "terraform-version": run.terraform_version,
        "position-in-queue": position,
    }


def serialize_run(
    view: RunView, position: int = 0, *, task_stages: list[dict[str, str]] | None = None
) -> Resource:
    """``task_stages``: the identifiers of the run's task stages (terrapod.runtasks answers
    the ``run_task_stages`` hook for the routes)."""
    run = view.run
    return resource(
        "runs",
        run.id,
        run_attributes(view, position),
        relationships={
            "workspace": ref("workspaces", run.workspace_id),
            "configuration-version": ref("configuration-versions", run.configuration_version_id),
            "created-by": ref("users", run.created_by_id),
            "confirmed-by": ref("users", run.confirmed_by_id),
            "plan": ref("plans", run.plan_id),
            "apply": ref("applies", run.apply_id),
            # Cost estimation and policy checks are not run; null and [] make the CLI skip
            # them (CLIENT_FACTS.md, plan step 11).
            "cost-estimate": {"data": None},
            "input-state-version": ref("state-versions", run.input_state_version_id),
            "run-events": {"data": []},
            "task-stages": {"data": list(task_stages or [])},
            "policy-checks": {"data": []},
            "comments": {"data": []},
        },
        links={"self": f"/api/v2/runs/{run.id}"},
    )


def _phase_attributes(phase: Plan | Apply, log_url: LogUrlFor, key: str) -> dict[str, Any]:
    return {
        "status": phase.status,
        "status-timestamps": dict(phase.status_timestamps or {}),
        "log-read-url": log_url(key),
        "resource-additions": phase.resource_additions,
        "resource-changes": phase.resource_changes,
        "resource-destructions": phase.resource_destructions,
        "resource-imports": phase.resource_imports,
        "execution-details": {"mode": "remote"},
    }


def serialize_plan(plan: Plan, log_url: LogUrlFor) -> Resource:
    attributes = _phase_attributes(plan, log_url, key_of(plan))
    attributes["has-changes"] = bool(plan.has_changes)
    attributes["generated-configuration"] = plan.generated_configuration
    return resource(
        "plans",
        plan.id,
        attributes,
        relationships={"run": ref("runs", plan.run_id)},
        links={
            "self": f"/api/v2/plans/{plan.id}",
            "json-output": f"/api/v2/plans/{plan.id}/json-output",
            "json-output-redacted": f"/api/v2/plans/{plan.id}/json-output-redacted",
        },
    )


def serialize_apply(apply: Apply, log_url: LogUrlFor) -> Resource:
    return resource(
        "applies",
        apply.id,
        _phase_attributes(apply, log_url, key_of(apply)),
        relationships={"run": ref("runs", apply.run_id)},
        links={"self": f"/api/v2/applies/{apply.id}"},
    )


def serialize_event(event: RunEvent) -> Resource:
    return resource(
        "run-events",
        event.id,
        {
            "action": event.action,
            "description": event.description,
            "created-at": _when(event.created_at),
        },
        relationships={"actor": ref("users", event.actor_id), "run": ref("runs", event.run_id)},
    )
