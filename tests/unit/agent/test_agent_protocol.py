"""The agent's side of the listener protocol against a small fake server
(tests/unit/agent/fakeserver.py): retries, credentials, files, and the loop's shutdown rules.
The same code against the real application is tests/unit/agent/test_http_agent.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from terrapod.agent.http import (
    Backoff,
    HttpJobIO,
    JobClient,
    JobGone,
    ListenerClient,
    Unauthorized,
    token_joiner,
)
from terrapod.agent.inprocess import InProcessExecutor
from terrapod.agent.loop import Agent
from terrapod.agent.ticket import JobTicket
from terrapod.runner.engines import EngineResolver
from terrapod.runner.spec import JobControl, JobResult, JobSpec
from terrapod.runner.wire import WireError
from tests.unit.agent.fakeserver import AGENT_TOKEN, FakeJob, FakeServer

FAST = Backoff(initial_seconds=0.001, cap_seconds=0.01)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def http(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as client:
        yield client


def listener_for(
    http: httpx.AsyncClient, token: str = AGENT_TOKEN, capacity: int = 2
) -> ListenerClient:
    return ListenerClient(
        http,
        token_joiner(http, token, name="host-1", capacity=capacity, backoff=FAST),
        backoff=FAST,
    )


async def claim(listener: ListenerClient) -> JobTicket:
    ticket = await listener.next_job(wait=0)
    assert ticket is not None
    return ticket


async def test_calls_ride_out_a_server_that_is_away(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    server.unreachable = 3
    server.unavailable = 2
    listener = listener_for(http)
    joined = await listener.join()
    assert joined.agent_id == "agent-1"
    assert server.requests.count(("POST", "/api/v2/agent-pools/join")) == 6


async def test_a_refused_agent_token_is_not_retried(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    with pytest.raises(Unauthorized):
        await listener_for(http, token="tpod.wrong").join()
    assert len(server.requests) == 1


async def test_an_expired_credential_joins_again_under_the_same_agent(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    listener = listener_for(http)
    await listener.join()
    server.expire_credentials()
    await listener.heartbeat(capacity=2, active_jobs=0)
    assert server.joins == 2
    assert listener.agent_id == "agent-1"
    assert server.listener_heartbeats == [{"capacity": 2, "active_jobs": 0}]


async def test_the_credential_is_renewed_when_little_of_its_life_is_left() -> None:
    short = FakeServer(credential_ttl=timedelta(seconds=30))
    async with short.client() as client:
        listener = listener_for(client)
        await listener.join()
        assert listener.renewal_due()
        await listener.renew()
        await listener.heartbeat(capacity=1, active_jobs=0)
    assert short.renewals == 1
    assert short.joins == 1  # the renewed credential works: no join again


async def test_a_long_lived_credential_is_not_renewed(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    listener = listener_for(http)
    await listener.join()
    assert not listener.renewal_due()


async def test_runs_next_answers_none_when_no_job_turns_up(http: httpx.AsyncClient) -> None:
    listener = listener_for(http)
    assert await listener.next_job(wait=0) is None


async def test_a_claimed_job_is_a_ticket_with_the_agent_and_server(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    queued = server.queue_job("plan", files={"configuration": b"tarball"})
    listener = listener_for(http)
    ticket = await claim(listener)
    assert (ticket.job_id, ticket.run_id, ticket.phase) == (queued.job_id, queued.run_id, "plan")
    assert ticket.agent_id == "agent-1"
    assert ticket.base_url == "https://terrapod.test"
    assert ticket.spec == queued.spec
    assert JobTicket.from_dict(json.loads(json.dumps(ticket.to_dict()))) == ticket


async def test_an_unreadable_job_is_reported_errored(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    job = server.queue_job("plan")
    job.malformed = True
    listener = listener_for(http)
    with pytest.raises(WireError, match="spec"):
        await listener.next_job(wait=0)
    assert job.ends[0]["status"] == "errored"
    assert "cannot read the job" in job.ends[0]["result"]["error"]


async def job_client(server: FakeServer, http: httpx.AsyncClient, job: FakeJob) -> JobClient:
    listener = listener_for(http)
    ticket = await claim(listener)
    assert ticket.job_id == job.job_id
    return listener.job(ticket)


async def test_downloads_stream_to_disk_and_start_over_after_an_outage(
    server: FakeServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    content = bytes(range(256)) * 20_000
    job = server.queue_job("apply", files={"configuration": content, "plan_file": b"plan"})
    client = await job_client(server, http, job)
    server.unavailable = 1
    server.unreachable = 1
    await client.download("configuration", tmp_path / "config.tar.gz")
    await client.download("plan_file", tmp_path / "plan")
    assert (tmp_path / "config.tar.gz").read_bytes() == content
    assert (tmp_path / "plan").read_bytes() == b"plan"


async def test_a_missing_url_is_a_missing_file(
    server: FakeServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    job = server.queue_job("plan")
    client = await job_client(server, http, job)
    with pytest.raises(FileNotFoundError):
        await client.download("configuration", tmp_path / "config.tar.gz")
    assert await client.fetch_state() is None


async def test_the_plan_is_uploaded_from_disk(
    server: FakeServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    job = server.queue_job("plan")
    client = await job_client(server, http, job)
    plan = tmp_path / "plan"
    plan.write_bytes(b"P" * 3_000_000)
    server.unavailable = 1
    await HttpJobIO(client, JobControl()).store_plan(plan, b'{"plan": 1}', b'{"redacted": 1}')
    assert job.uploads == {
        "plan_file_upload": b"P" * 3_000_000,
        "plan_json_upload": b'{"plan": 1}',
        "plan_json_redacted_upload": b'{"redacted": 1}',
    }


async def test_state_is_saved_as_a_state_version_of_the_run(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    job = server.queue_job("apply")
    client = await job_client(server, http, job)
    raw = json.dumps({"version": 4, "serial": 7, "lineage": "abc", "resources": []}).encode()
    await client.persist_state(raw)
    (body,) = job.states
    assert body["data"]["attributes"]["serial"] == 7
    assert body["data"]["attributes"]["lineage"] == "abc"
    assert body["data"]["relationships"]["run"]["data"]["id"] == job.run_id


async def test_a_log_the_server_no_longer_takes_stops_the_engine(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    job = server.queue_job("plan")
    client = await job_client(server, http, job)
    control = JobControl()
    io = HttpJobIO(client, control)
    await io.write_log(b"hello\n")
    await io.drain()
    assert job.log == b"hello\n"
    job.status = "canceled"
    await io.write_log(b"more\n")
    await io.drain()
    assert control.force.is_set()


async def test_log_output_written_during_a_request_goes_in_the_next_one(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    job = server.queue_job("plan")
    client = await job_client(server, http, job)
    io = HttpJobIO(client, JobControl())
    for n in range(50):
        await io.write_log(f"line {n}\n".encode())
    await io.drain()
    assert job.log == b"".join(f"line {n}\n".encode() for n in range(50))
    assert server.requests.count(("POST", f"/api/v2/listeners/agent-1/runs/{job.run_id}/logs")) < 50


async def test_the_end_is_retried_until_the_server_answers_and_a_job_it_ended_is_fine(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    first, second = server.queue_job("plan"), server.queue_job("plan")
    client = await job_client(server, http, first)
    server.unreachable = 2
    await client.finish(JobResult(outcome="finished", has_changes=True, additions=1))
    await client.finish(JobResult(outcome="finished", has_changes=True, additions=1))
    assert [e["status"] for e in first.ends] == ["finished", "finished"]
    assert first.ends[0]["result"]["additions"] == 1
    other = await job_client(server, http, second)
    second.status = "errored"  # the server failed it (a lost heartbeat)
    await other.finish(JobResult(outcome="finished"))
    assert second.ends == []


async def test_job_heartbeat_brings_back_cancel_requests(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    job = server.queue_job("apply")
    client = await job_client(server, http, job)
    assert await client.heartbeat(wait=0) is None
    waiting = asyncio.create_task(client.heartbeat(wait=30))
    await server.until(lambda: job.heartbeats == 2)
    server.request_control(job, "cancel")
    assert await waiting == "cancel"
    job.status = "force_canceled"
    with pytest.raises(JobGone):
        await client.heartbeat(wait=0)


# -- the in-process executor's heartbeat --------------------------------------------------------


class _ParkedRunner:
    """Stands in for terrapod.runner.execute: waits until the control says stop."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def __call__(
        self, spec: object, io: object, control: JobControl, **_: object
    ) -> JobResult:
        self.started.set()
        cancel = asyncio.create_task(control.cancel.wait())
        force = asyncio.create_task(control.force.wait())
        await asyncio.wait({cancel, force}, return_when=asyncio.FIRST_COMPLETED)
        cancel.cancel()
        force.cancel()
        return JobResult(
            outcome="canceled", error="forced" if control.force.is_set() else "canceled"
        )


