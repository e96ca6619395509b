"""Run task routes: parse, one service call, serialize.

``/organizations/{org}/tasks`` and ``/tasks/{id}`` are the organization's run tasks;
``/workspaces/{id}/tasks`` their attachments ("workspace tasks"); ``/runs/{id}/task-stages``,
``/task-stages/{id}`` and ``/task-results/{id}`` what happened in a run; and
``PATCH /task-results/{id}/callback`` is where a task service reports its result, authorized
by the access token of its request rather than an API token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from terrapod.access.principal import Principal
from terrapod.config import RunTaskSettings, Settings
from terrapod.crypto import SecretBox
from terrapod.deps import PrincipalDep, SessionDep, bearer_token
from terrapod.errors import Invalid, Unauthenticated
from terrapod.jsonapi.documents import Resource, document, no_content
from terrapod.jsonapi.models import (
    BODY_ERRORS,
    JSONAPIRouteResponse,
    authenticated,
    openapi_extra,
    page_parameters,
    query_parameter,
    require_attributes,
    responses,
)
from terrapod.jsonapi.openapi import jsonapi_body
from terrapod.jsonapi.pagination import include_params, page_document, page_params
from terrapod.jsonapi.parsing import parse_resource, read_json, relationship_id
from terrapod.organizations import service as organizations
from terrapod.runtasks import service
from terrapod.runtasks.models import RunTask
from terrapod.runtasks.schemas import (
    RunTaskAttributes,
    RunTaskDocument,
    RunTaskList,
    TaskResultCallbackAttributes,
    TaskResultDocument,
    TaskStageDocument,
    TaskStageList,
    WorkspaceTaskAttributes,
    WorkspaceTaskDocument,
    WorkspaceTaskList,
    domain_values,
    serialize_result,
    serialize_stage,
    serialize_task,
    serialize_workspace_task,
)
from terrapod.workspaces import schemas as workspace_schemas
from terrapod.workspaces import service as workspaces

router = APIRouter(
    prefix="/api/v2",
    tags=["run tasks"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

TASK_TYPES = {"tasks", "event-hooks"}
WS_TASK_TYPES = {"workspace-tasks", "tasks"}
TASK_BODY = jsonapi_body(RunTaskAttributes, "tasks")
CREATE_TASK_BODY = require_attributes(TASK_BODY, "name", "url", "category")
WS_TASK_BODY = jsonapi_body(WorkspaceTaskAttributes, "workspace-tasks")
CREATE_WS_TASK_BODY = require_attributes(WS_TASK_BODY, "enforcement-level")
CALLBACK_BODY = require_attributes(
    jsonapi_body(TaskResultCallbackAttributes, "task-results"), "status"
)
TASK_INCLUDE = query_parameter(
    "include",
    {"type": "string"},
    "Comma-separated: workspace_tasks, workspace_tasks.workspace (seed 000: tasks, "
    "tasks.workspace)",
)
STAGE_INCLUDE = query_parameter(
    "include", {"type": "string"}, "Comma-separated: task_results (or task-results), run"
)
WS_TASKS = "/workspaces/{workspace_id}/tasks"


async def _box(request: Request) -> SecretBox:
    # async: FastAPI runs plain-def dependencies in a thread pool (~85 us each).
    box: SecretBox = request.app.state.secret_box
    return box


async def _overridable(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.runtasks.mandatory_failures_overridable


async def _settings(request: Request) -> RunTaskSettings:
    settings: Settings = request.app.state.settings
    return settings.runtasks


BoxDep = Annotated[SecretBox, Depends(_box)]
RunTaskSettingsDep = Annotated[RunTaskSettings, Depends(_settings)]
OverridableDep = Annotated[bool, Depends(_overridable)]


# -- organization tasks ----------------------------------------------------------------------


async def _task_documents(
    request: Request,
    session: SessionDep,
    principal: Principal,
    tasks: list[tuple[RunTask, Any]],
) -> tuple[list[Resource], list[Resource]]:
    """The tasks and, for ``include``, their workspace tasks and those tasks' workspaces."""
    wanted = include_params(request)
    attachments = await service.workspace_tasks_of(session, [t.id for t, _ in tasks])
    data = [serialize_task(t, org, attachments[t.id]) for t, org in tasks]
    included: list[Resource] = []
    every = [wt for t, _ in tasks for wt in attachments[t.id]]
    if wanted & {"workspace_tasks", "tasks", "workspace_tasks.workspace", "tasks.workspace"}:
        included.extend(serialize_workspace_task(wt) for wt in every)
    if wanted & {"workspace_tasks.workspace", "tasks.workspace"}:
        found = await service.workspaces_by_id(session, {wt.workspace_id for wt in every})
        views = await workspaces.views(session, list(found.values()))
        included.extend(workspace_schemas.serialize(v, principal) for v in views)
    return data, included


