"""This domain's part of the reviewed route table (see tests/quality/routes.py).

The task-result callback is ``signed``: its credential is the access token of the task
request (tests/api/test_run_tasks.py covers it), never an API token.
"""

from __future__ import annotations

from tests.quality.routes import WS, Route

TASK_BODY = {
    "data": {
        "type": "tasks",
        "attributes": {
            "name": "scanner-2",
            "url": "https://tasks.example.com/hook",
            "category": "task",
        },
    }
}
WS_TASK_BODY = {
    "data": {
        "type": "workspace-tasks",
        "attributes": {"enforcement-level": "advisory", "stages": ["post_plan"]},
        "relationships": {"task": {"data": {"type": "tasks", "id": "{spare_task_id}"}}},
    }
}
WS_TASK_PATCH = {
    "data": {"type": "workspace-tasks", "attributes": {"enforcement-level": "mandatory"}}
}

# The workspace routes act on tasks-ws, which has the world's attachment.
TASKS_WS = {"use": {"workspace_id": "tasks_workspace_id"}}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v2/organizations/{org_name}/tasks", "owner", is_list=True),
    Route("POST", "/api/v2/organizations/{org_name}/tasks", "owner", body=TASK_BODY),
    Route("GET", "/api/v2/tasks/{task_id}", "owner"),
    Route(
        "PATCH",
        "/api/v2/tasks/{task_id}",
        "owner",
        body={"data": {"type": "tasks", "attributes": {"description": "d"}}},
    ),
    Route("DELETE", "/api/v2/tasks/{task_id}", "owner"),
    Route("GET", WS + "/tasks", "member", is_list=True, extra=TASKS_WS),
    Route("POST", WS + "/tasks", "owner", body=WS_TASK_BODY, extra=TASKS_WS),
    Route("GET", WS + "/tasks/{workspace_task_id}", "member", extra=TASKS_WS),
    Route("PATCH", WS + "/tasks/{workspace_task_id}", "owner", body=WS_TASK_PATCH, extra=TASKS_WS),
    Route("DELETE", WS + "/tasks/{workspace_task_id}", "owner", extra=TASKS_WS),
    Route(
        "GET",
        "/api/v2/runs/{run_id}/task-stages",
        "member",
        is_list=True,
        extra={"use": {"run_id": "task_run_id"}},
    ),
    Route("GET", "/api/v2/task-stages/{task_stage_id}", "member"),
    Route(
        "POST",
        "/api/v2/task-stages/{task_stage_id}/actions/override",
        "owner",
        # The override lets the run go on: here it ends (a speculative plan), which closes
        # its phases and jobs and releases the workspace, as a discard does.
        query_budget=20,
        extra={"use": {"task_stage_id": "awaiting_task_stage_id"}},
    ),
    Route("GET", "/api/v2/task-results/{task_result_id}", "member"),
    Route("PATCH", "/api/v2/task-results/{task_result_id}/callback", "signed"),
)
