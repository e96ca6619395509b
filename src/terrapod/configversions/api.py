"""Configuration version routes, and the upload handler that checks tarballs arriving
through their signed ``upload-url``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from terrapod.configversions import service
from terrapod.configversions.schemas import (
    TARBALL_CONTENT,
    ConfigurationVersionAttributes,
    ConfigurationVersionDocument,
    ConfigurationVersionList,
    serialize,
)
from terrapod.configversions.service import CreateRequest
from terrapod.db.transactions import write_transaction
from terrapod.deps import ObjectStoreDep, PrincipalDep, SessionDep, UrlForDep
from terrapod.jsonapi.documents import document
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
from terrapod.jsonapi.pagination import page_document, page_params
from terrapod.jsonapi.parsing import parse_resource
from terrapod.storage import ObjectInfo, ObjectStore, keys
from terrapod.workspaces import service as workspaces

router = APIRouter(
    prefix="/api/v2",
    tags=["configversions"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

TYPES = {"configuration-versions", "configuration-version"}

# TFE's related resources are ingress_attributes (commit details of a version made from VCS)
# and run; a version uploaded through the API has neither, so they add nothing.
INCLUDE = query_parameter(
    "include",
    {"type": "string"},
    "ingress_attributes: accepted; versions uploaded through the API have no commit details",
)


@router.post(
    "/workspaces/{workspace_id}/configuration-versions",
    operation_id="createConfigurationVersion",
    status_code=201,
    responses=responses(201, ConfigurationVersionDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=jsonapi_body(ConfigurationVersionAttributes, "configuration-versions"),
)
async def create_configuration_version(
    workspace_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    url_for: UrlForDep,
) -> Response:
    body = await parse_resource(request, ConfigurationVersionAttributes, types=TYPES)
    ws, org = await workspaces.get(session, principal, workspace_id)
    a = body.attributes
    cv = await service.create(
        session,
        principal,
        ws,
        org,
        CreateRequest(
            auto_queue_runs=a.auto_queue_runs, speculative=a.speculative, provisional=a.provisional
        ),
    )
    upload_url = url_for(keys.configuration_version(cv.id), "PUT")
    return document(serialize(cv, upload_url=upload_url), status_code=201)


@router.get(
    "/workspaces/{workspace_id}/configuration-versions",
    operation_id="listConfigurationVersions",
    responses=responses(200, ConfigurationVersionList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=[*page_parameters(), INCLUDE]),
)
async def list_configuration_versions(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    page = page_params(request)
    rows, total = await service.list_for_workspace(
        session, principal, ws, org, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize(cv) for cv in rows])


@router.get(
    "/configuration-versions/{cv_id}",
    operation_id="showConfigurationVersion",
    responses=responses(200, ConfigurationVersionDocument, errors=[404]),
    openapi_extra=openapi_extra(parameters=[INCLUDE]),
)
async def show_configuration_version(
    cv_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    cv, _, _ = await service.get(session, principal, cv_id)
    return document(serialize(cv))


@router.get(
    "/configuration-versions/{cv_id}/download",
    operation_id="downloadConfigurationVersion",
    response_class=StreamingResponse,
    # TFE redirects to a temporary URL; go-tfe and pytfe follow the redirect and read the
    # bytes, so sending the bytes at once serves them the same with one request less.
    responses=responses(
        200, errors=[404], description="The configuration tarball", content=TARBALL_CONTENT
    ),
)
async def download_configuration_version(
    cv_id: str, session: SessionDep, principal: PrincipalDep, store: ObjectStoreDep
) -> Response:
    cv, stream = await service.open_tarball(session, principal, store, cv_id)
    return StreamingResponse(
        stream,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(stream.length),
            "Content-Disposition": f'attachment; filename="{cv.id}.tar.gz"',
            "Cache-Control": "no-store",
        },
        background=BackgroundTask(stream.aclose),
    )


@router.post(
    "/configuration-versions/{cv_id}/actions/archive",
    operation_id="archiveConfigurationVersion",
    status_code=202,
    response_class=Response,
    # 409: not uploaded, or the workspace's latest version (the one new runs use).
    responses=responses(
        202, errors=[403, 404, 409], description="Archived; no content", content={}
    ),
)
async def archive_configuration_version(
    cv_id: str, session: SessionDep, principal: PrincipalDep, store: ObjectStoreDep
) -> Response:
    await service.archive(session, principal, store, cv_id)
    return Response(status_code=202)


# -- upload handler (registered in terrapod.app) ---------------------------------------------


async def upload_guard(request: Request, key: str) -> bool:
    async with request.app.state.sessionmaker() as session:
        return await service.may_upload(session, key)


async def upload_hook(request: Request, info: ObjectInfo) -> None:
    store: ObjectStore = request.app.state.object_store
    # Check first, lock later: the write transaction only covers the short bookkeeping.
    limits = service.archive_limits(request.app.state.settings.runs)
    inspection = await service.inspect_upload(store, info, limits)
    refused: service.TarballRefused | None = None
    async with write_transaction(request.app.state.sessionmaker) as session:
        try:
            await service.tarball_uploaded(session, store, info, inspection)
        except service.TarballRefused as exc:
            refused = exc  # the errored status must stick although the upload fails
    if refused is not None:
        raise refused


UPLOAD_PREFIX = "configuration-versions/"
