"""Run tasks, task stages and task results

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import terrapod.db.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _id() -> terrapod.db.base.IdColumn:
    return terrapod.db.base.IdColumn(length=40)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", terrapod.db.base.UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "run_tasks",
        sa.Column("id", _id(), nullable=False),
        sa.Column("organization_id", _id(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=True),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("hmac_key_encrypted", sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_run_tasks_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_tasks")),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_run_tasks_organization_id_name")
        ),
    )
    op.create_table(
        "workspace_tasks",
        sa.Column("id", _id(), nullable=False),
        sa.Column("workspace_id", _id(), nullable=False),
        sa.Column("task_id", _id(), nullable=False),
        sa.Column("enforcement_level", sa.String(length=20), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["run_tasks.id"],
            name=op.f("fk_workspace_tasks_task_id_run_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_tasks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_tasks")),
        sa.UniqueConstraint(
            "workspace_id", "task_id", name=op.f("uq_workspace_tasks_workspace_id_task_id")
        ),
    )
    with op.batch_alter_table("workspace_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workspace_tasks_task_id"), ["task_id"], unique=False)

    op.create_table(
        "task_stages",
        sa.Column("id", _id(), nullable=False),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_timestamps", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_task_stages_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_stages")),
        sa.UniqueConstraint("run_id", "stage", name=op.f("uq_task_stages_run_id_stage")),
    )
    op.create_table(
        "task_results",
        sa.Column("id", _id(), nullable=False),
        sa.Column("task_stage_id", _id(), nullable=False),
        sa.Column("task_id", _id(), nullable=True),
        sa.Column("workspace_task_id", _id(), nullable=True),
        sa.Column("task_name", sa.String(length=128), nullable=False),
        sa.Column("task_url", sa.String(length=2048), nullable=False),
        sa.Column("enforcement_level", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("outcomes", sa.JSON(), nullable=True),
        sa.Column("status_timestamps", sa.JSON(), nullable=False),
        sa.Column("access_token_hash", sa.String(length=64), nullable=True),
        sa.Column("callback_deadline", terrapod.db.base.UTCDateTime(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["run_tasks.id"],
            name=op.f("fk_task_results_task_id_run_tasks"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["task_stage_id"],
            ["task_stages.id"],
            name=op.f("fk_task_results_task_stage_id_task_stages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_task_id"],
            ["workspace_tasks.id"],
            name=op.f("fk_task_results_workspace_task_id_workspace_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_results")),
    )
    with op.batch_alter_table("task_results", schema=None) as batch_op:
        batch_op.create_index("ix_task_results_stage", ["task_stage_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_results_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_results_status"))
        batch_op.drop_index("ix_task_results_stage")
    op.drop_table("task_results")
    op.drop_table("task_stages")
    with op.batch_alter_table("workspace_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workspace_tasks_task_id"))
    op.drop_table("workspace_tasks")
    op.drop_table("run_tasks")
