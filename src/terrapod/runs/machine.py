"""The run state machine: every status a run can have, and the only way to change it.

Statuses, operations, sources and status groups are TFE's (seeds/001_f222b4c78c2a08de.txt).
Every status change goes through :func:`move`, which refuses a transition the table below
does not allow and stamps ``status-timestamps``. The queue and the actions decide *which*
transition to make (terrapod.runs.service); this module only knows what is legal.

Statuses that belong to features Terrapod does not run (VCS fetching, cost estimation, Sentinel
policies) are listed so filters accept them and the table is TFE's; no transition leads into
them until those features arrive (docs/dev/run-lifecycle.md). Run task statuses are reached
through :func:`terrapod.runs.queue.enter_task_stage`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from terrapod.errors import Conflict
from terrapod.runs.models import Run
from terrapod.timefmt import iso

PENDING = "pending"
FETCHING = "fetching"
FETCHING_COMPLETED = "fetching_completed"
PRE_PLAN_RUNNING = "pre_plan_running"
PRE_PLAN_COMPLETED = "pre_plan_completed"
QUEUING = "queuing"
PLAN_QUEUED = "plan_queued"
PLANNING = "planning"
PLANNED = "planned"
COST_ESTIMATING = "cost_estimating"
COST_ESTIMATED = "cost_estimated"
POLICY_CHECKING = "policy_checking"
POLICY_OVERRIDE = "policy_override"
POLICY_SOFT_FAILED = "policy_soft_failed"
POLICY_CHECKED = "policy_checked"
CONFIRMED = "confirmed"
POST_PLAN_RUNNING = "post_plan_running"
POST_PLAN_COMPLETED = "post_plan_completed"
POST_PLAN_AWAITING_DECISION = "post_plan_awaiting_decision"
PRE_APPLY_RUNNING = "pre_apply_running"
PRE_APPLY_COMPLETED = "pre_apply_completed"
PLANNED_AND_FINISHED = "planned_and_finished"
PLANNED_AND_SAVED = "planned_and_saved"
APPLY_QUEUED = "apply_queued"
APPLYING = "applying"
APPLIED = "applied"
DISCARDED = "discarded"
ERRORED = "errored"
CANCELED = "canceled"
FORCE_CANCELED = "force_canceled"

STATUSES = (
    PENDING,
    FETCHING,
    FETCHING_COMPLETED,
    PRE_PLAN_RUNNING,
    PRE_PLAN_COMPLETED,
    QUEUING,
    PLAN_QUEUED,
    PLANNING,
    PLANNED,
    COST_ESTIMATING,
    COST_ESTIMATED,
    POLICY_CHECKING,
    POLICY_OVERRIDE,
    POLICY_SOFT_FAILED,
    POLICY_CHECKED,
    CONFIRMED,
    POST_PLAN_RUNNING,
    POST_PLAN_COMPLETED,
    POST_PLAN_AWAITING_DECISION,
    PRE_APPLY_RUNNING,
    PRE_APPLY_COMPLETED,
    PLANNED_AND_FINISHED,
    PLANNED_AND_SAVED,
    APPLY_QUEUED,
    APPLYING,
    APPLIED,
    DISCARDED,
    ERRORED,
    CANCELED,
    FORCE_CANCELED,
)

FINAL = frozenset(
    {
        PLANNED_AND_FINISHED,
        APPLIED,
        DISCARDED,
        ERRORED,
        CANCELED,
        FORCE_CANCELED,
        POLICY_SOFT_FAILED,
    }
)
NON_FINAL = frozenset(STATUSES) - FINAL
# TFE's "discardable" status group; discarding also works on pending runs (seed 001).
DISCARDABLE = frozenset(
    {
        PLANNED,
        PLANNED_AND_SAVED,
        COST_ESTIMATED,
        POLICY_CHECKED,
        POLICY_OVERRIDE,
        POST_PLAN_RUNNING,
        POST_PLAN_COMPLETED,
        POST_PLAN_AWAITING_DECISION,
    }
)
STATUS_GROUPS = {"non_final": NON_FINAL, "final": FINAL, "discardable": DISCARDABLE}
# Paused for a person to say "apply".
CONFIRMABLE = frozenset(
    {PLANNED, PLANNED_AND_SAVED, COST_ESTIMATED, POLICY_CHECKED, POST_PLAN_COMPLETED}
)
# Run task stages in progress (terrapod.runtasks): a cancel ends them at once.
TASK_STAGE_RUNNING = frozenset(
    {PRE_PLAN_RUNNING, POST_PLAN_RUNNING, PRE_APPLY_RUNNING, POST_PLAN_AWAITING_DECISION}
)
# Where a job is (or is about to be) running, so a cancel must reach an engine process.
EXECUTING = frozenset({PLANNING, APPLYING})
# Waiting for a turn or a worker: a cancel ends them at once.
WAITING = frozenset({PENDING, QUEUING, PLAN_QUEUED, CONFIRMED, APPLY_QUEUED})

OPERATIONS = ("plan_only", "plan_and_apply", "save_plan", "refresh_only", "destroy", "empty_apply")
SOURCES = (
    "tfe-ui",
    "tfe-api",
    "tfe-configuration-version",
    "terraform",
    "terraform+cloud",
    "tfe-run-trigger",  # queued by a run trigger (terrapod.runtriggers)
)

# status -> the statuses it may move to.
_NEXT: dict[str, frozenset[str]] = {
    PENDING: frozenset({PLAN_QUEUED, PRE_PLAN_RUNNING, DISCARDED, CANCELED, ERRORED}),
    # Run task stages (terrapod.runtasks; docs/dev/run-lifecycle.md, "Run tasks").
    PRE_PLAN_RUNNING: frozenset({PRE_PLAN_COMPLETED, ERRORED, CANCELED, DISCARDED}),
    PRE_PLAN_COMPLETED: frozenset({PLAN_QUEUED, ERRORED, CANCELED, DISCARDED}),
    POST_PLAN_RUNNING: frozenset(
        {POST_PLAN_COMPLETED, POST_PLAN_AWAITING_DECISION, ERRORED, CANCELED, DISCARDED}
    ),
    POST_PLAN_AWAITING_DECISION: frozenset({POST_PLAN_COMPLETED, ERRORED, CANCELED, DISCARDED}),
    POST_PLAN_COMPLETED: frozenset(
        {
            CONFIRMED,
            APPLY_QUEUED,
            PRE_APPLY_RUNNING,
            PLANNED_AND_FINISHED,
            PLANNED_AND_SAVED,
            DISCARDED,
            CANCELED,
            ERRORED,
        }
    ),
    PRE_APPLY_RUNNING: frozenset({PRE_APPLY_COMPLETED, ERRORED, CANCELED, DISCARDED}),
    PRE_APPLY_COMPLETED: frozenset({APPLY_QUEUED, ERRORED, CANCELED, DISCARDED}),
    PLAN_QUEUED: frozenset({PLANNING, CANCELED, ERRORED, DISCARDED}),
    PLANNING: frozenset(
        {
            # An agent that shuts down hands its plan back; another agent plans it again.
            PLAN_QUEUED,
            PLANNED,
            PLANNED_AND_FINISHED,
            PLANNED_AND_SAVED,
            ERRORED,
            CANCELED,
            FORCE_CANCELED,
            APPLY_QUEUED,
            POST_PLAN_RUNNING,
            PRE_APPLY_RUNNING,
        }
    ),
    PLANNED: frozenset({CONFIRMED, APPLY_QUEUED, DISCARDED, CANCELED, ERRORED}),
    PLANNED_AND_SAVED: frozenset({CONFIRMED, DISCARDED, ERRORED}),
    CONFIRMED: frozenset({APPLY_QUEUED, PRE_APPLY_RUNNING, CANCELED, DISCARDED, ERRORED}),
    APPLY_QUEUED: frozenset({APPLYING, CANCELED, ERRORED}),
    APPLYING: frozenset({APPLIED, ERRORED, CANCELED, FORCE_CANCELED}),
}


def can_move(current: str, new: str) -> bool:
    return new in _NEXT.get(current, frozenset())


def timestamp_key(status: str) -> str:
    """TFE's ``status-timestamps`` member for a status; ``pending`` is ``plan-queueable-at``."""
    if status == PENDING:
        return "plan-queueable-at"
    return status.replace("_", "-") + "-at"


