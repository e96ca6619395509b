"""The agent loop: the listener side of an agent (docs/dev/agents.md).

:class:`Agent` joins the server, beats the listener heartbeat (renewing its credential when it
is due), claims jobs with the ``runs/next`` long poll up to its capacity, hands each claimed
job to its :class:`~terrapod.agent.executor.Executor` and reports how the job ended. The same
class is ``terrapod agent`` and the built-in agent of ``terrapod serve`` (which reaches its
own app in process); only the HTTP client and the way of joining differ.

Shutdown (:meth:`Agent.request_stop`, from SIGTERM/SIGINT): the first request stops claiming
and gives up the running plan jobs (their engines are stopped at once and the jobs handed
back, so another agent plans them again) while apply jobs run to their end; a second request
cancels the applies too, gracefully (the engine gets SIGINT and still saves its state).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from terrapod import __version__
from terrapod.agent.executor import Executor
from terrapod.agent.http import RUNS_NEXT_WAIT_SECONDS, JobClient, ListenerClient, Unauthorized
from terrapod.agent.ticket import JobTicket
from terrapod.observability.logging import get_logger
from terrapod.observability.metrics import AgentMetrics
from terrapod.runner.spec import JobControl, JobResult

log = get_logger("terrapod.agent")

# After a failed claim (not an unreachable server: those are retried inside the call).
_CLAIM_PAUSE_SECONDS = 2.0


@dataclass
class _Running:
    ticket: JobTicket
    control: JobControl
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    handing_back: bool = False


class Agent:
    def __init__(
        self,
        listener: ListenerClient,
        executor: Executor,
        *,
        concurrency: int,
        poll_wait: float = RUNS_NEXT_WAIT_SECONDS,
        abandon_poll_on_stop: bool = False,
        metrics: AgentMetrics | None = None,
    ) -> None:
        """``abandon_poll_on_stop``: at shutdown, cancel a ``runs/next`` long poll in flight
        instead of waiting for its answer. Only for the built-in agent, whose requests run
        in its own process (the cancel reaches the handler); a remote server would go on
        and claim a job nobody takes, which then waits for the heartbeat timeout.
        ``metrics``: what the loop counts (the HTTP client's retries are counted by the
        ``on_retry`` of its :class:`~terrapod.agent.http.Backoff`)."""
        self.listener = listener
        self.executor = executor
        self.concurrency = concurrency
        self._poll_wait = poll_wait
        self._abandon_poll = abandon_poll_on_stop
        self._metrics = metrics
        self._running: dict[str, _Running] = {}
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stop_requests = 0
        self._finished = asyncio.Event()
        self._refused: Unauthorized | None = None
        if metrics is not None:
            metrics.capacity.set(concurrency)
            metrics.credential_expiry.set_function(self._credential_expiry)

    def forget_run(self, run_id: str) -> None:
        """A run ended without its apply: drop what the executor kept for it."""
        if not any(r.ticket.run_id == run_id for r in self._running.values()):
            self.executor.discard(run_id)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT. First: stop claiming, hand back plans, let applies finish.
        Second: cancel the applies too (gracefully). Later ones: force them."""
        self._stop_requests += 1
        if self._stop_requests == 1:
            log.info("stopping: no new jobs; plan jobs are handed back, applies finish")
            self._stopping.set()
            outlive = getattr(self.executor, "jobs_outlive_agent", False)
            for running in self._running.values():
                if outlive:
                    running.control.cancel.set()  # the executor lets go; the job runs on
                elif running.ticket.phase == "plan":
                    # A plan changes nothing: stop it now, another agent plans it again.
                    running.handing_back = True
                    running.control.force.set()
        elif self._stop_requests == 2:
            log.info("stopping now: canceling the running jobs")
            for running in self._running.values():
                running.control.cancel.set()
        else:
            for running in self._running.values():
                running.control.force.set()
        self._slot_free.set()

    async def run(self) -> None:
        """Join, then claim and run jobs until a stop request; returns once every job has
        been reported. Raises :class:`~terrapod.agent.http.Unauthorized` when the server
        refuses to let the agent join."""
        try:
            try:
                joined = await self.listener.join()
            except Exception:
                self._count_failure("listener")
                raise
            if self._metrics is not None:
                self._metrics.last_heartbeat.set_to_current_time()
                self._metrics.info.info(
                    {
                        "agent_id": joined.agent_id,
                        "pool_id": joined.pool_id or "builtin",
                        "version": __version__,
                    }
                )
            beating = asyncio.create_task(self._listener_heartbeat(), name="listener heartbeat")
            try:
                await self._claim_until_stopped()
                while self._running:
                    tasks = [r.task for r in self._running.values() if r.task is not None]
                    await asyncio.wait(tasks)
            finally:
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
                await self.executor.aclose()
        finally:
            self._finished.set()
        if self._refused is not None:
            raise self._refused

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop from inside the process (``terrapod serve``'s shutdown): hand back the plans,
        cancel the applies, give them ``grace_seconds`` to end, then force them."""
        if not self._stop_requests:
            self.request_stop()
        if self._stop_requests < 2:
            self.request_stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), grace_seconds)
            return
        self.request_stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), grace_seconds)

    async def _claim_until_stopped(self) -> None:
        while not self._stopping.is_set():
            if len(self._running) >= self.concurrency:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                ticket = await self._next_job()
            except Unauthorized as exc:
                # The agent token was revoked or the pool deleted: finish what runs, then
                # end (run() raises it).
                log.error("the server refused the agent", error=str(exc))
                self._count_failure("listener")
                self._refused = exc
                self.request_stop()
                return
            except Exception as exc:  # noqa: BLE001 - one bad answer; the loop goes on
                log.warning("claiming a job failed", error=str(exc)[:300])
                self._count_failure("listener")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), _CLAIM_PAUSE_SECONDS)
                continue
            if ticket is not None:
                self._start(ticket)

    async def _next_job(self) -> JobTicket | None:
        if not self._abandon_poll:
            return await self.listener.next_job(self._poll_wait)
        poll = asyncio.create_task(self.listener.next_job(self._poll_wait))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not poll.done():
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return None
        return poll.result()

    def _start(self, ticket: JobTicket) -> None:
        running = _Running(ticket, JobControl())
        outlive = getattr(self.executor, "jobs_outlive_agent", False)
        if self._stopping.is_set() and ticket.phase == "plan" and not outlive:
            # Claimed by a long poll that was answered after the stop request.
            running.handing_back = True
            running.control.force.set()
        self._running[ticket.job_id] = running
        if self._metrics is not None:
            self._metrics.jobs_claimed.labels(ticket.phase).inc()
        running.task = asyncio.create_task(self._run_job(running), name=f"job {ticket.job_id}")

    async def _run_job(self, running: _Running) -> None:
        ticket = running.ticket
        log.info("job started", job=ticket.job_id, run=ticket.run_id, phase=ticket.phase)
        started = time.monotonic()
        if self._metrics is not None:
            self._metrics.jobs_running.inc()
        result: JobResult | None
        try:
            if running.handing_back:
                result = JobResult(outcome="canceled", error="handed back before it started")
            else:
                result = await self.executor.execute(ticket, running.control)
        except Exception as exc:
            log.exception("the executor failed", job=ticket.job_id)
            result = JobResult(outcome="errored", error=f"the agent failed: {type(exc).__name__}")
        outcome: str = "reported_by_job" if result is None else result.outcome
        reported = False
        try:
            job = self.listener.job(ticket)
            if result is not None and running.handing_back and result.outcome != "finished":
                outcome = "handed_back"
                await job.hand_back()
            elif result is not None:
                await job.finish(result)
            reported = True
        except Exception:
            log.exception("reporting a job's end failed", job=ticket.job_id)
            self._count_failure("job")
        finally:
            self._running.pop(ticket.job_id, None)
            self._slot_free.set()
            if self._metrics is not None:
                self._metrics.jobs_running.dec()
                self._metrics.job_duration.labels(ticket.phase, outcome).observe(
                    time.monotonic() - started
                )
                if reported:
                    self._metrics.jobs_reported.labels(outcome).inc()
        log.info("job ended", job=ticket.job_id, run=ticket.run_id, outcome=outcome)

    async def _listener_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.listener.heartbeat_seconds)
            try:
                await self.listener.heartbeat(
                    capacity=self.concurrency, active_jobs=len(self._running)
                )
                if self._metrics is not None:
                    self._metrics.last_heartbeat.set_to_current_time()
                if self.listener.renewal_due():
                    await self.listener.renew()
            except Exception as exc:  # noqa: BLE001 - a missed beat; the next one may do
                log.warning("listener heartbeat failed", error=str(exc)[:300])
                self._count_failure("listener")

    def _count_failure(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.server_calls_failed.labels(kind).inc()

    def _credential_expiry(self) -> float:
        """Read at a scrape: the credential changes on joins, renewals and heartbeats."""
        expires = self.listener.credential_expires_at
        return expires.timestamp() if expires is not None else 0.0


async def run_one_job(
    job: JobClient, executor: Executor, control: JobControl, *, handing_back: asyncio.Event
) -> str:
    """``terrapod agent run-job``: execute one ticket and report its end, as the loop would.
    ``handing_back`` is set (with ``control.force``) by the first SIGTERM of a plan job.
    Returns the outcome reported."""
    ticket = job.ticket
    try:
        result = await executor.execute(ticket, control)
    except Exception as exc:
        log.exception("the executor failed", job=ticket.job_id)
        result = JobResult(outcome="errored", error=f"the agent failed: {type(exc).__name__}")
    if result is None:
        return "reported by the job"
    if handing_back.is_set() and result.outcome != "finished":
        await job.hand_back()
        return "handed_back"
    await job.finish(result)
    return result.outcome