@pytest.fixture
def parked(monkeypatch: pytest.MonkeyPatch) -> _ParkedRunner:
    runner = _ParkedRunner()
    monkeypatch.setattr("terrapod.agent.inprocess.execute", runner)
    return runner


async def test_a_cancel_reaches_the_engine_through_the_job_heartbeat(
    server: FakeServer, http: httpx.AsyncClient, parked: _ParkedRunner, tmp_path: Path
) -> None:
    job = server.queue_job("apply")
    listener = listener_for(http)
    executor = InProcessExecutor(listener.job, workdir_root=tmp_path, engines=EngineResolver())
    running = asyncio.create_task(executor.execute(await claim(listener), JobControl()))
    await parked.started.wait()
    server.request_control(job, "cancel")
    assert await running == JobResult(outcome="canceled", error="canceled")


async def test_a_job_the_server_ended_is_forced(
    server: FakeServer, http: httpx.AsyncClient, parked: _ParkedRunner, tmp_path: Path
) -> None:
    job = server.queue_job("apply")
    listener = listener_for(http)
    executor = InProcessExecutor(listener.job, workdir_root=tmp_path, engines=EngineResolver())
    running = asyncio.create_task(executor.execute(await claim(listener), JobControl()))
    await parked.started.wait()
    job.status = "errored"
    server.request_control(job, "force")  # wakes the parked heartbeat, which now sees a 409
    assert await running == JobResult(outcome="canceled", error="forced")


