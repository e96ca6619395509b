"""The listener protocol over HTTP (docs/dev/agents.md): everything an agent says to its server.

Two clients share one ``httpx.AsyncClient``:

- :class:`ListenerClient`, the agent process: join (or any other way of getting a
  credential, see :data:`Joiner`), the listener heartbeat, renewing the credential before it
  expires, and claiming jobs with the ``runs/next`` long poll;
- :class:`JobClient`, one claimed job with its ticket's run token: the job heartbeat long poll,
  logs, state, configuration and plan files, and the job's end. :class:`HttpJobIO` is the
  runner's :class:`~terrapod.runner.spec.JobIO` on top of it.

Every call rides out a server that is away for a while (restarting, overloaded, behind a
proxy that answers 502): transport errors, 5xx and 429 are retried with capped exponential
back-off until the server answers, so a ``kill -9`` of the server in the middle of an apply
costs the job nothing but time. Other 4xx answers are the protocol's own and are never
retried. Files move as streams (configuration and plan downloads go straight to disk, plan
uploads are read from disk in chunks). Nothing here logs a credential, a run token or a
signed URL (their path is a credential too); httpx's own request log is kept quiet for that
reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

from terrapod.agent.ticket import JobTicket
from terrapod.observability.logging import get_logger
from terrapod.runner.spec import JobControl, JobResult
from terrapod.runner.wire import WireError, result_to_dict

log = get_logger("terrapod.agent")

# httpx logs every request's URL at INFO; signed URLs carry their credential in the path.
logging.getLogger("httpx").setLevel(logging.WARNING)

JSONAPI = "application/vnd.api+json"
RUNS_NEXT_WAIT_SECONDS = 20.0
LOG_BUFFER_BYTES = 1024 * 1024
JOB_HEARTBEAT_WAIT_SECONDS = 10.0
# A runs/next claim key: 16 random bytes, 22 URL-safe characters.
CLAIM_KEY_BYTES = 16
_CHUNK = 1024 * 1024
# Longer than any long poll the server may hold a request for.
_READ_TIMEOUT_SECONDS = 60.0


class ProtocolError(Exception):
    """The server refused a call with a status the protocol does not expect."""

    def __init__(self, what: str, status: int, detail: str = "") -> None:
        super().__init__(f"{what}: HTTP {status}{': ' + detail if detail else ''}")
        self.status = status


class Unauthorized(ProtocolError):
    """401: the credential (or the agent token) was refused."""


class JobGone(Exception):
    """The server no longer runs this job (404 or 409 on a job route): stop the engine."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off with jitter, for calls that must outlast a server restart."""

    initial_seconds: float = 0.25
    cap_seconds: float = 5.0
    on_retry: Callable[[], None] | None = field(default=None, compare=False)
    """Called once for every retried attempt (the agent's retry counter)."""

    def delay(self, attempt: int) -> float:
        bound = min(self.cap_seconds, self.initial_seconds * 2.0 ** min(attempt, 30))
        return bound / 2 + random.uniform(0, bound / 2)  # noqa: S311 - jitter, not secrets

    def retrying(self) -> None:
        if self.on_retry is not None:
            self.on_retry()


def timeouts(read_seconds: float = _READ_TIMEOUT_SECONDS) -> httpx.Timeout:
    return httpx.Timeout(connect=10.0, read=read_seconds, write=60.0, pool=60.0)


