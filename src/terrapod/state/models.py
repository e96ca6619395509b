"""State versions and their outputs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow

PENDING = "pending"
FINALIZED = "finalized"
DISCARDED = "discarded"


class StateVersion(Base):
    __tablename__ = "state_versions"
    __table_args__ = (Index("ix_state_versions_ws_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    serial: Mapped[int] = mapped_column(BigInteger, nullable=False)
    lineage: Mapped[str | None] = mapped_column(String(64), nullable=True)
    md5: Mapped[str] = mapped_column(String(32), nullable=False)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # pending (waiting for its content) -> finalized; only finalized versions are ever current.
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    terraform_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    json_state_uploaded: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    resources: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    modules: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    providers: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    resource_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # Outputs came with the create request (json-state-outputs) rather than from the state.
    outputs_from_request: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_by_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    run_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    rolled_back_from_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StateVersionOutput(Base):
    __tablename__ = "state_version_outputs"

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    state_version_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("state_versions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # JSON text of the value; for sensitive outputs an AES-GCM ciphertext (terrapod.crypto).
    value: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    detailed_type: Mapped[Any] = mapped_column(JSON, nullable=True)
