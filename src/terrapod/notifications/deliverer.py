"""The background deliverer: sends the notifications the run hook queued.

Started in the application's lifespan, one per server process. It wakes when a transaction
that queued deliveries commits (the ``notifications`` topic of the event bus), when a retry
it scheduled is due, and every ``notifications.sweep_seconds`` in any case, which finds
deliveries whose wake-up was lost: queued by another process, or left by a process that
stopped before sending them (their claim's lease runs out and they are due again).

Each round claims up to ``notifications.concurrency`` due deliveries in one short
transaction, sends them concurrently with no transaction open, and records the outcomes in
another. Nothing here runs inside a run's transaction, so a slow or failing destination never
delays or fails a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from terrapod.config import Settings
from terrapod.crypto import SecretBox
from terrapod.db.base import utcnow
from terrapod.db.transactions import write_transaction
from terrapod.notifications import service
from terrapod.observability.logging import get_logger
from terrapod.outbound import Outcome

log = get_logger("terrapod.notifications")


class Deliverer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._settings = settings
        self._wake = asyncio.Event()
        # The monotonic time of the earliest retry this process scheduled (None: none).
        self._next_due: float | None = None

    def wake(self, _payload: dict[str, Any] | None = None) -> None:
        """Look for due deliveries now (an event-bus subscriber: cheap, never blocks)."""
        self._wake.set()

    async def run_forever(self) -> None:
        settings = self._settings.notifications
        while True:
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("notification round failed")
                busy = 0
            if busy:
                continue  # there may be more due right now
            wait = settings.sweep_seconds
            if self._next_due is not None:
                wait = max(0.0, min(wait, self._next_due - time.monotonic()))
                self._next_due = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()

    async def run_once(self) -> int:
        """One round: claim, send, record. Returns how many deliveries it handled."""
        settings = self._settings.notifications
        async with write_transaction(self._sessionmaker) as session:
            claimed = await service.claim_due(
                session,
                settings,
                limit=settings.concurrency,
                external_url=self._settings.external_url,
            )
        if not claimed:
            return 0
        results = await asyncio.gather(*(self._send(c) for c in claimed))
        async with write_transaction(self._sessionmaker) as session:
            for item, (outcome, sent_at) in zip(claimed, results, strict=True):
                verdict = await service.record_outcome(
                    session, settings, item, outcome, sent_at=sent_at
                )
                self._log(item, outcome, verdict)
                if verdict == "retry":
                    due = time.monotonic() + service.backoff(settings, item.attempts)
                    if self._next_due is None or due < self._next_due:
                        self._next_due = due
        return len(claimed)

    async def _send(self, item: service.Claimed) -> tuple[Outcome, Any]:
        sent_at = utcnow()
        try:
            outcome = await service.send(
                item.configuration, item.subject, self._box, self._settings.notifications
            )
        except Exception as exc:  # a bug, not the destination's fault: retried like one
            log.exception("notification send failed", configuration=item.configuration.id)
            outcome = Outcome(
                item.configuration.url or "",
                successful=False,
                code=None,
                body=f"internal error: {type(exc).__name__}",
            )
        return outcome, sent_at

    def _log(self, item: service.Claimed, outcome: Outcome, verdict: str) -> None:
        fields = {
            "configuration": item.configuration.id,
            "run": item.subject.run.id if item.subject.run else None,
            "trigger": item.subject.notification.trigger,
            "attempt": item.attempts,
            "code": outcome.code,
            "verdict": verdict,
        }
        if verdict == "delivered":
            log.info("notification delivered", **fields)
        elif verdict == "given-up":
            log.warning("notification given up", error=outcome.body[:200], **fields)
        else:
            log.info("notification not delivered", error=outcome.body[:200], **fields)
