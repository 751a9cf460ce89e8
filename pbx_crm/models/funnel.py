"""The sales funnel: pipelines and their stages, contacts, deals and every stage move."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlmodel import Field, SQLModel

from ..enums import DealSource, Priority, StageKind
from .base import _at, _checked, _fk


class Pipeline(SQLModel, table=True):
    __tablename__ = "pipelines"
    __table_args__ = (
        Index("uq_pipelines_default", "is_default", unique=True,
              sqlite_where=text("is_default"), postgresql_where=text("is_default")),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(120), nullable=False, unique=True))
    position: int = Field(default=0, nullable=False)
    # The pipeline inbound calls land in; the services keep exactly one.
    is_default: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                            server_default=false()))
    creates_deals_from_calls: bool = Field(default=True, sa_column=Column(
        Boolean, nullable=False, server_default=true()))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    created_at: datetime = _at()


class Stage(SQLModel, table=True):
    __tablename__ = "stages"
    __table_args__ = (
        _checked("kind", StageKind),
        UniqueConstraint("pipeline_id", "name"),
        # One Unsorted stage per pipeline.
        Index("uq_stages_pipeline_unsorted", "pipeline_id", unique=True,
              sqlite_where=text("is_unsorted"), postgresql_where=text("is_unsorted")),
    )

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    name: str = Field(sa_column=Column(String(120), nullable=False))
    position: int = Field(nullable=False)
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    is_unsorted: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                             server_default=false()))


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    company: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    email: str | None = Field(default=None, sa_column=Column(String(254), nullable=True))
    owner_id: int | None = _fk("users.id", ondelete="SET NULL", index=True)
    notes: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _at()
    updated_at: datetime = _at()


class ContactPhone(SQLModel, table=True):
    """A contact's number as entered and in E.164; the E.164 index answers "who is calling"."""

    __tablename__ = "contact_phones"
    __table_args__ = (UniqueConstraint("contact_id", "e164"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = _fk("contacts.id", nullable=False, ondelete="CASCADE")
    raw: str = Field(sa_column=Column(String(64), nullable=False))
    e164: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    label: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class Deal(SQLModel, table=True):
    __tablename__ = "deals"
    __table_args__ = (
        _checked("source", DealSource),
        CheckConstraint("priority BETWEEN 0 AND 2", name="priority"),
        CheckConstraint("amount_minor >= 0", name="amount_minor"),
        # The board: a column's cards, newest first, for everyone or for one owner.
        Index("ix_deals_board", "stage_id", "created_at", "id"),
        Index("ix_deals_owner_board", "owner_id", "stage_id", "created_at", "id"),
        # Column totals (count and money per stage), read from the index alone.
        Index("ix_deals_stage_totals", "pipeline_id", "stage_id", "amount_minor"),
        Index("ix_deals_owner_totals", "owner_id", "pipeline_id", "stage_id", "amount_minor"),
        # The robots' due deals: a time window per stage, read as one index range.
        Index("ix_deals_stage_entered", "stage_id", "stage_entered_at"),
        Index("ix_deals_stage_activity", "stage_id", "last_activity_at"),
        # A deal number is read out on the phone: SQLite must never hand out a used one again.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False)
    stage_id: int = _fk("stages.id", nullable=False)
    title: str = Field(sa_column=Column(String(200), nullable=False))
    amount_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                          server_default="0"))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    contact_id: int | None = _fk("contacts.id", ondelete="SET NULL", index=True)
    # Empty while the deal waits in Unsorted for a seller to pick up the phone.
    owner_id: int | None = _fk("users.id", ondelete="SET NULL")
    priority: int = Field(default=Priority.NORMAL.value, sa_column=Column(
        SmallInteger, nullable=False, server_default=str(Priority.NORMAL.value)))
    source: str = Field(sa_column=Column(String(8), nullable=False))
    created_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    created_at: datetime = _at()
    updated_at: datetime = _at()
    stage_entered_at: datetime = _at()
    last_activity_at: datetime = _at()
    closed_at: datetime | None = _at(nullable=True)
    lost_reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    # Optimistic concurrency: every change bumps it; a change made on an old number is refused.
    version: int = Field(default=1, nullable=False)


class StageHistory(SQLModel, table=True):
    """One row per stage move (and one for creation, with no from-stage).

    ``from_entered_at`` is when the deal entered the stage it leaves, so time in stage and
    conversion come from this table alone, in SQL aggregates.
    """

    __tablename__ = "stage_history"
    __table_args__ = (
        Index("ix_stage_history_deal", "deal_id", "moved_at"),
        # The reports' direct queries over a period (medians): read from the index alone.
        Index("ix_stage_history_period", "pipeline_id", "moved_at", "from_stage_id",
              "to_stage_id", "from_entered_at", "deal_id"),
        # Moves into one stage (won cycles, deals lost from a stage) over a period.
        Index("ix_stage_history_to_stage", "to_stage_id", "moved_at", "deal_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int = _fk("deals.id", nullable=False, ondelete="CASCADE")
    pipeline_id: int = _fk("pipelines.id", nullable=False)
    from_stage_id: int | None = _fk("stages.id")
    to_stage_id: int = _fk("stages.id", nullable=False)
    from_entered_at: datetime | None = _at(nullable=True)
    moved_at: datetime = _at()
    moved_by_id: int | None = _fk("users.id", ondelete="SET NULL")
