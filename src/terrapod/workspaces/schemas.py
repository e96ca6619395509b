"""TFE wire shapes for workspaces (HCP Terraform "Workspaces" API, seed 003 additions).

Quirks kept here: ``operations`` is the deprecated boolean form of ``execution-mode``;
``locked-by`` may only name users, runs or teams (go-tfe decodes it polymorphically and
fails on anything else), so a lock held by an organization token shows as null.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from terrapod.access.principal import Principal
from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.parsing import Attributes
from terrapod.workspaces.service import WorkspaceView, permissions_for


class WorkspaceAttributes(Attributes):
    name: str | None = None
    description: str | None = None
    auto_apply: bool | None = None
    auto_apply_run_trigger: bool | None = None
    allow_destroy_plan: bool | None = None
    execution_mode: str | None = None
    operations: bool | None = None
    terraform_version: str | None = None
    working_directory: str | None = None
    global_remote_state: bool | None = None
    structured_run_output_enabled: bool | None = None
    speculative_enabled: bool | None = None
    queue_all_runs: bool | None = None
    file_triggers_enabled: bool | None = None
    trigger_prefixes: list[str] | None = None
    trigger_patterns: list[str] | None = None
    source_name: str | None = None
    source_url: str | None = None
    labels: dict[str, str] | None = None
    resource_cpu: str | None = None
    resource_memory: str | None = None
    agent_pool_id: str | None = None
    tag_names: list[str] | None = None
    vcs_repo: dict[str, Any] | None = Field(default=None)


class LockAttributes(Attributes):
    reason: str | None = None


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
            "current-run": {"data": None},
            "latest-run": {"data": None},
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
