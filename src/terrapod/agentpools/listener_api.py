"""The listener protocol's routes (docs/dev/agents.md): what ``terrapod agent`` processes and
the executors they start call. Plain JSON, not JSON:API (agents are Terrapod's own clients);
errors are JSON:API error documents like everywhere else.

Three credentials: the agent token (join only, in the body), the agent's credential (its own
heartbeat, renew and ``runs/next``) and a job's run token (that job's routes). The long polls
(``runs/next``, the job heartbeat) hold no database session while they wait, so they take
no ``SessionDep``; :class:`terrapod.agentpools.listeners.Listeners` opens short ones.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from terrapod.agentpools import listeners
from terrapod.config import Settings
from terrapod.deps import SessionDep, base_url, bearer_token
from terrapod.errors import BadRequest, Invalid
from terrapod.jsonapi.parsing import read_body, read_json
from terrapod.runner.spec import JobResult
from terrapod.runner.wire import WireError, result_from_dict
from terrapod.runs import jobs
from terrapod.timefmt import iso

# Not in the OpenAPI document, which describes the TFE API for its clients: these routes are
# Terrapod's own agent protocol, specified in docs/dev/agents.md.
router = APIRouter(tags=["agents"], include_in_schema=False)

AgentId = Annotated[str, Path(description="The agent (agent-…) the credential belongs to")]
RunId = Annotated[str, Path(description="The run (run-…) of the job the run token is for")]
PoolId = Annotated[str, Path(description="The agent pool (apool-…) of the agent token")]
RunsNextWait = Annotated[
    float,
    Query(ge=0, le=3600, description="Seconds to wait for a job (cut to the server's limit)"),
]
ClaimKeyParam = Annotated[
    str | None,
    Query(
        min_length=22,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The agent's key for this poll, the same in every retry of it",
    ),
]
ClaimAttempt = Annotated[
    int,
    Query(ge=0, le=1_000_000_000, description="Which retry of the poll this request is"),
]
HeartbeatWait = Annotated[
    float,
    Query(ge=0, le=3600, description="Seconds to wait for a cancel (cut to the server's limit)"),
]

_FINAL = ("finished", "errored", "canceled", "handed_back")


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _service(request: Request) -> listeners.Listeners:
    state = request.app.state
    return listeners.Listeners(
        state.sessionmaker,
        getattr(state, "events", None),
        state.url_signer,
        state.secret_box,
        state.settings,
    )


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _object_body(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", pointer="")
    return body


async def _join(request: Request, session: SessionDep, pool_id: str | None) -> Response:
    body = await _object_body(request)
    token = body.get("join_token")
    if not isinstance(token, str) or not token:
        raise Invalid("join_token must be the agent token (a string)", pointer="/join_token")
    joined = await listeners.join(
        session,
        _settings(request),
        join_token=token,
        name=body.get("name"),
        capacity=body.get("capacity", 1),
        ip_address=_client_ip(request),
        pool_id=pool_id,
    )
    return _Json(listeners.join_answer(joined, _settings(request)), status_code=201)


@router.post("/api/v2/agent-pools/join", operation_id="join_agent_pool", status_code=201)
async def join(request: Request, session: SessionDep) -> Response:
    """An agent joins the pool of its agent token: body ``{"join_token", "name",
    "capacity"}``; 201 with its id and short-lived credential."""
    return await _join(request, session, None)


@router.post(
    "/api/v2/agent-pools/{pool_id}/listeners/join",
    operation_id="join_agent_pool_legacy",
    status_code=201,
)
async def join_legacy(request: Request, session: SessionDep, pool_id: PoolId) -> Response:
    """The same as ``/api/v2/agent-pools/join``; the pool must be the agent token's."""
    return await _join(request, session, pool_id)


@router.post("/api/v2/listeners/{agent_id}/heartbeat", operation_id="listener_heartbeat")
async def heartbeat(request: Request, session: SessionDep, agent_id: AgentId) -> Response:
    """The agent is alive: body ``{"capacity", "active_jobs"}`` (both optional)."""
    agent = await listeners.authenticate(session, agent_id, bearer_token(request))
    body = await _object_body(request) if await _has_body(request) else {}
    expires = await listeners.heartbeat(
        session,
        agent,
        capacity=body.get("capacity"),
        active_jobs=body.get("active_jobs"),
        ip_address=_client_ip(request),
    )
    return _Json({"credential_expires_at": iso(expires)})


