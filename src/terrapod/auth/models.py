"""API tokens. Only a SHA-256 hash of each token is stored; the token itself is shown once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow


class Token(Base):
    __tablename__ = "auth_tokens"

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    # user | organization | agent-pool (an agent token: joins agents to a pool, and is no API
    # credential) | run (short-lived: a running job's access to its own workspace)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    organization_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_by_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # Agent tokens: their pool (organization_id is the pool's organization).
    agent_pool_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("agent_pools.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # Run tokens: the run and the one workspace they reach; deleted when the job ends.
    run_id: Mapped[str | None] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=True, index=True
    )
    workspace_id: Mapped[str | None] = mapped_column(IdColumn(), nullable=True)
    description: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OAuthCode(Base):
    """A one-time authorization code of the terraform login flow (RFC 6749 + PKCE)."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    client_id: Mapped[str] = mapped_column(String(100), nullable=False)
    redirect_uri: Mapped[str] = mapped_column(String(255), nullable=False)
    code_challenge: Mapped[str] = mapped_column(String(128), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