# -- the loop ------------------------------------------------------------------------------------


class _Executor:
    """Runs nothing: a job ends when the test says so or when the loop stops it."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.results: dict[str, asyncio.Future[JobResult | None]] = {}
        self.controls: dict[str, JobControl] = {}
        self.discarded: list[str] = []
        self.closed = False

    def _for(self, job_id: str) -> asyncio.Event:
        return self.started.setdefault(job_id, asyncio.Event())

    async def execute(self, ticket: JobTicket, control: JobControl) -> JobResult | None:
        self.controls[ticket.job_id] = control
        result = self.results.setdefault(ticket.job_id, asyncio.Future())
        self._for(ticket.job_id).set()
        cancel = asyncio.create_task(control.cancel.wait())
        force = asyncio.create_task(control.force.wait())
        await asyncio.wait({cancel, force, result}, return_when=asyncio.FIRST_COMPLETED)
        cancel.cancel()
        force.cancel()
        if result.done():
            return result.result()
        return JobResult(outcome="canceled", error="killed" if force.done() else "Ctrl-C")

    def discard(self, run_id: str) -> None:
        self.discarded.append(run_id)

    async def aclose(self) -> None:
        self.closed = True


async def started(executor: _Executor, *jobs: FakeJob) -> None:
    for job in jobs:
        await executor._for(job.job_id).wait()


@pytest.fixture
async def agent(
    server: FakeServer, http: httpx.AsyncClient
) -> AsyncIterator[tuple[Agent, _Executor, asyncio.Task[None]]]:
    executor = _Executor()
    agent = Agent(listener_for(http), executor, concurrency=2, poll_wait=1)
    task = asyncio.create_task(agent.run())
    yield agent, executor, task
    if not task.done():
        agent.request_stop()
        agent.request_stop()
        await task


async def test_the_agent_claims_up_to_its_concurrency_and_reports_results(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    _, executor, _ = agent
    a, b, c = (server.queue_job("plan") for _ in range(3))
    await started(executor, a, b)
    assert c.status == "queued"
    executor.results[a.job_id].set_result(JobResult(outcome="finished", has_changes=False))
    await started(executor, c)
    assert a.ends == [{"status": "finished", "result": a.ends[0]["result"]}]
    assert a.ends[0]["result"]["has_changes"] is False


async def test_a_job_that_reported_itself_is_not_reported_again(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    _, executor, _ = agent
    first = server.queue_job("apply")
    await started(executor, first)
    executor.results[first.job_id].set_result(None)
    second = server.queue_job("apply")
    await started(executor, second)
    assert first.ends == []


async def test_a_broken_executor_ends_the_job_errored(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    class Broken(_Executor):
        async def execute(self, ticket: JobTicket, control: JobControl) -> JobResult | None:
            raise RuntimeError("boom")

    loop = Agent(listener_for(http), Broken(), concurrency=1, poll_wait=1)
    task = asyncio.create_task(loop.run())
    job = server.queue_job("plan")
    await server.until(lambda: job.ends)
    loop.request_stop()
    await task
    assert job.ends[0]["status"] == "errored"
    assert job.ends[0]["result"]["error"] == "the agent failed: RuntimeError"


async def test_the_first_stop_hands_back_plans_and_lets_applies_finish(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    loop, executor, task = agent
    plan, apply = server.queue_job("plan"), server.queue_job("apply")
    await started(executor, plan, apply)
    loop.request_stop()
    await server.until(lambda: plan.ends)
    assert plan.ends == [{"status": "handed_back"}]
    assert executor.controls[plan.job_id].force.is_set()  # a plan changes nothing: stopped now
    assert not executor.controls[apply.job_id].cancel.is_set()
    assert not executor.controls[apply.job_id].force.is_set()
    later = server.queue_job("plan")
    executor.results[apply.job_id].set_result(JobResult(outcome="finished"))
    await task
    assert apply.ends[0]["status"] == "finished"
    assert later.status == "queued"
    assert executor.closed


async def test_the_second_stop_cancels_the_applies(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    loop, executor, task = agent
    apply = server.queue_job("apply")
    await started(executor, apply)
    loop.request_stop()
    loop.request_stop()
    await task
    assert apply.ends[0]["status"] == "canceled"
    assert apply.ends[0]["result"]["error"] == "Ctrl-C"  # gracefully: the engine saves state


async def test_a_plan_that_finished_while_stopping_is_reported_not_handed_back(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    loop, executor, task = agent
    plan = server.queue_job("plan")
    await started(executor, plan)
    executor.results[plan.job_id].set_result(JobResult(outcome="finished", has_changes=True))
    loop.request_stop()
    await task
    assert plan.ends[0]["status"] == "finished"


async def test_the_listener_heartbeat_tells_capacity_and_load(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    _, executor, _ = agent
    job = server.queue_job("apply")
    await started(executor, job)
    await server.until(lambda: {"capacity": 2, "active_jobs": 1} in server.listener_heartbeats)


async def test_an_agent_whose_token_is_revoked_stops(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    _, executor, task = agent
    apply = server.queue_job("apply")
    await started(executor, apply)
    server.token_refused = True
    server.expire_credentials()  # the next long poll is refused, and so is joining again
    await server.until(lambda: server.requests[-1] == ("POST", "/api/v2/agent-pools/join"))
    executor.results[apply.job_id].set_result(JobResult(outcome="finished"))
    with pytest.raises(Unauthorized):
        await task
    assert apply.ends[0]["status"] == "finished"


async def test_forgetting_a_run_discards_what_the_executor_kept_unless_it_runs(
    server: FakeServer, agent: tuple[Agent, _Executor, asyncio.Task[None]]
) -> None:
    loop, executor, _ = agent
    job = server.queue_job("apply")
    await started(executor, job)
    loop.forget_run(job.run_id)
    loop.forget_run("run-other")
    assert executor.discarded == ["run-other"]


async def test_jobs_that_outlive_the_agent_are_let_go_at_the_first_stop(
    server: FakeServer, http: httpx.AsyncClient
) -> None:
    class Pods(_Executor):
        """Like the Kubernetes executor: the jobs report their own end."""

        jobs_outlive_agent = True

        async def execute(self, ticket: JobTicket, control: JobControl) -> JobResult | None:
            await super().execute(ticket, control)
            return None

    executor = Pods()
    loop = Agent(listener_for(http), executor, concurrency=2, poll_wait=1)
    task = asyncio.create_task(loop.run())
    plan, apply = server.queue_job("plan"), server.queue_job("apply")
    await started(executor, plan, apply)
    loop.request_stop()
    await task
    assert plan.ends == apply.ends == []
    assert executor.controls[plan.job_id].cancel.is_set()
    assert not executor.controls[plan.job_id].force.is_set()


async def test_a_plan_directory_whose_apply_never_came_is_removed_later(
    server: FakeServer,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    async def finished(*_: object, **__: object) -> JobResult:
        return JobResult(outcome="finished", has_changes=True)

    discarded: list[str] = []
    monkeypatch.setattr("terrapod.agent.inprocess.execute", finished)
    monkeypatch.setattr(
        "terrapod.agent.inprocess.discard_workdir", lambda _root, run_id: discarded.append(run_id)
    )
    listener = listener_for(http)
    executor = InProcessExecutor(listener.job, workdir_root=tmp_path, engines=EngineResolver())
    planned = server.queue_job("plan")
    await executor.execute(await claim(listener), JobControl())
    server.queue_job("plan")
    await executor.execute(await claim(listener), JobControl())
    assert discarded == []  # kept for its apply
    monkeypatch.setattr("terrapod.agent.inprocess.KEEP_PLAN_SECONDS", -1)
    server.queue_job("apply")
    await executor.execute(await claim(listener), JobControl())
    assert planned.run_id in discarded


async def test_an_agent_elsewhere_uses_its_own_provider_mirror_not_the_servers(
    server: FakeServer,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    seen: list[str | None] = []

    async def record(spec: JobSpec, *_: object, **__: object) -> JobResult:
        seen.append(spec.provider_mirror)
        return JobResult(outcome="errored", error="recorded")

    monkeypatch.setattr("terrapod.agent.inprocess.execute", record)
    listener = listener_for(http)
    for mirror in ("from-server", None, tmp_path / "mirror"):
        executor = InProcessExecutor(
            listener.job,
            workdir_root=tmp_path,
            engines=EngineResolver(),
            provider_mirror=mirror,  # type: ignore[arg-type]
        )
        server.queue_job("plan", provider_mirror="/srv/terrapod/mirror")
        await executor.execute(await claim(listener), JobControl())
    assert seen == ["/srv/terrapod/mirror", None, str(tmp_path / "mirror")]