@router.post("/api/v2/listeners/{agent_id}/renew", operation_id="listener_renew")
async def renew(request: Request, session: SessionDep, agent_id: AgentId) -> Response:
    """A new credential; the old one keeps working for a minute."""
    agent = await listeners.authenticate(session, agent_id, bearer_token(request))
    joined = await listeners.renew(session, _settings(request), agent)
    return _Json(listeners.join_answer(joined, _settings(request)))


@router.get("/api/v2/listeners/{agent_id}/runs/next", operation_id="listener_next_job")
async def next_job(
    request: Request,
    agent_id: AgentId,
    wait: RunsNextWait = 0,
    claim: ClaimKeyParam = None,
    claim_attempt: ClaimAttempt = 0,
) -> Response:
    """Claim the oldest queued job of the agent's pool (long poll up to ``wait`` seconds):
    200 with the job, 204 when none turned up. A retry with the same ``claim`` key gets
    the job the key claimed again, with a new run token."""
    ticket = await _service(request).next_job(
        agent_id,
        bearer_token(request),
        wait,
        base_url(request),
        jobs.ClaimKey(claim, claim_attempt) if claim is not None else None,
    )
    if ticket is None:
        return Response(status_code=204)
    return _Json(ticket)


@router.post("/api/v2/listeners/{agent_id}/runs/{run_id}/heartbeat", operation_id="job_heartbeat")
async def job_heartbeat(
    request: Request, agent_id: AgentId, run_id: RunId, wait: HeartbeatWait = 0
) -> Response:
    """The job is alive (long poll): ``{"control": null | "cancel" | "force"}``, at once
    when a cancel is requested; 409 when the job has ended."""
    control = await _service(request).job_heartbeat(bearer_token(request), agent_id, run_id, wait)
    return _Json({"control": control})


@router.post(
    "/api/v2/listeners/{agent_id}/runs/{run_id}/logs",
    operation_id="job_logs",
    status_code=204,
)
async def job_logs(
    request: Request, session: SessionDep, agent_id: AgentId, run_id: RunId
) -> Response:
    """Append the raw body (engine output, already masked) to the job's phase log; 409 when
    the phase no longer accepts output."""
    data = await read_body(request)
    await listeners.append_log(session, bearer_token(request), agent_id, run_id, data)
    return Response(status_code=204)


@router.patch("/api/v2/listeners/{agent_id}/runs/{run_id}", operation_id="job_finish")
async def job_finish(
    request: Request, session: SessionDep, agent_id: AgentId, run_id: RunId
) -> Response:
    """The job's end: ``{"status": "finished" | "errored" | "canceled", "result": {…}}`` or
    ``{"status": "handed_back"}``. Repeating it is harmless."""
    body = await _object_body(request)
    status = body.get("status")
    if status not in _FINAL:
        raise Invalid(f"status must be one of {', '.join(_FINAL)}", pointer="/status")
    result = _result(body.get("result"), status)
    answer = await listeners.finish(
        session,
        bearer_token(request),
        agent_id,
        run_id,
        cast("listeners.FinalStatus", status),
        result,
    )
    return _Json(answer)


def _result(raw: object, status: str) -> JobResult | None:
    if raw is None:
        if status == "finished":
            raise Invalid("result is required when status is finished", pointer="/result")
        return None
    if status == "handed_back":
        return None
    try:
        result = result_from_dict(raw)
    except WireError as exc:
        raise Invalid(str(exc), pointer="/" + str(exc).split(" ", 1)[0].replace(".", "/")) from exc
    if result.outcome != status:
        raise Invalid("result.outcome must equal status", pointer="/result/outcome")
    return result


async def _has_body(request: Request) -> bool:
    declared = request.headers.get("content-length")
    return not (
        declared == "0" or (declared is None and "transfer-encoding" not in request.headers)
    )
