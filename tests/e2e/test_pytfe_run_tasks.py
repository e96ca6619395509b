"""The official pytfe SDK's ``run_tasks`` and ``workspace_run_tasks`` clients against a real
server: create, list, read, update and delete, decoded by the SDK's own models."""

from __future__ import annotations

import secrets

import pytest
from pytfe import TFEClient
from pytfe.errors import TFEError
from pytfe.models import (
    RunTask,
    RunTaskCreateOptions,
    RunTaskIncludeOptions,
    RunTaskListOptions,
    RunTaskReadOptions,
    RunTaskUpdateOptions,
    WorkspaceCreateOptions,
    WorkspaceRunTaskCreateOptions,
    WorkspaceRunTaskUpdateOptions,
)
from pytfe.models.run_task import Stage, TaskEnforcementLevel

ORG = "default"


def test_run_tasks_crud_with_pytfe(tfe: TFEClient) -> None:
    name = f"scanner-{secrets.token_hex(3)}"
    created = tfe.run_tasks.create(
        ORG,
        RunTaskCreateOptions(
            name=name,
            url="https://scanner.example.com/hook",
            category="task",
            description="scans plans",
            hmac_key="pytfe-secret",
        ),
    )
    assert created.id.startswith("task-")
    assert created.name == name and created.enabled is True
    assert created.hmac_key is None  # write-only
    assert created.description == "scans plans"

    listed = {t.id: t for t in tfe.run_tasks.list(ORG, RunTaskListOptions(page_size=100))}
    assert listed[created.id].url == "https://scanner.example.com/hook"

    updated = tfe.run_tasks.update(
        created.id,
        RunTaskUpdateOptions(name=name + "-v2", enabled=False, hmac_key="rotated"),
    )
    assert updated.name == name + "-v2" and updated.enabled is False
    assert tfe.run_tasks.read(created.id).name == name + "-v2"

    tfe.run_tasks.delete(created.id)
    with pytest.raises(TFEError):
        tfe.run_tasks.read(created.id)


def test_workspace_run_tasks_crud_with_pytfe(tfe: TFEClient) -> None:
    ws = tfe.workspaces.create(ORG, WorkspaceCreateOptions(name=f"rt-{secrets.token_hex(3)}"))
    task = tfe.run_tasks.create(
        ORG,
        RunTaskCreateOptions(
            name=f"gate-{secrets.token_hex(3)}", url="https://gate.example.com/", category="task"
        ),
    )
    attached = tfe.workspace_run_tasks.create(
        ws.id,
        WorkspaceRunTaskCreateOptions(
            enforcement_level=TaskEnforcementLevel.MANDATORY,
            run_task=RunTask.model_construct(id=task.id),
            stages=[Stage.PRE_PLAN, Stage.POST_PLAN],
        ),
    )
    assert attached.id.startswith("wstask-")
    assert attached.enforcement_level == TaskEnforcementLevel.MANDATORY
    assert attached.stages == [Stage.PRE_PLAN, Stage.POST_PLAN]
    assert attached.run_task is not None and attached.run_task.id == task.id

    assert [w.id for w in tfe.workspace_run_tasks.list(ws.id)] == [attached.id]
    read = tfe.workspace_run_tasks.read(ws.id, attached.id)
    assert read.workspace is not None and read.workspace.id == ws.id

    updated = tfe.workspace_run_tasks.update(
        ws.id,
        attached.id,
        WorkspaceRunTaskUpdateOptions(
            enforcement_level=TaskEnforcementLevel.ADVISORY, stages=[Stage.PRE_APPLY]
        ),
    )
    assert updated.enforcement_level == TaskEnforcementLevel.ADVISORY
    assert updated.stages == [Stage.PRE_APPLY]

    with_attachments = tfe.run_tasks.read_with_options(
        task.id, RunTaskReadOptions(include=[RunTaskIncludeOptions.RUN_TASK_WORKSPACE_TASKS])
    )
    assert [w.id for w in with_attachments.workspace_run_tasks] == [attached.id]

    tfe.workspace_run_tasks.delete(ws.id, attached.id)
    assert list(tfe.workspace_run_tasks.list(ws.id)) == []
