"""workspace names unique ignoring case

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "uq_workspaces_org_lower_name",
        "workspaces",
        ["organization_id", sa.text("lower(name)")],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_workspaces_org_lower_name", table_name="workspaces")
