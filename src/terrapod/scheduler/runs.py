"""Periodic run housekeeping: nothing waits forever on a lost wake-up or a dead agent.

Every few seconds: runs whose agent stopped heartbeating end errored (their workspace is
released and the next run starts), workspaces with waiting runs are advanced (recovering a
publication lost between commit and publish), and logs of ended phases that were not yet
moved to the object store are archived. Logs are also archived as soon as a phase ends
(the ``logs`` topic). With several server replicas every replica runs this; each step is
safe to run concurrently (conditional updates, ``SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from terrapod.db.transactions import write_transaction
from terrapod.observability.logging import get_logger
from terrapod.runs import jobs, logs, queue
from terrapod.storage.base import ObjectStore

log = get_logger("terrapod.scheduler")


class RunHousekeeping:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        *,
        heartbeat_timeout: timedelta,
        interval_seconds: float = 5.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._store = store
        self._timeout = heartbeat_timeout
        self._interval = interval_seconds
        self._tasks: set[asyncio.Task[Any]] = set()

    def _tx(self) -> AbstractAsyncContextManager[AsyncSession]:
        return write_transaction(self._sessionmaker)

    async def run_forever(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self._interval)

    async def sweep(self) -> None:
        for step in (self._fail_stale, self._advance_waiting, self._archive_leftovers):
            try:
                await step()
            except Exception:
                log.exception("run housekeeping step failed", step=step.__name__)

    async def _fail_stale(self) -> None:
        async with self._tx() as session:
            ended = await jobs.fail_stale_jobs(session, self._timeout)
        if ended:
            log.warning("runs failed after their agent stopped heartbeating", runs=ended)

    async def _advance_waiting(self) -> None:
        async with self._sessionmaker() as session:
            waiting = await queue.workspaces_waiting(session)
        for workspace_id in waiting:
            async with self._tx() as session:
                await queue.advance(session, workspace_id)

    async def _archive_leftovers(self) -> None:
        async with self._sessionmaker() as session:
            phase_ids = await logs.unarchived(session)
        for phase_id in phase_ids:
            await self.archive(phase_id)

    async def archive(self, phase_id: str) -> None:
        async with self._tx() as session:
            await logs.archive(session, self._store, phase_id)

    def on_log_closed(self, payload: dict[str, Any]) -> None:
        """Event-bus subscriber: archive a phase's log in the background as it ends."""
        self._spawn(lambda: self.archive(str(payload["phase_id"])))

    def _spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            try:
                await work()
            except Exception:
                log.exception("background run work failed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until the background work started so far (log archiving) is done."""
        while pending := [task for task in self._tasks if not task.done()]:
            await asyncio.wait(pending)
