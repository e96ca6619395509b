"""Run trigger routes (seed 003, "Run Triggers"): parse, one service call, serialize."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from terrapod.access.principal import Principal
from terrapod.deps import PrincipalDep, SessionDep
from terrapod.errors import Invalid
from terrapod.jsonapi.documents import document, no_content
from terrapod.jsonapi.models import (
    BODY_ERRORS,
    JSONAPIRouteResponse,
    authenticated,
    openapi_extra,
    page_parameters,
    query_parameter,
    responses,
)
from terrapod.jsonapi.openapi import jsonapi_body
from terrapod.jsonapi.pagination import include_params, page_document, page_params
from terrapod.jsonapi.parsing import parse_resource, relationship_id
from terrapod.runtriggers import service
from terrapod.runtriggers.schemas import (
    RunTriggerAttributes,
    RunTriggerDocument,
    RunTriggerList,
    serialize,
)
from terrapod.workspaces import schemas as workspace_schemas
from terrapod.workspaces import service as workspaces

router = APIRouter(
    prefix="/api/v2",
    tags=["run-triggers"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

TYPES = {"run-triggers", "run-trigger"}
FILTER = "filter[run-trigger][type]"
INCLUDES = ("workspace", "sourceable")


def _create_body() -> dict[str, Any]:
    """``{"data": {"type": "run-triggers", "relationships": {"sourceable": …}}}``."""
    extra = jsonapi_body(RunTriggerAttributes, "run-triggers")
    sourceable = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "object",
                "required": ["type", "id"],
                "properties": {"type": {"const": "workspaces"}, "id": {"type": "string"}},
            }
        },
    }
    for media in extra["requestBody"]["content"].values():
        data = media["schema"]["properties"]["data"]
        data["required"] = sorted({*data.get("required", []), "relationships"})
        data["properties"]["relationships"] = {
            "type": "object",
            "required": ["sourceable"],
            "properties": {"sourceable": sourceable},
        }
    return extra


CREATE_BODY = _create_body()
INCLUDE = query_parameter(
    "include",
    {"type": "string"},
    "Comma-separated: workspace (the destination), sourceable (the source)",
)


def _direction(request: Request) -> str:
    """The required ``filter[run-trigger][type]`` (seed 003: 422 when missing)."""
    value = request.query_params.get(FILTER)
    if value not in service.DIRECTIONS:
        got = "it is missing" if value is None else f"got {value[:40]!r}"
        raise Invalid(f"{FILTER} is required and must be either 'inbound' or 'outbound'; {got}")
    return value


async def _included(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    views: Sequence[service.TriggerView],
) -> list[dict[str, Any]]:
    wanted = include_params(request)
    pairs = []
    seen: set[str] = set()
    for view in views:
        for name, workspace in (("workspace", view.workspace), ("sourceable", view.sourceable)):
            if name in wanted and workspace.id not in seen:
                seen.add(workspace.id)
                pairs.append((workspace, view.organization))
    if not pairs:
        return []
    return [
        workspace_schemas.serialize(v, principal) for v in await workspaces.views(session, pairs)
    ]


@router.post(
    "/workspaces/{workspace_id}/run-triggers",
    operation_id="createRunTrigger",
    status_code=201,
    responses=responses(201, RunTriggerDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=CREATE_BODY,
)
async def create_run_trigger(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    body = await parse_resource(request, RunTriggerAttributes, types=TYPES)
    sourceable_id = relationship_id(body.relationships, "sourceable", "workspaces")
    ws, org = await workspaces.get(session, principal, workspace_id)
    view = await service.create(session, principal, ws, org, sourceable_id)
    return document(serialize(view), status_code=201)


@router.get(
    "/workspaces/{workspace_id}/run-triggers",
    operation_id="listRunTriggers",
    responses=responses(200, RunTriggerList, errors=[400, 404, 422]),
    openapi_extra=openapi_extra(
        parameters=[
            query_parameter(
                FILTER,
                {"type": "string", "enum": list(service.DIRECTIONS)},
                "inbound: triggers that queue runs in this workspace; outbound: triggers "
                "this workspace's applies fire",
                required=True,
            ),
            *page_parameters(),
            INCLUDE,
        ]
    ),
)
async def list_run_triggers(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    direction = _direction(request)
    page = page_params(request)
    ws, org = await workspaces.get(session, principal, workspace_id)
    views, total = await service.list_for_workspace(
        session, principal, ws, org, direction, offset=page.offset, limit=page.size
    )
    included = await _included(request, session, principal, views)
    return page_document(request, page, total, [serialize(v) for v in views], included=included)


@router.get(
    "/run-triggers/{run_trigger_id}",
    operation_id="showRunTrigger",
    responses=responses(200, RunTriggerDocument, errors=[404]),
    openapi_extra=openapi_extra(parameters=[INCLUDE]),
)
async def show_run_trigger(
    run_trigger_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    view = await service.get(session, principal, run_trigger_id)
    included = await _included(request, session, principal, [view])
    return document(serialize(view), included=included)


@router.delete(
    "/run-triggers/{run_trigger_id}",
    operation_id="deleteRunTrigger",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_run_trigger(
    run_trigger_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    await service.delete_trigger(session, principal, run_trigger_id)
    return no_content()
