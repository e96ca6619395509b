"""Notification configurations of a workspace, and the outbox of deliveries still to send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from terrapod.db.base import Base, IdColumn, UTCDateTime, utcnow

GENERIC = "generic"
SLACK = "slack"
EMAIL = "email"
DESTINATION_TYPES = (GENERIC, SLACK, EMAIL)


class NotificationConfiguration(Base):
    __tablename__ = "notification_configurations"

    id: Mapped[str] = mapped_column(IdColumn(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    destination_type: Mapped[str] = mapped_column(String(20), nullable=False)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # SecretBox ciphertext of the HMAC token, bound to the configuration's id; never returned.
    token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # ",run:created,run:errored," - delimited on both sides, so that one LIKE '%,<trigger>,%'
    # finds the subscribers of a trigger on either database (see service.on_run_changed).
    triggers_text: Mapped[str] = mapped_column(Text, nullable=False, default=",")
    email_addresses: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    # The last delivery responses, newest first (TFE's delivery-responses).
    delivery_responses: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, nullable=False, default=list
    )
    # The base URL the configuration was created or changed through: run links use it when
    # the server has no external_url.
    base_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

    @property
    def triggers(self) -> list[str]:
        return [t for t in self.triggers_text.split(",") if t]

    @triggers.setter
    def triggers(self, value: list[str]) -> None:
        self.triggers_text = "," + "".join(t + "," for t in value)


# Delivery statuses: waiting until next_attempt_at, or claimed by a deliverer whose lease
# ends at next_attempt_at (a deliverer that died is replaced once its lease is over).
PENDING = "pending"
SENDING = "sending"


class NotificationDelivery(Base):
    """One notification to send: written in the transaction of the run change it reports
    (an outbox), sent afterwards by the deliverer, and deleted once it is sent or given up."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_due", "next_attempt_at"),)

    # Internal only (never in the API): filled by the database, so the run hook can write
    # every subscriber's row with one INSERT ... SELECT.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    configuration_id: Mapped[str] = mapped_column(
        IdColumn(),
        ForeignKey("notification_configurations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    run_id: Mapped[str] = mapped_column(
        IdColumn(), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    # The triggers the change matched, most specific first (",run:needs_attention,run:planned,").
    triggers_text: Mapped[str] = mapped_column(String(255), nullable=False)
    run_status: Mapped[str] = mapped_column(String(32), nullable=False)
    run_updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
