"""What the generic endpoint suite's world holds for the run task routes: two organization
tasks attached to workspace ``tasks-ws`` and a spare one, and in ``tasks-ws`` a run with
post-plan and pre-apply stages whose post-plan stage waits for an override."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from terrapod.runs import machine as m
from terrapod.runs.models import Run
from terrapod.runtasks.models import STAGE_AWAITING_OVERRIDE, TaskStage
from tests.runs_support import create_run, make_workspace, upload_configuration

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {
    "tasks_workspace_id": "ws-FFFFFFFFFFFFFFFF",
    "task_id": "task-AAAAAAAAAAAAAAAA",
    "spare_task_id": "task-BBBBBBBBBBBBBBBB",
    "workspace_task_id": "wstask-AAAAAAAAAAAAAAAA",
    "task_run_id": "run-FFFFFFFFFFFFFFFF",
    "task_stage_id": "ts-AAAAAAAAAAAAAAAA",
    "awaiting_task_stage_id": "ts-BBBBBBBBBBBBBBBB",
    "task_result_id": "taskrs-AAAAAAAAAAAAAAAA",
}


async def _task(admin: httpx.AsyncClient, name: str) -> str:
    r = await admin.post(
        "/api/v2/organizations/default/tasks",
        json={
            "data": {
                "type": "tasks",
                "attributes": {
                    "name": name,
                    # Nothing is there (.invalid never resolves, so the server's refusal of
                    # private addresses lets it be saved): the world's stages never start.
                    "url": "https://unused.invalid/hook",
                    "category": "task",
                    "hmac-key": "world-secret",
                },
            }
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def _attach(admin: httpx.AsyncClient, workspace_id: str, task_id: str, *stages: str) -> str:
    r = await admin.post(
        f"/api/v2/workspaces/{workspace_id}/tasks",
        json={
            "data": {
                "type": "workspace-tasks",
                "attributes": {"enforcement-level": "mandatory", "stages": list(stages)},
                "relationships": {"task": {"data": {"type": "tasks", "id": task_id}}},
            }
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the run task routes need in the world; return the values their paths use."""
    task_id = await _task(admin, "scanner")
    spare_id = await _task(admin, "linter")
    # Not in the main workspace: runs made there by other routes' checks stay task-free.
    tasks_ws = await make_workspace(admin, "tasks-ws")
    wstask_id = await _attach(admin, tasks_ws, task_id, "pre_apply", "post_plan")
    await _attach(admin, tasks_ws, await _task(admin, "checker"), "post_plan")
    await upload_configuration(admin, tasks_ws)
    # The run waits for an agent (plan_queued); its post-plan stage is then made to wait for
    # an override, as a failed mandatory task does when overrides are allowed.
    run = await create_run(admin, tasks_ws)
    stages = (await admin.get(f"/api/v2/runs/{run['id']}/task-stages?include=task_results")).json()
    assert [s["attributes"]["stage"] for s in stages["data"]] == ["post_plan", "pre_apply"]
    stage_id = stages["data"][0]["id"]
    async with app.state.sessionmaker() as session:
        row = await session.get(Run, run["id"])
        stage = await session.get(TaskStage, stage_id)
        assert row is not None and stage is not None
        row.status = m.POST_PLAN_AWAITING_DECISION
        stage.status = STAGE_AWAITING_OVERRIDE
        await session.commit()
    return {
        "tasks_workspace_id": tasks_ws,
        "task_id": task_id,
        "spare_task_id": spare_id,
        "workspace_task_id": wstask_id,
        "task_run_id": run["id"],
        "task_stage_id": stage_id,
        "awaiting_task_stage_id": stage_id,
        "task_result_id": stages["included"][0]["id"],
    }
