"""organizations.default_agent_pool_id (TFE's default-agent-pool)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 15:35:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import terrapod.db.base

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = terrapod.db.base.IdColumn

# No foreign key to agent_pools, like workspaces.agent_pool_id: the agent pools domain refuses
# to delete a pool that is an organization's default, and an organization's deletion takes
# its pools with it. A foreign key would need batch mode on SQLite, which rebuilds
# `organizations` (copy, DROP, rename); with PRAGMA foreign_keys=ON (db/engine.py, and it
# cannot be switched off inside the migration's transaction) that DROP deletes through every
# ON DELETE CASCADE pointing at organizations: memberships, workspaces, pools, tokens. A
# column-level REFERENCES added by SQLite's own ADD COLUMN loses its ON DELETE in SQLAlchemy's
# reflection, so models and migrations would differ. Plain ADD/DROP COLUMN rebuild nothing.


def upgrade() -> None:
    op.add_column("organizations", sa.Column("default_agent_pool_id", Id(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("organizations", "default_agent_pool_id")
