"""Workspaces, their tags, and who may read their state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, Timestamps, UTCDateTime


class Workspace(Base, Timestamps):
    __tablename__ = "workspaces"
    __table_args__ = (
        # Also serves every page of a list (ordered by name inside one organization).
        UniqueConstraint("organization_id", "name"),
        # Names are unique regardless of case (as in TFE); this index makes the check an
        # index lookup and closes the race between two creates of "App" and "app".
        Index(
            "uq_workspaces_org_lower_name", "organization_id", func.lower(text("name")), unique=True
        ),
    )

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(90), nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    auto_apply: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    auto_apply_run_trigger: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    allow_destroy_plan: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    execution_mode: Mapped[str] = mapped_column(String(10), default="remote", nullable=False)
    terraform_version: Mapped[str] = mapped_column(String(64), default="latest", nullable=False)
    working_directory: Mapped[str | None] = mapped_column(String(255), nullable=True)
    global_remote_state: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    structured_run_output_enabled: Mapped[bool] = mapped_column(
        Boolean, default=True, nullable=False
    )
    speculative_enabled: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    queue_all_runs: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    file_triggers_enabled: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    trigger_prefixes: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    trigger_patterns: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    source_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    resource_cpu: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resource_memory: Mapped[str | None] = mapped_column(String(32), nullable=True)
    agent_pool_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    # Who created it: that user administers it whatever their organization role.
    created_by_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )

    # The lock. Exactly one holder at a time: taking it is one conditional UPDATE.
    locked: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    locked_by_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    locked_by_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lock_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    current_state_version_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    resource_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    latest_change_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The run holding (or that last held) the workspace, and the newest run (the runs domain
    # sets both; this domain only shows them).
    current_run_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    latest_run_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)


class WorkspaceTag(Base):
    """A flat tag (``tag-names``); the ``cloud {}`` block selects workspaces by these."""

    __tablename__ = "workspace_tags"

    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class RemoteStateConsumer(Base):
    """``consumer_id`` may read the outputs of ``workspace_id`` (explicit state sharing)."""

    __tablename__ = "remote_state_consumers"

    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    consumer_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )
