"""Workspace variable routes: parse, one service call, serialize.

``/workspaces/{id}/vars`` is TFE's Workspace Variables API; ``/vars`` is the deprecated
Variables API that older scripts and tfe provider versions still call.
``/workspaces/{id}/all-vars`` merges in the variable sets, so it lives in terrapod.varsets.api.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from terrapod.crypto import SecretBox
from terrapod.deps import PrincipalDep, SessionDep
from terrapod.errors import BadRequest, Invalid
from terrapod.jsonapi.documents import document, no_content
from terrapod.jsonapi.models import (
    BODY_ERRORS,
    JSONAPIRouteResponse,
    authenticated,
    openapi_extra,
    query_parameter,
    require_attributes,
    responses,
)
from terrapod.jsonapi.openapi import jsonapi_body
from terrapod.jsonapi.parsing import parse_resource, relationship_id
from terrapod.variables import service
from terrapod.variables.models import Variable
from terrapod.variables.schemas import (
    VariableAttributes,
    VariableDocument,
    VariableList,
    domain_values,
    serialize,
)
from terrapod.workspaces import service as workspaces

router = APIRouter(
    prefix="/api/v2",
    tags=["variables"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

TYPES = {"vars", "var"}
WS_VARS = "/workspaces/{workspace_id}/vars"

VARIABLE_BODY = jsonapi_body(VariableAttributes, "vars")
CREATE_BODY = require_attributes(VARIABLE_BODY, "key", "category")


def _with_workspace_relationship(extra: dict[str, Any]) -> dict[str, Any]:
    """The deprecated ``POST /vars`` names the workspace in ``relationships.workspace``."""
    out = copy.deepcopy(extra)
    workspace = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "object",
                "required": ["id"],
                "properties": {"type": {"const": "workspaces"}, "id": {"type": "string"}},
            }
        },
    }
    for media in out["requestBody"]["content"].values():
        data = media["schema"]["properties"]["data"]
        data["required"] = sorted({*data.get("required", []), "relationships"})
        data["properties"]["relationships"] = {
            "type": "object",
            "required": ["workspace"],
            "properties": {"workspace": workspace},
        }
    return out


LEGACY_CREATE_BODY = _with_workspace_relationship(CREATE_BODY)
LEGACY_FILTERS = [
    query_parameter(
        "filter[organization][name]", {"type": "string"}, "Organization", required=True
    ),
    query_parameter("filter[workspace][name]", {"type": "string"}, "Workspace", required=True),
]


async def _box(request: Request) -> SecretBox:
    # async: FastAPI runs plain-def dependencies in a thread pool (~85 us each).
    box: SecretBox = request.app.state.secret_box
    return box


BoxDep = Annotated[SecretBox, Depends(_box)]


async def _values(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes sent (domain names) and the relationships of a variable body."""
    body = await parse_resource(request, VariableAttributes, types=TYPES)
    return domain_values(body.attributes), body.relationships


def _list(variables: Sequence[Variable]) -> Response:
    return document([serialize(v) for v in variables])


# -- /workspaces/{workspace_id}/vars ---------------------------------------------------------


@router.get(
    WS_VARS,
    operation_id="listWorkspaceVariables",
    responses=responses(200, VariableList, errors=[404]),
)
async def list_workspace_variables(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    return _list(await service.list_for_workspace(session, principal, ws, org))


@router.post(
    WS_VARS,
    operation_id="createWorkspaceVariable",
    status_code=201,
    responses=responses(201, VariableDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=CREATE_BODY,
)
async def create_workspace_variable(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    box: BoxDep,
) -> Response:
    values, _ = await _values(request)
    ws, org = await workspaces.get(session, principal, workspace_id)
    variable = await service.create(session, principal, box, ws, org, values)
    return document(serialize(variable), status_code=201)


@router.get(
    WS_VARS + "/{variable_id}",
    operation_id="showWorkspaceVariable",
    responses=responses(200, VariableDocument, errors=[404]),
)
async def show_workspace_variable(
    workspace_id: str, variable_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    return document(serialize(await service.get(session, principal, ws, org, variable_id)))


@router.patch(
    WS_VARS + "/{variable_id}",
    operation_id="updateWorkspaceVariable",
    responses=responses(200, VariableDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=VARIABLE_BODY,
)
async def update_workspace_variable(
    workspace_id: str,
    variable_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    box: BoxDep,
) -> Response:
    values, _ = await _values(request)
    ws, org = await workspaces.get(session, principal, workspace_id)
    variable = await service.get(session, principal, ws, org, variable_id)
    variable = await service.update(session, principal, box, ws, org, variable, values)
    return document(serialize(variable))


@router.delete(
    WS_VARS + "/{variable_id}",
    operation_id="deleteWorkspaceVariable",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_workspace_variable(
    workspace_id: str, variable_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    variable = await service.get(session, principal, ws, org, variable_id)
    await service.delete(session, principal, ws, org, variable)
    return no_content()


# -- /vars (deprecated Variables API) ---------------------------------------------------------


@router.get(
    "/vars",
    operation_id="listVariables",
    deprecated=True,
    responses=responses(200, VariableList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=LEGACY_FILTERS),
)
async def list_variables(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    org_name = request.query_params.get("filter[organization][name]")
    ws_name = request.query_params.get("filter[workspace][name]")
    if not org_name or not ws_name:
        raise BadRequest("filter[organization][name] and filter[workspace][name] are both required")
    ws, org = await workspaces.get_by_name(session, principal, org_name, ws_name)
    return _list(await service.list_for_workspace(session, principal, ws, org))


@router.post(
    "/vars",
    operation_id="createVariable",
    deprecated=True,
    status_code=201,
    responses=responses(201, VariableDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=LEGACY_CREATE_BODY,
)
async def create_variable(
    request: Request, session: SessionDep, principal: PrincipalDep, box: BoxDep
) -> Response:
    values, relationships = await _values(request)
    workspace_id = relationship_id(relationships, "workspace", "workspaces")
    if workspace_id is None:
        raise Invalid(
            "relationships.workspace.data.id names the workspace of the variable",
            pointer="/data/relationships/workspace",
        )
    ws, org = await workspaces.get(session, principal, workspace_id)
    variable = await service.create(session, principal, box, ws, org, values)
    return document(serialize(variable), status_code=201)


@router.patch(
    "/vars/{variable_id}",
    operation_id="updateVariable",
    deprecated=True,
    responses=responses(200, VariableDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=VARIABLE_BODY,
)
async def update_variable(
    variable_id: str, request: Request, session: SessionDep, principal: PrincipalDep, box: BoxDep
) -> Response:
    values, _ = await _values(request)
    variable, ws, org = await service.get_by_id(session, principal, variable_id)
    variable = await service.update(session, principal, box, ws, org, variable, values)
    return document(serialize(variable))


@router.delete(
    "/vars/{variable_id}",
    operation_id="deleteVariable",
    deprecated=True,
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_variable(
    variable_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    variable, ws, org = await service.get_by_id(session, principal, variable_id)
    await service.delete(session, principal, ws, org, variable)
    return no_content()
