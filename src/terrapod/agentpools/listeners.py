"""Listeners: agents joining their pool, their short-lived credentials, and the jobs they run.

The rules behind the listener protocol of docs/dev/agents.md; ``listener_api.py`` is its
HTTP face. No FastAPI here.

* An agent **joins** with an agent token (``auth_tokens`` kind ``agent-pool``) and gets an
  agent row (one per pool and name: joining again under the same name reuses it) and a
  random credential, stored as SHA-256 only, that expires after
  ``agents.credential_ttl_seconds``. **Renewing** replaces it; the old one keeps working for
  :data:`RENEW_GRACE`. A server's built-in agent is registered without a token
  (:func:`register_builtin`, ``pool_id`` NULL).
* Every call **authenticates** the credential again, in one query that also sees whether the
  agent token was revoked (its row deleted: ``agents.token_id`` becomes NULL) or the pool
  deleted (the agent row is deleted with it): then the call is refused (401).
* ``runs/next`` (:meth:`Listeners.next_job`) claims the oldest queued job of the agent's pool,
  mints the job's run token (:mod:`.runtokens`) and answers with the spec and signed URLs.
  While nothing is queued it waits, woken by the ``jobs`` bus topic of this process and by a
  read-only look at the database every ``agents.poll_seconds`` (jobs queued by another server
  process). No connection is held while it waits.
* The **job routes** are authenticated by the job's run token and bound to its job: the run
  in the path must be the token's, and the agent in the path the job's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from terrapod.agentpools import runtokens
from terrapod.agentpools.models import Agent, AgentPool
from terrapod.auth.models import Token
from terrapod.auth.tokens import generate_token, hash_token
from terrapod.config import Settings
from terrapod.crypto import SecretBox
from terrapod.db.ids import looks_like_id, new_id
from terrapod.db.transactions import write_transaction
from terrapod.errors import Conflict, DomainError, Invalid, NotFound, Unauthenticated
from terrapod.events.bus import EventBus
from terrapod.observability.logging import get_logger
from terrapod.runner.spec import JobResult, JobSpec, Variable
from terrapod.runner.wire import spec_to_dict
from terrapod.runs import jobs, logs
from terrapod.runs.models import Job, Run
from terrapod.state.models import FINALIZED, StateVersion
from terrapod.storage import keys
from terrapod.storage.signing import UrlSigner
from terrapod.timefmt import iso
from terrapod.variables.service import VariableValue
from terrapod.varsets.service import values_for_run

log = get_logger("terrapod.agentpools")

AGENT_TOKEN_KIND = "agent-pool"  # noqa: S105 - a token kind, not a secret
# After a renewal the previous credential still works this long (calls already in flight).
RENEW_GRACE = timedelta(seconds=60)
MAX_CAPACITY = 256
MAX_NAME = 255

_REFUSED = "the agent credential is invalid, expired or revoked; join again with the agent token"


# Built-in agents (one per server process) unheard of for this long are removed when another
# one registers.
BUILTIN_AGENT_RETENTION = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Joined:
    """An agent with a freshly issued credential: the only moment the plaintext exists."""

    agent: Agent
    credential: str
    expires_at: datetime


# -- joining and credentials -------------------------------------------------------------


def _check_agent_fields(name: object, capacity: object) -> tuple[str, int]:
    if not isinstance(name, str) or not name.strip():
        raise Invalid("name must be a non-empty string", pointer="/name")
    if len(name) > MAX_NAME or "\x00" in name:
        raise Invalid(f"name must be at most {MAX_NAME} characters, no NUL", pointer="/name")
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise Invalid("capacity must be an integer", pointer="/capacity")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise Invalid(f"capacity must be between 1 and {MAX_CAPACITY}", pointer="/capacity")
    return name.strip(), capacity


async def _agent_token(session: AsyncSession, plaintext: str) -> Token:
    """The agent-pool token a join presents, refused (401) when unknown, expired, or its
    pool is gone."""
    row = (
        await session.execute(
            select(Token, AgentPool.id)
            .join(AgentPool, AgentPool.id == Token.agent_pool_id)
            .where(Token.token_hash == hash_token(plaintext), Token.kind == AGENT_TOKEN_KIND)
        )
    ).first()
    if row is None:
        raise Unauthenticated("the agent token is invalid or revoked")
    token: Token = row[0]
    if token.expired_at is not None and token.expired_at <= utcnow():
        raise Unauthenticated("the agent token has expired")
    return token


async def _issue(
    session: AsyncSession,
    *,
    pool_id: str | None,
    token_id: str | None,
    name: str,
    capacity: int,
    ip_address: str | None,
    ttl: timedelta,
) -> Joined:
    """The agent named ``name`` in the pool (created or reused) with a new credential."""
    credential = generate_token()
    now = utcnow()
    expires = now + ttl
    same_pool = Agent.pool_id.is_(None) if pool_id is None else Agent.pool_id == pool_id
    for _attempt in range(2):
        agent = (
            await session.execute(
                select(Agent).where(same_pool, Agent.name == name).with_for_update()
            )
        ).scalar_one_or_none()
        if agent is not None:
            break
        agent = Agent(
            id=new_id("agent"),
            pool_id=pool_id,
            name=name,
            status="idle",
            capacity=capacity,
            token_id=token_id,
            credential_hash=hash_token(credential),
            credential_expires_at=expires,
            ip_address=ip_address,
            last_ping_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(agent)
        except IntegrityError:
            continue  # another process joined under the same name just now: reuse its row
        return Joined(agent, credential, expires)
    if agent is None:  # pragma: no cover - the row vanished between two statements
        raise Conflict(f"an agent named {name!r} is joining at the same time; try again")
    agent.token_id = token_id
    agent.capacity = capacity
    agent.status = "idle"
    agent.ip_address = ip_address
    agent.last_ping_at = now
    agent.credential_hash = hash_token(credential)
    agent.credential_expires_at = expires
    agent.previous_credential_hash = None
    agent.previous_credential_expires_at = None
    await session.flush()
    return Joined(agent, credential, expires)


async def join(
    session: AsyncSession,
    settings: Settings,
    *,
    join_token: str,
    name: object,
    capacity: object,
    ip_address: str | None,
    pool_id: str | None = None,
) -> Joined:
    """An agent process joins the pool of ``join_token`` (``pool_id``, from the legacy path,
    must be that pool). Joining again under the same name gives the same agent."""
    token = await _agent_token(session, join_token)
    if pool_id is not None and pool_id != token.agent_pool_id:
        raise NotFound("agent pool not found")
    checked_name, checked_capacity = _check_agent_fields(name, capacity)
    return await _issue(
        session,
        pool_id=token.agent_pool_id,
        token_id=token.id,
        name=checked_name,
        capacity=checked_capacity,
        ip_address=ip_address,
        ttl=timedelta(seconds=settings.agents.credential_ttl_seconds),
    )


async def register_builtin(
    session: AsyncSession, name: str, capacity: int, *, ttl_seconds: int = 3600
) -> tuple[Agent, str]:
    """A server's built-in agent (no pool: it runs the jobs of remote-execution
    workspaces), registered without an agent token; the same name reuses its row. Returns
    the agent and its credential.

    Every server process registers under a name of its own (host and pid), so a restart
    leaves the old row behind; rows of built-in agents unheard of for a day go here."""
    checked_name, checked_capacity = _check_agent_fields(name, capacity)
    gone_since = utcnow() - BUILTIN_AGENT_RETENTION
    await session.execute(
        delete(Agent)
        .where(
            Agent.pool_id.is_(None),
            Agent.name != checked_name,
            or_(
                Agent.last_ping_at < gone_since,
                and_(Agent.last_ping_at.is_(None), Agent.created_at < gone_since),
            ),
        )
        .execution_options(synchronize_session=False)
    )
    joined = await _issue(
        session,
        pool_id=None,
        token_id=None,
        name=checked_name,
        capacity=checked_capacity,
        ip_address=None,
        ttl=timedelta(seconds=ttl_seconds),
    )
    return joined.agent, joined.credential


async def authenticate(session: AsyncSession, agent_id: str, credential: str | None) -> Agent:
    """The agent ``agent_id`` if ``credential`` is its current credential (or the previous
    one, within the grace after a renewal), not expired, and its agent token and pool still
    exist; else Unauthenticated (401)."""
    if credential is None:
        raise Unauthenticated(
            "the agent credential is required: send Authorization: Bearer <credential>"
        )
    if not looks_like_id(agent_id, "agent"):
        raise Unauthenticated(_REFUSED)
    row = (
        await session.execute(
            select(Agent, Token.id, Token.expired_at)
            .outerjoin(Token, (Token.id == Agent.token_id) & (Token.kind == AGENT_TOKEN_KIND))
            .where(Agent.id == agent_id)
        )
    ).first()
    if row is None:
        raise Unauthenticated(_REFUSED)
    agent: Agent = row[0]
    now = utcnow()
    presented = hash_token(credential)
    current = agent.credential_hash == presented and agent.credential_expires_at > now
    previous = (
        agent.previous_credential_hash == presented
        and agent.previous_credential_expires_at is not None
        and agent.previous_credential_expires_at > now
    )
    if not (current or previous):
        raise Unauthenticated(_REFUSED)
    if agent.pool_id is not None:
        # A pool agent lives only as long as the agent token it joined with.
        token_id, token_expiry = row[1], row[2]
        if token_id is None or (token_expiry is not None and token_expiry <= now):
            raise Unauthenticated("the agent token this agent joined with was revoked")
    return agent


async def heartbeat(
    session: AsyncSession,
    agent: Agent,
    *,
    capacity: object = None,
    active_jobs: object = None,
    ip_address: str | None = None,
) -> datetime:
    """The agent is alive: its ping, status (idle/busy) and capacity. Returns when its
    credential expires."""
    if capacity is not None:
        _, agent.capacity = _check_agent_fields(agent.name, capacity)
    if active_jobs is not None:
        if isinstance(active_jobs, bool) or not isinstance(active_jobs, int) or active_jobs < 0:
            raise Invalid("active_jobs must be a non-negative integer", pointer="/active_jobs")
        agent.status = "busy" if active_jobs > 0 else "idle"
    agent.last_ping_at = utcnow()
    if ip_address is not None:
        agent.ip_address = ip_address
    await session.flush()
    return agent.credential_expires_at


async def renew(session: AsyncSession, settings: Settings, agent: Agent) -> Joined:
    """A new credential; the current one keeps working for :data:`RENEW_GRACE`."""
    credential = generate_token()
    now = utcnow()
    expires = now + timedelta(seconds=settings.agents.credential_ttl_seconds)
    agent.previous_credential_hash = agent.credential_hash
    agent.previous_credential_expires_at = min(agent.credential_expires_at, now + RENEW_GRACE)
    agent.credential_hash = hash_token(credential)
    agent.credential_expires_at = expires
    agent.last_ping_at = now
    await session.flush()
    return Joined(agent, credential, expires)


def join_answer(joined: Joined, settings: Settings) -> dict[str, Any]:
    """The join and renew answer (docs/dev/agents.md)."""
    return {
        "agent_id": joined.agent.id,
        "pool_id": joined.agent.pool_id,
        "credential": joined.credential,
        "credential_expires_at": iso(joined.expires_at),
        "heartbeat_seconds": settings.agents.heartbeat_seconds,
        "heartbeat_timeout_seconds": settings.runs.heartbeat_timeout_seconds,
    }


# -- waiting -------------------------------------------------------------------------------


@contextlib.contextmanager
def _woken_by(
    bus: EventBus | None, topics: Iterable[str], match: Callable[[dict[str, Any]], bool]
) -> Iterator[asyncio.Event]:
    """An event set whenever the bus publishes a matching payload on one of ``topics``
    while the block runs."""
    event = asyncio.Event()

    def heard(payload: dict[str, Any]) -> None:
        if match(payload):
            event.set()

    unsubscribe = [bus.subscribe(topic, heard) for topic in topics] if bus is not None else []
    try:
        yield event
    finally:
        for undo in unsubscribe:
            undo()


async def _nap(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    event.clear()


# -- jobs ------------------------------------------------------------------------------------

# What a look answers when the poll's claim key is spent: the request answers 204 at once.
_SPENT: Literal["spent"] = "spent"


@dataclass(frozen=True)
class JobAccess:
    """A job route's caller: a run token bound to one job of one run."""

    job: Job
    token: runtokens.JobToken


