"""Run triggers: "when a run in ``sourceable`` applies, queue a run in ``workspace``"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow


class RunTrigger(Base):
    __tablename__ = "run_triggers"
    __table_args__ = (
        # One trigger per (destination, source) pair. It closes the race between two creates
        # of the same pair, and serves the inbound list and the per-destination count.
        UniqueConstraint("workspace_id", "sourceable_id"),
    )

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    # The destination: the workspace that gets a run (TFE's ``workspace``).
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    # The source: the workspace whose applied runs fire the trigger (TFE's ``sourceable``).
    # Indexed for the outbound list and for the lookup after every applied run.
    sourceable_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
