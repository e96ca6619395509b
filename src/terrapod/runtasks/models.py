"""Run tasks: an organization's tasks (external services), their attachment to workspaces, and
each run's task stages and task results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow

PRE_PLAN = "pre_plan"
POST_PLAN = "post_plan"
PRE_APPLY = "pre_apply"
# In the order a run passes them. (TFE also has post_apply, which Terrapod does not run.)
STAGES = (PRE_PLAN, POST_PLAN, PRE_APPLY)

ADVISORY = "advisory"
MANDATORY = "mandatory"
ENFORCEMENT_LEVELS = (ADVISORY, MANDATORY)

# Task stage statuses (go-tfe TaskStageStatus).
STAGE_PENDING = "pending"
STAGE_RUNNING = "running"
STAGE_PASSED = "passed"
STAGE_FAILED = "failed"
STAGE_AWAITING_OVERRIDE = "awaiting_override"
STAGE_CANCELED = "canceled"
STAGE_ERRORED = "errored"
STAGE_UNREACHABLE = "unreachable"
STAGE_OPEN = (STAGE_PENDING, STAGE_RUNNING, STAGE_AWAITING_OVERRIDE)

# Task result statuses (go-tfe TaskResultStatus).
RESULT_PENDING = "pending"
RESULT_RUNNING = "running"
RESULT_PASSED = "passed"
RESULT_FAILED = "failed"
RESULT_ERRORED = "errored"
RESULT_UNREACHABLE = "unreachable"
RESULT_OPEN = (RESULT_PENDING, RESULT_RUNNING)


class RunTask(Base):
    """An organization's run task: a service the server calls at run stages."""

    __tablename__ = "run_tasks"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    category: Mapped[str] = mapped_column(String(20), nullable=False, default="task")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # SecretBox ciphertext of the HMAC key, bound to the task's id; None: requests unsigned.
    hmac_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class WorkspaceTask(Base):
    """A run task attached to a workspace, with its enforcement level and stages."""

    __tablename__ = "workspace_tasks"
    __table_args__ = (UniqueConstraint("workspace_id", "task_id"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    task_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("run_tasks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    enforcement_level: Mapped[str] = mapped_column(String(20), nullable=False)
    # The stages it runs at (a list of STAGES members, at least one).
    stages: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class TaskStage(Base):
    """One stage of one run, made when the run is created (the CLI reads them once, then)."""

    __tablename__ = "task_stages"
    __table_args__ = (UniqueConstraint("run_id", "stage"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    stage: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class TaskResult(Base):
    """What one task said about one stage of one run. The task's name, URL and enforcement
    level are copied in, so the result still reads right after the task changes or goes."""

    __tablename__ = "task_results"
    __table_args__ = (Index("ix_task_results_stage", "task_stage_id"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    task_stage_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("task_stages.id", ondelete="CASCADE"), nullable=False
    )
    task_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("run_tasks.id", ondelete="SET NULL"), nullable=True
    )
    workspace_task_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("workspace_tasks.id", ondelete="SET NULL"), nullable=True
    )
    task_name: Mapped[str] = mapped_column(String(128), nullable=False)
    task_url: Mapped[str] = mapped_column(String(2048), nullable=False)
    enforcement_level: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    outcomes: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # SHA-256 of the callback's access token (the token itself exists only in the request
    # sent to the service); None until the request is sent, and again once the result is in.
    access_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # When a sent request's result must be in; past it the result is errored.
    callback_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