class Listeners:
    """The listener protocol's work that spans several transactions (long polls, claiming),
    for one app: its sessions, bus, signer and settings."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus | None,
        signer: UrlSigner,
        box: SecretBox,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._bus = bus
        self._signer = signer
        self._box = box
        self._settings = settings

    # -- runs/next ---------------------------------------------------------------------------

    async def next_job(
        self,
        agent_id: str,
        credential: str | None,
        wait: float,
        base_url: str,
        claim: jobs.ClaimKey | None = None,
    ) -> dict[str, Any] | None:
        """Claim the oldest queued job of the agent's pool, waiting up to ``wait`` seconds
        for one; the ``runs/next`` answer, or None when none turned up.

        With a claim key (docs/dev/agents.md, "Claim keys"): a running job this agent
        claimed with the key is answered again (with a new run token) when this request is
        the poll's latest attempt; an earlier attempt, or a key whose job has ended, is
        answered None at once. Without one, every poll claims anew (older agents)."""
        wait = min(max(wait, 0.0), self._settings.agents.runs_next_max_wait_seconds)
        deadline = time.monotonic() + wait
        async with self._sessionmaker() as session:
            agent = await authenticate(session, agent_id, credential)
            pool_id = agent.pool_id
        with _woken_by(
            self._bus,
            ("jobs",),
            lambda p: "phase" in p and p.get("pool_id") == pool_id,
        ) as woken:
            look = True
            while True:
                if look:
                    ticket = await self._claim(agent_id, credential, base_url, claim)
                    if ticket == _SPENT:
                        return None
                    if ticket is not None:
                        return ticket
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                await _nap(woken, min(remaining, self._settings.agents.poll_seconds))
                # Woken, or time for the cheap look for jobs other servers queued (or another
                # attempt of this poll claimed with its key: that job is answered here too).
                look = await self._anything_queued(pool_id, agent_id, claim)

    async def _anything_queued(
        self, pool_id: str | None, agent_id: str, claim: jobs.ClaimKey | None
    ) -> bool:
        """Read only: a queued job of the pool, or a job claimed with the poll's key."""
        in_pool = Job.pool_id.is_(None) if pool_id is None else Job.pool_id == pool_id
        worth_a_look = and_(Job.status == "queued", in_pool)
        if claim is not None:
            worth_a_look = or_(
                worth_a_look, and_(Job.agent_id == agent_id, Job.claim_key == claim.key)
            )
        async with self._sessionmaker() as session:
            found = (await session.execute(select(Job.id).where(worth_a_look).limit(1))).first()
        return found is not None

    async def _claim(
        self,
        agent_id: str,
        credential: str | None,
        base_url: str,
        claim: jobs.ClaimKey | None,
    ) -> dict[str, Any] | Literal["spent"] | None:
        """One look: the job the claim key already holds, else a newly claimed one; None
        when there is none yet, :data:`_SPENT` when this poll must answer 204 now."""
        while True:
            try:
                async with write_transaction(self._sessionmaker) as session:
                    agent = await authenticate(session, agent_id, credential)
                    claimed = await self._claim_in(session, agent, claim)
                    if claimed is None or claimed == _SPENT:
                        return claimed
                    token = await self._mint(session, claimed)
                    state_key = await self._state_key(session, claimed)
            except IntegrityError:
                # PostgreSQL: another attempt of this poll claimed a job with the same key
                # at the same moment (the unique index ux_jobs_agent_claim_key); look again.
                if claim is None:
                    raise
                log.info("two requests of one poll claimed at once", agent=agent_id)
                continue
            try:
                async with self._sessionmaker() as session:
                    variables = await values_for_run(session, self._box, claimed.workspace.id)
            except DomainError as exc:
                # The job is claimed: end it with the reason rather than leave it claimed.
                # (The detail names a variable, never its value.)
                log.warning(
                    "a claimed job could not get its variables",
                    job=claimed.job.id,
                    run=claimed.run.id,
                    reason=exc.detail,
                )
                await self._fail_claimed(claimed, agent_id, exc.detail)
                continue
            spec = _spec(claimed, variables, self._settings)
            return {
                "job_id": claimed.job.id,
                "run_id": claimed.run.id,
                "phase": spec.phase,
                "spec": spec_to_dict(spec),
                "run_token": token.plaintext,
                "run_token_expires_at": iso(token.expires_at),
                "urls": self._urls(claimed, state_key, base_url),
                "base_url": base_url,
                "agent_id": agent_id,
            }

    async def _claim_in(
        self, session: AsyncSession, agent: Agent, claim: jobs.ClaimKey | None
    ) -> jobs.ClaimedJob | Literal["spent"] | None:
        if claim is not None:
            earlier = await jobs.job_of_claim(session, agent.id, claim.key)
            if earlier is not None:
                if earlier.status != "running" or claim.attempt < (earlier.claim_attempt or 0):
                    # The job ended (the key is spent), or a later attempt of the poll was
                    # answered with it: this request is one nobody waits for any more.
                    return _SPENT
                await runtokens.revoke_for_job(session, earlier.run_id, earlier.id)
                return await jobs.reclaimed(session, earlier, claim.attempt)
        return await jobs.claim_job(session, agent.id, agent.pool_id, claim)

    async def _mint(
        self, session: AsyncSession, claimed: jobs.ClaimedJob
    ) -> runtokens.MintedRunToken:
        return await runtokens.mint(
            session,
            run_id=claimed.run.id,
            job_id=claimed.job.id,
            phase=claimed.job.phase,
            workspace_id=claimed.workspace.id,
            organization_id=claimed.organization.id,
            lifetime=self._token_lifetime(),
        )

    async def _fail_claimed(self, claimed: jobs.ClaimedJob, agent_id: str, reason: str) -> None:
        async with write_transaction(self._sessionmaker) as session:
            # Nobody was answered with the job: its claim key may claim the next one.
            await session.execute(
                sql_update(Job)
                .where(Job.id == claimed.job.id)
                .values(claim_key=None)
                .execution_options(synchronize_session=False)
            )
            run = await session.get(Run, claimed.run.id)
            if run is not None:
                await logs.append(session, run, claimed.job.phase, f"{reason}\n".encode())
            await jobs.finish_job(
                session,
                claimed.job.id,
                agent_id,
                jobs.JobOutcome(outcome="errored", error=reason),
            )

    def _token_lifetime(self) -> timedelta:
        return timedelta(
            seconds=self._settings.runs.job_timeout_seconds
            + self._settings.agents.run_token_margin_seconds
        )

    @staticmethod
    async def _state_key(session: AsyncSession, claimed: jobs.ClaimedJob) -> str | None:
        sv_id = claimed.workspace.current_state_version_id
        if sv_id is None:
            return None
        sv = await session.get(StateVersion, sv_id)
        if sv is None or sv.status != FINALIZED:
            return None
        return keys.state_version(sv.workspace_id, sv.id)

    def _urls(
        self, claimed: jobs.ClaimedJob, state_key: str | None, base_url: str
    ) -> dict[str, str | None]:
        ttl = int(self._token_lifetime().total_seconds())
        run = claimed.run

        def url(key: str | None, method: str) -> str | None:
            return None if key is None else self._signer.signed_url(base_url, key, method, ttl)

        plan = claimed.job.phase == "plan"
        cv_id = run.configuration_version_id
        return {
            "configuration": url(keys.configuration_version(cv_id) if cv_id else None, "GET"),
            "state": url(state_key, "GET"),
            "plan_file": None if plan else url(keys.plan_file(run.id), "GET"),
            "plan_file_upload": url(keys.plan_file(run.id), "PUT") if plan else None,
            "plan_json_upload": url(keys.plan_json(run.id), "PUT") if plan else None,
            "plan_json_redacted_upload": (
                url(keys.plan_json_redacted(run.id), "PUT") if plan else None
            ),
        }

    # -- job heartbeat -----------------------------------------------------------------------

    async def job_heartbeat(
        self, run_token: str | None, agent_id: str, run_id: str, wait: float
    ) -> str | None:
        """The job is alive. Answers None, "cancel" or "force" once a cancel is requested
        or ``wait`` seconds have passed; Conflict (409) when the job no longer runs."""
        wait = min(max(wait, 0.0), self._settings.agents.job_heartbeat_max_wait_seconds)
        deadline = time.monotonic() + wait
        with _woken_by(self._bus, ("jobs", "run"), lambda p: p.get("run_id") == run_id) as woken:
            job_id, control = await self._beat(run_token, agent_id, run_id)
            if control is not None:
                return control
            while (remaining := deadline - time.monotonic()) > 0:
                await _nap(woken, min(remaining, self._settings.agents.cancel_poll_seconds))
                if await self._job_changed(job_id):
                    break
            return (await self._beat(run_token, agent_id, run_id))[1]

    async def _beat(
        self, run_token: str | None, agent_id: str, run_id: str
    ) -> tuple[str, str | None]:
        async with write_transaction(self._sessionmaker) as session:
            access = await job_access(session, run_token, agent_id, run_id)
            _running(access)
            return access.job.id, await jobs.heartbeat(session, access.job.id, agent_id)

    async def _job_changed(self, job_id: str) -> bool:
        """A cancel was requested, or the job ended (read only: no write while waiting)."""
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(Job.status, Job.cancel_requested).where(Job.id == job_id)
                )
            ).first()
        return row is None or row[0] != "running" or row[1] is not None


