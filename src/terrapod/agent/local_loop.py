"""The agent loop: claim jobs up to a concurrency, run each with the runner, report back.

The same loop serves the built-in agent (with :class:`~terrapod.agent.local.LocalTransport`)
and, later, ``terrapod agent`` processes elsewhere. While a job runs, a heartbeat tells the
server the agent is alive and brings back cancel requests; :meth:`Agent.signal` is the fast
path the built-in agent gets from the event bus, so a cancel reaches the engine at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from terrapod.agent.transport import AgentTransport
from terrapod.observability.logging import get_logger
from terrapod.observability.metrics import Metrics
from terrapod.runner.engines import EngineResolver
from terrapod.runner.spec import JobControl, JobResult, JobSpec

log = get_logger("terrapod.agent")


@dataclass
class _Running:
    spec: JobSpec
    control: JobControl
    task: asyncio.Task[None] = field(repr=False)


class _IO:
    """The runner's view of one job (``terrapod.runner.spec.JobIO``)."""

    def __init__(self, transport: AgentTransport, spec: JobSpec, control: JobControl) -> None:
        self._transport = transport
        self._spec = spec
        self._control = control

    async def fetch_configuration(self, dest: Path) -> None:
        await self._transport.fetch_configuration(self._spec, dest)

    async def fetch_state(self) -> bytes | None:
        return await self._transport.fetch_state(self._spec)

    async def fetch_plan_file(self, dest: Path) -> None:
        await self._transport.fetch_plan_file(self._spec, dest)

    async def write_log(self, data: bytes) -> None:
        if not await self._transport.write_log(self._spec, data):
            # The server ended the phase (force-cancel, lost heartbeat): stop the engine.
            self._control.force.set()

    async def persist_state(self, raw: bytes) -> None:
        await self._transport.persist_state(self._spec, raw)

    async def store_plan(self, plan_file: Path, plan_json: bytes, redacted_json: bytes) -> None:
        await self._transport.store_plan(self._spec, plan_file, plan_json, redacted_json)


class Agent:
    def __init__(
        self,
        transport: AgentTransport,
        *,
        agent_id: str,
        concurrency: int,
        workdir_root: Path,
        engines: EngineResolver,
        heartbeat_seconds: float = 2.0,
        poll_seconds: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.agent_id = agent_id
        self._transport = transport
        self._concurrency = concurrency
        self._workdir_root = workdir_root
        self._engines = engines
        self._heartbeat_seconds = heartbeat_seconds
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._stopping = False
        self._metrics = metrics

    @property
    def workdir_root(self) -> Path:
        return self._workdir_root

    def wake(self) -> None:
        """New work may be queued: look now instead of at the next poll."""
        self._wake.set()

    def signal(self, run_id: str, kind: str) -> None:
        """Deliver a cancel ("cancel") or force-cancel ("force") for a run's running job."""
        for running in self._running.values():
            if running.spec.run_id == run_id:
                (running.control.force if kind == "force" else running.control.cancel).set()

    def forget_run(self, run_id: str) -> None:
        """A run ended without its apply: drop the plan directory kept for it."""
        from terrapod.runner.execute import discard_workdir

        if not any(r.spec.run_id == run_id for r in self._running.values()):
            discard_workdir(self._workdir_root, run_id)

    async def run_forever(self) -> None:
        self._workdir_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        while not self._stopping:
            self._wake.clear()
            await self._claim_what_fits()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    async def _claim_what_fits(self) -> None:
        while len(self._running) < self._concurrency and not self._stopping:
            try:
                spec = await self._transport.claim(self.agent_id)
            except Exception:
                log.exception("claiming a job failed")
                return
            if spec is None:
                return
            control = JobControl()
            task = asyncio.create_task(self._run(spec, control), name=f"job {spec.job_id}")
            self._running[spec.job_id] = _Running(spec, control, task)

    async def _run(self, spec: JobSpec, control: JobControl) -> None:
        log.info("job started", job=spec.job_id, run=spec.run_id, phase=spec.phase)
        started = time.monotonic()
        if self._metrics is not None:
            self._metrics.agent_jobs_running.inc()
        from terrapod.runner.execute import execute

        beating = asyncio.create_task(self._heartbeat(spec, control))
        try:
            result = await execute(
                spec,
                _IO(self._transport, spec, control),
                control,
                workdir_root=self._workdir_root,
                engines=self._engines,
            )
        except Exception as exc:
            log.exception("job failed in the agent", job=spec.job_id)
            result = JobResult(outcome="errored", error=f"the agent failed: {type(exc).__name__}")
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        try:
            await self._transport.finish(spec, self.agent_id, result)
        except Exception:
            log.exception("reporting a job's end failed", job=spec.job_id)
        finally:
            self._running.pop(spec.job_id, None)
            self._wake.set()
            if self._metrics is not None:
                self._metrics.agent_jobs_running.dec()
                self._metrics.agent_job_duration.labels(spec.phase, result.outcome).observe(
                    time.monotonic() - started
                )
        log.info("job ended", job=spec.job_id, run=spec.run_id, outcome=result.outcome)

    async def _heartbeat(self, spec: JobSpec, control: JobControl) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                verdict = await self._transport.heartbeat(spec, self.agent_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the job goes on
                log.warning("heartbeat failed", job=spec.job_id)
                continue
            if verdict == "cancel":
                control.cancel.set()
            elif verdict == "force":
                control.force.set()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; interrupt running engines and wait for them to report."""
        self._stopping = True
        self._wake.set()
        for running in self._running.values():
            running.control.cancel.set()
        tasks = [r.task for r in self._running.values()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for running in self._running.values():
            running.control.force.set()
        if pending:
            await asyncio.wait(pending, timeout=grace_seconds)
