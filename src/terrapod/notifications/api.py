"""Notification configuration routes: parse, one service call, serialize."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from terrapod.access.permissions import Action
from terrapod.config import NotificationSettings, Settings
from terrapod.crypto import SecretBox
from terrapod.deps import (
    PrincipalDep,
    PrincipalWritingLastDep,
    SessionDep,
    WritingLastSessionDep,
    base_url,
)
from terrapod.jsonapi.documents import document, no_content
from terrapod.jsonapi.models import (
    BODY_ERRORS,
    JSONAPIRouteResponse,
    authenticated,
    openapi_extra,
    page_parameters,
    require_attributes,
    responses,
)
from terrapod.jsonapi.openapi import jsonapi_body
from terrapod.jsonapi.pagination import page_document, page_params
from terrapod.jsonapi.parsing import parse_resource
from terrapod.notifications import service
from terrapod.notifications.schemas import (
    NotificationConfigurationAttributes,
    NotificationConfigurationDocument,
    NotificationConfigurationList,
    domain_values,
    serialize,
)
from terrapod.workspaces import service as workspaces

router = APIRouter(
    prefix="/api/v2",
    tags=["notifications"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

TYPES = {"notification-configurations", "notification-configuration"}
NC = "/notification-configurations/{configuration_id}"

BODY = jsonapi_body(NotificationConfigurationAttributes, "notification-configurations")
CREATE_BODY = require_attributes(BODY, "name", "destination-type")


async def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


async def _settings(request: Request) -> NotificationSettings:
    settings: Settings = request.app.state.settings
    return settings.notifications


BoxDep = Annotated[SecretBox, Depends(_box)]
NotificationSettingsDep = Annotated[NotificationSettings, Depends(_settings)]


async def _values(request: Request) -> dict[str, object]:
    body = await parse_resource(request, NotificationConfigurationAttributes, types=TYPES)
    return domain_values(body.attributes)


@router.post(
    "/workspaces/{workspace_id}/notification-configurations",
    operation_id="createNotificationConfiguration",
    status_code=201,
    responses=responses(201, NotificationConfigurationDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=CREATE_BODY,
)
async def create_notification_configuration(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    box: BoxDep,
    settings: NotificationSettingsDep,
) -> Response:
    values = await _values(request)
    ws, org = await workspaces.get(session, principal, workspace_id)
    nc = await service.create(
        session, principal, box, settings, ws, org, values, base_url=base_url(request)
    )
    return document(serialize(nc), status_code=201)


@router.get(
    "/workspaces/{workspace_id}/notification-configurations",
    operation_id="listNotificationConfigurations",
    responses=responses(200, NotificationConfigurationList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_notification_configurations(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    page = page_params(request)
    rows, total = await service.list_for_workspace(
        session, principal, ws, org, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize(nc) for nc in rows])


@router.get(
    NC,
    operation_id="showNotificationConfiguration",
    responses=responses(200, NotificationConfigurationDocument, errors=[404]),
)
async def show_notification_configuration(
    configuration_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    nc, _, _ = await service.get(session, principal, configuration_id)
    return document(serialize(nc))


@router.patch(
    NC,
    operation_id="updateNotificationConfiguration",
    responses=responses(200, NotificationConfigurationDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=BODY,
)
async def update_notification_configuration(
    configuration_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    box: BoxDep,
    settings: NotificationSettingsDep,
) -> Response:
    values = await _values(request)
    nc, ws, org = await service.get(
        session, principal, configuration_id, Action.WS_MANAGE_NOTIFICATIONS
    )
    nc = await service.update(
        session, principal, box, settings, nc, ws, org, values, base_url=base_url(request)
    )
    return document(serialize(nc))


@router.delete(
    NC,
    operation_id="deleteNotificationConfiguration",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_notification_configuration(
    configuration_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    nc, ws, org = await service.get(
        session, principal, configuration_id, Action.WS_MANAGE_NOTIFICATIONS
    )
    await service.delete_(session, principal, nc, ws, org)
    return no_content()


@router.post(
    NC + "/actions/verify",
    operation_id="verifyNotificationConfiguration",
    responses=responses(
        200,
        NotificationConfigurationDocument,
        errors=[403, 404],
        description="The configuration; its newest delivery response is the test's outcome",
    ),
)
async def verify_notification_configuration(
    configuration_id: str,
    # The test is sent before the one write that records its answer: no write lock is held
    # while the destination takes its time.
    session: WritingLastSessionDep,
    principal: PrincipalWritingLastDep,
    box: BoxDep,
    settings: NotificationSettingsDep,
) -> Response:
    nc, ws, org = await service.get(
        session, principal, configuration_id, Action.WS_MANAGE_NOTIFICATIONS
    )
    nc = await service.verify(session, principal, box, settings, nc, ws, org)
    return document(serialize(nc))
