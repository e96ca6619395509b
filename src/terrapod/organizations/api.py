"""Organization routes: parse, one service call, serialize."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from terrapod.deps import PrincipalDep, SessionDep
from terrapod.errors import Invalid
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
from terrapod.jsonapi.parsing import Parsed, parse_resource, relationship_id
from terrapod.organizations import service
from terrapod.organizations.schemas import (
    EntitlementSetDocument,
    OrganizationAttributes,
    OrganizationDocument,
    OrganizationList,
    serialize,
    serialize_entitlements,
)

router = APIRouter(
    prefix="/api/v2",
    tags=["organizations"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

TYPES = {"organizations", "organization"}


def _values(body: Parsed[OrganizationAttributes], *, unset: bool) -> dict[str, Any]:
    """The attributes sent (``unset``: those sent, nulls included; else those not null),
    with the default-agent-pool relationship as ``default_agent_pool_id``."""
    attributes = body.attributes
    values = (
        attributes.model_dump(exclude_unset=True)
        if unset
        else attributes.model_dump(exclude_none=True)
    )
    if "default-agent-pool" in body.relationships:
        # TFE takes the pool as the default-agent-pool relationship; pytfe as an attribute.
        pool = relationship_id(body.relationships, "default-agent-pool", "agent-pools")
        if "default-agent-pool-id" in body.sent and attributes.default_agent_pool_id != pool:
            raise Invalid(
                "default-agent-pool-id and the default-agent-pool relationship name "
                "different pools",
                pointer="/data/relationships/default-agent-pool",
            )
        values["default_agent_pool_id"] = pool
    return values


@router.get(
    "/organizations",
    operation_id="listOrganizations",
    responses=responses(200, OrganizationList, errors=[400]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_organizations(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    orgs, total = await service.list_visible(
        session, principal, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize(o, principal) for o in orgs])


@router.post(
    "/organizations",
    operation_id="createOrganization",
    status_code=201,
    responses=responses(201, OrganizationDocument, errors=[*BODY_ERRORS, 403, 409]),
    openapi_extra=require_attributes(
        jsonapi_body(OrganizationAttributes, "organizations"), "name", "email"
    ),
)
async def create_organization(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    body = await parse_resource(request, OrganizationAttributes, types=TYPES)
    org = await service.create(session, principal, _values(body, unset=False))
    return document(serialize(org, principal), status_code=201)


@router.get(
    "/organizations/{name}",
    operation_id="showOrganization",
    responses=responses(200, OrganizationDocument, errors=[404]),
)
async def show_organization(name: str, session: SessionDep, principal: PrincipalDep) -> Response:
    org = await service.get_by_name(session, principal, name)
    return document(serialize(org, principal))


@router.patch(
    "/organizations/{name}",
    operation_id="updateOrganization",
    responses=responses(200, OrganizationDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=jsonapi_body(OrganizationAttributes, "organizations"),
)
async def update_organization(
    name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    body = await parse_resource(request, OrganizationAttributes, types=TYPES)
    org = await service.get_by_name(session, principal, name)
    org = await service.update(session, principal, org, _values(body, unset=True))
    return document(serialize(org, principal))


@router.delete(
    "/organizations/{name}",
    operation_id="deleteOrganization",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_organization(name: str, session: SessionDep, principal: PrincipalDep) -> Response:
    org = await service.get_by_name(session, principal, name)
    await service.delete(session, principal, org)
    return no_content()


@router.get(
    "/organizations/{name}/entitlement-set",
    operation_id="showEntitlementSet",
    responses=responses(200, EntitlementSetDocument, errors=[404]),
)
async def entitlement_set(name: str, session: SessionDep, principal: PrincipalDep) -> Response:
    org = await service.get_by_name(session, principal, name)
    return document(serialize_entitlements(org, service.ENTITLEMENTS))
