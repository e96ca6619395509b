"""Agent pool, agent token and agent routes (HCP Terraform "Agent Pools and Agents API",
"Agent Tokens API"): parse, one service call, serialize.

An agent token is shown and revoked through ``/authentication-tokens/{id}``
(terrapod.auth.api), like every other token. The routes agents themselves call (join,
heartbeat, jobs) are the listener protocol, in ``listener_api.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from terrapod.agentpools import service
from terrapod.agentpools.schemas import (
    AgentDocument,
    AgentList,
    AgentPoolAttributes,
    AgentPoolDocument,
    AgentPoolList,
    AgentTokenAttributes,
    allowed_workspace_ids,
    pool_values,
    serialize_agent,
    serialize_pool,
)
from terrapod.auth.api import TokenServiceDep
from terrapod.auth.schemas import TokenDocument, TokenList
from terrapod.auth.schemas import serialize as serialize_token
from terrapod.config import Settings
from terrapod.deps import PrincipalDep, SessionDep
from terrapod.errors import BadRequest
from terrapod.jsonapi.documents import document, no_content
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
from terrapod.jsonapi.pagination import page_document, page_params
from terrapod.jsonapi.parsing import parse_resource
from terrapod.organizations import service as organizations

router = APIRouter(
    prefix="/api/v2",
    tags=["agent pools"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

POOL = "/agent-pools/{pool_id}"
TYPES = {"agent-pools", "agent-pool"}
TOKEN_TYPES = {"authentication-tokens", "authentication-token"}
POOL_BODY = jsonapi_body(AgentPoolAttributes, "agent-pools")
TOKEN_BODY = require_attributes(
    jsonapi_body(AgentTokenAttributes, "authentication-tokens"), "description"
)
LAST_PING_SINCE = "filter[last-ping-since]"
STATUS_FILTER = query_parameter(
    "filter[status]",
    {"type": "string", "enum": list(service.STATUSES)},
    "Only agents showing this status",
)


def _cutoff(request: Request) -> datetime:
    settings: Settings = request.app.state.settings
    return service.heartbeat_cutoff(settings.runs.heartbeat_timeout_seconds)


def _since(request: Request) -> datetime | None:
    raw = request.query_params.get(LAST_PING_SINCE)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{LAST_PING_SINCE} must be an RFC 3339 timestamp; got {raw[:40]!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- pools ---------------------------------------------------------------------------------


@router.get(
    "/organizations/{org_name}/agent-pools",
    operation_id="listAgentPools",
    responses=responses(200, AgentPoolList, errors=[400, 404]),
    openapi_extra=openapi_extra(
        parameters=[
            *page_parameters(),
            query_parameter("q", {"type": "string"}, "Part of the name, any case"),
            query_parameter(
                "filter[allowed_workspaces][name]",
                {"type": "string"},
                "Only pools this workspace (by name) may use",
            ),
        ]
    ),
)
async def list_agent_pools(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    q = request.query_params
    org = await organizations.get_by_name(session, principal, org_name)
    views, total = await service.list_pools(
        session,
        principal,
        org,
        cutoff=_cutoff(request),
        query=q.get("q") or None,
        allowed_workspace_name=q.get("filter[allowed_workspaces][name]") or None,
        offset=page.offset,
        limit=page.size,
    )
    return page_document(request, page, total, [serialize_pool(v) for v in views])


@router.post(
    "/organizations/{org_name}/agent-pools",
    operation_id="createAgentPool",
    status_code=201,
    responses=responses(201, AgentPoolDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=require_attributes(POOL_BODY, "name"),
)
async def create_agent_pool(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    body = await parse_resource(request, AgentPoolAttributes, types=TYPES)
    allowed = allowed_workspace_ids(body.relationships)
    org = await organizations.get_by_name(session, principal, org_name)
    view = await service.create_pool(
        session,
        principal,
        org,
        pool_values(body.attributes),
        allowed_workspace_ids=allowed,
        cutoff=_cutoff(request),
    )
    return document(serialize_pool(view), status_code=201)


@router.get(
    POOL,
    operation_id="showAgentPool",
    responses=responses(200, AgentPoolDocument, errors=[404]),
)
async def show_agent_pool(
    pool_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    view = await service.get_pool(session, principal, pool_id, cutoff=_cutoff(request))
    return document(serialize_pool(view))


@router.patch(
    POOL,
    operation_id="updateAgentPool",
    responses=responses(200, AgentPoolDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=POOL_BODY,
)
async def update_agent_pool(
    pool_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    body = await parse_resource(request, AgentPoolAttributes, types=TYPES)
    allowed = allowed_workspace_ids(body.relationships)
    view = await service.update_pool(
        session,
        principal,
        pool_id,
        pool_values(body.attributes),
        allowed_workspace_ids=allowed,
        cutoff=_cutoff(request),
    )
    return document(serialize_pool(view))


@router.delete(
    POOL,
    operation_id="deleteAgentPool",
    status_code=204,
    responses=responses(204, errors=[403, 404, 409]),
)
async def delete_agent_pool(
    pool_id: str, session: SessionDep, principal: PrincipalDep, tokens: TokenServiceDep
) -> Response:
    await service.delete_pool(session, principal, pool_id, cache=tokens.cache)
    return no_content()


# -- agent tokens --------------------------------------------------------------------------


@router.post(
    POOL + "/authentication-tokens",
    operation_id="createAgentToken",
    status_code=201,
    responses=responses(201, TokenDocument, errors=[*BODY_ERRORS, 403, 404]),
    openapi_extra=TOKEN_BODY,
)
async def create_agent_token(
    pool_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    body = await parse_resource(request, AgentTokenAttributes, types=TOKEN_TYPES)
    issued = await service.create_token(session, principal, pool_id, body.attributes.description)
    return document(serialize_token(issued.token, plaintext=issued.plaintext), status_code=201)


@router.get(
    POOL + "/authentication-tokens",
    operation_id="listAgentTokens",
    responses=responses(200, TokenList, errors=[400, 403, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_agent_tokens(
    pool_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    rows, total = await service.list_tokens(
        session, principal, pool_id, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize_token(t) for t in rows])


# -- agents --------------------------------------------------------------------------------


@router.get(
    POOL + "/agents",
    operation_id="listAgents",
    responses=responses(200, AgentList, errors=[400, 404, 422]),
    openapi_extra=openapi_extra(
        parameters=[
            *page_parameters(),
            query_parameter(
                LAST_PING_SINCE,
                {"type": "string", "format": "date-time"},
                "Only agents heard of since this moment",
            ),
            STATUS_FILTER,
        ]
    ),
)
async def list_agents(
    pool_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    since = _since(request)
    views, total = await service.list_agents(
        session,
        principal,
        pool_id,
        cutoff=_cutoff(request),
        last_ping_since=since,
        status=request.query_params.get("filter[status]") or None,
        offset=page.offset,
        limit=page.size,
    )
    return page_document(request, page, total, [serialize_agent(v) for v in views])


@router.get(
    "/agents/{agent_id}",
    operation_id="showAgent",
    responses=responses(200, AgentDocument, errors=[404]),
)
async def show_agent(
    agent_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    view = await service.get_agent(session, principal, agent_id, cutoff=_cutoff(request))
    return document(serialize_agent(view))


@router.get(
    "/admin/agents",
    operation_id="listAllAgents",
    responses=responses(200, AgentList, errors=[400, 403, 422]),
    openapi_extra=openapi_extra(parameters=[*page_parameters(), STATUS_FILTER]),
)
async def list_all_agents(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Every agent (built-in ones first, with a null agent-pool), for platform admins."""
    page = page_params(request)
    views, total = await service.list_all_agents(
        session,
        principal,
        cutoff=_cutoff(request),
        status=request.query_params.get("filter[status]") or None,
        offset=page.offset,
        limit=page.size,
    )
    return page_document(request, page, total, [serialize_agent(v) for v in views])