async def job_access(
    session: AsyncSession, run_token: str | None, agent_id: str, run_id: str
) -> JobAccess:
    """The job a run token stands for, bound to the path: the token's run must be
    ``run_id`` and its job must belong to ``agent_id``."""
    if run_token is None:
        raise Unauthenticated("the job's run token is required: send Authorization: Bearer")
    token = await runtokens.lookup(session, run_token)
    if token is None:
        raise Unauthenticated("the run token is invalid or expired")
    if token.run_id != run_id:
        raise NotFound("run not found")
    job = await session.get(Job, token.job_id, populate_existing=True)
    if job is None or job.agent_id != agent_id:
        raise NotFound("job not found")
    return JobAccess(job, token)


def _running(access: JobAccess) -> None:
    if access.token.retired or access.job.status != "running":
        raise Conflict(f"the job has ended ({access.job.status}); stop the engine")


async def append_log(
    session: AsyncSession, run_token: str | None, agent_id: str, run_id: str, data: bytes
) -> None:
    """Append engine output (already masked) to the job's phase log; Conflict (409) when
    the phase no longer accepts output."""
    access = await job_access(session, run_token, agent_id, run_id)
    _running(access)
    if not data:
        return
    run = await session.get(Run, run_id)
    if run is None or not await logs.append(session, run, access.job.phase, data):
        raise Conflict("the phase no longer accepts output; stop the engine")


