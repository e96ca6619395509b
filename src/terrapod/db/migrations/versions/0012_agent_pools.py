"""Agent pools, agents (listeners), agent and run tokens, jobs.pool_id

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 14:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import terrapod.db.base

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = terrapod.db.base.IdColumn
When = terrapod.db.base.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "agent_pools",
        sa.Column("id", Id(length=40), nullable=False),
        sa.Column("organization_id", Id(length=40), nullable=False),
        sa.Column("name", sa.String(length=90), nullable=False),
        sa.Column("organization_scoped", sa.Boolean(), nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_agent_pools_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pools")),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_agent_pools_organization_id_name")
        ),
    )
    op.create_table(
        "agent_pool_allowed_workspaces",
        sa.Column("pool_id", Id(length=40), nullable=False),
        sa.Column("workspace_id", Id(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools.id"],
            name=op.f("fk_agent_pool_allowed_workspaces_pool_id_agent_pools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_agent_pool_allowed_workspaces_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "pool_id", "workspace_id", name=op.f("pk_agent_pool_allowed_workspaces")
        ),
    )
    with op.batch_alter_table("agent_pool_allowed_workspaces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_pool_allowed_workspaces_workspace_id"),
            ["workspace_id"],
            unique=False,
        )
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_pool_id", Id(length=40), nullable=True))
        batch_op.add_column(sa.Column("run_id", Id(length=40), nullable=True))
        batch_op.add_column(sa.Column("workspace_id", Id(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_auth_tokens_agent_pool_id"), ["agent_pool_id"])
        batch_op.create_index(batch_op.f("ix_auth_tokens_run_id"), ["run_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_auth_tokens_agent_pool_id_agent_pools"),
            "agent_pools",
            ["agent_pool_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_auth_tokens_run_id_runs"), "runs", ["run_id"], ["id"], ondelete="CASCADE"
        )
    op.create_table(
        "agents",
        sa.Column("id", Id(length=40), nullable=False),
        sa.Column("pool_id", Id(length=40), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("token_id", Id(length=40), nullable=True),
        sa.Column("credential_hash", sa.String(length=64), nullable=False),
        sa.Column("credential_expires_at", When(), nullable=False),
        sa.Column("previous_credential_hash", sa.String(length=64), nullable=True),
        sa.Column("previous_credential_expires_at", When(), nullable=True),
        sa.Column("last_ping_at", When(), nullable=True),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools.id"],
            name=op.f("fk_agents_pool_id_agent_pools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["auth_tokens.id"],
            name=op.f("fk_agents_token_id_auth_tokens"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("pool_id", "name", name=op.f("uq_agents_pool_id_name")),
        sa.UniqueConstraint("credential_hash", name=op.f("uq_agents_credential_hash")),
        sa.UniqueConstraint(
            "previous_credential_hash", name=op.f("uq_agents_previous_credential_hash")
        ),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index("ix_agents_pool_ping", ["pool_id", "last_ping_at"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool_id", Id(length=40), nullable=True))
        batch_op.create_index(
            "ix_jobs_pool_status_created", ["pool_id", "status", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_pool_status_created")
        batch_op.drop_column("pool_id")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index("ix_agents_pool_ping")
    op.drop_table("agents")
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_auth_tokens_run_id_runs"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_auth_tokens_agent_pool_id_agent_pools"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_auth_tokens_run_id"))
        batch_op.drop_index(batch_op.f("ix_auth_tokens_agent_pool_id"))
        batch_op.drop_column("workspace_id")
        batch_op.drop_column("run_id")
        batch_op.drop_column("agent_pool_id")
    with op.batch_alter_table("agent_pool_allowed_workspaces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_pool_allowed_workspaces_workspace_id"))
    op.drop_table("agent_pool_allowed_workspaces")
    op.drop_table("agent_pools")
