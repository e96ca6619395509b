"""Variable sets

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import terrapod.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "variable_sets",
        sa.Column("id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("organization_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("is_global", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Boolean(), nullable=False),
        sa.Column("created_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_variable_sets_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variable_sets")),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_variable_sets_organization_id_name")
        ),
    )
    op.create_table(
        "variable_set_variables",
        sa.Column("id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("varset_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("hcl", sa.Boolean(), nullable=False),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("value_encrypted", sa.Text(), nullable=True),
        sa.Column("version_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", terrapod.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["varset_id"],
            ["variable_sets.id"],
            name=op.f("fk_variable_set_variables_varset_id_variable_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variable_set_variables")),
        sa.UniqueConstraint(
            "varset_id",
            "category",
            "key",
            name=op.f("uq_variable_set_variables_varset_id_category_key"),
        ),
    )
    op.create_table(
        "variable_set_workspaces",
        sa.Column("varset_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.Column("workspace_id", terrapod.db.base.IdColumn(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["varset_id"],
            ["variable_sets.id"],
            name=op.f("fk_variable_set_workspaces_varset_id_variable_sets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_variable_set_workspaces_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "varset_id", "workspace_id", name=op.f("pk_variable_set_workspaces")
        ),
    )
    with op.batch_alter_table("variable_set_workspaces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_variable_set_workspaces_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("variable_set_workspaces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_variable_set_workspaces_workspace_id"))
    op.drop_table("variable_set_workspaces")
    op.drop_table("variable_set_variables")
    op.drop_table("variable_sets")
