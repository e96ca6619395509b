"""Agent pools and their agents (listeners): where ``execution-mode: agent`` workspaces run.

A pool belongs to an organization; its agent tokens (``auth_tokens`` rows of kind
``agent-pool``) let ``terrapod agent`` processes join it. Each joined process is an
:class:`Agent` (TFE's ``agents`` resource, the seed's "listener") holding a short-lived
credential that it renews. The built-in agent of every ``terrapod serve`` is an agent too, in
no pool (``pool_id`` NULL): it runs the jobs of ``remote`` workspaces.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow


class AgentPool(Base):
    __tablename__ = "agent_pools"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(90), nullable=False)
    # TFE's organization-scoped: every workspace of the organization may use the pool;
    # otherwise only the allowed workspaces (AgentPoolWorkspace rows) may.
    organization_scoped: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class AgentPoolAllowedWorkspace(Base):
    """TFE's ``allowed-workspaces`` of a pool that is not organization-scoped."""

    __tablename__ = "agent_pool_allowed_workspaces"

    pool_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("agent_pools.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Agent(Base):
    """One agent process (a listener) that joined a pool, or a server's built-in agent."""

    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("pool_id", "name"),
        Index("ix_agents_pool_ping", "pool_id", "last_ping_at"),
    )

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    # NULL: a built-in agent (it runs the jobs of remote-execution workspaces).
    pool_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("agent_pools.id", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    # idle | busy | exited | errored  (TFE's agent statuses; "unknown" is derived on read
    # from last_ping_at when the agent has not been heard of for the heartbeat timeout)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="idle")
    ip_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # The agent token it joined with (revoking that token stops the agent); NULL for built-ins.
    token_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("auth_tokens.id", ondelete="SET NULL"), nullable=True
    )
    # The current short-lived credential (SHA-256 only) and, for a short grace after a
    # renewal, the one before it (calls already in flight with it still succeed).
    credential_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    credential_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    previous_credential_hash: Mapped[str | None] = mapped_column(
        String(64), nullable=True, unique=True
    )
    previous_credential_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True
    )
    last_ping_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
