"""How a claimed job is executed: the interface between the agent loop and its executors.

The loop (:mod:`terrapod.agent.loop`) is the listener: it joins, claims jobs up to its
capacity, beats the listener heartbeat and shuts down. What happens to one claimed job is an
executor's business:

- :class:`terrapod.agent.inprocess.InProcessExecutor` runs the runner inside the agent
  process (``terrapod agent``, the built-in agent of ``terrapod serve``, and
  ``terrapod agent run-job`` in a Kubernetes pod);
- ``terrapod.agent.kubernetes`` launches a pod that runs ``terrapod agent run-job`` and
  speaks the job routes itself.

The contract, for every executor:

1. ``execute`` keeps the job alive on the server (the job heartbeat of docs/dev/agents.md,
   ``POST …/runs/{run}/heartbeat``, with the ticket's run token) for as long as the job runs,
   and passes the cancel requests it answers with on to the engine.
2. It returns the job's :class:`~terrapod.runner.spec.JobResult` for the loop to report with
   the final ``PATCH``, or ``None`` when the job reported its own end (a pod running
   ``run-job`` does). It does not raise for a job that failed: a failure is a result
   (``errored``). An exception means the executor itself broke; the loop reports the job
   ``errored`` with the exception's type as the reason.
3. ``control`` is the loop's way in. At shutdown the loop sets ``control.force`` on the plan
   jobs it gives up (a plan changes nothing, so it is stopped at once rather than waited
   for); ``execute`` must then stop the job and return soon, and unless the job had
   finished, the loop reports ``handed_back`` instead of its result (the job is queued again
   for another agent). On a second signal the loop sets ``control.cancel`` on every job (the
   engine gets SIGINT and still saves state), and ``control.force`` on a third.
   An executor whose jobs do not need the agent process (a pod reports its own end) sets the
   class attribute ``jobs_outlive_agent = True``: at the first signal the loop then sets
   ``control.cancel`` on every job instead, and ``execute`` returns ``None`` at once, leaving
   the job to run and report by itself.
4. It never logs the run token, a variable's value or a signed URL's token.
"""

from __future__ import annotations

from typing import Protocol

from terrapod.agent.ticket import JobTicket
from terrapod.runner.spec import JobControl, JobResult


class Executor(Protocol):
    async def execute(self, ticket: JobTicket, control: JobControl) -> JobResult | None:
        """Run one claimed job to its end (see the module's contract)."""

    def discard(self, run_id: str) -> None:
        """A run ended without its apply: drop what was kept for it (the in-process
        executor keeps a planned run's directory for its apply). May do nothing."""

    async def aclose(self) -> None:
        """The agent is stopping and every ``execute`` has returned: release resources."""
