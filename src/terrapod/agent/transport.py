"""What an agent needs from the server, as one protocol (DESIGN.md: "runner + agent").

The built-in agent inside ``terrapod serve`` uses :class:`terrapod.agent.local.LocalTransport`,
which calls the services directly. A ``terrapod agent`` on another machine will implement the
same protocol over the listener API (seed 003: join, heartbeat, runs/next, status updates),
so :mod:`terrapod.agent.loop` and :mod:`terrapod.runner` do not change when agents move out of
the server process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from terrapod.runner.spec import JobResult, JobSpec


class AgentTransport(Protocol):
    async def claim(self, agent_id: str) -> JobSpec | None:
        """The next queued job, now owned by ``agent_id``; None when there is none."""

    async def heartbeat(self, spec: JobSpec, agent_id: str) -> str | None:
        """Still running. Returns None, "cancel" (send SIGINT) or "force" (SIGKILL)."""

    async def write_log(self, spec: JobSpec, data: bytes) -> bool:
        """Append to the phase's log; False when the phase no longer accepts output."""

    async def fetch_configuration(self, spec: JobSpec, dest: Path) -> None: ...

    async def fetch_state(self, spec: JobSpec) -> bytes | None: ...

    async def fetch_plan_file(self, spec: JobSpec, dest: Path) -> None: ...

    async def persist_state(self, spec: JobSpec, raw: bytes) -> None: ...

    async def store_plan(
        self, spec: JobSpec, plan_file: Path, plan_json: bytes, redacted_json: bytes
    ) -> None: ...

    async def finish(self, spec: JobSpec, agent_id: str, result: JobResult) -> None:
        """Report the job's end; the server moves the run on."""