FinalStatus = Literal["finished", "errored", "canceled", "handed_back"]


async def finish(
    session: AsyncSession,
    run_token: str | None,
    agent_id: str,
    run_id: str,
    status: FinalStatus,
    result: JobResult | None,
) -> dict[str, Any]:
    """The job's end as the agent reports it; the run moves on. Repeating it is harmless:
    a job that already ended is left as it is and its recorded status is answered."""
    access = await job_access(session, run_token, agent_id, run_id)
    job = access.job
    if job.status == "running" and not access.token.retired:
        if status == "handed_back":
            await jobs.hand_back_job(session, job.id, agent_id)
        else:
            report = result or JobResult(outcome=status)
            await jobs.finish_job(
                session,
                job.id,
                agent_id,
                jobs.JobOutcome(
                    outcome=status,
                    error=report.error,
                    has_changes=report.has_changes,
                    additions=report.additions,
                    changes=report.changes,
                    destructions=report.destructions,
                    imports=report.imports,
                    has_plan_file=job.phase == "plan" and status == "finished",
                    report=report,
                ),
            )
    # The identity map's run, as the job's end left it (a reload would drop the changes).
    run = await session.get(Run, run_id)
    return {
        "job_id": job.id,
        "status": job.status,
        "run_status": run.status if run is not None else None,
    }


