"""The in-process event bus (DESIGN.md, "Events"): news is published only after the
transaction that made it commits.

A service calls :func:`publish_after_commit` inside its transaction; the session's owner runs
the queued publications once the commit succeeded (:func:`terrapod.db.hooks.run_after_commit`),
so a subscriber never hears of a change that was rolled back. Subscribers are cheap callbacks
(set an ``asyncio.Event``, put on a queue); anything slow runs in the subscriber's own task.

Topics:
  ``jobs``       a job was queued or a running job was asked to stop (wakes agents)
  ``run``        a run changed status; payload ``{"run_id", "workspace_id", "status"}``

A lost publication (a crash between commit and publish) is recovered by the periodic sweeps
of the agent and the queue, so nothing waits forever on a missed wake-up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.db.hooks import after_commit
from terrapod.observability.logging import get_logger

Subscriber = Callable[[dict[str, Any]], None]

log = get_logger("terrapod.events")


class EventBus:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, list[Subscriber]] = defaultdict(list)

    def subscribe(self, topic: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(payload)`` for every event on ``topic``; returns an unsubscribe."""
        self._subscribers[topic].append(callback)
        return lambda: self._subscribers[topic].remove(callback)

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers[topic])

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        for callback in list(self._subscribers[topic]):
            try:
                callback(payload)
            except Exception:
                log.exception("event subscriber failed", topic=topic)


def publish_after_commit(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    """Publish on the session's bus once its transaction has committed."""
    bus: EventBus | None = session.info.get("events")
    if bus is None:
        return

    async def _publish() -> None:
        bus.publish(topic, payload)

    after_commit(session, _publish)
