"""Workspace routes: parse, one service call, serialize."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from terrapod.access.principal import Principal
from terrapod.deps import PrincipalDep, SessionDep
from terrapod.errors import BadRequest, Invalid
from terrapod.jsonapi.documents import document, no_content, resource
from terrapod.jsonapi.models import (
    BODY_ERRORS,
    JSONAPIRouteResponse,
    authenticated,
    list_body,
    openapi_extra,
    page_parameters,
    query_parameter,
    require_attributes,
    responses,
)
from terrapod.jsonapi.openapi import jsonapi_body
from terrapod.jsonapi.pagination import page_document, page_params
from terrapod.jsonapi.parsing import (
    ids_of,
    parse_resource,
    parse_resource_list,
    read_json,
    relationship_id,
)
from terrapod.organizations import service as organizations
from terrapod.organizations.models import Organization
from terrapod.workspaces import service
from terrapod.workspaces.models import Workspace
from terrapod.workspaces.schemas import (
    LockAttributes,
    TagList,
    WorkspaceAttributes,
    WorkspaceDocument,
    WorkspaceList,
    domain_values,
    lock_reason,
    serialize,
)
from terrapod.workspaces.service import ListFilter, WorkspaceView

router = APIRouter(
    prefix="/api/v2",
    tags=["workspaces"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

WORKSPACE_BODY = jsonapi_body(WorkspaceAttributes, "workspaces")
SEARCH_PARAMETERS = [
    query_parameter("search[name]", {"type": "string"}, "Part of the name (any case)"),
    query_parameter("search[tags]", {"type": "string"}, "Comma-separated tags, all required"),
    query_parameter(
        "search[exclude-tags]", {"type": "string"}, "Comma-separated tags, none allowed"
    ),
    query_parameter(
        "search[wildcard-name]", {"type": "string"}, "Name with * wildcards: *foo, foo*, *foo*"
    ),
]
TAGS_BODY = list_body(
    {
        "type": "object",
        "required": ["attributes"],
        "properties": {
            "type": {"type": "string", "example": "tags"},
            "attributes": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9:_-]{0,254}$"}
                },
            },
        },
    },
    description="Tags by name",
)
CONSUMERS_BODY = list_body(
    {
        "type": "object",
        "required": ["type", "id"],
        "properties": {"type": {"const": "workspaces"}, "id": {"type": "string", "minLength": 1}},
    },
    description="Workspaces of the same organization",
)

TYPES = {"workspaces", "workspace"}


def _one(view: WorkspaceView, principal: Principal, status_code: int = 200) -> Response:
    return document(serialize(view, principal), status_code=status_code)


async def _parse(request: Request) -> tuple[dict[str, Any], list[str] | None]:
    body = await parse_resource(request, WorkspaceAttributes, types=TYPES)
    if body.attributes.vcs_repo:
        raise Invalid(
            "VCS-backed workspaces are not supported yet; use the CLI- or API-driven workflow",
            pointer="/data/attributes/vcs-repo",
        )
    values = domain_values(body.attributes, body.sent)
    if "agent-pool" in body.relationships:
        # TFE takes the pool as the agent-pool-id attribute or the agent-pool relationship.
        pool = relationship_id(body.relationships, "agent-pool", "agent-pools")
        if "agent-pool-id" in body.sent and values.get("agent_pool_id") != pool:
            raise Invalid(
                "agent-pool-id and the agent-pool relationship name different pools",
                pointer="/data/relationships/agent-pool",
            )
        values["agent_pool_id"] = pool
    return values, body.attributes.tag_names


def _split_csv(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


@router.get(
    "/organizations/{org_name}/workspaces",
    operation_id="listWorkspaces",
    responses=responses(200, WorkspaceList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=[*page_parameters(), *SEARCH_PARAMETERS]),
)
async def list_workspaces(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    q = request.query_params
    filters = ListFilter(
        name=q.get("search[name]") or None,
        tags=_split_csv(q.get("search[tags]")),
        exclude_tags=_split_csv(q.get("search[exclude-tags]")),
        wildcard_name=q.get("search[wildcard-name]") or None,
    )
    if any(key.startswith("filter[tagged]") for key in q):
        # Key-value tag bindings are not built yet; ignoring the filter would list every
        # workspace as a match (and select the wrong ones for a cloud {} block).
        raise BadRequest(
            "filter[tagged] (key-value tag bindings) is not supported yet; select workspaces "
            "by tag names with search[tags]"
        )
    org = await organizations.get_by_name(session, principal, org_name)
    rows, total = await service.list_in_org(
        session, principal, org, filters, offset=page.offset, limit=page.size
    )
    views = await service.views(session, [(w, org) for w in rows])
    return page_document(request, page, total, [serialize(v, principal) for v in views])


@router.post(
    "/organizations/{org_name}/workspaces",
    operation_id="createWorkspace",
    status_code=201,
    responses=responses(201, WorkspaceDocument, errors=[*BODY_ERRORS, 404, 409]),
    openapi_extra=require_attributes(WORKSPACE_BODY, "name"),
)
async def create_workspace(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    values, tags = await _parse(request)
    org = await organizations.get_by_name(session, principal, org_name)
    ws = await service.create(session, principal, org, values, tags=tags or ())
    return _one(await service.view(session, ws, org), principal, 201)


@router.get(
    "/organizations/{org_name}/workspaces/{name}",
    operation_id="showWorkspaceByName",
    responses=responses(200, WorkspaceDocument, errors=[404]),
)
async def show_workspace_by_name(
    org_name: str, name: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get_by_name(session, principal, org_name, name)
    return _one(await service.view(session, ws, org), principal)


@router.get(
    "/workspaces/{workspace_id}",
    operation_id="showWorkspace",
    responses=responses(200, WorkspaceDocument, errors=[404]),
)
async def show_workspace(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get(session, principal, workspace_id)
    return _one(await service.view(session, ws, org), principal)


async def _update(
    request: Request,
    session: SessionDep,
    principal: Principal,
    found: tuple[Workspace, Organization],
) -> Response:
    ws, org = found
    values, tags = await _parse(request)
    ws = await service.update(session, principal, ws, org, values, tags=tags)
    return _one(await service.view(session, ws, org), principal)


@router.patch(
    "/workspaces/{workspace_id}",
    operation_id="updateWorkspace",
    responses=responses(200, WorkspaceDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=WORKSPACE_BODY,
)
async def update_workspace(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _update(
        request, session, principal, await service.get(session, principal, workspace_id)
    )


@router.patch(
    "/organizations/{org_name}/workspaces/{name}",
    operation_id="updateWorkspaceByName",
    responses=responses(200, WorkspaceDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=WORKSPACE_BODY,
)
async def update_workspace_by_name(
    org_name: str, name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    found = await service.get_by_name(session, principal, org_name, name)
    return await _update(request, session, principal, found)


@router.delete(
    "/workspaces/{workspace_id}",
    operation_id="deleteWorkspace",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_workspace(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get(session, principal, workspace_id)
    await service.delete_workspace(session, principal, ws, org, safe=False)
    return no_content()


@router.delete(
    "/organizations/{org_name}/workspaces/{name}",
    operation_id="deleteWorkspaceByName",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_workspace_by_name(
    org_name: str, name: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get_by_name(session, principal, org_name, name)
    await service.delete_workspace(session, principal, ws, org, safe=False)
    return no_content()


@router.post(
    "/workspaces/{workspace_id}/actions/safe-delete",
    operation_id="safeDeleteWorkspace",
    status_code=204,
    # 409: the workspace still manages resources, or is locked.
    responses=responses(204, errors=[403, 404, 409]),
)
async def safe_delete_workspace(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get(session, principal, workspace_id)
    await service.delete_workspace(session, principal, ws, org, safe=True)
    return no_content()


@router.post(
    "/organizations/{org_name}/workspaces/{name}/actions/safe-delete",
    operation_id="safeDeleteWorkspaceByName",
    status_code=204,
    responses=responses(204, errors=[403, 404, 409]),
)
async def safe_delete_workspace_by_name(
    org_name: str, name: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get_by_name(session, principal, org_name, name)
    await service.delete_workspace(session, principal, ws, org, safe=True)
    return no_content()


# -- locking ---------------------------------------------------------------------------


@router.post(
    "/workspaces/{workspace_id}/actions/lock",
    operation_id="lockWorkspace",
    responses=responses(200, WorkspaceDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=jsonapi_body(LockAttributes, "", required=False),
)
async def lock_workspace(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    reason = None
    if request.headers.get("content-length") not in (None, "0"):
        reason = lock_reason(await read_json(request))
    ws, org = await service.get(session, principal, workspace_id)
    ws = await service.lock(session, principal, ws, org, reason)
    return _one(await service.view(session, ws, org), principal)


@router.post(
    "/workspaces/{workspace_id}/actions/unlock",
    operation_id="unlockWorkspace",
    responses=responses(200, WorkspaceDocument, errors=[403, 404, 409]),
)
async def unlock_workspace(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get(session, principal, workspace_id)
    ws = await service.unlock(session, principal, ws, org)
    return _one(await service.view(session, ws, org), principal)


@router.post(
    "/workspaces/{workspace_id}/actions/force-unlock",
    operation_id="forceUnlockWorkspace",
    responses=responses(200, WorkspaceDocument, errors=[403, 404, 409]),
)
async def force_unlock_workspace(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await service.get(session, principal, workspace_id)
    ws = await service.unlock(session, principal, ws, org, force=True)
    return _one(await service.view(session, ws, org), principal)


# -- tags ------------------------------------------------------------------------------


def _tag_names(items: list[dict[str, object]]) -> list[str]:
    names: list[str] = []
    for index, item in enumerate(items):
        attrs = item.get("attributes")
        name = attrs.get("name") if isinstance(attrs, dict) else None
        if not isinstance(name, str):
            raise Invalid(
                "each tag needs attributes.name", pointer=f"/data/{index}/attributes/name"
            )
        names.append(name)
    return names


@router.get(
    "/workspaces/{workspace_id}/relationships/tags",
    operation_id="listWorkspaceTags",
    responses=responses(200, TagList, errors=[404]),
)
async def list_tags(workspace_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    ws, org = await service.get(session, principal, workspace_id)
    view = await service.view(session, ws, org)
    data = [resource("tags", name, {"name": name}) for name in view.tags]
    meta = {
        "pagination": {
            "current-page": 1,
            "page-size": len(data),
            "prev-page": None,
            "next-page": None,
            "total-pages": 1,
            "total-count": len(data),
        }
    }
    return document(data, meta=meta)


@router.post(
    "/workspaces/{workspace_id}/relationships/tags",
    operation_id="addWorkspaceTags",
    status_code=204,
    responses=responses(204, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=TAGS_BODY,
)
async def add_tags(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    names = _tag_names(await parse_resource_list(request))
    ws, org = await service.get(session, principal, workspace_id)
    await service.add_tags(session, principal, ws, org, names)
    return no_content()


@router.delete(
    "/workspaces/{workspace_id}/relationships/tags",
    operation_id="removeWorkspaceTags",
    status_code=204,
    responses=responses(204, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=TAGS_BODY,
)
async def remove_tags(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    names = _tag_names(await parse_resource_list(request))
    ws, org = await service.get(session, principal, workspace_id)
    await service.remove_tags(session, principal, ws, org, names)
    return no_content()


# -- remote state consumers -------------------------------------------------------------


@router.get(
    "/workspaces/{workspace_id}/relationships/remote-state-consumers",
    operation_id="listRemoteStateConsumers",
    responses=responses(200, WorkspaceList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_consumers(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    ws, org = await service.get(session, principal, workspace_id)
    rows, total = await service.list_consumers(
        session, principal, ws, org, offset=page.offset, limit=page.size
    )
    views = await service.views(session, [(w, org) for w in rows])
    return page_document(request, page, total, [serialize(v, principal) for v in views])


async def _change_consumers(
    workspace_id: str, request: Request, session: SessionDep, principal: Principal, mode: str
) -> Response:
    ids = ids_of(await parse_resource_list(request), "workspaces")
    ws, org = await service.get(session, principal, workspace_id)
    await service.change_consumers(session, principal, ws, org, ids, mode=mode)
    return no_content()


@router.post(
    "/workspaces/{workspace_id}/relationships/remote-state-consumers",
    operation_id="addRemoteStateConsumers",
    status_code=204,
    responses=responses(204, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=CONSUMERS_BODY,
)
async def add_consumers(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _change_consumers(workspace_id, request, session, principal, "add")


@router.patch(
    "/workspaces/{workspace_id}/relationships/remote-state-consumers",
    operation_id="replaceRemoteStateConsumers",
    status_code=204,
    responses=responses(204, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=CONSUMERS_BODY,
)
async def replace_consumers(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _change_consumers(workspace_id, request, session, principal, "replace")


@router.delete(
    "/workspaces/{workspace_id}/relationships/remote-state-consumers",
    operation_id="removeRemoteStateConsumers",
    status_code=204,
    responses=responses(204, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=CONSUMERS_BODY,
)
async def remove_consumers(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _change_consumers(workspace_id, request, session, principal, "remove")
