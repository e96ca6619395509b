"""Run, plan, apply and run-event routes: parse, one service call, serialize.

``GET /logs/{token}`` (on :data:`logs_router`, outside /api/v2) serves phase logs by offset to
go-tfe's log reader, which sends no Authorization header: the signed token in the path is the
credential, as for ``/objects/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from terrapod.access.permissions import Action
from terrapod.access.principal import Principal
from terrapod.config import Settings
from terrapod.configversions import schemas as cv_schemas
from terrapod.configversions.models import ConfigurationVersion
from terrapod.db.hooks import RelatedResources, fire
from terrapod.deps import PrincipalDep, SessionDep, base_url
from terrapod.errors import BadRequest, Forbidden, Invalid, NotFound
from terrapod.events.bus import EventBus
from terrapod.jsonapi.documents import document, resource
from terrapod.jsonapi.errors import error_response
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
from terrapod.jsonapi.parsing import parse_resource, read_json, relationship_id
from terrapod.organizations import service as organizations
from terrapod.ratelimit import SlidingWindowLimiter
from terrapod.runner.engines import EngineResolver, EngineUnavailable
from terrapod.runs import logs, queries, service
from terrapod.runs import machine as m
from terrapod.runs.models import Plan
from terrapod.runs.queries import RunView
from terrapod.runs.queue import RunContext
from terrapod.runs.schemas import (
    ApplyDocument,
    CapacityDocument,
    OrganizationRunList,
    PlanDocument,
    RunAttributes,
    RunDocument,
    RunEventDocument,
    RunEventList,
    RunList,
    options_from,
    serialize_apply,
    serialize_event,
    serialize_plan,
    serialize_run,
)
from terrapod.storage import keys
from terrapod.storage.api import non_negative_query
from terrapod.storage.base import ObjectNotFound, ObjectStore
from terrapod.storage.signing import SignedUrlError, UrlSigner
from terrapod.users import schemas as user_schemas
from terrapod.users.models import User
from terrapod.workspaces import schemas as workspace_schemas
from terrapod.workspaces import service as workspaces

router = APIRouter(
    prefix="/api/v2",
    tags=["runs"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)
logs_router = APIRouter()

LOG_URL_TTL_SECONDS = 24 * 3600
# Bytes one log read returns when the reader names no limit (go-tfe asks for 64 KiB).
LOG_READ_DEFAULT = 65536
RUN_BODY = jsonapi_body(RunAttributes, "runs")
COMMENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/vnd.api+json": {
                "schema": {
                    "type": "object",
                    "properties": {"comment": {"type": ["string", "null"], "maxLength": 10000}},
                }
            }
        },
    }
}
RUN_FILTERS = [
    query_parameter("filter[operation]", {"type": "string"}, "Comma-separated run operations"),
    query_parameter("filter[status]", {"type": "string"}, "Comma-separated run statuses"),
    query_parameter("filter[source]", {"type": "string"}, "Comma-separated run sources"),
    query_parameter(
        "filter[status_group]",
        {"type": "string", "enum": sorted(m.STATUS_GROUPS)},
        "One status group",
    ),
    query_parameter(
        "filter[timeframe]", {"type": "string"}, "A year (2026) or 'year' (the last 12 months)"
    ),
    query_parameter("filter[agent_pool_names]", {"type": "string"}, "Comma-separated pools"),
    query_parameter("search[user]", {"type": "string"}, "Creator's username"),
    query_parameter("search[commit]", {"type": "string"}, "VCS commit SHA"),
    query_parameter("search[basic]", {"type": "string"}, "Run id, message or username"),
]
INCLUDE = query_parameter(
    "include",
    {"type": "string"},
    "Comma-separated: plan, apply, created_by, workspace, configuration_version, task_stages",
)


# -- helpers -----------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _log_url(request: Request) -> Any:
    root = base_url(request)
    signer: UrlSigner = request.app.state.url_signer

    def url(key: str) -> str:
        return f"{root}/logs/{signer.sign(key, 'GET', ttl=LOG_URL_TTL_SECONDS)}"

    return url


def _limited(request: Request, principal: Principal) -> None:
    limiter: SlidingWindowLimiter | None = getattr(request.app.state, "run_list_limiter", None)
    if limiter is None:
        limiter = SlidingWindowLimiter(_settings(request).runs.list_rate_limit_per_minute)
        request.app.state.run_list_limiter = limiter
    limiter.check(principal.token_id or principal.user_id or "anonymous")


def _csv(
    value: str | None, allowed: tuple[str, ...] | frozenset[str], name: str
) -> tuple[str, ...]:
    items = tuple(p.strip() for p in (value or "").split(",") if p.strip())
    for item in items:
        if item not in allowed:
            raise BadRequest(
                f"{name}: unknown value {item[:40]!r}; use one of {', '.join(sorted(allowed))}"
            )
    return items


def _timeframe(value: str | None, *, default_year: bool) -> tuple[datetime | None, datetime | None]:
    now = datetime.now(UTC)
    if value is None or value == "":
        return (now - timedelta(days=365), None) if default_year else (None, None)
    if value == "year":
        return now - timedelta(days=365), None
    if value.isascii() and value.isdigit() and len(value) == 4:
        year = int(value)
        if 1970 <= year <= 9998:
            return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    raise BadRequest("filter[timeframe] must be a year (e.g. 2026) or 'year'")


def _filters(request: Request, *, organization: bool) -> queries.RunFilter:
    q = request.query_params
    group = q.get("filter[status_group]") or None
    if group is not None and group not in m.STATUS_GROUPS:
        raise BadRequest(
            f"filter[status_group] must be one of {', '.join(sorted(m.STATUS_GROUPS))}"
        )
    since, until = _timeframe(q.get("filter[timeframe]"), default_year=organization)
    return queries.RunFilter(
        operations=_csv(q.get("filter[operation]"), m.OPERATIONS, "filter[operation]"),
        statuses=_csv(q.get("filter[status]"), m.STATUSES, "filter[status]"),
        sources=_csv(q.get("filter[source]"), m.SOURCES, "filter[source]"),
        status_group=group,
        timeframe_since=since,
        timeframe_until=until,
        workspace_names=tuple(
            p.strip() for p in (q.get("filter[workspace_names]") or "").split(",") if p.strip()
        ),
        agent_pool_names=tuple(
            p.strip() for p in (q.get("filter[agent_pool_names]") or "").split(",") if p.strip()
        ),
        search_user=q.get("search[user]") or None,
        search_commit=q.get("search[commit]") or None,
        search_basic=q.get("search[basic]") or None,
        include_plan_only=organization,
    )


def _check_engine(request: Request, version: str) -> None:
    """seed 001: a plan-only run's terraform-version must be one the agents can run."""
    try:
        EngineResolver(_settings(request).runs.engines).resolve(version)
    except EngineUnavailable as exc:
        raise Invalid(str(exc), pointer="/data/attributes/terraform-version") from exc