def _spec(claimed: jobs.ClaimedJob, variables: list[VariableValue], settings: Settings) -> JobSpec:
    """The job as the runner takes it (the same as the built-in agent's)."""
    run, ws = claimed.run, claimed.workspace
    return JobSpec(
        job_id=claimed.job.id,
        run_id=run.id,
        phase="plan" if claimed.job.phase == "plan" else "apply",
        organization_name=claimed.organization.name,
        workspace_name=ws.name,
        workspace_id=ws.id,
        terraform_version=run.terraform_version or ws.terraform_version,
        working_directory=ws.working_directory,
        is_destroy=run.is_destroy,
        refresh=run.refresh,
        refresh_only=run.refresh_only,
        target_addrs=tuple(run.target_addrs or ()),
        replace_addrs=tuple(run.replace_addrs or ()),
        allow_config_generation=run.allow_config_generation,
        debugging_mode=run.debugging_mode,
        plan_only=run.plan_only,
        allow_empty_apply=run.allow_empty_apply,
        # The cloud {} block renders Terraform's JSON log lines; backend "remote" (source
        # "terraform") prints log lines as they are, so it gets Terraform's text output.
        structured_output=ws.structured_run_output_enabled and run.source != "terraform",
        variables=tuple(
            Variable(
                key=v.key,
                value=v.value,
                category="env" if v.category == "env" else "terraform",
                hcl=v.hcl,
                sensitive=v.sensitive,
                enforced=v.enforced,
            )
            for v in variables
        ),
        run_variables=tuple((v["key"], v["value"]) for v in run.variables),
        timeout_seconds=settings.runs.job_timeout_seconds,
        max_configuration_bytes=settings.runs.max_configuration_bytes,
        invoke_action_addrs=tuple(run.invoke_action_addrs or ()),
        provider_mirror=(
            str(settings.runs.provider_mirror.resolve()) if settings.runs.provider_mirror else None
        ),
        resource_cpu=ws.resource_cpu,
        resource_memory=ws.resource_memory,
    )
