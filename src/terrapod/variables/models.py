"""Workspace variables: Terraform input variables and environment variables for runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow

TERRAFORM = "terraform"
ENV = "env"
CATEGORIES = (TERRAFORM, ENV)


class Variable(Base):
    __tablename__ = "variables"
    __table_args__ = (
        # A key is unique per category in a workspace (TFE allows FOO as both env and terraform).
        UniqueConstraint("workspace_id", "category", "key"),
    )

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    hcl: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sensitive: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    description: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # Plain text for ordinary values; None when sensitive (see value_encrypted).
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    # AES-GCM ciphertext (terrapod.crypto) of a sensitive value, bound to the variable's id.
    value_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A random tag that changes with every change of the value (TFE's version-id).
    version_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
