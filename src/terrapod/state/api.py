"""State version routes, and the upload hook that finishes versions whose content arrives
through a signed URL."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from terrapod.access.principal import Principal
from terrapod.db.engine import WRITE_OPTION
from terrapod.deps import PrincipalDep, SessionDep, UrlForDep
from terrapod.errors import BadRequest
from terrapod.jsonapi.documents import document
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
from terrapod.jsonapi.pagination import include_params, page_params, pagination
from terrapod.jsonapi.parsing import Attributes, parse_resource, relationship_id
from terrapod.organizations.models import Organization
from terrapod.state import service
from terrapod.state.models import StateVersion
from terrapod.state.schemas import (
    STATE_FILE_CONTENT,
    OutputDocument,
    OutputList,
    StateVersionAttributes,
    StateVersionDocument,
    StateVersionList,
    UrlFor,
    serialize,
    serialize_output,
)
from terrapod.state.service import CreateRequest, StateContext
from terrapod.storage import ObjectInfo
from terrapod.workspaces import service as workspaces
from terrapod.workspaces.models import Workspace

router = APIRouter(
    prefix="/api/v2",
    tags=["state"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

INCLUDE_OUTPUTS = query_parameter(
    "include", {"type": "string"}, "outputs: add the versions' outputs as included resources"
)

TYPES = {"state-versions", "state-version"}


async def _ctx(request: Request) -> StateContext:
    # async: FastAPI runs plain-def dependencies in a thread pool (~85 us each).
    ctx: StateContext = request.app.state.state_ctx
    return ctx


ContextDep = Annotated[StateContext, Depends(_ctx)]


async def _document(
    session: SessionDep,
    ctx: StateContext,
    url_for: UrlFor,
    svs: list[StateVersion],
    *,
    include_outputs: bool,
    status_code: int = 200,
    meta: dict[str, object] | None = None,
    links: dict[str, object] | None = None,
    many: bool = False,
) -> Response:
    outputs = await service.outputs_of(session, [sv.id for sv in svs])
    data = [serialize(sv, outputs[sv.id], url_for) for sv in svs]
    included = (
        [serialize_output(o, ctx.box, reveal=False) for sv in svs for o in outputs[sv.id]]
        if include_outputs
        else None
    )
    return document(
        data if many else data[0],
        included=included,
        meta=meta,
        links=links,
        status_code=status_code,
    )


@router.post(
    "/workspaces/{workspace_id}/state-versions",
    operation_id="createStateVersion",
    status_code=201,
    # 409: the caller does not hold the workspace lock, or serial/lineage do not succeed the
    # current state.
    responses=responses(201, StateVersionDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=require_attributes(
        jsonapi_body(StateVersionAttributes, "state-versions"), "serial", "md5"
    ),
)
async def create_state_version(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    url_for: UrlForDep,
) -> Response:
    # Terraform 1.0 sends the whole state base64-encoded in this body.
    body = await parse_resource(
        request,
        StateVersionAttributes,
        types=TYPES,
        max_body=request.app.state.settings.max_inline_state_bytes,
    )
    run_id = relationship_id(body.relationships, "run", "runs")
    ws, org = await workspaces.get(session, principal, workspace_id)
    a = body.attributes
    sv = await service.create(
        session,
        principal,
        ctx,
        ws,
        org,
        CreateRequest(
            serial=a.serial,
            md5=a.md5,
            lineage=a.lineage,
            force=a.force,
            state=a.state,
            json_state=a.json_state,
            json_state_outputs=a.json_state_outputs,
            run_id=run_id,
        ),
    )
    return await _document(session, ctx, url_for, [sv], include_outputs=False, status_code=201)


@router.get(
    "/workspaces/{workspace_id}/state-versions",
    operation_id="listWorkspaceStateVersions",
    responses=responses(200, StateVersionList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=[*page_parameters(), INCLUDE_OUTPUTS]),
)
async def list_workspace_state_versions(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    url_for: UrlForDep,
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    return await _list(request, session, principal, ctx, url_for, ws, org)


@router.get(
    "/state-versions",
    operation_id="listStateVersions",
    responses=responses(200, StateVersionList, errors=[400, 404]),
    openapi_extra=openapi_extra(
        parameters=[
            query_parameter(
                "filter[organization][name]", {"type": "string"}, "Organization", required=True
            ),
            query_parameter(
                "filter[workspace][name]", {"type": "string"}, "Workspace", required=True
            ),
            *page_parameters(),
            INCLUDE_OUTPUTS,
        ]
    ),
)
async def list_state_versions(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    url_for: UrlForDep,
) -> Response:
    org_name = request.query_params.get("filter[organization][name]")
    ws_name = request.query_params.get("filter[workspace][name]")
    if not org_name or not ws_name:
        raise BadRequest("filter[organization][name] and filter[workspace][name] are both required")
    ws, org = await workspaces.get_by_name(session, principal, org_name, ws_name)
    return await _list(request, session, principal, ctx, url_for, ws, org)


async def _list(
    request: Request,
    session: SessionDep,
    principal: Principal,
    ctx: StateContext,
    url_for: UrlFor,
    ws: Workspace,
    org: Organization,
) -> Response:
    page = page_params(request)
    rows, total = await service.list_for_workspace(
        session, principal, ws, org, offset=page.offset, limit=page.size
    )
    meta, links = pagination(request, page, total)
    return await _document(
        session,
        ctx,
        url_for,
        list(rows),
        include_outputs="outputs" in include_params(request),
        meta=meta,
        links=links,
        many=True,
    )


@router.get(
    "/state-versions/{sv_id}",
    operation_id="showStateVersion",
    responses=responses(200, StateVersionDocument, errors=[404]),
    openapi_extra=openapi_extra(parameters=[INCLUDE_OUTPUTS]),
)
async def show_state_version(
    sv_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    url_for: UrlForDep,
) -> Response:
    sv, _, _ = await service.get(session, principal, sv_id)
    return await _document(
        session, ctx, url_for, [sv], include_outputs="outputs" in include_params(request)
    )


@router.get(
    "/workspaces/{workspace_id}/current-state-version",
    operation_id="showCurrentStateVersion",
    responses=responses(200, StateVersionDocument, errors=[404]),
    openapi_extra=openapi_extra(parameters=[INCLUDE_OUTPUTS]),
)
async def current_state_version(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    url_for: UrlForDep,
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    sv = await service.current(session, principal, ws, org)
    return await _document(
        session, ctx, url_for, [sv], include_outputs="outputs" in include_params(request)
    )


@router.get(
    "/state-versions/{sv_id}/download",
    operation_id="downloadStateVersion",
    response_class=StreamingResponse,
    responses=responses(
        200, errors=[404], description="The state file", content=STATE_FILE_CONTENT
    ),
)
async def download_state_version(
    sv_id: str, session: SessionDep, principal: PrincipalDep, ctx: ContextDep
) -> Response:
    _, stream = await service.open_content(session, principal, ctx, sv_id)
    return StreamingResponse(
        stream,
        media_type="application/json",
        headers={"Content-Length": str(stream.length), "Cache-Control": "no-store"},
        background=BackgroundTask(stream.aclose),
    )


@router.get(
    "/state-versions/{sv_id}/outputs",
    operation_id="listStateVersionOutputs",
    responses=responses(200, OutputList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_outputs(
    sv_id: str, request: Request, session: SessionDep, principal: PrincipalDep, ctx: ContextDep
) -> Response:
    sv, _, _ = await service.get(session, principal, sv_id)
    outputs = (await service.outputs_of(session, [sv.id]))[sv.id]
    page = page_params(request)
    chunk = outputs[page.offset : page.offset + page.size]
    meta, links = pagination(request, page, len(outputs))
    return document(
        [serialize_output(o, ctx.box, reveal=False) for o in chunk], meta=meta, links=links
    )


@router.get(
    "/state-version-outputs/{output_id}",
    operation_id="showStateVersionOutput",
    responses=responses(200, OutputDocument, errors=[404]),
)
async def show_output(
    output_id: str, session: SessionDep, principal: PrincipalDep, ctx: ContextDep
) -> Response:
    # Anyone who may read the workspace's state may read its sensitive outputs here (TFE).
    output = await service.get_output(session, principal, output_id)
    return document(serialize_output(output, ctx.box, reveal=True))


@router.get(
    "/workspaces/{workspace_id}/current-state-version-outputs",
    operation_id="listCurrentStateVersionOutputs",
    responses=responses(200, OutputList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def current_outputs(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    sv = await service.current(session, principal, ws, org)
    outputs = (await service.outputs_of(session, [sv.id]))[sv.id]
    page = page_params(request, default_size=100)
    chunk = outputs[page.offset : page.offset + page.size]
    meta, links = pagination(request, page, len(outputs))
    return document(
        [serialize_output(o, ctx.box, reveal=False) for o in chunk], meta=meta, links=links
    )


class _RollbackAttributes(Attributes):
    pass


def _rollback_body() -> dict[str, Any]:
    """The body names the version to copy in a relationship; it has no attributes."""
    extra = jsonapi_body(_RollbackAttributes, "state-versions")
    target = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "object",
                "required": ["id"],
                "properties": {"type": {"const": "state-versions"}, "id": {"type": "string"}},
            }
        },
    }
    for media in extra["requestBody"]["content"].values():
        data = media["schema"]["properties"]["data"]
        data["required"] = ["relationships"]
        data["properties"]["relationships"] = {
            "type": "object",
            "required": ["rollback-state-version"],
            "properties": {"rollback-state-version": target},
        }
    return extra


ROLLBACK_BODY = _rollback_body()


@router.patch(
    "/workspaces/{workspace_id}/state-versions",
    operation_id="rollbackStateVersion",
    # 400 also when relationships.rollback-state-version is missing; 409: the caller does not
    # hold the lock, or the version is already current.
    responses=responses(200, StateVersionDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=ROLLBACK_BODY,
)
async def rollback_state_version(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    url_for: UrlForDep,
) -> Response:
    body = await parse_resource(request, _RollbackAttributes, types=TYPES)
    target = relationship_id(body.relationships, "rollback-state-version", "state-versions")
    if target is None:
        raise BadRequest(
            "relationships.rollback-state-version.data.id names the version to roll back to"
        )
    ws, org = await workspaces.get(session, principal, workspace_id)
    sv = await service.rollback(session, principal, ctx, ws, org, target)
    return await _document(session, ctx, url_for, [sv], include_outputs=False)


# -- upload hook ----------------------------------------------------------------------------


async def upload_guard(request: Request, key: str) -> bool:
    async with request.app.state.sessionmaker() as session:
        return await service.may_upload(session, key)


async def upload_hook(request: Request, info: ObjectInfo) -> None:
    ctx = await _ctx(request)
    # Parse first, lock later: the write transaction only covers the short bookkeeping.
    summary = None if info.key.endswith(".json") else await service.summarize_upload(ctx, info.key)
    async with request.app.state.sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        try:
            await service.content_uploaded(session, ctx, info.key, info, summary)
        except service.Superseded:
            await session.commit()  # the discard must stick although the upload fails
            raise
        await session.commit()


UPLOAD_PREFIX = "workspaces/"
