"""Users: people and service accounts that authenticate to Terrapod."""

from __future__ import annotations

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, Timestamps


class User(Base, Timestamps):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # A platform administrator ("site admin" in TFE) may do anything in any organization.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    is_service_account: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
