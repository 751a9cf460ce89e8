"""What happens around a deal: its timeline, the tasks on it, the notifications about it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Integer, String, Text, text
from sqlmodel import Field, SQLModel

from ..enums import TaskKind, TimelineKind
from .base import JSONData, _at, _checked, _fk


class TimelineEntry(SQLModel, table=True):
    __tablename__ = "timeline_entries"
    __table_args__ = (
        _checked("kind", TimelineKind),
        Index("ix_timeline_entries_deal", "deal_id", "created_at"),
        # Deleting a robot rule clears its runs from the timeline: without this, one scan of
        # the whole timeline per run.
        Index("ix_timeline_entries_robot_run", "robot_run_id",
              sqlite_where=text("robot_run_id IS NOT NULL"),
              postgresql_where=text("robot_run_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int = _fk("deals.id", nullable=False, ondelete="CASCADE")
    kind: str = Field(sa_column=Column(String(12), nullable=False))
    created_at: datetime = _at()
    author_id: int | None = _fk("users.id", ondelete="SET NULL")
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    call_id: int | None = _fk("calls.id", ondelete="SET NULL")
    robot_run_id: int | None = _fk("robot_runs.id", ondelete="SET NULL")
    data: dict | None = Field(default=None, sa_column=Column(JSONData, nullable=True))


# One open callback task per deal: a further missed call updates it (funnel.tasks).
_OPEN_CALLBACK = "kind = 'callback' AND done_at IS NULL"
# The tasks the reminder pass still has to look at (robots.task_reminders).
_TO_REMIND = "done_at IS NULL AND reminded_at IS NULL"
_OPEN = "done_at IS NULL"


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        _checked("kind", TaskKind),
        Index("ix_tasks_assignee_open", "assignee_id", "done_at", "due_at"),
        Index("uq_tasks_open_callback", "deal_id", unique=True,
              sqlite_where=text(_OPEN_CALLBACK), postgresql_where=text(_OPEN_CALLBACK)),
        Index("ix_tasks_to_remind", "due_at",
              sqlite_where=text(_TO_REMIND), postgresql_where=text(_TO_REMIND)),
        # The open tasks by deal: what the report counts per seller starts from these.
        Index("ix_tasks_open", "deal_id", "due_at",
              sqlite_where=text(_OPEN), postgresql_where=text(_OPEN)),
    )

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int | None = _fk("deals.id", ondelete="CASCADE", index=True)
    # Empty: the task waits in the Unsorted queue for whoever takes it.
    assignee_id: int | None = _fk("users.id", ondelete="SET NULL")
    title: str = Field(sa_column=Column(String(200), nullable=False))
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    due_at: datetime | None = _at(nullable=True)
    done_at: datetime | None = _at(nullable=True)
    done_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    call_id: int | None = _fk("calls.id", ondelete="SET NULL")
    created_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    created_at: datetime = _at()
    # A callback task stands for every call of its deal missed while it was open: the number
    # to call back, how many calls, when the last one ended (call_id is that call).
    phone: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    missed_calls: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    last_missed_at: datetime | None = _at(nullable=True)
    # When its owner was reminded that it fell due: once per task.
    reminded_at: datetime | None = _at(nullable=True)


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_unread", "user_id", "read_at"),
        Index("ix_notifications_robot_run", "robot_run_id",
              sqlite_where=text("robot_run_id IS NOT NULL"),
              postgresql_where=text("robot_run_id IS NOT NULL")),
        Index("ix_notifications_task", "task_id", sqlite_where=text("task_id IS NOT NULL"),
              postgresql_where=text("task_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _fk("users.id", nullable=False, ondelete="CASCADE")
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    deal_id: int | None = _fk("deals.id", ondelete="CASCADE", index=True)
    robot_run_id: int | None = _fk("robot_runs.id", ondelete="SET NULL")
    created_at: datetime = _at()
    read_at: datetime | None = _at(nullable=True)
    # A reminder that this task fell due: the page says it from the task, in the reader's words.
    task_id: int | None = _fk("tasks.id", ondelete="CASCADE")
    # What ``body`` says in English, kept as words (``"say"``, pbx_crm.people.language) so
    # that the page says it in the reader's language; none on rows written before.
    data: dict | None = Field(default=None, sa_column=Column(JSONData, nullable=True))
