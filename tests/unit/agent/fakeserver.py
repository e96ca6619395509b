"""A small in-memory server that speaks the listener protocol (docs/dev/agents.md), for the
agent's unit tests: an ``httpx.MockTransport`` handler with the routes an agent calls, long
polls included, and knobs for what a real server does to an agent (go away, refuse an expired
credential, end a job behind its back).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from terrapod.runner.spec import JobSpec
from terrapod.runner.wire import spec_to_dict

AGENT_TOKEN = "tpod.fake-agent-token"
BASE_URL = "https://terrapod.test"


@dataclass
class FakeJob:
    job_id: str
    run_id: str
    phase: str
    spec: JobSpec
    run_token: str
    files: dict[str, bytes] = field(default_factory=dict)
    """Signed URL name -> its content (downloads)."""
    status: str = "queued"
    control: str | None = None
    control_changed: asyncio.Event = field(default_factory=asyncio.Event)
    log: bytearray = field(default_factory=bytearray)
    uploads: dict[str, bytes] = field(default_factory=dict)
    ends: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0
    malformed: bool = False
    """Send a spec the agent cannot read."""


class FakeServer:
    def __init__(self, *, credential_ttl: timedelta = timedelta(hours=1)) -> None:
        self.credential_ttl = credential_ttl
        self.jobs: dict[str, FakeJob] = {}
        self.queue: list[str] = []
        self.queued = asyncio.Event()
        self.credentials: dict[str, str] = {}
        """Valid credential -> agent id."""
        self.agents: dict[str, str] = {}
        """Name -> agent id."""
        self.unavailable = 0
        """Answer the next this many requests with 503."""
        self.unreachable = 0
        """Fail the next this many requests with a connection error."""
        self.requests: list[tuple[str, str]] = []
        self.listener_heartbeats: list[dict[str, Any]] = []
        self.joins = 0
        self.renewals = 0
        self.token_refused = False
        self.lose_answers = 0
        """Claim a job for the next this many ``runs/next`` requests, then break their
        connection (the answer is lost after the claim)."""
        self.polls: list[tuple[str | None, str | None]] = []
        """Each ``runs/next`` request's claim key and attempt, as sent."""
        self.claims: dict[tuple[str, str], str] = {}
        """(agent id, claim key) -> the job the key claimed."""
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()

    async def until(self, predicate: Callable[[], object]) -> None:
        """Wait until ``predicate()`` holds; checked after every request the server answered."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport(), base_url=BASE_URL)

    # -- what a test does --------------------------------------------------------------------

    def queue_job(
        self, phase: str = "plan", *, files: dict[str, bytes] | None = None, **spec: Any
    ) -> FakeJob:
        n = next(self._ids)
        job = FakeJob(
            job_id=f"job-{n}",
            run_id=f"run-{n}",
            phase=phase,
            spec=JobSpec(
                job_id=f"job-{n}",
                run_id=f"run-{n}",
                phase="plan" if phase == "plan" else "apply",
                organization_name="default",
                workspace_name="ws",
                terraform_version="latest",
                working_directory=None,
                workspace_id="ws-1",
                **spec,
            ),
            run_token=f"tpod.run-token-{n}",
            files=files or {},
        )
        self.jobs[job.job_id] = job
        self.queue.append(job.job_id)
        self.queued.set()
        return job

    def request_control(self, job: FakeJob, control: str) -> None:
        job.control = control
        job.control_changed.set()

    def expire_credentials(self) -> None:
        self.credentials.clear()

    # -- the routes --------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._answer(request)
        finally:
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _answer(self, request: httpx.Request) -> httpx.Response:  # noqa: PLR0911 - a router
        self.requests.append((request.method, request.url.path))
        if request.url.path.endswith("/runs/next"):
            self.polls.append(
                (request.url.params.get("claim"), request.url.params.get("claim_attempt"))
            )
        if self.unreachable:
            self.unreachable -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if self.unavailable:
            self.unavailable -= 1
            return httpx.Response(503)
        path = request.url.path
        parts = path.strip("/").split("/")
        if path == "/api/v2/agent-pools/join":
            return self._join(request)
        if path.startswith("/signed/"):
            return await self._signed(request, parts[1], parts[2])
        if parts[:3] == ["api", "v2", "listeners"] and len(parts) >= 5 and parts[4] == "runs":
            if len(parts) == 6 and parts[5] == "next":
                return await self._next(request, parts[3])
            return await self._job_route(request, parts[5], parts[6] if len(parts) > 6 else "")
        if parts[:3] == ["api", "v2", "listeners"]:
            return self._listener(request, parts[3], parts[4])
        if parts[:3] == ["api", "v2", "workspaces"] and parts[4] == "state-versions":
            return self._state(request)
        return httpx.Response(404)

    def _expires(self) -> str:
        return (datetime.now(UTC) + self.credential_ttl).isoformat()

    def _join(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if self.token_refused or body["join_token"] != AGENT_TOKEN:
            return httpx.Response(401, json={"errors": [{"detail": "invalid agent token"}]})
        self.joins += 1
        agent_id = self.agents.setdefault(body["name"], f"agent-{len(self.agents) + 1}")
        credential = f"tpod.credential-{self.joins}"
        self.credentials = {c: a for c, a in self.credentials.items() if a != agent_id}
        self.credentials[credential] = agent_id
        return httpx.Response(
            201,
            json={
                "agent_id": agent_id,
                "pool_id": "apool-1",
                "credential": credential,
                "credential_expires_at": self._expires(),
                "heartbeat_seconds": 0.05,
                "heartbeat_timeout_seconds": 60,
            },
        )

    def _authorized(self, request: httpx.Request, agent_id: str) -> bool:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        return self.credentials.get(bearer) == agent_id

    def _listener(self, request: httpx.Request, agent_id: str, route: str) -> httpx.Response:
        if not self._authorized(request, agent_id):
            return httpx.Response(401, json={"errors": [{"detail": "credential expired"}]})
        if route == "heartbeat":
            self.listener_heartbeats.append(json.loads(request.content))
            return httpx.Response(200, json={"credential_expires_at": self._expires()})
        if route == "renew":
            self.renewals += 1
            credential = f"tpod.renewed-{self.renewals}"
            self.credentials[credential] = agent_id
            return httpx.Response(
                200, json={"credential": credential, "credential_expires_at": self._expires()}
            )
        return httpx.Response(404)

    async def _next(self, request: httpx.Request, agent_id: str) -> httpx.Response:
        if not self._authorized(request, agent_id):
            return httpx.Response(401, json={"errors": [{"detail": "credential expired"}]})
        wait = float(request.url.params.get("wait", "0"))
        key = request.url.params.get("claim")
        if key is not None and (agent_id, key) in self.claims:
            # A retry of a poll whose answer was lost: the same job, with a new run token.
            # (The real server also ignores earlier attempts; the fake keeps it simple.)
            job = self.jobs[self.claims[agent_id, key]]
            if job.status != "running":
                return httpx.Response(204)
            job.run_token += "-again"
            return self._ticket(request, job)
        if not self.queue:
            self.queued.clear()
            try:
                await asyncio.wait_for(self.queued.wait(), wait)
            except TimeoutError:
                return httpx.Response(204)
        job = self.jobs[self.queue.pop(0)]
        job.status = "running"
        if key is not None:
            self.claims[agent_id, key] = job.job_id
        return self._ticket(request, job)

    def _ticket(self, request: httpx.Request, job: FakeJob) -> httpx.Response:
        if self.lose_answers:
            self.lose_answers -= 1
            raise httpx.ReadError("connection reset by peer", request=request)
        urls = {name: f"{BASE_URL}/signed/{job.job_id}/{name}" for name in job.files}
        for name in ("plan_file_upload", "plan_json_upload", "plan_json_redacted_upload"):
            urls[name] = f"/signed/{job.job_id}/{name}"
        return httpx.Response(
            200,
            json={
                "job_id": job.job_id,
                "run_id": job.run_id,
                "phase": job.phase,
                "spec": {"job_id": 1} if job.malformed else spec_to_dict(job.spec),
                "run_token": job.run_token,
                "run_token_expires_at": self._expires(),
                "urls": urls,
            },
        )

    def _job_of(self, request: httpx.Request, run_id: str) -> FakeJob | None:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        for job in self.jobs.values():
            if job.run_id == run_id and job.run_token == bearer:
                return job
        return None

    async def _job_route(  # noqa: PLR0911 - a router
        self, request: httpx.Request, run_id: str, route: str
    ) -> httpx.Response:
        job = self._job_of(request, run_id)
        if job is None:
            return httpx.Response(404, json={"errors": [{"detail": "no such job"}]})
        if request.method == "PATCH" and route == "":
            body = json.loads(request.content)
            if job.status not in ("running", body["status"]):
                return httpx.Response(409, json={"errors": [{"detail": "job ended"}]})
            job.status = body["status"]
            job.ends.append(body)
            return httpx.Response(200, json={})
        if job.status != "running":
            return httpx.Response(409, json={"errors": [{"detail": "job ended"}]})
        if route == "heartbeat":
            job.heartbeats += 1
            await self._notify()
            if job.control is None:
                job.control_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        job.control_changed.wait(), float(request.url.params.get("wait", "0"))
                    )
            return httpx.Response(200, json={"control": job.control})
        if route == "logs":
            job.log += request.content
            return httpx.Response(204)
        return httpx.Response(404)

    async def _signed(self, request: httpx.Request, job_id: str, name: str) -> httpx.Response:
        job = self.jobs[job_id]
        if request.method == "GET":
            if name not in job.files:
                return httpx.Response(404)
            return httpx.Response(200, content=job.files[name])
        job.uploads[name] = await request.aread()
        return httpx.Response(200)

    def _state(self, request: httpx.Request) -> httpx.Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        job = next(j for j in self.jobs.values() if j.run_token == bearer)
        body = json.loads(request.content)
        attributes = body["data"]["attributes"]
        raw = base64.b64decode(attributes["state"])
        assert hashlib.md5(raw).hexdigest() == attributes["md5"]
        job.states.append(body)
        return httpx.Response(201, json={"data": {"id": "sv-1", "type": "state-versions"}})
