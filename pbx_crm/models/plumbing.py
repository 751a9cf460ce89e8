"""Behind the services: the outbox of screen-pops and the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String
from sqlmodel import Field, SQLModel

from .base import JSONData, _at, _fk


class Event(SQLModel, table=True):
    """The outbox the telephony processes write and the web process delivers (screen-pops).

    The id is the stream position a reconnecting browser resumes from (Last-Event-ID).
    """

    __tablename__ = "events"
    __table_args__ = (
        # A call's pops, asked for on every ring and answer: who was told already?
        Index("ix_events_call", "linkedid", "kind"),
        # Browsers resume from the last id they saw, so an id is never reused.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    # Empty: for heads only (they watch all); otherwise the seller whose phone it concerns.
    target_user_id: int | None = _fk("users.id", ondelete="CASCADE", index=True)
    deal_id: int | None = _fk("deals.id", ondelete="SET NULL", index=True)
    linkedid: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    payload: dict = Field(default_factory=dict, sa_column=Column(JSONData, nullable=False))
    created_at: datetime = _at(index=True)


class AuditEntry(SQLModel, table=True):
    """Who changed what: one row per change made through the services."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _at()
    user_id: int | None = _fk("users.id", ondelete="SET NULL")
    # Who acted when no user did: "pbx", "robot", "cli"; the user's login otherwise.
    actor: str = Field(sa_column=Column(String(64), nullable=False))
    entity: str = Field(sa_column=Column(String(32), nullable=False))
    entity_id: int = Field(nullable=False)
    action: str = Field(sa_column=Column(String(32), nullable=False))
    changes: dict = Field(default_factory=dict, sa_column=Column(JSONData, nullable=False))
