"""Organizations and who belongs to them."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, Timestamps


class Organization(Base, Timestamps):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(255), nullable=False)
    session_timeout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    session_remember: Mapped[int | None] = mapped_column(Integer, nullable=True)
    collaborator_auth_policy: Mapped[str] = mapped_column(
        String(20), default="password", nullable=False
    )
    cost_estimation_enabled: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    default_execution_mode: Mapped[str] = mapped_column(
        String(20), default="remote", nullable=False
    )
    allow_force_delete_workspaces: Mapped[bool] = mapped_column(
        Boolean, default=False, nullable=False
    )
    assessments_enforced: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # TFE's default-agent-pool: the pool new workspaces get when default_execution_mode is
    # "agent" (set only then). No foreign key (migration 0013 says why): the agent pools
    # domain refuses to delete a pool that is an organization's default.
    default_agent_pool_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)


class Membership(Base, Timestamps):
    """A user's role in an organization: ``owner`` (manages it) or ``member``."""

    __tablename__ = "organization_memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    role: Mapped[str] = mapped_column(String(20), nullable=False)
