"""Notification configurations and deliveries

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import terrapod.db.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_configurations",
        sa.Column("id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("workspace_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("destination_type", sa.String(length=20), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("token_encrypted", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("triggers_text", sa.Text(), nullable=False),
        sa.Column("email_addresses", sa.JSON(), nullable=False),
        sa.Column("delivery_responses", sa.JSON(), nullable=False),
        sa.Column("base_url", sa.String(length=2048), nullable=True),
        sa.Column("created_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_notification_configurations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_configurations")),
    )
    op.create_index(
        op.f("ix_notification_configurations_workspace_id"),
        "notification_configurations",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "notification_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("configuration_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("run_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("triggers_text", sa.String(length=255), nullable=False),
        sa.Column("run_status", sa.String(length=32), nullable=False),
        sa.Column("run_updated_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["notification_configurations.id"],
            name=op.f("fk_notification_deliveries_configuration_id_notification_configurations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_notification_deliveries_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    op.create_index(
        op.f("ix_notification_deliveries_configuration_id"),
        "notification_deliveries",
        ["configuration_id"],
        unique=False,
    )
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_notification_deliveries_due", table_name="notification_deliveries")
    op.drop_index(
        op.f("ix_notification_deliveries_configuration_id"), table_name="notification_deliveries"
    )
    op.drop_table("notification_deliveries")
    op.drop_index(
        op.f("ix_notification_configurations_workspace_id"),
        table_name="notification_configurations",
    )
    op.drop_table("notification_configurations")
