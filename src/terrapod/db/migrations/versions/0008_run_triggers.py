"""Run triggers

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import terrapod.db.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_triggers",
        sa.Column("id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("workspace_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("sourceable_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("created_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sourceable_id"],
            ["workspaces.id"],
            name=op.f("fk_run_triggers_sourceable_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_run_triggers_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_triggers")),
        sa.UniqueConstraint(
            "workspace_id", "sourceable_id", name=op.f("uq_run_triggers_workspace_id_sourceable_id")
        ),
    )
    with op.batch_alter_table("run_triggers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_run_triggers_sourceable_id"), ["sourceable_id"], unique=False
        )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("triggered_by_run_id", terrapod.db.base.IdColumn(length=40), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "triggered_by_workspace_id", terrapod.db.base.IdColumn(length=40), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("triggered_by_workspace_id")
        batch_op.drop_column("triggered_by_run_id")
    with op.batch_alter_table("run_triggers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_triggers_sourceable_id"))
    op.drop_table("run_triggers")
