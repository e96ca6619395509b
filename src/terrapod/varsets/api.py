"""Variable set routes: parse, one service call, serialize.

HCP Terraform's Variable Sets API (``/organizations/{org}/varsets``, ``/varsets/{id}`` and its
``relationships/vars`` and ``relationships/workspaces``), the sets applied to a workspace
(``/workspaces/{id}/varsets``), and ``/workspaces/{id}/all-vars``: every variable a run in the
workspace receives, its own and its sets' (go-tfe ``Variables.ListAll``, which Terraform's
cloud backend reads). That route lives here because it needs the sets, and the variables
domain may not import this one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from terrapod.crypto import SecretBox
from terrapod.deps import PrincipalDep, SessionDep
from terrapod.jsonapi.documents import document, no_content
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
from terrapod.jsonapi.parsing import ids_of, parse_resource, parse_resource_list
from terrapod.variables.schemas import VariableList
from terrapod.varsets import service
from terrapod.varsets.schemas import (
    VariableAttributes,
    VarsetAttributes,
    VarsetDocument,
    VarsetList,
    VarsetVariableDocument,
    VarsetVariableList,
    new_variables,
    serialize,
    serialize_effective,
    serialize_variable,
    set_values,
    variable_values,
    workspace_ids,
)

router = APIRouter(
    prefix="/api/v2",
    tags=["variable sets"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

VARSET = "/varsets/{varset_id}"
VARSET_VARS = VARSET + "/relationships/vars"
VARSET_BODY = jsonapi_body(VarsetAttributes, "varsets")
VARIABLE_BODY = jsonapi_body(VariableAttributes, "vars")
WORKSPACES_BODY = list_body(
    {
        "type": "object",
        "required": ["type", "id"],
        "properties": {"type": {"const": "workspaces"}, "id": {"type": "string", "minLength": 1}},
    },
    description="Workspaces of the variable set's organization",
)
LIST_PARAMETERS = [
    *page_parameters(),
    query_parameter("q", {"type": "string"}, "Part of the name, any case"),
]


async def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


BoxDep = Annotated[SecretBox, Depends(_box)]


async def _set_body(request: Request) -> tuple[dict[str, Any], list[str] | None, list[Any]]:
    body = await parse_resource(request, VarsetAttributes, types={"varsets"})
    return (
        set_values(body.attributes),
        workspace_ids(body.relationships),
        new_variables(body.relationships),
    )


async def _variable_body(request: Request) -> dict[str, Any]:
    body = await parse_resource(request, VariableAttributes, types={"vars", "var"})
    return variable_values(body.attributes)


def _page(request: Request, views: list[service.VarsetView], total: int, page: Any) -> Response:
    return page_document(request, page, total, [serialize(v) for v in views])


# -- sets ------------------------------------------------------------------------------------


@router.get(
    "/organizations/{org_name}/varsets",
    operation_id="listVariableSets",
    responses=responses(200, VarsetList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=LIST_PARAMETERS),
)
async def list_varsets(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    views, total = await service.list_in_org(
        session,
        principal,
        org_name,
        query=request.query_params.get("q"),
        offset=page.offset,
        limit=page.size,
    )
    return _page(request, views, total, page)


@router.post(
    "/organizations/{org_name}/varsets",
    operation_id="createVariableSet",
    status_code=201,
    responses=responses(201, VarsetDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=require_attributes(VARSET_BODY, "name"),
)
async def create_varset(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep, box: BoxDep
) -> Response:
    values, workspaces, variables = await _set_body(request)
    view = await service.create(
        session,
        principal,
        box,
        org_name,
        values,
        workspace_ids=workspaces or [],
        new_variables=variables,
    )
    return document(serialize(view), status_code=201)


@router.get(
    "/workspaces/{workspace_id}/varsets",
    operation_id="listWorkspaceVariableSets",
    responses=responses(200, VarsetList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=LIST_PARAMETERS),
)
async def list_workspace_varsets(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    views, total = await service.list_for_workspace(
        session,
        principal,
        workspace_id,
        query=request.query_params.get("q"),
        offset=page.offset,
        limit=page.size,
    )
    return _page(request, views, total, page)


@router.get(
    VARSET,
    operation_id="showVariableSet",
    responses=responses(200, VarsetDocument, errors=[404]),
)
async def show_varset(varset_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    varset, org = await service.get(session, principal, varset_id)
    return document(serialize(await service.view(session, varset, org)))


async def _update(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep, box: SecretBox
) -> Response:
    values, workspaces, variables = await _set_body(request)
    view = await service.update(
        session,
        principal,
        box,
        varset_id,
        values,
        workspace_ids=workspaces,
        new_variables=variables,
    )
    return document(serialize(view))


@router.patch(
    VARSET,
    operation_id="updateVariableSet",
    responses=responses(200, VarsetDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=VARSET_BODY,
)
async def update_varset(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep, box: BoxDep
) -> Response:
    return await _update(varset_id, request, session, principal, box)


@router.put(
    VARSET,
    operation_id="replaceVariableSet",
    responses=responses(200, VarsetDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=VARSET_BODY,
)
async def put_varset(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep, box: BoxDep
) -> Response:
    """TFE accepts PUT as PATCH: only the attributes sent change."""
    return await _update(varset_id, request, session, principal, box)


@router.delete(
    VARSET,
    operation_id="deleteVariableSet",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_varset(varset_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    await service.delete_set(session, principal, varset_id)
    return no_content()


# -- workspaces a set applies to ---------------------------------------------------------------


async def _change_workspaces(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep, *, add: bool
) -> Response:
    ids = ids_of(await parse_resource_list(request), "workspaces")
    await service.change_workspaces(session, principal, varset_id, ids, add=add)
    return no_content()


@router.post(
    VARSET + "/relationships/workspaces",
    operation_id="applyVariableSetToWorkspaces",
    status_code=204,
    responses=responses(204, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=WORKSPACES_BODY,
)
async def apply_to_workspaces(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _change_workspaces(varset_id, request, session, principal, add=True)


@router.delete(
    VARSET + "/relationships/workspaces",
    operation_id="removeVariableSetFromWorkspaces",
    status_code=204,
    responses=responses(204, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=WORKSPACES_BODY,
)
async def remove_from_workspaces(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _change_workspaces(varset_id, request, session, principal, add=False)


# -- variables of a set -------------------------------------------------------------------------


@router.get(
    VARSET_VARS,
    operation_id="listVariableSetVariables",
    responses=responses(200, VarsetVariableList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_varset_variables(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    rows, total = await service.list_variables(
        session, principal, varset_id, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize_variable(v) for v in rows])


@router.post(
    VARSET_VARS,
    operation_id="createVariableSetVariable",
    status_code=201,
    responses=responses(201, VarsetVariableDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=require_attributes(VARIABLE_BODY, "key", "category"),
)
async def create_varset_variable(
    varset_id: str, request: Request, session: SessionDep, principal: PrincipalDep, box: BoxDep
) -> Response:
    values = await _variable_body(request)
    variable = await service.create_variable(session, principal, box, varset_id, values)
    return document(serialize_variable(variable), status_code=201)


@router.get(
    VARSET_VARS + "/{var_id}",
    operation_id="showVariableSetVariable",
    responses=responses(200, VarsetVariableDocument, errors=[404]),
)
async def show_varset_variable(
    varset_id: str, var_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    variable = await service.get_variable(session, principal, varset_id, var_id)
    return document(serialize_variable(variable))


@router.patch(
    VARSET_VARS + "/{var_id}",
    operation_id="updateVariableSetVariable",
    responses=responses(200, VarsetVariableDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=VARIABLE_BODY,
)
async def update_varset_variable(
    varset_id: str,
    var_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    box: BoxDep,
) -> Response:
    values = await _variable_body(request)
    variable = await service.update_variable(session, principal, box, varset_id, var_id, values)
    return document(serialize_variable(variable))


@router.delete(
    VARSET_VARS + "/{var_id}",
    operation_id="deleteVariableSetVariable",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_varset_variable(
    varset_id: str, var_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    await service.delete_variable(session, principal, varset_id, var_id)
    return no_content()


# -- everything a workspace's runs receive --------------------------------------------------------


@router.get(
    "/workspaces/{workspace_id}/all-vars",
    operation_id="listAllWorkspaceVariables",
    responses=responses(
        200,
        VariableList,
        errors=[404],
        description="The variables a run in the workspace receives, one per category and "
        "key: its own and those of the variable sets applied to it, by precedence",
    ),
)
async def list_all_workspace_variables(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    workspace, entries = await service.effective_for_workspace(session, principal, workspace_id)
    return document([serialize_effective(e, workspace.id) for e in entries])
