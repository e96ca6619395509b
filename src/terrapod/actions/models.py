"""Terraform actions of a workspace and the invocations of its runs (seed 002).

An action is a workspace's ``action`` block, found in a plan, keyed by its module and address
(``action.<type>.<name>``, without an instance key); it stays once seen, as HCP Terraform
keeps listing actions that a later configuration dropped. An invocation is one planned call
of one action instance in one run: ``direct`` (``terraform apply -invoke``) or ``lifecycle``
(a resource's ``action_trigger``), with its final status once the apply has run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, Timestamps, UTCDateTime

# The root module's module address on the wire (seed 002, filter[module_address]).
ROOT_MODULE = "system:root_module"


class TerraformAction(Timestamps, Base):
    __tablename__ = "terraform_actions"
    __table_args__ = (UniqueConstraint("workspace_id", "module_address", "address"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    # "system:root_module" or "module.a.module.b".
    module_address: Mapped[str] = mapped_column(String(1024), nullable=False)
    address: Mapped[str] = mapped_column(String(1024), nullable=False)
    provider: Mapped[str] = mapped_column(String(255), nullable=False)
    # single | count | for_each
    instance_type: Mapped[str] = mapped_column(String(16), nullable=False, default="single")
    count_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    for_each_values: Mapped[list[str] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    # The newest invocation (by invoked-at, else by creation) and when it was invoked; kept
    # here so the list filters and serializes without a query per action. No foreign key:
    # the two tables would reference each other.
    last_invocation_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    last_invoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ActionInvocation(Timestamps, Base):
    __tablename__ = "terraform_action_invocations"
    __table_args__ = (
        # The run summaries and a run's invocations of one action.
        Index("ix_terraform_action_invocations_action_run", "action_id", "run_id", "position"),
        UniqueConstraint("run_id", "match_key"),
    )

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    action_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("terraform_actions.id", ondelete="CASCADE"), nullable=False
    )
    run_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # The engine's identity of the invocation in both phases (terrapod.runner.actions).
    match_key: Mapped[str] = mapped_column(Text, nullable=False)
    # direct | lifecycle
    invocation_method: Mapped[str] = mapped_column(String(16), nullable=False)
    # The instance key: a number (count), a string (for_each) or None.
    action_key: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    # BeforeCreate | AfterCreate | BeforeUpdate | AfterUpdate (lifecycle only)
    action_trigger_event: Mapped[str | None] = mapped_column(String(32), nullable=True)
    triggering_resource_address: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    action_trigger_block_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actions_list_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # None while planned; successful | failed | not_invoked once the apply has ended.
    final_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The plan's order, then the apply's order of starts (execution order).
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    invoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    messages: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