def _source(request: Request) -> str:
    """How the run was queued: by the terraform CLI (cloud block or remote backend) or the API."""
    if request.headers.get("x-terraform-integration") == "cloud":
        return "terraform+cloud"
    if request.headers.get("terraform-version"):
        return "terraform"
    return "tfe-api"


async def _included(
    request: Request, session: SessionDep, principal: Principal, views: list[RunView]
) -> list[dict[str, Any]]:
    wanted = include_params(request)
    out: list[dict[str, Any]] = []
    log_url = _log_url(request)
    if "plan" in wanted:
        out.extend(serialize_plan(view.plan, log_url) for view in views)
    if "apply" in wanted:
        out.extend(serialize_apply(view.apply, log_url) for view in views)
    if "workspace" in wanted:
        seen = {v.workspace.id: (v.workspace, v.organization) for v in views}
        wviews = await workspaces.views(session, list(seen.values()))
        out.extend(workspace_schemas.serialize(w, principal) for w in wviews)
    if "created_by" in wanted:
        ids = {v.run.created_by_id for v in views if v.run.created_by_id}
        for user_id in sorted(ids):
            user = await session.get(User, user_id)
            if user is not None:
                out.append(user_schemas.serialize(user, include_email=False))
    if "configuration_version" in wanted:
        for cv_id in sorted(
            {v.run.configuration_version_id for v in views if v.run.configuration_version_id}
        ):
            cv = await session.get(ConfigurationVersion, cv_id)
            if cv is not None:
                out.append(cv_schemas.serialize(cv))
    return out


