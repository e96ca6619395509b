"""The agent's metrics (docs/usage/agents.md, "Metrics"): jobs run through the loop against
the fake server (tests/unit/agent/fakeserver.py), and the counters a ``terrapod agent``
process serves on ``--metrics-port`` move as their names say."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from terrapod import __version__
from terrapod.agent.http import Backoff, ListenerClient, Unauthorized, token_joiner
from terrapod.agent.loop import Agent
from terrapod.agent.ticket import JobTicket
from terrapod.observability.metrics import AgentMetrics
from terrapod.runner.spec import JobControl, JobResult
from tests.unit.agent.fakeserver import AGENT_TOKEN, BASE_URL, FakeJob, FakeServer

Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


class Metered:
    """An agent wired as ``terrapod agent`` wires it: a registry of its own, and the retries
    of its listener and job calls counted apart."""

    def __init__(self, server: FakeServer, http: httpx.AsyncClient, *, concurrency: int) -> None:
        self.registry = CollectorRegistry()
        self.metrics = AgentMetrics(self.registry)
        retries = self.metrics.server_retries
        listener_retry = Backoff(0.001, 0.01, on_retry=retries.labels("listener").inc)
        job_retry = Backoff(0.001, 0.01, on_retry=retries.labels("job").inc)
        self.listener = ListenerClient(
            http,
            token_joiner(
                http, AGENT_TOKEN, name="host-1", capacity=concurrency, backoff=listener_retry
            ),
            backoff=listener_retry,
            job_backoff=job_retry,
        )
        self.executor = _Executor()
        self.agent = Agent(
            self.listener, self.executor, concurrency=concurrency, poll_wait=1, metrics=self.metrics
        )

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


class _Executor:
    """Ends a job when the test says so, or as canceled when the loop stops it."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.results: dict[str, asyncio.Future[JobResult | None]] = {}

    def _for(self, job_id: str) -> asyncio.Event:
        return self.started.setdefault(job_id, asyncio.Event())

    async def execute(self, ticket: JobTicket, control: JobControl) -> JobResult | None:
        result = self.results.setdefault(ticket.job_id, asyncio.Future())
        self._for(ticket.job_id).set()
        force = asyncio.create_task(control.force.wait())
        await asyncio.wait({force, result}, return_when=asyncio.FIRST_COMPLETED)
        force.cancel()
        return result.result() if result.done() else JobResult(outcome="canceled", error="killed")

    def end(self, job: FakeJob, result: JobResult | None) -> None:
        self.results.setdefault(job.job_id, asyncio.Future()).set_result(result)

    def discard(self, run_id: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


def client_with(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE_URL)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


async def stopped(metered: Metered, task: asyncio.Task[None]) -> None:
    """Stop the agent and wait for its end: every count of its jobs is in by then."""
    metered.agent.request_stop()
    await task


async def test_a_finished_job_moves_the_agent_counters(server: FakeServer) -> None:
    patches = 0

    async def first_end_unavailable(request: httpx.Request) -> httpx.Response:
        nonlocal patches
        if request.method == "PATCH":
            patches += 1
            if patches == 1:
                return httpx.Response(503)
        return await server.handle(request)

    server.unavailable = 2  # the join: the first requests of all
    async with client_with(first_end_unavailable) as http:
        metered = Metered(server, http, concurrency=2)
        task = asyncio.create_task(metered.agent.run())
        job = server.queue_job("plan")
        await metered.executor._for(job.job_id).wait()
        assert metered.value("terrapod_agent_jobs_running") == 1
        assert metered.value("terrapod_agent_jobs_claimed_total", phase="plan") == 1
        metered.executor.end(job, JobResult(outcome="finished", has_changes=True))
        await server.until(lambda: job.ends)
        await stopped(metered, task)

    value = metered.value
    assert job.ends[0]["status"] == "finished"
    assert value("terrapod_agent_jobs_running") == 0
    assert value("terrapod_agent_capacity") == 2
    assert value("terrapod_agent_jobs_reported_total", outcome="finished") == 1
    assert value("terrapod_agent_job_duration_seconds_count", phase="plan", outcome="finished") == 1
    assert value("terrapod_agent_server_retries_total", kind="listener") == 2
    assert value("terrapod_agent_server_retries_total", kind="job") == 1
    assert value("terrapod_agent_server_calls_failed_total", kind="listener") == 0
    assert value("terrapod_agent_server_calls_failed_total", kind="job") == 0
    assert (value("terrapod_agent_last_heartbeat_timestamp_seconds") or 0) > 0
    expires = metered.listener.credential_expires_at
    assert expires is not None
    assert value("terrapod_agent_credential_expiry_timestamp_seconds") == expires.timestamp()
    info = {"agent_id": "agent-1", "pool_id": "apool-1", "version": __version__}
    assert value("terrapod_agent_info", **info) == 1


async def test_a_plan_handed_back_at_shutdown_is_counted_handed_back(server: FakeServer) -> None:
    async with server.client() as http:
        metered = Metered(server, http, concurrency=1)
        task = asyncio.create_task(metered.agent.run())
        job = server.queue_job("plan")
        await metered.executor._for(job.job_id).wait()
        await stopped(metered, task)

    assert job.ends == [{"status": "handed_back"}]
    assert metered.value("terrapod_agent_jobs_reported_total", outcome="handed_back") == 1
    assert metered.value("terrapod_agent_jobs_reported_total", outcome="canceled") is None


async def test_a_job_that_reported_itself_is_counted_as_such(server: FakeServer) -> None:
    async with server.client() as http:
        metered = Metered(server, http, concurrency=1)
        task = asyncio.create_task(metered.agent.run())
        first, second = server.queue_job("apply"), server.queue_job("apply")
        await metered.executor._for(first.job_id).wait()
        metered.executor.end(first, None)
        # The slot is free again once the first job is counted: the second starts after it.
        await metered.executor._for(second.job_id).wait()
        assert metered.value("terrapod_agent_jobs_reported_total", outcome="reported_by_job") == 1
        metered.executor.end(second, JobResult(outcome="finished"))
        await server.until(lambda: second.ends)
        await stopped(metered, task)
    assert first.ends == []


async def test_refused_calls_count_as_failed_by_kind(server: FakeServer) -> None:
    async def refuse_ends(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return httpx.Response(400, json={"errors": [{"detail": "no"}]})
        return await server.handle(request)

    async with client_with(refuse_ends) as http:
        metered = Metered(server, http, concurrency=1)
        task = asyncio.create_task(metered.agent.run())
        job = server.queue_job("apply")
        await metered.executor._for(job.job_id).wait()
        metered.executor.end(job, JobResult(outcome="finished"))
        # The agent token is revoked: the next claim is refused and the agent ends.
        server.token_refused = True
        server.expire_credentials()
        with pytest.raises(Unauthorized):
            await task

    value = metered.value
    assert value("terrapod_agent_server_calls_failed_total", kind="job") == 1
    assert (value("terrapod_agent_server_calls_failed_total", kind="listener") or 0) >= 1
    assert value("terrapod_agent_jobs_reported_total", outcome="finished") is None
    assert (
        value("terrapod_agent_job_duration_seconds_count", phase="apply", outcome="finished") == 1
    )