def build_client(
    base_url: str, *, ca_file: Path | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An HTTP client for the protocol. ``ca_file`` (a PEM bundle) replaces the system CAs;
    without it httpx honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``. ``transport`` is for
    the built-in agent (an ASGI transport into its own app) and tests."""
    verify: Any = True
    if ca_file is not None:
        import ssl

        verify = ssl.create_default_context(cafile=str(ca_file))
    return httpx.AsyncClient(
        base_url=base_url,
        verify=verify,
        transport=transport,
        timeout=timeouts(),
        headers={"User-Agent": "terrapod-agent"},
        follow_redirects=False,
    )


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    backoff: Backoff,
    headers: Mapping[str, str] | None = None,
    json: object = None,
    content: Callable[[], Any] | bytes | None = None,
    params: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    read_timeout: float | None = None,
) -> httpx.Response:
    """One call, retried while the server is unreachable or answers 5xx or 429; returns the
    first other answer (read in full). ``content`` may be a function returning a fresh body
    (an async iterator) for every attempt, ``params`` one returning each attempt's query."""
    attempt = 0
    while True:
        body = content() if callable(content) else content
        response: httpx.Response | None = None
        try:
            response = await http.request(
                method,
                url,
                headers=headers,
                content=orjson.dumps(json) if json is not None else body,
                params=params() if callable(params) else params,
                timeout=timeouts(read_timeout) if read_timeout else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            reason = type(exc).__name__
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response
            reason = f"HTTP {response.status_code}"
        delay = max(backoff.delay(attempt), _retry_after(response))
        log.warning("server unavailable, retrying", call=what, reason=reason, delay=round(delay, 2))
        backoff.retrying()
        await asyncio.sleep(delay)
        attempt += 1


def _retry_after(response: httpx.Response | None) -> float:
    if response is None or response.status_code != 429:
        return 0.0
    try:
        return min(60.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


def _detail(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return str(errors[0].get("detail") or errors[0].get("title") or "")[:300]
    except Exception:  # noqa: BLE001 - any body at all: no detail
        return ""


def _refused(what: str, response: httpx.Response) -> ProtocolError:
    kind = Unauthorized if response.status_code == 401 else ProtocolError
    return kind(what, response.status_code, _detail(response))


# -- the listener ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    """What joining gives an agent: its id and a short-lived credential."""

    agent_id: str
    credential: str = field(repr=False)
    credential_expires_at: datetime
    heartbeat_seconds: float = 10.0
    pool_id: str | None = None
    """None: a server's built-in agent."""


Joiner = Callable[[], Awaitable[Joined]]
"""Gets the agent a (new) credential: ``POST /agent-pools/join`` with an agent token
(:func:`token_joiner`), or, for the built-in agent, registering it in the server's database.
Raises :class:`Unauthorized` when it never will."""


def token_joiner(
    http: httpx.AsyncClient,
    agent_token: str,
    *,
    name: str,
    capacity: int,
    backoff: Backoff | None = None,
) -> Joiner:
    async def join() -> Joined:
        response = await send(
            http,
            "POST",
            "/api/v2/agent-pools/join",
            what="join",
            backoff=backoff or Backoff(),
            headers={"Content-Type": "application/json"},
            json={
                "join_token": agent_token,
                "name": name,
                "capacity": capacity,
                "runner_definitions": [],
            },
        )
        if response.status_code not in (200, 201):
            raise _refused("join", response)
        return joined_from(response.json())

    return join


def joined_from(body: Any) -> Joined:
    try:
        return Joined(
            agent_id=str(body["agent_id"]),
            credential=str(body["credential"]),
            credential_expires_at=parse_time(body["credential_expires_at"]),
            heartbeat_seconds=float(body.get("heartbeat_seconds") or 10.0),
            pool_id=str(body["pool_id"]) if body.get("pool_id") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"join answer: {exc}") from None


def parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a time must be a string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ListenerClient:
    """The agent process's side of the listener routes, with its current credential.

    A 401 on a listener route means the credential expired or was replaced: the client joins
    again (same name, so the same agent id) and repeats the call once. ``job_backoff`` is the
    back-off of the job clients it makes (default: ``backoff``).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        joiner: Joiner,
        *,
        backoff: Backoff | None = None,
        job_backoff: Backoff | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.http = http
        self.backoff = backoff or Backoff()
        self.job_backoff = job_backoff or self.backoff
        self._joiner = joiner
        self._joined: Joined | None = None
        self._expires_at: datetime | None = None
        self._clock = clock
        self._rejoin_lock = asyncio.Lock()

    @property
    def agent_id(self) -> str:
        if self._joined is None:
            raise RuntimeError("the agent has not joined yet")
        return self._joined.agent_id

    @property
    def heartbeat_seconds(self) -> float:
        return self._joined.heartbeat_seconds if self._joined else 10.0

    @property
    def credential_expires_at(self) -> datetime | None:
        """The current credential's expiry (None before the agent joined)."""
        return self._expires_at

    async def join(self) -> Joined:
        joined = await self._joiner()
        expires = joined.credential_expires_at
        self._joined = joined
        self._expires_at = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        log.info("joined", agent=joined.agent_id)
        return joined

    async def _rejoin(self, stale: Joined | None) -> None:
        async with self._rejoin_lock:
            if self._joined is stale:  # else another call joined meanwhile
                await self.join()

    async def _call(
        self, method: str, route: str, *, what: str, json: object = None, **kwargs: Any
    ) -> httpx.Response:
        for attempt in range(2):
            joined = self._joined or await self.join()
            response = await send(
                self.http,
                method,
                f"/api/v2/listeners/{joined.agent_id}/{route}",
                what=what,
                backoff=self.backoff,
                headers={
                    "Authorization": f"Bearer {joined.credential}",
                    "Content-Type": "application/json",
                },
                json=json,
                **kwargs,
            )
            if response.status_code != 401 or attempt == 1:
                return response
            log.info("credential refused, joining again", call=what)
            await self._rejoin(joined)
        raise AssertionError("unreachable")

    async def heartbeat(self, *, capacity: int, active_jobs: int) -> None:
        response = await self._call(
            "POST",
            "heartbeat",
            what="listener heartbeat",
            json={"capacity": capacity, "active_jobs": active_jobs},
        )
        if response.status_code != 200:
            raise _refused("listener heartbeat", response)
        expires = response.json().get("credential_expires_at")
        if isinstance(expires, str):
            self._expires_at = parse_time(expires)

    def renewal_due(self) -> bool:
        """A third or less of the credential's life is left (at least three heartbeats)."""
        if self._joined is None or self._expires_at is None:
            return False
        margin = max(timedelta(seconds=3 * self.heartbeat_seconds), timedelta(seconds=60))
        return self._expires_at - self._clock() <= margin

    async def renew(self) -> None:
        response = await self._call("POST", "renew", what="renew")
        if response.status_code != 200:
            raise _refused("renew", response)
        body = response.json()
        joined = self._joined or await self.join()
        self._joined = Joined(
            agent_id=joined.agent_id,
            credential=str(body["credential"]),
            credential_expires_at=parse_time(body["credential_expires_at"]),
            heartbeat_seconds=joined.heartbeat_seconds,
        )
        self._expires_at = self._joined.credential_expires_at
        log.info("credential renewed", agent=self._joined.agent_id)

    async def next_job(self, wait: float = RUNS_NEXT_WAIT_SECONDS) -> JobTicket | None:
        """Claim the oldest queued job of the agent's pool, waiting up to ``wait`` seconds
        for one. A claimed job whose answer cannot be read is reported ``errored``.

        Every call is one poll with a claim key of its own, sent with each retry of it (and
        the retry's number): when an answer is lost after the server claimed a job, the
        retry gets that job again (docs/dev/agents.md, "Claim keys")."""
        key = secrets.token_urlsafe(CLAIM_KEY_BYTES)
        attempts = itertools.count()

        def params() -> dict[str, Any]:
            return {"wait": int(wait), "claim": key, "claim_attempt": next(attempts)}

        response = await self._call(
            "GET",
            "runs/next",
            what="runs/next",
            params=params,
            read_timeout=wait + _READ_TIMEOUT_SECONDS,
        )
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise _refused("runs/next", response)
        body = response.json()
        try:
            return JobTicket.from_dict(
                body, base_url=str(self.http.base_url), agent_id=self.agent_id
            )
        except WireError as exc:
            await self._refuse_unreadable_job(body, str(exc))
            raise

    async def _refuse_unreadable_job(self, body: Any, reason: str) -> None:
        log.error("claimed a job the agent cannot read", reason=reason)
        result = JobResult(outcome="errored", error=f"the agent cannot read the job: {reason}")
        if not isinstance(body, dict):
            return
        run_id, token = body.get("run_id"), body.get("run_token")
        if isinstance(run_id, str) and isinstance(token, str):
            await send(
                self.http,
                "PATCH",
                f"/api/v2/listeners/{self.agent_id}/runs/{run_id}",
                what="job end",
                backoff=self.backoff,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                json={
                    "status": "errored",
                    "result": result_to_dict(result),
                },
            )

    def job(self, ticket: JobTicket) -> JobClient:
        return JobClient(self.http, ticket, backoff=self.job_backoff)


# -- one job -------------------------------------------------------------------------------------


class JobClient:
    """The job routes and files of one claimed job, with its run token."""

    def __init__(self, http: httpx.AsyncClient, ticket: JobTicket, *, backoff: Backoff) -> None:
        self.http = http
        self.ticket = ticket
        self.backoff = backoff
        self._route = f"/api/v2/listeners/{ticket.agent_id}/runs/{ticket.run_id}"
        self._auth = {"Authorization": f"Bearer {ticket.run_token}"}

    def _url(self, path: str) -> str:
        """A server path as the ticket's server address (a run-job pod's client may have no
        base URL of its own); absolute URLs (signed ones) are used as they are."""
        if path.startswith(("http://", "https://")):
            return path
        return self.ticket.base_url.rstrip("/") + path

    async def heartbeat(self, wait: float = JOB_HEARTBEAT_WAIT_SECONDS) -> str | None:
        """The job is alive; returns the server's control: None, "cancel" or "force".
        Waits up to ``wait`` seconds for a cancel request. Raises :class:`JobGone`."""
        response = await send(
            self.http,
            "POST",
            self._url(self._route + "/heartbeat"),
            what="job heartbeat",
            backoff=self.backoff,
            headers=self._auth,
            params={"wait": int(wait)},
            read_timeout=wait + _READ_TIMEOUT_SECONDS,
        )
        if response.status_code in (404, 409):
            raise JobGone(_detail(response))
        if response.status_code != 200:
            raise _refused("job heartbeat", response)
        control = response.json().get("control")
        return control if control in ("cancel", "force") else None

    async def write_log(self, data: bytes) -> bool:
        """Append to the phase's log; False when the phase no longer takes output."""
        response = await send(
            self.http,
            "POST",
            self._url(self._route + "/logs"),
            what="logs",
            backoff=self.backoff,
            headers={**self._auth, "Content-Type": "application/octet-stream"},
            content=data,
        )
        if response.status_code in (404, 409):
            return False
        if response.status_code not in (200, 204):
            raise _refused("logs", response)
        return True

    async def fetch_state(self) -> bytes | None:
        url = self.ticket.urls.get("state")
        if url is None:
            return None
        response = await send(
            self.http, "GET", self._url(url), what="state download", backoff=self.backoff
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _refused("state download", response)
        return response.content

    async def persist_state(self, raw: bytes) -> None:
        """A new state version of the run's workspace, through the ordinary API as the run.
        Repeating it after a lost answer is harmless (same serial and md5: accepted again).
        A state too large for the server's inline limit (413) is created first and then
        uploaded to the version's ``hosted-state-upload-url``, as Terraform does."""
        parsed = orjson.loads(raw)
        attributes = {
            "serial": int(parsed.get("serial", 0)),
            "md5": hashlib.md5(raw).hexdigest(),
            "lineage": parsed.get("lineage"),
        }
        response = await self._create_state_version(
            {**attributes, "state": base64.b64encode(raw).decode()}
        )
        if response.status_code == 413:
            response = await self._create_state_version(attributes)
            if response.status_code not in (200, 201):
                raise _refused("state upload", response)
            url = response.json()["data"]["attributes"].get("hosted-state-upload-url")
            if url:  # None: the same state was saved already
                uploaded = await send(
                    self.http,
                    "PUT",
                    self._url(url),
                    what="state upload",
                    backoff=self.backoff,
                    headers={"Content-Type": "application/octet-stream"},
                    content=raw,
                )
                if uploaded.status_code not in (200, 201, 204):
                    raise _refused("state upload", uploaded)
            return
        if response.status_code not in (200, 201):
            raise _refused("state upload", response)

    async def _create_state_version(self, attributes: dict[str, Any]) -> httpx.Response:
        body = {
            "data": {
                "type": "state-versions",
                "attributes": attributes,
                "relationships": {"run": {"data": {"type": "runs", "id": self.ticket.run_id}}},
            }
        }
        return await send(
            self.http,
            "POST",
            self._url(f"/api/v2/workspaces/{self.ticket.spec.workspace_id}/state-versions"),
            what="state upload",
            backoff=self.backoff,
            headers={**self._auth, "Content-Type": JSONAPI},
            json=body,
        )

    async def download(self, name: str, dest: Path) -> None:
        """Stream the ticket's signed URL ``name`` to ``dest`` (started over after a broken
        connection)."""
        url = self.ticket.urls.get(name)
        if url is None:
            raise FileNotFoundError(f"the job has no {name.replace('_', ' ')} to download")
        attempt = 0
        while True:
            try:
                async with self.http.stream("GET", self._url(url)) as response:
                    if response.status_code < 500 and response.status_code != 429:
                        if response.status_code != 200:
                            await response.aread()
                            raise _refused(f"{name} download", response)
                        async with await anyio.open_file(dest, "wb") as out:
                            async for chunk in response.aiter_bytes(_CHUNK):
                                await out.write(chunk)
                        return
                    reason = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            delay = self.backoff.delay(attempt)
            log.warning("server unavailable, retrying", call=f"{name} download", reason=reason)
            self.backoff.retrying()
            await asyncio.sleep(delay)
            attempt += 1

    async def upload(self, name: str, source: Path | bytes) -> None:
        """PUT a file (streamed from disk) or bytes to the ticket's signed URL ``name``."""
        url = self.ticket.urls.get(name)
        if url is None:
            raise FileNotFoundError(f"the job has no {name.replace('_', ' ')} URL")
        if isinstance(source, bytes):
            content: Callable[[], Any] | bytes = source
            size = len(source)
        else:
            size = (await anyio.Path(source).stat()).st_size

            def content() -> AsyncIterator[bytes]:
                return _read_chunks(source)

        response = await send(
            self.http,
            "PUT",
            self._url(url),
            what=f"{name} upload",
            backoff=self.backoff,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=content,
        )
        if response.status_code not in (200, 201, 204):
            raise _refused(f"{name} upload", response)

    async def finish(self, result: JobResult) -> None:
        """The job's end, retried until the server answers. A 409 (the server ended the job
        already, e.g. force-cancel or a lost heartbeat) is logged and accepted."""
        await self._end({"status": result.outcome, "result": result_to_dict(result)})

    async def hand_back(self) -> None:
        """Give a plan job back on shutdown: the server queues it for another agent."""
        await self._end({"status": "handed_back"})

    async def _end(self, body: dict[str, Any]) -> None:
        response = await send(
            self.http,
            "PATCH",
            self._url(self._route),
            what="job end",
            backoff=self.backoff,
            headers={**self._auth, "Content-Type": "application/json"},
            json=body,
        )
        if response.status_code in (404, 409):
            log.warning(
                "the server had ended the job already",
                job=self.ticket.job_id,
                status=body["status"],
                detail=_detail(response),
            )
            return
        if response.status_code not in (200, 204):
            raise _refused("job end", response)


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as source:
        while chunk := await source.read(_CHUNK):
            yield chunk


class HttpJobIO:
    """The runner's :class:`~terrapod.runner.spec.JobIO` for one ticket, over HTTP.

    Log output is sent by one request at a time: the first chunk goes at once, and whatever
    the engine writes while a request is on its way goes together in the next one. So a
    chatty engine costs a few requests, not one per line, and it never waits for the server
    unless :data:`LOG_BUFFER_BYTES` are waiting (a server that is away). :meth:`drain` sends
    what is left; the job's end must not be reported before it.
    """

    def __init__(self, job: JobClient, control: JobControl) -> None:
        self._job = job
        self._control = control
        self._pending = bytearray()
        self._sending: asyncio.Task[None] | None = None

    async def fetch_configuration(self, dest: Path) -> None:
        await self._job.download("configuration", dest)

    async def fetch_state(self) -> bytes | None:
        return await self._job.fetch_state()

    async def fetch_plan_file(self, dest: Path) -> None:
        await self._job.download("plan_file", dest)

    async def write_log(self, data: bytes) -> None:
        self._pending += data
        if self._sending is not None and not self._sending.done():
            if len(self._pending) < LOG_BUFFER_BYTES:
                return  # goes with the next request
            await self._sending
        elif self._sending is not None:
            await self._sending  # raises what the last request raised
        self._sending = asyncio.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            if not await self._job.write_log(data):
                # The server ended the phase (force-cancel, lost heartbeat): stop the engine.
                self._control.force.set()

    async def drain(self) -> None:
        """Wait until every log byte written so far has been sent."""
        if self._sending is not None:
            await self._sending
        if self._pending:
            await self._send_pending()

    async def persist_state(self, raw: bytes) -> None:
        await self._job.persist_state(raw)

    async def store_plan(self, plan_file: Path, plan_json: bytes, redacted_json: bytes) -> None:
        await asyncio.gather(
            self._job.upload("plan_file_upload", plan_file),
            self._job.upload("plan_json_upload", plan_json),
            self._job.upload("plan_json_redacted_upload", redacted_json),
        )