async def _run_document(
    request: Request,
    session: SessionDep,
    principal: Principal,
    ctx: RunContext,
    status_code: int = 200,
) -> Response:
    view = (await queries.views(session, principal, [ctx.run], ctx.workspace))[0]
    included = await _included(request, session, principal, [view])
    stages = await _task_stages(request, session, [view])
    included.extend(stages.resources)
    return document(
        serialize_run(view, task_stages=stages.refs.get(view.run.id)),
        included=included,
        status_code=status_code,
    )


async def _task_stages(
    request: Request, session: SessionDep, views: list[RunView]
) -> RelatedResources:
    """For ``include=task_stages`` (what the CLI asks), the runs' task stages, which the run
    tasks domain supplies through the ``run_task_stages`` hook. Without the include the
    relationship is left empty, so a plain read costs no extra query."""
    related = RelatedResources([v.run.id for v in views], full=True)
    if "task_stages" in include_params(request):
        await fire(session, "run_task_stages", related)
    return related


async def _comment(request: Request) -> str | None:
    """The optional ``{"comment": "..."}`` body of run actions (may be empty)."""
    if request.headers.get("content-length") in (None, "0"):
        return None
    body = await read_json(request)
    if body is None or body == {}:
        return None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"comment": "why"}')
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 10_000):
        raise Invalid("comment must be a string of at most 10000 characters", pointer="/comment")
    return comment


# -- runs --------------------------------------------------------------------------------


