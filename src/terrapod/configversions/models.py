"""Configuration versions: one uploaded snapshot of a Terraform configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow

PENDING = "pending"
UPLOADED = "uploaded"
ERRORED = "errored"
ARCHIVED = "archived"


class ConfigurationVersion(Base):
    __tablename__ = "configuration_versions"
    __table_args__ = (Index("ix_configuration_versions_ws_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    # pending (waiting for its tarball) -> uploaded | errored; uploaded -> archived.
    status: Mapped[str] = mapped_column(String(20), nullable=False, default=PENDING)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(40), nullable=False, default="tfe-api")
    auto_queue_runs: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    speculative: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    provisional: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    file_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # {"queued-at": ..., "uploaded-at": ..., "errored-at": ...}; ISO timestamps.
    status_timestamps: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_by_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
