"""Runs, their plan and apply phases, the jobs agents execute, events and streamed logs.

A run's ``status`` changes only through :mod:`terrapod.runs.machine`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_ws_created", "workspace_id", "created_at"),
        Index("ix_runs_org_created", "organization_id", "created_at"),
        Index("ix_runs_ws_status", "workspace_id", "status"),
    )

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    organization_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    configuration_version_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("configuration_versions.id", ondelete="SET NULL"), nullable=True
    )
    created_by_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    # {"<status>-at": ISO timestamp} for every status the run has been in (TFE's shape).
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(40), nullable=False)
    trigger_reason: Mapped[str] = mapped_column(String(40), nullable=False, default="manual")
    is_destroy: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    refresh: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    refresh_only: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    replace_addrs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    target_addrs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # terraform apply -invoke=<address>: the actions the run invokes (Terraform actions).
    invoke_action_addrs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Run-specific variables: [{"key": ..., "value": <HCL literal>}].
    variables: Mapped[list[dict[str, str]]] = mapped_column(JSON, nullable=False, default=list)
    plan_only: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    save_plan: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    auto_apply: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    allow_empty_apply: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    allow_config_generation: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    debugging_mode: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_drift_detection: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    terraform_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    has_changes: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    plan_id: Mapped[str] = mapped_column(IdColumn(), nullable=False, unique=True)
    apply_id: Mapped[str] = mapped_column(IdColumn(), nullable=False, unique=True)
    input_state_version_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    # Cancel requested (by whom and when); force-cancel is possible from the second time on.
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    force_cancel_available_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    confirmed_by_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    # The run a retry was made from, and the run that triggered this one (run triggers).
    retry_of_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    # Plain ids, no foreign keys: the history outlives the source run and its workspace.
    triggered_by_run_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    triggered_by_workspace_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class _Phase:
    """Columns shared by plans and applies (TFE's plan/apply resources)."""

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    # pending | managed_queued | queued | running | finished | errored | canceled | unreachable
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    resource_additions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    resource_changes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    resource_destructions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    resource_imports: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Bytes of log written so far (STX and ETX included); the log reader serves by offset.
    log_length: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # The finished log lives in the object store and its chunks are gone from the database.
    log_archived: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class Plan(_Phase, Base):
    __tablename__ = "plans"

    run_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    has_changes: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # The binary plan, its JSON and redacted JSON are in the object store.
    has_plan_file: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    generated_configuration: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Apply(_Phase, Base):
    __tablename__ = "applies"

    run_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, unique=True
    )


class RunEvent(Base):
    """One entry of a run's timeline (``GET /runs/:id/run-events``)."""

    __tablename__ = "run_events"

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class LogChunk(Base):
    """Part of a running phase's log, appended as the engine writes it. Once the phase ends
    the whole log moves to the object store and its chunks are deleted."""

    __tablename__ = "log_chunks"

    phase_id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    end: Mapped[int] = mapped_column(BigInteger, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Job(Base):
    """One phase of a run for an agent to execute; claimed by exactly one agent."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_pool_status_created", "pool_id", "status", "created_at"),
        # A claim key claims at most one job per agent (docs/dev/agents.md, "Claim keys"):
        # two requests of one poll that claim at once cannot both take a job.
        Index("ux_jobs_agent_claim_key", "agent_id", "claim_key", unique=True),
    )

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    phase: Mapped[str] = mapped_column(String(10), nullable=False)  # plan | apply
    # queued -> running -> finished | errored | canceled
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    # The agent pool whose agents may claim the job (the workspace's pool when its execution
    # mode is agent); NULL: the servers' built-in agents. Fixed when the job is queued.
    pool_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    # The agent (agents.id) that claimed it.
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # None, "cancel" (SIGINT) or "force" (SIGKILL): what the agent must do next heartbeat.
    cancel_requested: Mapped[str | None] = mapped_column(String(10), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The agent's key for the runs/next poll that claimed the job, and the highest attempt
    # (retry) of that poll answered with it: a retry whose answer was lost gets the job again.
    claim_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claim_attempt: Mapped[int | None] = mapped_column(Integer(), nullable=True)