@router.post(
    "/runs",
    operation_id="createRun",
    status_code=201,
    responses=responses(201, RunDocument, errors=[*BODY_ERRORS, 403, 404, 409]),
    openapi_extra=RUN_BODY,
)
async def create_run(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    body = await parse_resource(request, RunAttributes, types={"runs"})
    workspace_id = relationship_id(body.relationships, "workspace", "workspaces")
    if workspace_id is None:
        raise Invalid(
            "relationships.workspace is required", pointer="/data/relationships/workspace"
        )
    cv_id = relationship_id(body.relationships, "configuration-version", "configuration-versions")
    if body.attributes.terraform_version is not None:
        _check_engine(request, body.attributes.terraform_version)
    ws, org = await workspaces.get(session, principal, workspace_id)
    run = await service.create(
        session,
        principal,
        ws,
        org,
        options_from(body.attributes, source=_source(request), configuration_version_id=cv_id),
    )
    ctx = RunContext(run, ws, org)
    return await _run_document(request, session, principal, ctx, status_code=201)


@router.get(
    "/runs/{run_id}",
    operation_id="showRun",
    responses=responses(200, RunDocument, errors=[404]),
    openapi_extra=openapi_extra(parameters=[INCLUDE]),
)
async def show_run(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    ctx = await service.get(session, principal, run_id)
    return await _run_document(request, session, principal, ctx)


@router.get(
    "/workspaces/{workspace_id}/runs",
    operation_id="listWorkspaceRuns",
    responses=responses(200, RunList, errors=[400, 404, 429]),
    openapi_extra=openapi_extra(parameters=[*page_parameters(), *RUN_FILTERS, INCLUDE]),
)
async def list_workspace_runs(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    filters = _filters(request, organization=False)
    ws, org = await workspaces.get(session, principal, workspace_id)
    _limited(request, principal)
    rows, total = await queries.list_in_workspace(
        session, principal, ws, org, filters, offset=page.offset, limit=page.size
    )
    views = await queries.views(session, principal, rows, ws)
    included = await _included(request, session, principal, views)
    stages = await _task_stages(request, session, views)
    included.extend(stages.resources)
    return page_document(
        request,
        page,
        total,
        [serialize_run(v, task_stages=stages.refs.get(v.run.id)) for v in views],
        included=included,
    )


@router.get(
    "/organizations/{org_name}/runs",
    operation_id="listOrganizationRuns",
    responses=responses(200, OrganizationRunList, errors=[400, 404, 429]),
    openapi_extra=openapi_extra(
        parameters=[
            *page_parameters(),
            *RUN_FILTERS,
            query_parameter(
                "filter[workspace_names]", {"type": "string"}, "Comma-separated workspace names"
            ),
            INCLUDE,
        ]
    ),
)
async def list_organization_runs(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    filters = _filters(request, organization=True)
    org = await organizations.get_by_name(session, principal, org_name)
    _limited(request, principal)
    rows, more = await queries.list_in_organization(
        session, principal, org, filters, offset=page.offset, limit=page.size
    )
    views = await queries.views(session, principal, rows)
    meta = {
        "pagination": {
            "current-page": page.number,
            "page-size": page.size,
            "prev-page": page.number - 1 if page.number > 1 else None,
            "next-page": page.number + 1 if more else None,
            "page-count": len(views),
        }
    }
    included = await _included(request, session, principal, views)
    return document([serialize_run(v) for v in views], included=included, meta=meta)


@router.get(
    "/organizations/{org_name}/runs/queue",
    operation_id="showOrganizationRunQueue",
    responses=responses(200, RunList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def organization_run_queue(
    org_name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    org = await organizations.get_by_name(session, principal, org_name)
    queued, total, _running = await queries.queue_of_organization(
        session, principal, org, offset=page.offset, limit=page.size
    )
    views = await queries.views(session, principal, [r for r, _ in queued])
    data = [serialize_run(v, position) for v, (_, position) in zip(views, queued, strict=True)]
    return page_document(request, page, total, data)


@router.get(
    "/organizations/{org_name}/capacity",
    operation_id="showOrganizationCapacity",
    responses=responses(200, CapacityDocument, errors=[404]),
)
async def organization_capacity(
    org_name: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    org = await organizations.get_by_name(session, principal, org_name)
    running, pending = await queries.capacity(session, principal, org)
    return document(
        resource("organization-capacity", org.name, {"pending": pending, "running": running})
    )


SSE_CONTENT = {
    "text/event-stream": {
        "schema": {
            "type": "string",
            "description": "Server-Sent Events: `event: run_update` with data "
            '{"run_id", "workspace_id", "status"} whenever a run of the workspace changes',
        }
    }
}
SSE_KEEPALIVE_SECONDS = 15.0


@router.get(
    "/workspaces/{workspace_id}/runs/events",
    operation_id="streamWorkspaceRunEvents",
    response_class=StreamingResponse,
    responses=responses(200, errors=[404], content=SSE_CONTENT),
)
async def workspace_run_events(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Live run status changes of one workspace (seed 003, "Run Events (SSE)"). The stream
    ends after ``runs.event_stream_seconds``; EventSource clients reconnect by themselves."""
    ws, _ = await workspaces.get(session, principal, workspace_id)
    bus: EventBus = request.app.state.events
    updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)

    def on_run(payload: dict[str, Any]) -> None:
        if payload.get("workspace_id") == ws.id and not updates.full():
            updates.put_nowait(payload)

    unsubscribe = bus.subscribe("run", on_run)
    deadline = asyncio.get_running_loop().time() + _settings(request).runs.event_stream_seconds

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n: connected\n\n"
            loop = asyncio.get_running_loop()
            while (left := deadline - loop.time()) > 0:
                try:
                    payload = await asyncio.wait_for(
                        updates.get(), min(left, SSE_KEEPALIVE_SECONDS)
                    )
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                yield b"event: run_update\ndata: " + orjson.dumps(payload) + b"\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- actions -----------------------------------------------------------------------------


def _accepted() -> Response:
    return Response(status_code=202)


# 202 without a body (as TFE answers run actions).
ACTION_RESPONSES = responses(202, errors=[400, 403, 404, 409, 422], content={})


@router.post(
    "/runs/{run_id}/actions/apply",
    operation_id="applyRun",
    status_code=202,
    response_class=Response,
    responses=ACTION_RESPONSES,
    openapi_extra=COMMENT_BODY,
)
@router.post(
    "/runs/{run_id}/actions/confirm",  # seed 003's name for the same action
    operation_id="confirmRun",
    status_code=202,
    response_class=Response,
    responses=ACTION_RESPONSES,
    openapi_extra=COMMENT_BODY,
)
async def apply_run(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    await service.apply(session, principal, run_id, await _comment(request))
    return _accepted()


@router.post(
    "/runs/{run_id}/actions/discard",
    operation_id="discardRun",
    status_code=202,
    response_class=Response,
    responses=ACTION_RESPONSES,
    openapi_extra=COMMENT_BODY,
)
async def discard_run(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    await service.discard(session, principal, run_id, await _comment(request))
    return _accepted()


@router.post(
    "/runs/{run_id}/actions/cancel",
    operation_id="cancelRun",
    status_code=202,
    response_class=Response,
    responses=ACTION_RESPONSES,
    openapi_extra=COMMENT_BODY,
)
async def cancel_run(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    cooloff = timedelta(seconds=_settings(request).runs.force_cancel_cooloff_seconds)
    await service.cancel(session, principal, run_id, await _comment(request), cooloff=cooloff)
    return _accepted()


@router.post(
    "/runs/{run_id}/actions/force-cancel",
    operation_id="forceCancelRun",
    status_code=202,
    response_class=Response,
    responses=ACTION_RESPONSES,
    openapi_extra=COMMENT_BODY,
)
async def force_cancel_run(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    await service.force_cancel(session, principal, run_id, await _comment(request))
    return _accepted()


@router.post(
    "/runs/{run_id}/actions/force-execute",
    operation_id="forceExecuteRun",
    status_code=202,
    response_class=Response,
    responses=ACTION_RESPONSES,
)
async def force_execute_run(run_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    await service.force_execute(session, principal, run_id)
    return _accepted()


@router.post(
    "/runs/{run_id}/actions/retry",
    operation_id="retryRun",
    status_code=201,
    responses=responses(201, RunDocument, errors=[403, 404, 409, 422]),
)
async def retry_run(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    ctx = await service.get(session, principal, run_id)
    new = await service.retry(session, principal, ctx)
    return await _run_document(
        request, session, principal, RunContext(new, ctx.workspace, ctx.organization), 201
    )


# -- plans, applies, events ----------------------------------------------------------------


async def _phase(
    request: Request, session: SessionDep, principal: Principal, phase_id: str
) -> Response:
    _, phase = await service.get_by_phase(session, principal, phase_id)
    if isinstance(phase, Plan):
        return document(serialize_plan(phase, _log_url(request)))
    return document(serialize_apply(phase, _log_url(request)))


@router.get(
    "/plans/{plan_id}",
    operation_id="showPlan",
    responses=responses(200, PlanDocument, errors=[404]),
)
async def show_plan(
    plan_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    if not plan_id.startswith("plan-"):
        raise NotFound("plan not found")
    return await _phase(request, session, principal, plan_id)


@router.get(
    "/applies/{apply_id}",
    operation_id="showApply",
    responses=responses(200, ApplyDocument, errors=[404]),
)
async def show_apply(
    apply_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    if not apply_id.startswith("apply-"):
        raise NotFound("apply not found")
    return await _phase(request, session, principal, apply_id)


@router.get(
    "/runs/{run_id}/plan",
    operation_id="showRunPlan",
    responses=responses(200, PlanDocument, errors=[404]),
)
async def show_run_plan(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    ctx = await service.get(session, principal, run_id)
    return await _phase(request, session, principal, ctx.run.plan_id)


@router.get(
    "/runs/{run_id}/apply",
    operation_id="showRunApply",
    responses=responses(200, ApplyDocument, errors=[404]),
)
async def show_run_apply(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    ctx = await service.get(session, principal, run_id)
    return await _phase(request, session, principal, ctx.run.apply_id)


async def _plan_json(
    request: Request, session: SessionDep, principal: Principal, plan_id: str, *, redacted: bool
) -> Response:
    ctx, phase = await service.get_by_phase(session, principal, plan_id)
    if not isinstance(phase, Plan):
        raise NotFound("plan not found")
    if not redacted:
        # TFE: the unredacted JSON plan needs admin access to the workspace.
        try:
            await service.get(session, principal, ctx.run.id, Action.WS_UPDATE)
        except Forbidden as exc:
            raise Forbidden(
                "the unredacted JSON plan needs admin access to the workspace; "
                "json-output-redacted needs read access"
            ) from exc
    if not phase.has_plan_file:
        raise NotFound("the plan has no JSON output (it has not finished)")
    key = keys.plan_json_redacted(ctx.run.id) if redacted else keys.plan_json(ctx.run.id)
    store: ObjectStore = request.app.state.object_store
    try:
        data = await store.get_bytes(key)
    except ObjectNotFound as exc:
        raise NotFound("the plan's JSON output is gone") from exc
    return Response(data, media_type="application/json")


JSON_PLAN = {"application/json": {"schema": {"type": "object", "description": "A JSON plan"}}}


@router.get(
    "/plans/{plan_id}/json-output-redacted",
    operation_id="showPlanJsonRedacted",
    responses=responses(200, errors=[404], content=JSON_PLAN),
)
async def plan_json_redacted(
    plan_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _plan_json(request, session, principal, plan_id, redacted=True)


@router.get(
    "/plans/{plan_id}/json-output",
    operation_id="showPlanJson",
    responses=responses(200, errors=[404], content=JSON_PLAN),
)
async def plan_json(
    plan_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    return await _plan_json(request, session, principal, plan_id, redacted=False)


@router.get(
    "/runs/{run_id}/plan/json-output",
    operation_id="showRunPlanJson",
    responses=responses(200, errors=[404], content=JSON_PLAN),
)
async def run_plan_json(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    ctx = await service.get(session, principal, run_id)
    return await _plan_json(request, session, principal, ctx.run.plan_id, redacted=False)


@router.get(
    "/runs/{run_id}/run-events",
    operation_id="listRunEvents",
    responses=responses(200, RunEventList, errors=[400, 404]),
    openapi_extra=openapi_extra(parameters=page_parameters()),
)
async def list_run_events(
    run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    _, rows, total = await queries.events_of(
        session, principal, run_id, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize_event(e) for e in rows])


@router.get(
    "/run-events/{event_id}",
    operation_id="showRunEvent",
    responses=responses(200, RunEventDocument, errors=[404]),
)
async def show_run_event(event_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    return document(serialize_event(await queries.event(session, principal, event_id)))


# -- logs ----------------------------------------------------------------------------------

LogToken = Annotated[str, Path(description="Signed log token")]


@logs_router.get("/logs/{token}", operation_id="readLog", include_in_schema=False)
async def read_log(request: Request, token: LogToken, session: SessionDep) -> Response:
    """``offset``/``limit`` bytes of a phase log (go-tfe replaces the URL's query string)."""
    signer: UrlSigner = request.app.state.url_signer
    try:
        key = signer.verify(token, "GET")
    except SignedUrlError:
        return error_response(403, "invalid or expired log URL")
    found = logs.phase_of_key(key)
    if found is None:
        return error_response(404, "log not found")
    try:
        offset = non_negative_query(request, "offset") or 0
        limit = non_negative_query(request, "limit")
    except ValueError as exc:
        return error_response(400, f"{exc} must be a non-negative integer")
    run_id, phase_name = found
    ctx = await service.find(session, run_id)  # the signed key is the authorization
    phase = await logs.load_phase(
        session, ctx.run.plan_id if phase_name == "plan" else ctx.run.apply_id
    )
    if phase is None:
        return error_response(404, "log not found")
    store: ObjectStore = request.app.state.object_store
    data = await logs.read(
        session, store, phase, offset, LOG_READ_DEFAULT if limit is None else limit
    )
    return Response(data, media_type="text/plain", headers={"Cache-Control": "no-store"})