def stamp(run: Run, status: str, now: datetime) -> None:
    # A new dict: SQLAlchemy only notices a JSON column change on assignment.
    run.status_timestamps = {**(run.status_timestamps or {}), timestamp_key(status): iso(now)}


def move(run: Run, new: str, now: datetime) -> None:
    """Move ``run`` to ``new``, or raise Conflict naming both statuses."""
    if not can_move(run.status, new):
        raise Conflict(f"run {run.id} cannot go from {run.status} to {new}")
    run.status = new
    stamp(run, new, now)


def operation(run: Run) -> str:
    """The run's operation (seed 001, "Run Operations")."""
    if run.plan_only:
        return "plan_only"
    if run.save_plan:
        return "save_plan"
    if run.refresh_only:
        return "refresh_only"
    if run.is_destroy:
        return "destroy"
    if run.allow_empty_apply:
        return "empty_apply"
    return "plan_and_apply"


def is_discardable(run: Run) -> bool:
    return (
        run.status in DISCARDABLE
        or run.status == PENDING
        or (run.status == CONFIRMED and run.save_plan)
    )


def is_cancelable(run: Run) -> bool:
    return (
        run.status in EXECUTING
        or run.status in (PLAN_QUEUED, APPLY_QUEUED)
        or (run.status in (PENDING, CONFIRMED))
        or run.status in TASK_STAGE_RUNNING
    )


def is_force_cancelable(run: Run, now: datetime | None = None) -> bool:
    return (
        run.status in EXECUTING
        and run.force_cancel_available_at is not None
        and (now or datetime.now(UTC)) >= run.force_cancel_available_at
    )