@router.get(
    "/organizations/{org_name}/tasks",
    operation_id="listRunTasks",
    responses=responses(200, RunTaskList, errors=[400, 403, 404]),
    openapi_extra=openapi_extra(parameters=[*page_parameters(), TASK_INCLUDE]),
)
async def list_run_tasks(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    org = await organizations.get_by_name(session, principal, org_name)
    rows, total = await service.list_tasks(
        session, principal, org, offset=page.offset, limit=page.size
    )
    data, included = await _task_documents(request, session, principal, [(t, org) for t in rows])
    return page_document(request, page, total, data, included=included)


@router.post(
    "/organizations/{org_name}/tasks",
    operation_id="createRunTask",
    status_code=201,
    responses=responses(201, RunTaskDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=CREATE_TASK_BODY,
)
async def create_run_task(
    org_name: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    box: BoxDep,
    settings: RunTaskSettingsDep,
) -> Response:
    body = await parse_resource(request, RunTaskAttributes, types=TASK_TYPES)
    org = await organizations.get_by_name(session, principal, org_name)
    task = await service.create_task(
        session, principal, box, settings, org, domain_values(body.attributes)
    )
    return document(serialize_task(task, org, []), status_code=201)


@router.get(
    "/tasks/{task_id}",
    operation_id="showRunTask",
    responses=responses(200, RunTaskDocument, errors=[403, 404]),
    openapi_extra=openapi_extra(parameters=[TASK_INCLUDE]),
)
async def show_run_task(
    task_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    task, org = await service.get_task(session, principal, task_id)
    data, included = await _task_documents(request, session, principal, [(task, org)])
    return document(data[0], included=included)


@router.patch(
    "/tasks/{task_id}",
    operation_id="updateRunTask",
    responses=responses(200, RunTaskDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=TASK_BODY,
)
async def update_run_task(
    task_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    box: BoxDep,
    settings: RunTaskSettingsDep,
) -> Response:
    body = await parse_resource(request, RunTaskAttributes, types=TASK_TYPES)
    task, org = await service.get_task(session, principal, task_id)
    task = await service.update_task(
        session, principal, box, settings, task, org, domain_values(body.attributes)
    )
    data, _ = await _task_documents(request, session, principal, [(task, org)])
    return document(data[0])


@router.delete(
    "/tasks/{task_id}",
    operation_id="deleteRunTask",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_run_task(task_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    task, org = await service.get_task(session, principal, task_id)
    await service.delete_task(session, principal, task, org)
    return no_content()


# -- workspace tasks ---------------------------------------------------------------------------


@router.get(
    WS_TASKS,
    operation_id="listWorkspaceRunTasks",
    responses=responses(200, WorkspaceTaskList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_workspace_run_tasks(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    ws, org = await workspaces.get(session, principal, workspace_id)
    rows, total = await service.list_workspace_tasks(
        session, principal, ws, org, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize_workspace_task(w) for w in rows])


@router.post(
    WS_TASKS,
    operation_id="createWorkspaceRunTask",
    status_code=201,
    responses=responses(201, WorkspaceTaskDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=CREATE_WS_TASK_BODY,
)
async def create_workspace_run_task(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    body = await parse_resource(request, WorkspaceTaskAttributes, types=WS_TASK_TYPES)
    # go-tfe and pytfe name the task ``task``; seed 000's older body ``event-hook``.
    task_id = relationship_id(body.relationships, "task") or relationship_id(
        body.relationships, "event-hook"
    )
    ws, org = await workspaces.get(session, principal, workspace_id)
    wt = await service.create_workspace_task(
        session, principal, ws, org, domain_values(body.attributes), task_id
    )
    return document(serialize_workspace_task(wt), status_code=201)


@router.get(
    WS_TASKS + "/{workspace_task_id}",
    operation_id="showWorkspaceRunTask",
    responses=responses(200, WorkspaceTaskDocument, errors=[404]),
)
async def show_workspace_run_task(
    workspace_id: str, workspace_task_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    wt = await service.get_workspace_task(session, principal, ws, org, workspace_task_id)
    return document(serialize_workspace_task(wt))


@router.patch(
    WS_TASKS + "/{workspace_task_id}",
    operation_id="updateWorkspaceRunTask",
    responses=responses(200, WorkspaceTaskDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=WS_TASK_BODY,
)
async def update_workspace_run_task(
    workspace_id: str,
    workspace_task_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> Response:
    body = await parse_resource(request, WorkspaceTaskAttributes, types=WS_TASK_TYPES)
    ws, org = await workspaces.get(session, principal, workspace_id)
    wt = await service.get_workspace_task(session, principal, ws, org, workspace_task_id)
    wt = await service.update_workspace_task(
        session, principal, ws, org, wt, domain_values(body.attributes)
    )
    return document(serialize_workspace_task(wt))


@router.delete(
    WS_TASKS + "/{workspace_task_id}",
    operation_id="deleteWorkspaceRunTask",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_workspace_run_task(
    workspace_id: str, workspace_task_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    wt = await service.get_workspace_task(session, principal, ws, org, workspace_task_id)
    await service.delete_workspace_task(session, principal, ws, org, wt)
    return no_content()


# -- task stages and results -------------------------------------------------------------------


def _results_wanted(request: Request) -> bool:
    return bool(include_params(request) & {"task_results", "task-results"})


@router.get(
    "/runs/{run_id}/task-stages",
    operation_id="listRunTaskStages",
    responses=responses(200, TaskStageList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=[*page_parameters(), STAGE_INCLUDE]),
)
async def list_task_stages(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    views, total = await service.stages_of_run(
        session, principal, run_id, offset=page.offset, limit=page.size
    )
    included = (
        [serialize_result(r, v.stage) for v in views for r in v.results]
        if _results_wanted(request)
        else []
    )
    return page_document(
        request, page, total, [serialize_stage(v) for v in views], included=included
    )


@router.get(
    "/task-stages/{task_stage_id}",
    operation_id="showTaskStage",
    responses=responses(200, TaskStageDocument, errors=[404]),
    openapi_extra=openapi_extra(parameters=[STAGE_INCLUDE]),
)
async def show_task_stage(
    task_stage_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    view = await service.get_stage(session, principal, task_stage_id)
    included = (
        [serialize_result(r, view.stage) for r in view.results] if _results_wanted(request) else []
    )
    return document(serialize_stage(view), included=included)


@router.post(
    "/task-stages/{task_stage_id}/actions/override",
    operation_id="overrideTaskStage",
    responses=responses(200, TaskStageDocument, errors=[400, 403, 404, 409, 413, 422]),
)
async def override_task_stage(
    task_stage_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    comment = await _comment(request)
    view = await service.override(session, principal, task_stage_id, comment)
    return document(serialize_stage(view))


async def _comment(request: Request) -> str | None:
    """The optional ``{"comment": "…"}`` body (pytfe) or none at all (go-tfe, terraform)."""
    if not (await request.body()).strip():
        return None
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object", pointer="")
    comment = body.get("comment")
    if isinstance(body.get("data"), dict):
        comment = (body["data"].get("attributes") or {}).get("comment", comment)
    if comment is not None and (not isinstance(comment, str) or len(comment) > 4096):
        raise Invalid("comment must be a string of at most 4096 characters", pointer="/comment")
    return comment


@router.get(
    "/task-results/{task_result_id}",
    operation_id="showTaskResult",
    responses=responses(200, TaskResultDocument, errors=[404]),
)
async def show_task_result(
    task_result_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    result = await service.get_result(session, principal, task_result_id)
    return document(serialize_result(result, await service.stage_of(session, result)))


@router.patch(
    "/task-results/{task_result_id}/callback",
    operation_id="taskResultCallback",
    responses=responses(200, TaskResultDocument, errors=[*BODY_ERRORS]),
    openapi_extra=CALLBACK_BODY,
)
async def task_result_callback(
    task_result_id: str, request: Request, session: SessionDep, overridable: OverridableDep
) -> Response:
    """A task service's result. Its credential is the ``access_token`` of the request it got,
    valid for this one result until the result is in (never an API token)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("the task result's access token is required (Authorization: Bearer)")
    body = await parse_resource(request, TaskResultCallbackAttributes, types={"task-results"})
    values = domain_values(body.attributes)
    outcomes = (body.relationships.get("outcomes") or {}).get("data")
    if outcomes is not None and not isinstance(outcomes, list):
        raise Invalid("outcomes must be a list", pointer="/data/relationships/outcomes/data")
    report = service.CallbackReport(
        status=str(values.get("status") or ""),
        message=values.get("message"),
        url=values.get("url"),
        outcomes=outcomes,
    )
    result = await service.callback(session, task_result_id, token, report, overridable=overridable)
    return document(serialize_result(result, await service.stage_of(session, result)))
