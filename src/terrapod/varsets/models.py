"""Variable sets: named groups of variables an organization applies to many workspaces.

A set is *global* (every workspace of its organization, now and later) or applied to the
workspaces listed in ``variable_set_workspaces``. Deleting a set, a workspace or an
organization removes its assignments and variables through ON DELETE CASCADE.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, Timestamps, UTCDateTime, utcnow


class VariableSet(Base, Timestamps):
    __tablename__ = "variable_sets"
    # Names are unique per organization (the service also refuses names differing in case).
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str] = mapped_column(String(1024), nullable=False, default="")
    # Applies to every workspace of the organization (assignments are then cleared).
    is_global: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Its values win over workspace variables (but not over a run's own variables).
    priority: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class VariableSetVariable(Base):
    """One variable of a set; the columns mean what they mean for workspace variables."""

    __tablename__ = "variable_set_variables"
    __table_args__ = (UniqueConstraint("varset_id", "category", "key"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    varset_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("variable_sets.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    hcl: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sensitive: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    description: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # Plain text for ordinary values; None when sensitive (see value_encrypted).
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    # SecretBox ciphertext of a sensitive value, bound to the variable's id.
    value_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    version_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class VariableSetWorkspace(Base):
    """A (non-global) set applied to one workspace."""

    __tablename__ = "variable_set_workspaces"

    varset_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("variable_sets.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(),
        ForeignKey("workspaces.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
