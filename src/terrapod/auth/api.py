"""Token routes: user tokens and the organization token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from terrapod.auth.schemas import TokenAttributes, TokenDocument, TokenList, serialize
from terrapod.auth.service import TokenService
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
from terrapod.jsonapi.pagination import page_document, page_params
from terrapod.jsonapi.parsing import parse_resource
from terrapod.organizations import service as organizations

router = APIRouter(
    prefix="/api/v2",
    tags=["tokens"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

TYPES = {"authentication-tokens", "authentication-token"}


async def _token_service(request: Request) -> TokenService:
    service: TokenService = request.app.state.tokens
    return service


TokenServiceDep = Annotated[TokenService, Depends(_token_service)]


@router.post(
    "/users/{user_id}/authentication-tokens",
    operation_id="createUserToken",
    status_code=201,
    responses=responses(201, TokenDocument, errors=[*BODY_ERRORS, 404]),
    openapi_extra=jsonapi_body(TokenAttributes, "authentication-tokens"),
)
async def create_user_token(
    user_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    tokens: TokenServiceDep,
) -> Response:
    body = await parse_resource(request, TokenAttributes, types=TYPES)
    issued = await tokens.create_user_token(
        session,
        principal,
        user_id,
        description=body.attributes.description,
        expired_at=body.attributes.expired_at,
    )
    return document(serialize(issued.token, plaintext=issued.plaintext), status_code=201)


@router.get(
    "/users/{user_id}/authentication-tokens",
    operation_id="listUserTokens",
    responses=responses(200, TokenList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_user_tokens(
    user_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    tokens: TokenServiceDep,
) -> Response:
    page = page_params(request)
    rows, total = await tokens.list_user_tokens(
        session, principal, user_id, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize(t) for t in rows])


@router.get(
    "/authentication-tokens/{token_id}",
    operation_id="showToken",
    # 403: an agent token shown to a member of its pool's organization (not an owner)
    responses=responses(200, TokenDocument, errors=[403, 404]),
)
async def show_token(
    token_id: str, session: SessionDep, principal: PrincipalDep, tokens: TokenServiceDep
) -> Response:
    return document(serialize(await tokens.get_token(session, principal, token_id)))


@router.delete(
    "/authentication-tokens/{token_id}",
    operation_id="deleteToken",
    status_code=204,
    responses=responses(204, errors=[403, 404]),
)
async def delete_token(
    token_id: str, session: SessionDep, principal: PrincipalDep, tokens: TokenServiceDep
) -> Response:
    await tokens.delete_token(session, principal, token_id)
    return no_content()


def _only_default_kind(request: Request) -> None:
    # TFE's ?token=audit-trails selects a second, audit-only organization token; Terrapod
    # has no audit-trails API yet, so it says so instead of pretending.
    kind = request.query_params.get("token")
    if kind not in (None, ""):
        raise Invalid(f"token type {kind!r} is not supported; omit the token parameter")


TOKEN_KIND = query_parameter(
    "token",
    {"type": "string"},
    "TFE's audit-trails token; Terrapod has only the default one, so any value but empty is 422",
)


@router.post(
    "/organizations/{name}/authentication-token",
    operation_id="createOrganizationToken",
    status_code=201,
    responses=responses(201, TokenDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=openapi_extra(
        jsonapi_body(TokenAttributes, "authentication-token", required=False),
        parameters=[TOKEN_KIND],
    ),
)
async def create_org_token(
    name: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    tokens: TokenServiceDep,
) -> Response:
    _only_default_kind(request)
    has_body = request.headers.get("content-length") not in (None, "0")
    attributes = (
        (await parse_resource(request, TokenAttributes, types=TYPES)).attributes
        if has_body
        else TokenAttributes()
    )
    org = await organizations.get_by_name(session, principal, name)
    issued = await tokens.create_org_token(
        session,
        principal,
        org,
        expired_at=attributes.expired_at,
        description=attributes.description,
    )
    return document(serialize(issued.token, plaintext=issued.plaintext), status_code=201)


@router.get(
    "/organizations/{name}/authentication-token",
    operation_id="showOrganizationToken",
    responses=responses(200, TokenDocument, errors=[403, 404, 422]),
    openapi_extra=openapi_extra(parameters=[TOKEN_KIND]),
)
async def show_org_token(
    name: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    tokens: TokenServiceDep,
) -> Response:
    _only_default_kind(request)
    org = await organizations.get_by_name(session, principal, name)
    return document(serialize(await tokens.get_org_token(session, principal, org)))


@router.delete(
    "/organizations/{name}/authentication-token",
    operation_id="deleteOrganizationToken",
    status_code=204,
    responses=responses(204, errors=[403, 404, 422]),
    openapi_extra=openapi_extra(parameters=[TOKEN_KIND]),
)
async def delete_org_token(
    name: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    tokens: TokenServiceDep,
) -> Response:
    _only_default_kind(request)
    org = await organizations.get_by_name(session, principal, name)
    await tokens.delete_org_token(session, principal, org)
    return no_content()
