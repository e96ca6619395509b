"""The in-process executor: the runner inside the agent process, speaking HTTP for its job.

Used by ``terrapod agent`` (the default executor), by the built-in agent of ``terrapod serve``
and by ``terrapod agent run-job`` (the command a Kubernetes pod runs). While the engine runs,
a second task long-polls the job heartbeat: it keeps the job alive on the server and brings
a cancel or force-cancel to the engine as soon as it is requested.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from terrapod.agent.http import (
    JOB_HEARTBEAT_WAIT_SECONDS,
    HttpJobIO,
    JobClient,
    JobGone,
    ProtocolError,
)
from terrapod.agent.ticket import JobTicket
from terrapod.observability.logging import get_logger
from terrapod.runner.engines import EngineResolver
from terrapod.runner.execute import discard_workdir, execute
from terrapod.runner.spec import JobControl, JobResult, JobSpec

log = get_logger("terrapod.agent")

# A planned run's directory is kept for its apply on this agent; one whose apply has not come
# for this long (discarded, applied elsewhere, never confirmed) is removed at the next job.
# An apply that comes later still works: it prepares a new directory.
KEEP_PLAN_SECONDS = 6 * 3600
# After the server answered "cancel" (it answers it at once from then on), or failed a
# heartbeat: the pause before the next one, so a pending cancel does not spin the loop.
_PAUSE_SECONDS = 1.0


class InProcessExecutor:
    """Runs claimed jobs with :func:`terrapod.runner.execute.execute` (see
    :mod:`terrapod.agent.executor` for the contract). Its engines are children of the agent
    process, so they end with it: at shutdown the loop hands their plans back."""

    def __init__(
        self,
        job_client: Callable[[JobTicket], JobClient],
        *,
        workdir_root: Path,
        engines: EngineResolver,
        heartbeat_wait: float = JOB_HEARTBEAT_WAIT_SECONDS,
        provider_mirror: Path | Literal["from-server"] | None = "from-server",
    ) -> None:
        """``provider_mirror``: the filesystem mirror of providers the engine uses. The
        built-in agent keeps the server's (``"from-server"``, in the spec); an agent on
        another machine uses its own, or none, since the server's path means nothing there."""
        self._provider_mirror = provider_mirror
        self._job_client = job_client
        self.workdir_root = workdir_root
        self._engines = engines
        self._heartbeat_wait = heartbeat_wait
        self._kept: dict[str, float] = {}
        """Run id -> when its plan left its directory behind."""

    jobs_outlive_agent = False

    async def execute(self, ticket: JobTicket, control: JobControl) -> JobResult:
        self._discard_stale(time.monotonic())
        job = self._job_client(ticket)
        alive = asyncio.create_task(
            self._keep_alive(job, control), name=f"job heartbeat {ticket.job_id}"
        )
        self._kept.pop(ticket.run_id, None)
        io = HttpJobIO(job, control)
        try:
            result = await execute(
                self._spec(ticket),
                io,
                control,
                workdir_root=self.workdir_root,
                engines=self._engines,
            )
        except Exception:
            with contextlib.suppress(Exception):
                await io.drain()
            raise
        else:
            await io.drain()  # the whole log before the job's end
            if ticket.phase == "plan" and result.outcome == "finished":
                self._kept[ticket.run_id] = time.monotonic()
            return result
        finally:
            alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await alive

    async def _keep_alive(self, job: JobClient, control: JobControl) -> None:
        while True:
            started = time.monotonic()
            try:
                verdict = await job.heartbeat(self._heartbeat_wait)
            except JobGone:
                # The server ended the job (force-cancel, a lost heartbeat, an agent that
                # was too long away): nothing this engine does counts any more.
                log.warning("the server ended the job; stopping its engine", job=job.ticket.job_id)
                control.force.set()
                return
            except ProtocolError as exc:
                log.warning("job heartbeat refused", job=job.ticket.job_id, status=exc.status)
                verdict = None
            if verdict == "force":
                control.force.set()
            elif verdict == "cancel":
                control.cancel.set()
            if verdict is not None or time.monotonic() - started < _PAUSE_SECONDS / 2:
                await asyncio.sleep(_PAUSE_SECONDS)

    def _spec(self, ticket: JobTicket) -> JobSpec:
        if self._provider_mirror == "from-server":
            return ticket.spec
        mirror = str(self._provider_mirror) if self._provider_mirror else None
        return dataclasses.replace(ticket.spec, provider_mirror=mirror)

    def discard(self, run_id: str) -> None:
        self._kept.pop(run_id, None)
        discard_workdir(self.workdir_root, run_id)

    def _discard_stale(self, now: float) -> None:
        for run_id, kept_at in list(self._kept.items()):
            if now - kept_at > KEEP_PLAN_SECONDS:
                self.discard(run_id)

    async def aclose(self) -> None:
        return None
