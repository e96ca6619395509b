"""jobs.claim_key and jobs.claim_attempt: idempotent runs/next claims

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 15:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Plain ADD COLUMN and CREATE INDEX: nothing is rebuilt on SQLite (see 0013 for why a rebuild
# of a table other tables cascade from is to be avoided).


def upgrade() -> None:
    op.add_column("jobs", sa.Column("claim_key", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("claim_attempt", sa.Integer(), nullable=True))
    op.create_index("ux_jobs_agent_claim_key", "jobs", ["agent_id", "claim_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_jobs_agent_claim_key", table_name="jobs")
    op.drop_column("jobs", "claim_attempt")
    op.drop_column("jobs", "claim_key")
