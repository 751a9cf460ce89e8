"""The stage robots: their rules, each firing on a deal, where the trigger reader stands."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    String,
    Text,
    text,
    true,
)
from sqlmodel import Field, SQLModel

from ..enums import RobotRunStatus
from .base import JSONData, _at, _checked, _fk


class RobotRule(SQLModel, table=True):
    """A stage's robot: when ``condition`` holds for a deal in the stage, do ``action``."""

    __tablename__ = "robot_rules"

    id: int | None = Field(default=None, primary_key=True)
    stage_id: int = _fk("stages.id", nullable=False, ondelete="CASCADE", index=True)
    name: str = Field(sa_column=Column(String(120), nullable=False))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False,
                                                        server_default=true()))
    condition: str = Field(sa_column=Column(String(32), nullable=False))
    condition_params: dict = Field(default_factory=dict,
                                   sa_column=Column(JSONData, nullable=False))
    action: str = Field(sa_column=Column(String(32), nullable=False))
    action_params: dict = Field(default_factory=dict, sa_column=Column(JSONData, nullable=False))
    created_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    created_at: datetime = _at()
    # How far the scheduler has looked (in the condition's own time column); empty: not yet,
    # so the first pass takes every deal already due, not only new arrivals.
    checked_until: datetime | None = _at(nullable=True)


class RobotRun(SQLModel, table=True):
    """One firing of a rule on a deal; ``run_key`` makes it fire once per stage visit."""

    __tablename__ = "robot_runs"
    __table_args__ = (
        _checked("status", RobotRunStatus),
        CheckConstraint("answer IS NULL OR answer IN ('moved_on', 'lower_priority', 'snooze')",
                        name="answer"),
        Index("ix_robot_runs_fired", "fired_at"),
        Index("ix_robot_runs_snoozed", "rule_id", "snooze_until",
              sqlite_where=text("snooze_until IS NOT NULL"),
              postgresql_where=text("snooze_until IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    rule_id: int = _fk("robot_rules.id", nullable=False, ondelete="CASCADE", index=True)
    deal_id: int = _fk("deals.id", nullable=False, ondelete="CASCADE", index=True)
    run_key: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    status: str = Field(sa_column=Column(String(8), nullable=False))
    fired_at: datetime = _at()
    finished_at: datetime | None = _at(nullable=True)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    answer: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    answered_at: datetime | None = _at(nullable=True)
    answered_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    snooze_until: datetime | None = _at(nullable=True)


class RobotCursor(SQLModel, table=True):
    """Where the robots' trigger reader stands in a stream (the events outbox), so that a
    restarted scheduler goes on from there and no event triggers twice."""

    __tablename__ = "robot_cursors"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    position: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                      server_default="0"))
    updated_at: datetime = _at()
